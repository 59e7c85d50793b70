//! The rules of one DEP name's Apple session, as a plain struct the name's
//! actor drives: at most one `/session` call in flight however many
//! requests wait (single flight); a rejected token is dropped, a rotated
//! one adopted; a failed `/session` is recorded and held off with
//! exponential backoff instead of retried in a tight loop; new OAuth tokens
//! reset everything.

use crate::dep::DepError;
use std::time::Duration;
use time::OffsetDateTime;

/// First hold-off after a transient failure (network, Apple's 5xx).
const TRANSIENT_BASE: Duration = Duration::from_secs(2);
/// First hold-off after Apple refused the OAuth token or the terms are not
/// signed: a person has to act, so asking again soon is pointless.
const REFUSED_BASE: Duration = Duration::from_secs(30);
const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// What the actor should do with a request for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand out this token.
    Ready(String),
    /// A `/session` call is in flight: wait for its outcome.
    Wait,
    /// Start a `/session` call; report its outcome with this generation.
    Open(u64),
    /// The last `/session` failed and its hold-off has not ended.
    Refuse(SessionFailure),
}

/// A failed `/session`, as the status endpoint and callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFailure {
    pub error: DepError,
    pub at: OffsetDateTime,
    /// No new `/session` call before this time.
    pub retry_at: OffsetDateTime,
    /// Consecutive failures, this one included.
    pub failures: u32,
}

/// The session state of a name, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    None,
    Opening,
    Active { since: OffsetDateTime },
    Failed(SessionFailure),
}

impl SessionState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionState::None => "none",
            SessionState::Opening => "opening",
            SessionState::Active { .. } => "active",
            SessionState::Failed(_) => "failed",
        }
    }
}

/// What happened to an opened session's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Give this to every waiter.
    Done(Result<String, SessionFailure>),
    /// The result belongs to credentials replaced meanwhile: discard it and,
    /// if anyone waits, open again with the new generation.
    Stale,
}

#[derive(Debug, Default)]
pub struct SessionRules {
    token: Option<String>,
    since: Option<OffsetDateTime>,
    opening: bool,
    generation: u64,
    failure: Option<SessionFailure>,
    opened: u64,
}

impl SessionRules {
    pub fn new() -> Self {
        Self::default()
    }

    /// A caller wants a token; `rejected` is one Apple refused.
    pub fn request(&mut self, rejected: Option<&str>, now: OffsetDateTime) -> Decision {
        if let (Some(r), Some(t)) = (rejected, &self.token)
            && r == t
        {
            self.token = None;
            self.since = None;
        }
        if let Some(t) = &self.token {
            return Decision::Ready(t.clone());
        }
        if self.opening {
            return Decision::Wait;
        }
        if let Some(f) = &self.failure
            && now < f.retry_at
        {
            return Decision::Refuse(f.clone());
        }
        self.opening = true;
        Decision::Open(self.generation)
    }

    /// The `/session` call of `generation` finished.
    pub fn opened(
        &mut self,
        generation: u64,
        result: Result<String, DepError>,
        now: OffsetDateTime,
    ) -> Outcome {
        self.opening = false;
        if generation != self.generation {
            return Outcome::Stale;
        }
        match result {
            Ok(token) => {
                self.token = Some(token.clone());
                self.since = Some(now);
                self.failure = None;
                self.opened += 1;
                Outcome::Done(Ok(token))
            }
            Err(error) => {
                let failures = self.failure.as_ref().map_or(0, |f| f.failures) + 1;
                let hold = hold_off(&error, failures);
                let failure = SessionFailure {
                    error,
                    at: now,
                    retry_at: now + hold,
                    failures,
                };
                self.failure = Some(failure.clone());
                Outcome::Done(Err(failure))
            }
        }
    }

    /// The `/session` call that [`Decision::Open`] asked for could not be
    /// started (no credentials).
    pub fn abandon(&mut self) {
        self.opening = false;
    }

    /// Starts a new `/session` call after a stale outcome (there are
    /// waiters); the generation to report it with.
    pub fn reopen(&mut self) -> u64 {
        self.opening = true;
        self.generation
    }

    /// Apple answered a request made with `old` with `new`. Adopted only if
    /// `old` is still current, so a late answer cannot undo a newer token.
    pub fn rotated(&mut self, old: &str, new: String, now: OffsetDateTime) -> bool {
        if self.token.as_deref() == Some(old) && old != new {
            self.token = Some(new);
            self.since = Some(now);
            true
        } else {
            false
        }
    }

    /// The OAuth tokens changed: forget the session, the recorded failure
    /// and any `/session` call in flight (its result will be stale).
    pub fn reset(&mut self) {
        self.token = None;
        self.since = None;
        self.failure = None;
        self.generation += 1;
    }

    pub fn state(&self) -> SessionState {
        match (&self.token, self.opening, &self.failure) {
            (Some(_), _, _) => SessionState::Active {
                since: self.since.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            },
            (None, true, _) => SessionState::Opening,
            (None, false, Some(f)) => SessionState::Failed(f.clone()),
            (None, false, None) => SessionState::None,
        }
    }

