//! How long to wait: between regular cycles (the interval, jittered so that
//! thousands of names do not fire together) and after a failure (exponential
//! with jitter, never earlier than Apple's `Retry-After`, slow when the
//! problem needs a person: unsigned terms, a rejected token).
//!
//! Randomness is injected ([`Jitter`]) so tests are deterministic.

use crate::dep::DepError;
use crate::settings::SyncSettings;
use std::time::Duration;

/// A source of uniform numbers in `[0, 1)`.
pub trait Jitter {
    fn unit(&mut self) -> f64;
}

impl<F: FnMut() -> f64> Jitter for F {
    fn unit(&mut self) -> f64 {
        self()
    }
}

/// Jitter from the operating system's random generator (through openssl),
/// for the daemon. Should the generator fail, no jitter is applied.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsJitter;

impl Jitter for OsJitter {
    fn unit(&mut self) -> f64 {
        let mut bytes = [0u8; 8];
        if openssl::rand::rand_bytes(&mut bytes).is_err() {
            return 0.5;
        }
        // 53 random bits: exactly representable, uniform in [0, 1).
        (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A jitter percentage from the settings as a fraction.
pub fn jitter_fraction(percent: u8) -> f64 {
    f64::from(percent) / 100.0
}

/// `base` moved by up to ±`fraction` of itself. Out-of-range random values
/// are clamped, so a bad generator cannot produce a negative wait.
pub fn jittered(base: Duration, fraction: f64, rng: &mut dyn Jitter) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let u = rng.unit().clamp(0.0, 1.0);
    base.mul_f64(1.0 + fraction * (2.0 * u - 1.0))
}

/// The wait before a name's next regular cycle.
pub fn next_cycle(interval: Duration, fraction: f64, rng: &mut dyn Jitter) -> Duration {
    jittered(interval, fraction, rng)
}

/// `first` doubled for each failure after the first, capped at `max`,
/// jittered (never beyond `max`).
pub fn exponential(
    first: Duration,
    max: Duration,
    failures: u32,
    fraction: f64,
    rng: &mut dyn Jitter,
) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let wait = first.saturating_mul(1u32 << doublings).min(max);
    jittered(wait, fraction, rng).min(max)
}

/// "Full jitter": a wait drawn uniformly from zero to the exponential
/// ceiling (`first` doubled per failure after the first, capped at `max`).
/// Spreads retries of many callers evenly instead of in waves.
pub fn full_jitter(
    first: Duration,
    max: Duration,
    failures: u32,
    rng: &mut dyn Jitter,
) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let ceiling = first.saturating_mul(1u32 << doublings).min(max);
    ceiling.mul_f64(rng.unit().clamp(0.0, 1.0))
}

/// Retries of one request within a cycle (a page, `/account`, an
/// assignment call), before the cycle gives up on it: Apple's bad minutes
/// (5xx, 429, timeouts, dropped connections) are ridden out in place.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRetry {
    /// Ceiling of the first wait; doubled per further failure.
    pub first: Duration,
    /// Largest backoff wait (a longer `Retry-After` is still obeyed).
    pub cap: Duration,
    /// Consecutive failures of the same request that end the attempt.
    pub max_failures: u32,
    /// The longest `Retry-After` obeyed.
    pub max_retry_after: Duration,
}

impl RequestRetry {
    pub fn from_settings(s: &SyncSettings) -> Self {
        RequestRetry {
            first: Duration::from_millis(s.request_retry_first_ms),
            cap: Duration::from_secs(s.request_retry_max_secs),
            max_failures: s.request_max_failures,
            max_retry_after: Duration::from_secs(s.max_retry_after_secs),
        }
    }

    /// The longest a request waits in place (for a retry, or behind the
    /// name's hold): the backoff cap. Apple asking for longer ends the
    /// cycle, whose own backoff starts the next one after the deadline.
    pub fn max_wait(&self) -> Duration {
        self.cap
    }

