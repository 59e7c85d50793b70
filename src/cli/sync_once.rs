//! `depd sync --once [NAME…]`: one sync cycle per name on a stopped
//! daemon's store, like NanoDEP's `depsyncer -duration 0` but waiting for
//! the cycle's assignments and webhook deliveries before it returns (the
//! report says which names failed).

use crate::actors::{CycleReport, Registry, Resolve, SyncNow, SyncRefused};
use crate::domain::clock::{SharedClock, SystemClock};
use crate::domain::name::DepName;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use actix::Actor;
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error(
        "opening storage in {dir}: {source} (is depd serve running on it? stop it first, \
         or use `depd sync NAME` to ask the running daemon)"
    )]
    Store { dir: String, source: StoreError },
    #[error("unknown DEP name {0:?}")]
    UnknownName(String),
}

/// Runs one cycle for each of `names` (all names with tokens when empty)
/// and returns a report per name, in name order.
pub async fn sync_once(
    settings: Settings,
    names: Vec<DepName>,
) -> Result<Vec<CycleReport>, OnceError> {
    sync_once_with_clock(settings, names, Arc::new(SystemClock)).await
}

pub async fn sync_once_with_clock(
    mut settings: Settings,
    names: Vec<DepName>,
    clock: SharedClock,
) -> Result<Vec<CycleReport>, OnceError> {
    let dir = settings.data_dir.clone();
    let err = |source| OnceError::Store {
        dir: dir.display().to_string(),
        source,
    };
    let (store, stored) = crate::store::open_and_load(&settings).await.map_err(err)?;
    let with_tokens: Vec<DepName> = stored
        .iter()
        .filter(|(_, d)| d.tokens.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    let known: Vec<DepName> = stored.iter().map(|(n, _)| n.clone()).collect();
    let wanted = if names.is_empty() {
        with_tokens
    } else {
        for n in &names {
            if !known.contains(n) && !settings.names.contains_key(n) {
                return Err(OnceError::UnknownName(n.as_str().to_owned()));
            }
        }
        names
    };
    // Only the cycles asked for: no timer-driven ones besides.
    settings.sync.auto = false;
    let registry = Registry::new(store.clone(), Arc::new(settings), clock, stored).start();
    let runs = wanted.into_iter().map(|name| {
        let registry = registry.clone();
        async move {
            let report = match registry
                .send(Resolve {
                    name: name.clone(),
                    create: false,
                })
                .await
            {
                Ok(Some(actor)) => match actor
                    .send(SyncNow {
                        resync: false,
                        wait: true,
                    })
                    .await
                {
                    Ok(Ok(Some(report))) => report,
                    Ok(Ok(None)) => skipped(&name, "the cycle did not report"),
                    Ok(Err(SyncRefused::NoTokens)) => skipped(&name, "no OAuth tokens"),
                    Ok(Err(e)) => skipped(&name, &e.to_string()),
                    Err(e) => skipped(&name, &e.to_string()),
                },
                _ => skipped(&name, "unknown DEP name"),
            };
            (name, report)
        }
    });
    let reports: BTreeMap<DepName, CycleReport> = join_all(runs).await.into_iter().collect();
    if let Err(e) = store.blocking(Store::flush).await {
        tracing::error!(error = %e, "flushing storage failed");
    }
    Ok(reports.into_values().collect())
}

fn skipped(name: &DepName, why: &str) -> CycleReport {
    CycleReport {
        dep_name: name.as_str().to_owned(),
        outcome: crate::actors::Outcome::Skipped,
        error: Some(why.to_owned()),
        pages: 0,
        devices: BTreeMap::new(),
        assignments: BTreeMap::new(),
        webhook_backlog: 0,
    }
}