    /// The token handed out now, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The last `/session` failure, until a session opens.
    pub fn failure(&self) -> Option<&SessionFailure> {
        self.failure.as_ref()
    }

    /// Sessions opened since start.
    pub fn opened_count(&self) -> u64 {
        self.opened
    }
}

/// How long to wait before the next `/session` after `failures`
/// consecutive failures ending in `error`: Apple's `Retry-After` when it
/// gave one, else exponential from a base that depends on whether waiting
/// can help.
fn hold_off(error: &DepError, failures: u32) -> Duration {
    if let Some(wait) = error.retry_after() {
        return wait.min(MAX_HOLD);
    }
    let base = if error.is_transient() {
        TRANSIENT_BASE
    } else {
        REFUSED_BASE
    };
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_HOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[test]
    fn single_flight_then_everyone_gets_the_token() {
        let mut r = SessionRules::new();
        assert_eq!(r.request(None, T0), Decision::Open(0));
        assert_eq!(r.state(), SessionState::Opening);
        for _ in 0..63 {
            assert_eq!(r.request(None, T0), Decision::Wait);
        }
        assert_eq!(
            r.opened(0, Ok("s1".into()), T0),
            Outcome::Done(Ok("s1".into()))
        );
        assert_eq!(r.request(None, T0), Decision::Ready("s1".into()));
        assert_eq!(r.opened_count(), 1);
    }

    #[test]
    fn a_rejected_token_is_replaced_once_however_many_report_it() {
        let mut r = SessionRules::new();
        r.request(None, T0);
        r.opened(0, Ok("s1".into()), T0);
        assert_eq!(r.request(Some("s1"), T0), Decision::Open(0));
        assert_eq!(r.request(Some("s1"), T0), Decision::Wait);
        r.opened(0, Ok("s2".into()), T0);
        // A late report about the old token does not drop the new one.
        assert_eq!(r.request(Some("s1"), T0), Decision::Ready("s2".into()));
    }

    #[test]
    fn failures_are_held_off_exponentially_and_recorded() {
        let mut r = SessionRules::new();
        r.request(None, T0);
        let out = r.opened(0, Err(DepError::Network("refused".into())), T0);
        let Outcome::Done(Err(f)) = out else {
            panic!("expected a failure: {out:?}")
        };
        assert_eq!((f.failures, f.retry_at), (1, T0 + secs(2)));
        assert!(matches!(r.request(None, T0 + secs(1)), Decision::Refuse(_)));
        assert_eq!(r.request(None, T0 + secs(2)), Decision::Open(0));
        r.opened(0, Err(DepError::Network("refused".into())), T0 + secs(2));
        assert_eq!(
            r.failure().map(|f| f.retry_at),
            Some(T0 + secs(2) + secs(4))
        );
        assert!(matches!(r.state(), SessionState::Failed(_)));

        let mut r = SessionRules::new();
        r.request(None, T0);
        r.opened(0, Err(DepError::TermsNotSigned), T0);
        assert_eq!(r.failure().map(|f| f.retry_at), Some(T0 + secs(30)));
        assert!(
            matches!(r.request(None, T0 + secs(29)), Decision::Refuse(f) if f.error == DepError::TermsNotSigned)
        );
    }

    #[test]
    fn retry_after_sets_the_hold_off() {
        let mut r = SessionRules::new();
        r.request(None, T0);
        let err = DepError::Throttled {
            status: 503,
            retry_after: Some(Duration::from_secs(120)),
        };
        r.opened(0, Err(err), T0);
        assert_eq!(r.failure().map(|f| f.retry_at), Some(T0 + secs(120)));
    }

    #[test]
    fn new_tokens_reset_and_make_a_call_in_flight_stale() {
        let mut r = SessionRules::new();
        r.request(None, T0);
        r.opened(0, Err(DepError::TermsNotSigned), T0);
        assert!(matches!(r.request(None, T0), Decision::Refuse(_)));
        r.reset();
        assert_eq!(r.state(), SessionState::None);
        assert_eq!(r.request(None, T0), Decision::Open(1));
        r.reset();
        assert_eq!(r.opened(1, Ok("old-creds".into()), T0), Outcome::Stale);
        assert_eq!(r.reopen(), 2);
        assert_eq!(
            r.opened(2, Ok("s".into()), T0),
            Outcome::Done(Ok("s".into()))
        );
    }

    #[test]
    fn rotation_only_replaces_the_current_token() {
        let mut r = SessionRules::new();
        r.request(None, T0);
        r.opened(0, Ok("s1".into()), T0);
        assert!(r.rotated("s1", "s2".into(), T0));
        assert!(!r.rotated("s1", "s3".into(), T0));
        assert_eq!(r.request(None, T0), Decision::Ready("s2".into()));
    }

    #[test]
    fn hold_off_is_capped() {
        assert_eq!(hold_off(&DepError::TermsNotSigned, 40), MAX_HOLD);
        assert_eq!(hold_off(&DepError::Timeout, 3), Duration::from_secs(8));
    }
}
