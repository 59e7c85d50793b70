//! What a cycle did, as waiting callers and `depd sync --once` see it.

use super::*;

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
