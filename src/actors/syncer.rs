//! The sync loop's state as the DEP-name actor holds it, and what a cycle
//! reports: plain data, so the actor (`dep_name.rs`) and the status depend
//! on it without depending on the loop (`sync/`), which drives it.

use crate::dep::DepError;
use crate::dep::client::{Hold, RetryLog};
use crate::store::CycleOutcome;
use crate::sync::cycle::Cycle;
use crate::sync::webhook::Delivery;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// What `/account` says of request sizes, with when it was read.
#[derive(Debug, Clone, Copy)]
pub(super) struct AccountLimits {
    /// `/server/devices` (and so `/devices/sync`) page maximum.
    pub(super) fetch: Option<u32>,
    /// `/profile/devices` serials per call maximum.
    pub(super) assign: Option<u32>,
    pub(super) read_at: OffsetDateTime,
}

/// The last sync failure, for status.
#[derive(Debug, Clone)]
pub(super) struct SyncFailure {
    pub at: OffsetDateTime,
    pub error: DepError,
}

/// The sync loop's state in the actor (the persisted part is in `cycle`).
pub struct Syncer {
    pub(super) cycle: Cycle,
    /// Bumped whenever a cycle starts or is abandoned: answers that arrive
    /// for an older generation are dropped.
    pub(super) generation: u64,
    pub(super) next_at: Option<OffsetDateTime>,
    pub(super) last_failure: Option<SyncFailure>,
    /// The page maxima `/account` advertised, and when.
    pub(super) limits: Option<AccountLimits>,
    pub(super) assigning: bool,
    /// Work was queued while a pass ran (a page, the end of a cycle, a new
    /// profile): the pass may have looked before it was stored, so another
    /// pass follows at once.
    pub(super) assign_requested: bool,
    pub(super) assign_at: Option<OffsetDateTime>,
    pub(super) delivering: bool,
    pub(super) deliver_at: Option<OffsetDateTime>,
    pub(super) delivery: Option<Delivery>,
    /// A finished cycle whose assignments and deliveries are under way.
    pub(super) finishing: Option<CycleReport>,
    pub(super) waiters: Vec<oneshot::Sender<CycleReport>>,
    /// Assignment results since the running (or finishing) cycle started:
    /// passes run during a cycle too, as its pages arrive.
    pub(super) assigned_in_cycle: BTreeMap<String, u64>,
    /// Serials (hashed) sent by the passes since the last tick started one,
    /// carried from pass to pass (passes start as pages arrive, when a
    /// cycle ends, and one after the other while work is due) so that none
    /// is sent twice among them. Dropped when a pass leaves nothing due, and
    /// when the tick starts a pass: a serial Apple wants again at once is
    /// sent at most once a tick.
    pub(super) chained_sent: Option<crate::sync::assigner::SentSerials>,
    /// Apple's `Retry-After` (and `/session` hold-offs) for all the name's
    /// own calls.
    pub(super) hold: Arc<Hold>,
    /// In-place retries of the name's own calls, for status and metrics.
    pub(super) retry_log: Arc<RetryLog>,
}

impl Syncer {
    pub fn new(state: crate::store::StoredSync) -> Self {
        Syncer {
            cycle: Cycle::new(state),
            generation: 0,
            next_at: None,
            last_failure: None,
            limits: None,
            assigning: false,
            assign_requested: false,
            assign_at: None,
            delivering: false,
            deliver_at: None,
            delivery: None,
            finishing: None,
            waiters: Vec::new(),
            assigned_in_cycle: BTreeMap::new(),
            chained_sent: None,
            hold: Arc::default(),
            retry_log: Arc::default(),
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        self.cycle.is_running() || self.finishing.is_some()
    }
}

/// How a cycle ended, as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Apple said there was no more.
    Complete,
    /// Apple handed back a cursor it had already given while saying there
    /// was more: stopped instead of looping.
    RepeatedCursor,
    Failed,
    /// Not run: the name has no tokens (`depd sync --once`).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::RepeatedCursor => "repeated_cursor",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

impl From<CycleOutcome> for Outcome {
    fn from(stored: CycleOutcome) -> Self {
        match stored {
            CycleOutcome::Complete => Outcome::Complete,
            CycleOutcome::RepeatedCursor => Outcome::RepeatedCursor,
            CycleOutcome::Failed => Outcome::Failed,
        }
    }
}

/// What one cycle did, for waiting callers.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub dep_name: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub pages: u64,
    /// Devices by `op_type` (`none` on fetch).
    pub devices: BTreeMap<String, u64>,
    /// Assignment results of the pass after the cycle.
    pub assignments: BTreeMap<String, u64>,
    /// Webhook events still waiting for delivery afterwards.
    pub webhook_backlog: u64,
}

impl CycleReport {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed | Outcome::Skipped) || self.webhook_backlog > 0
    }
}

/// `added=3 modified=1` for a log line.
pub(super) fn counts_words(counts: &BTreeMap<String, u64>) -> String {
    let words: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
    if words.is_empty() {
        "none".to_owned()
    } else {
        words.join(" ")
    }
}
