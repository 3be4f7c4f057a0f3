//! The cases, one module per area of the contract. The list below is the single place a case
//! is registered: it builds [`ALL`] and the tests of `conformance_tests!`.

mod cas;
mod keys;
mod leases;
mod lifecycle;
mod locks;
mod tree;
mod ttl;
mod txn;
mod values;
mod watch;

use crate::Case;

/// Calls `$callback! { { args } area::case ... }` with every case of the suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { { $($args)* }
            keys::keys_are_normalized
            keys::invalid_keys_change_nothing
            keys::prefixes_are_segment_bounded
            keys::keys_hold_values_and_children
            keys::implicit_parents_are_not_keys
            values::empty_and_binary_values
            values::oversize_values_are_rejected
            values::versions_increase
            tree::list_is_sorted_and_complete
            tree::list_children_is_a_directory_listing
            tree::delete_removes_one_key
            tree::delete_tree_removes_the_subtree
            tree::delete_tree_is_all_or_nothing_where_declared_atomic
            tree::list_is_a_snapshot_where_declared
            cas::atomic_put_preconditions
            cas::atomic_delete_preconditions
            cas::concurrent_cas_has_one_winner
            txn::txn_applies_all_or_nothing
            txn::txn_is_checked_before_anything_is_sent
            txn::txn_writes_are_watch_events
            txn::concurrent_txns_are_serializable
            txn::a_txn_is_never_refused_while_its_conditions_hold
            ttl::ttl_keys_expire_with_a_delete_event
            ttl::put_without_ttl_clears_the_expiry
            ttl::bad_ttls_are_rejected
            watch::watch_starts_with_the_current_state
            watch::watch_marks_the_end_of_the_initial_state
            watch::watch_of_a_missing_key
            watch::watch_tree_has_no_gap
            watch::watch_events_arrive_in_version_order
            watch::watch_tree_reports_deletes
            watch::watch_ends_with_an_error_on_close
            watch::slow_watchers_lag_and_never_block_writers
            watch::watch_since_resumes_from_history
            leases::lease_keys_live_until_revoked
            leases::lease_keys_go_when_the_holder_stops
            leases::a_lease_is_taken_up_by_id
            leases::election_has_one_leader_at_a_time
            leases::fenced_writes_land_only_while_leading
            leases::a_dropped_leadership_hands_over_at_once
            leases::a_registration_comes_back_after_its_lease_is_lost
            leases::an_election_run_leads_again_after_losing_its_leadership
            leases::limiter_admits_at_most_n
            locks::lock_excludes_under_contention
            locks::lock_ttls_below_the_minimum_are_refused
            locks::try_acquire_and_holder
            locks::fencing_tokens_increase
            locks::a_claimed_fence_refuses_an_earlier_holders_writes
            locks::lock_is_lost_when_the_lease_is_not_renewed
            locks::locks_are_released_on_close_and_drop
            locks::abandoned_acquire_leaves_nothing_behind
            locks::subtree_lock_excludes_the_subtree
            locks::subtree_lock_is_excluded_by_locks_inside_and_above
            lifecycle::closed_handle_rejects_every_call
            lifecycle::capabilities_are_coherent
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __build_cases {
    ({} $($area:ident :: $name:ident)*) => {
        /// Every case, in registration order.
        pub(crate) static ALL: &[Case] = &[
            $(Case {
                name: stringify!($name),
                area: stringify!($area),
                run: |ctx| Box::pin($area::$name(ctx)),
            }),*
        ];
    };
}

crate::__with_cases!(__build_cases {});
