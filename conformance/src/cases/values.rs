//! Values and versions.

use kv_core::{Error, Precondition, PutOptions};

use crate::{Ctx, Outcome, assert_err};

/// Values are arbitrary bytes: empty, NUL, invalid UTF-8 all round-trip.
pub async fn empty_and_binary_values(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let cases: [(&str, &[u8]); 4] = [
        ("empty", b""),
        ("binary", &all_bytes),
        ("invalid-utf8", b"\xff\xfe\xc3\x28"),
        ("utf8", "blå ☃".as_bytes()),
    ];
    for (key, value) in cases {
        store.put(key, value, PutOptions::default()).await.unwrap();
        let pair = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} exists"));
        assert_eq!(&pair.value[..], value, "{key} round-trips");
        assert!(
            store.exists(key).await.unwrap(),
            "an empty value is still a key ({key})"
        );
    }
    let listed = store.list("").await.unwrap();
    let empty = listed
        .iter()
        .find(|p| p.key.as_str() == "empty")
        .expect("empty is listed");
    assert!(empty.value.is_empty());
    Outcome::Passed
}

/// A value over the backend's limit fails with `ValueTooLarge` and writes nothing; one at the
/// limit is accepted.
pub async fn oversize_values_are_rejected(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let max = ctx.caps().max_value_bytes;
    let at_limit = vec![b'v'; max];
    let over = vec![b'x'; max + 1];
    assert_err!(
        store.put("big", &over, PutOptions::default()).await,
        Error::ValueTooLarge { .. },
        "put over the limit"
    );
    assert!(
        !store.exists("big").await.unwrap(),
        "a rejected put leaves nothing behind"
    );
    assert_err!(
        store
            .atomic_put(
                "big",
                &over,
                Precondition::MustNotExist,
                PutOptions::default()
            )
            .await,
        Error::ValueTooLarge { .. },
        "atomic_put over the limit"
    );
    assert!(!store.exists("big").await.unwrap());
    let version = store
        .put("big", &at_limit, PutOptions::default())
        .await
        .unwrap();
    assert_err!(
        store.put("big", &over, PutOptions::default()).await,
        Error::ValueTooLarge { .. },
        "overwrite over the limit"
    );
    let pair = store.get("big").await.unwrap().expect("big");
    assert_eq!(
        (pair.value.len(), pair.version),
        (max, version),
        "the old value is untouched"
    );
    Outcome::Passed
}

/// Versions strictly increase for successive writes of a key, deletes included.
pub async fn versions_increase(ctx: Ctx) -> Outcome {
    let store = ctx.store();
    let mut last = 0;
    for round in 0..3 {
        for i in 0..3 {
            let version = store
                .put(
                    "k",
                    format!("{round}-{i}").as_bytes(),
                    PutOptions::default(),
                )
                .await
                .unwrap();
            assert!(version > last, "version {version} after {last}");
            assert_eq!(store.get("k").await.unwrap().expect("k").version, version);
            store
                .put("other", b"x", PutOptions::default())
                .await
                .unwrap();
            last = version;
        }
        store.delete("k").await.unwrap();
    }
    let listed = store.list("k").await.unwrap();
    assert!(listed.is_empty());
    let version = store
        .put("k", b"again", PutOptions::default())
        .await
        .unwrap();
    assert!(
        version > last,
        "a re-created key gets a greater version ({version} after {last})"
    );
    assert_eq!(
        store.list("k").await.unwrap()[0].version,
        version,
        "list reports the version too"
    );
    Outcome::Passed
}