    /// Whether a request that failed this way may succeed if sent again
    /// soon: 5xx, 429, a timeout or a connection error.
    pub fn retryable(error: &DepError) -> bool {
        match error {
            DepError::Network(_) | DepError::Timeout | DepError::Throttled { .. } => true,
            DepError::Upstream { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The wait before sending a request again after its `failures`-th
    /// consecutive failure (1 for the first), or `None` when it is not to
    /// be sent again: not retryable, or `max_failures` reached. The wait is
    /// the larger of Apple's `Retry-After` and a full-jitter backoff, so no
    /// retry comes before Apple's deadline.
    pub fn wait(&self, failures: u32, error: &DepError, rng: &mut dyn Jitter) -> Option<Duration> {
        if !Self::retryable(error) || failures >= self.max_failures {
            return None;
        }
        let backoff = full_jitter(self.first, self.cap, failures, rng);
        Some(match error.retry_after() {
            Some(asked) => asked.min(self.max_retry_after).max(backoff),
            None => backoff,
        })
    }
}

/// Retry policy after failed cycles (and failed assignment calls).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure; doubled after each further one.
    pub first: Duration,
    /// The longest exponential wait.
    pub max: Duration,
    /// The wait while Apple refuses the name for a reason only a person can
    /// fix (terms not accepted, token rejected or missing).
    pub slow: Duration,
    /// The longest `Retry-After` obeyed: a broken header cannot park a name
    /// for months.
    pub max_retry_after: Duration,
    /// Jitter as a fraction of the wait (0.1 = ±10 %).
    pub jitter: f64,
}

impl Backoff {
    pub fn from_settings(s: &SyncSettings) -> Self {
        Backoff {
            first: Duration::from_secs(s.retry_first_secs),
            max: Duration::from_secs(s.retry_max_secs),
            slow: Duration::from_secs(s.slow_retry_secs),
            max_retry_after: Duration::from_secs(s.max_retry_after_secs),
            jitter: jitter_fraction(s.jitter_percent),
        }
    }

    /// The wait after the `failures`-th consecutive failure (1 for the
    /// first), caused by `error`.
    ///
    /// - terms not signed, token rejected or no token: `slow`, jittered;
    /// - otherwise exponential from `first`, capped at `max`, jittered;
    /// - with `Retry-After`: the larger of Apple's wait (capped at
    ///   `max_retry_after`) and the exponential one, so no request goes out
    ///   before Apple's deadline, and a server that keeps saying
    ///   "retry after 0" still gets backed off from.
    pub fn after_failure(&self, failures: u32, error: &DepError, rng: &mut dyn Jitter) -> Duration {
        if needs_a_person(error) {
            return jittered(self.slow, self.jitter, rng);
        }
        let exponential = exponential(self.first, self.max, failures, self.jitter, rng);
        match error.retry_after() {
            Some(asked) => asked.min(self.max_retry_after).max(exponential),
            None => exponential,
        }
    }
}

/// Whether only a person can end the error (in Apple's portal or by
/// uploading a token): retrying fast would only hammer Apple.
pub fn needs_a_person(error: &DepError) -> bool {
    matches!(
        error,
        DepError::TermsNotSigned | DepError::TokenRejected { .. } | DepError::NoCredentials
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(u: f64) -> impl FnMut() -> f64 {
        move || u
    }

    fn policy() -> Backoff {
        Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(1800),
            slow: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(86_400),
            jitter: 0.1,
        }
    }

    #[test]
    fn jitter_spans_plus_minus_the_fraction() {
        let base = Duration::from_secs(1800);
        assert_eq!(
            jittered(base, 0.1, &mut fixed(0.0)),
            Duration::from_secs(1620)
        );
        assert_eq!(jittered(base, 0.1, &mut fixed(0.5)), base);
        assert_eq!(
            jittered(base, 0.1, &mut fixed(1.0)),
            Duration::from_secs(1980)
        );
        assert_eq!(
            jittered(base, 0.1, &mut fixed(-5.0)),
            Duration::from_secs(1620)
        );
        assert_eq!(jittered(base, 7.0, &mut fixed(0.0)), Duration::ZERO);
        assert_eq!(next_cycle(base, 0.0, &mut fixed(0.9)), base);
    }

    #[test]
    fn policy_from_default_settings() {
        assert_eq!(Backoff::from_settings(&SyncSettings::default()), policy());
        assert_eq!(jitter_fraction(25), 0.25);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_capped_ceiling() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(full_jitter(first, max, 1, &mut fixed(1.0)), first);
        assert_eq!(full_jitter(first, max, 1, &mut fixed(0.0)), Duration::ZERO);
        assert_eq!(
            full_jitter(first, max, 3, &mut fixed(0.5)),
            Duration::from_secs(2)
        );
        assert_eq!(full_jitter(first, max, 40, &mut fixed(1.0)), max);
        assert_eq!(full_jitter(first, max, u32::MAX, &mut fixed(7.0)), max);
    }

    #[test]
    fn requests_are_retried_in_place_until_the_limit() {
        let r = RequestRetry::from_settings(&SyncSettings::default());
        assert_eq!(
            r,
            RequestRetry {
                first: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                max_failures: 6,
                max_retry_after: Duration::from_secs(86_400),
            }
        );
        let unavailable = DepError::Upstream {
            status: 502,
            code: String::new(),
            retry_after: None,
        };
        let waits: Vec<Option<u64>> = (1..=7)
            .map(|n| {
                r.wait(n, &unavailable, &mut fixed(1.0))
                    .map(|d| d.as_secs())
            })
            .collect();
        assert_eq!(
            waits,
            [Some(1), Some(2), Some(4), Some(8), Some(16), None, None]
        );
        // Retry-After is a floor, even above the cap, and below it the
        // jittered backoff can still be longer.
        let throttled = |secs| DepError::Throttled {
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            r.wait(1, &throttled(1), &mut fixed(0.0)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            r.wait(5, &throttled(1), &mut fixed(1.0)),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            r.wait(1, &throttled(300), &mut fixed(0.3)),
            Some(Duration::from_secs(300))
        );
        for retryable in [
            DepError::Timeout,
            DepError::Network("reset".into()),
            DepError::Throttled {
                status: 429,
                retry_after: None,
            },
        ] {
            assert!(
                r.wait(1, &retryable, &mut fixed(0.5)).is_some(),
                "{retryable}"
            );
        }
        for final_answer in [
            DepError::TermsNotSigned,
            DepError::CursorExpired,
            DepError::NotFound {
                code: "NOT_FOUND".into(),
            },
            DepError::Rejected {
                status: 400,
                code: "BAD_REQUEST".into(),
            },
            DepError::SessionRejected { status: 401 },
        ] {
            assert_eq!(
                r.wait(1, &final_answer, &mut fixed(0.5)),
                None,
                "{final_answer}"
            );
        }
    }

    #[test]
    fn exponential_then_capped() {
        let p = policy();
        let err = DepError::Timeout;
        let waits: Vec<u64> = (1..=8)
            .map(|n| p.after_failure(n, &err, &mut fixed(0.5)).as_secs())
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        // Jitter never pushes past the cap, and huge counts do not overflow.
        assert_eq!(
            p.after_failure(u32::MAX, &err, &mut fixed(1.0)).as_secs(),
            1800
        );
        assert_eq!(p.after_failure(1, &err, &mut fixed(0.0)).as_secs(), 27);
        assert_eq!(p.after_failure(0, &err, &mut fixed(0.5)).as_secs(), 30);
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        let p = policy();
        let throttled = |secs| DepError::Throttled {
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.after_failure(1, &throttled(600), &mut fixed(1.0))
                .as_secs(),
            600
        );
        assert_eq!(
            p.after_failure(5, &throttled(0), &mut fixed(0.5)).as_secs(),
            480
        );
        assert_eq!(
            p.after_failure(1, &throttled(10_000_000), &mut fixed(0.5))
                .as_secs(),
            86_400
        );
        let upstream = DepError::Upstream {
            status: 500,
            code: "x".into(),
            retry_after: Some(Duration::from_secs(90)),
        };
        assert_eq!(p.after_failure(1, &upstream, &mut fixed(0.5)).as_secs(), 90);
    }

    #[test]
    fn problems_for_a_person_retry_slowly() {
        let p = policy();
        for err in [
            DepError::TermsNotSigned,
            DepError::TokenRejected {
                status: 403,
                code: "token_rejected".into(),
            },
            DepError::NoCredentials,
        ] {
            assert!(needs_a_person(&err));
            assert_eq!(p.after_failure(1, &err, &mut fixed(0.5)).as_secs(), 3600);
            assert_eq!(p.after_failure(9, &err, &mut fixed(0.0)).as_secs(), 3240);
        }
        assert!(!needs_a_person(&DepError::Timeout));
    }

    #[test]
    fn os_jitter_is_a_unit_interval() {
        let mut j = OsJitter;
        for _ in 0..100 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
