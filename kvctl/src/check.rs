//! `kvctl check`: the conformance suite against a live deployment, in fresh namespaces under
//! the given store's root, with a table of results.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conformance::{Backend, Outcome};
use kv::{Result, Store, StoreUrl};
use serde_json::json;

use crate::output::{Failure, Printer, code};

/// Hands out namespaces under the checked store: a fresh scratch namespace per case, as its
/// driver makes them (a sub-root; a fresh named namespace for `memory://`, a fresh temporary
/// store for `sled://`).
struct Deployment {
    url: StoreUrl,
    run: String,
    created: Mutex<Vec<String>>,
}

impl Deployment {
    fn namespace_url(&self, case: &str) -> Result<String> {
        let leaf = format!("{}-{case}", self.run);
        let url = kv::driver(&self.url)?.scratch(&self.url, &leaf)?;
        Ok(url.to_url_string())
    }
}

#[async_trait]
impl Backend for Deployment {
    fn name(&self) -> &str {
        &self.url.scheme
    }

    async fn namespace(&self) -> Result<String> {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        let namespace = self.namespace_url(&created.len().to_string())?;
        created.push(namespace.clone());
        Ok(namespace)
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn Store>> {
        kv::open(namespace).await
    }
}

/// Runs the suite (cases whose area or name is in `only`, if given) and prints a table.
pub async fn run(url: &str, only: &[String], out: &Printer) -> std::result::Result<u8, Failure> {
    let parsed = StoreUrl::parse(url)?;
    let deployment = Arc::new(Deployment {
        url: parsed,
        run: conformance::random_name().replace("kvtest", "kvcheck"),
        created: Mutex::new(Vec::new()),
    });
    let selected = |case: &conformance::Case| {
        only.is_empty() || only.iter().any(|o| o == case.area || o == case.name)
    };
    if !conformance::cases().iter().any(selected) {
        let areas: Vec<&str> = conformance::cases().iter().map(|c| c.area).collect();
        return Err(Failure::new(
            code::USAGE,
            format!("--only matches no case; areas: {}", dedup(areas).join(", ")),
        ));
    }
    let reports = tokio::time::timeout(
        Duration::from_secs(600),
        conformance::run(deployment.clone(), selected),
    )
    .await
    .map_err(|_| Failure::new(code::OTHER, "the check did not finish within 10 minutes"))?;
    let mut failed = 0;
    for report in &reports {
        let (result, detail) = match &report.result {
            Ok(Outcome::Passed) => ("ok", String::new()),
            Ok(Outcome::Gated(capability)) => (
                "gated",
                format!("capability {capability} declared unsupported; checked"),
            ),
            Err(failure) => {
                failed += 1;
                (
                    "FAILED",
                    failure.lines().next().unwrap_or_default().to_owned(),
                )
            }
        };
        let millis = report.elapsed.as_millis();
        out.emit(
            json!({"case": report.name, "area": report.area, "result": result, "ms": millis, "detail": detail}),
            || format!("{:<52} {:<7} {:>7} ms  {detail}", format!("{}::{}", report.area, report.name), result, millis),
        );
    }
    cleanup(&deployment).await;
    out.emit(json!({"cases": reports.len(), "failed": failed}), || {
        format!("{} cases, {failed} failed", reports.len())
    });
    Ok(if failed == 0 {
        0
    } else {
        code::NOT_FOUND as u8
    })
}

/// Removes the keys the cases wrote, namespace by namespace (best effort: a broken deployment
/// may refuse).
async fn cleanup(deployment: &Deployment) {
    let created =
        std::mem::take(&mut *deployment.created.lock().unwrap_or_else(|p| p.into_inner()));
    for namespace in created {
        if let Ok(store) = kv::open(&namespace).await {
            // Keys and the backend's bookkeeping (Redis's counters, indexes and log).
            let _ = store.purge().await;
            let _ = store.close().await;
        }
        if let Some(dir) = namespace.strip_prefix("sled://") {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(file) = namespace.strip_prefix("sqlite://")
            && let Some(dir) = std::path::Path::new(file).parent()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn dedup(mut items: Vec<&str>) -> Vec<&str> {
    items.dedup();
    items
}
