//! Retries in place: the name's hold (Apple's `Retry-After`), the log of
//! failed requests that status shows, and what decides a retry.

use super::*;

/// Apple's "not before" for one DEP name: after an answer with
/// `Retry-After` (or a `/session` hold-off), none of the name's own calls
/// goes out before the deadline, whichever request it was.
/// Deadlines are on the injected clock, like every other time in depd.
#[derive(Debug, Default)]
pub struct Hold(Mutex<Option<OffsetDateTime>>);

impl Hold {
    /// No call before `until` (a later deadline already set stays).
    pub fn raise(&self, until: OffsetDateTime) {
        let mut at = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if at.is_none_or(|t| t < until) {
            *at = Some(until);
        }
    }

    /// How long from `now` until the deadline, if one is ahead.
    pub fn remaining(&self, now: OffsetDateTime) -> Option<Duration> {
        let until = (*self.0.lock().unwrap_or_else(PoisonError::into_inner))?;
        let left = until - now;
        left.is_positive().then(|| left.unsigned_abs())
    }
}

/// The last failed request of a name's own calls, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRequest {
    pub at: OffsetDateTime,
    /// The Apple path, without query.
    pub endpoint: String,
    /// In words, for people.
    pub error: String,
    /// Consecutive failures of this request, this one included.
    pub failures: u32,
    /// When it is sent again; `None` when it was given up (the caller sees
    /// the error).
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// What in-place retries did, shared by a name's clients and read by its
/// status and metrics.
#[derive(Debug, Default)]
pub struct RetryLog {
    retries: AtomicU64,
    last: Mutex<Option<FailedRequest>>,
    /// Time calls spent waiting (for a retry or behind the hold), by
    /// endpoint.
    waited: Mutex<std::collections::BTreeMap<String, Duration>>,
}

impl RetryLog {
    /// Requests sent again after a transient failure, since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The last failed request, retried or given up.
    pub fn last_failure(&self) -> Option<FailedRequest> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Time spent waiting before sending, by Apple endpoint, since start.
    pub fn waited(&self) -> std::collections::BTreeMap<String, Duration> {
        self.waited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn add_wait(&self, endpoint: &str, wait: Duration) {
        let mut waited = self.waited.lock().unwrap_or_else(PoisonError::into_inner);
        *waited.entry(endpoint.to_owned()).or_default() += wait;
    }

    pub(super) fn record(&self, failure: FailedRequest) {
        if failure.next_attempt_at.is_some() {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(failure);
    }

    /// A retried request went through: no attempt is pending any more.
    pub(super) fn recovered(&self) {
        if let Some(last) = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            last.next_attempt_at = None;
        }
    }
}

/// Decides whether and when a failed request is sent again: the wait
/// after its `n`-th consecutive failure, or `None` to give up. The daemon
/// passes `sync::backoff::RequestRetry::wait` with the OS's randomness.
pub type RetryDecision = Box<dyn Fn(u32, &DepError) -> Option<Duration>>;

/// In-place retries of a client: the decision, the name's hold and log.
pub struct Retries {
    pub decide: RetryDecision,
    /// The longest a call waits, for a retry or for the name's hold; a
    /// longer wait ends the call with the error (the caller's own backoff,
    /// which honours Apple's deadline too, takes over).
    pub max_wait: Duration,
    pub hold: Arc<Hold>,
    pub log: Arc<RetryLog>,
}
