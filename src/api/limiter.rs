//! Wrong API keys, counted per client address: after
//! `auth_failure_limit` wrong credentials from one address within a
//! minute, that address is answered 429 (with `Retry-After`) for a minute,
//! right key or not. Requests without credentials are not counted: they
//! are clients that have not been configured yet, not guesses.
//!
//! Only addresses that failed are tracked, and the map is pruned, so
//! memory stays bounded whoever calls. Successful requests from addresses
//! that never failed take no lock: a counter says whether anything is
//! tracked at all.

use crate::domain::clock::SharedClock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// The window failures are counted in, and how long an address is refused.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; beyond, the oldest windows are dropped.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: OffsetDateTime,
    failures: u32,
    blocked_until: Option<OffsetDateTime>,
}

pub struct AuthLimiter {
    clock: SharedClock,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    tracked: AtomicUsize,
}

impl AuthLimiter {
    pub fn new(clock: SharedClock) -> Self {
        AuthLimiter {
            clock,
            entries: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `ip` is still refused, if it is.
    pub fn refused_for(&self, ip: IpAddr) -> Option<Duration> {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let now = self.clock.now();
        let entries = self.lock();
        let until = entries.get(&ip)?.blocked_until?;
        remaining(now, until)
    }

    /// Counts a wrong credential from `ip`; returns how long it is now
    /// refused when this failure reached `limit` (0: never).
    pub fn failed(&self, ip: IpAddr, limit: u32) -> Option<Duration> {
        if limit == 0 {
            return None;
        }
        let now = self.clock.now();
        let window = time::Duration::try_from(WINDOW).unwrap_or(time::Duration::MINUTE);
        let mut entries = self.lock();
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&ip) {
            entries.retain(|_, e| {
                e.blocked_until.is_some_and(|u| u > now) || now - e.window_start < window
            });
            if entries.len() >= MAX_TRACKED {
                // Still full of fresh windows: drop the oldest half.
                let mut starts: Vec<OffsetDateTime> =
                    entries.values().map(|e| e.window_start).collect();
                starts.sort_unstable();
                let cut = starts[starts.len() / 2];
                entries.retain(|_, e| e.window_start > cut || e.blocked_until.is_some());
            }
        }
        let entry = entries.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now - entry.window_start >= window {
            *entry = Entry {
                window_start: now,
                failures: 0,
                blocked_until: entry.blocked_until.filter(|u| *u > now),
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        let blocked = if entry.failures >= limit {
            let until = now + window;
            entry.blocked_until = Some(until);
            remaining(now, until)
        } else {
            None
        };
        self.tracked.store(entries.len(), Ordering::Relaxed);
        blocked
    }
}

fn remaining(now: OffsetDateTime, until: OffsetDateTime) -> Option<Duration> {
    let left = until - now;
    (left > time::Duration::ZERO).then(|| Duration::try_from(left).unwrap_or(WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;
    use std::sync::Arc;
    use time::macros::datetime;

    #[test]
    fn the_limit_within_a_minute_refuses_for_a_minute() {
        let clock = ManualClock::new(datetime!(2026-12-05 10:00 UTC));
        let l = AuthLimiter::new(Arc::new(clock.clone()));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(l.refused_for(a), None);
        for _ in 0..9 {
            assert_eq!(l.failed(a, 10), None);
        }
        assert_eq!(l.failed(a, 10), Some(WINDOW));
        assert_eq!(l.refused_for(b), None, "other addresses are not refused");
        clock.advance(time::Duration::seconds(59));
        assert_eq!(l.refused_for(a), Some(Duration::from_secs(1)));
        clock.advance(time::Duration::seconds(1));
        assert_eq!(l.refused_for(a), None);
        // Failures spread over more than a minute never reach the limit.
        for _ in 0..20 {
            assert_eq!(l.failed(b, 10), None);
            clock.advance(time::Duration::seconds(7));
        }
        // 0 turns it off.
        for _ in 0..100 {
            assert_eq!(l.failed(a, 0), None);
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let clock = ManualClock::new(datetime!(2026-12-05 10:00 UTC));
        let l = AuthLimiter::new(Arc::new(clock));
        for i in 0..(MAX_TRACKED as u32 + 10_000) {
            l.failed(IpAddr::from(std::net::Ipv4Addr::from(i)), 10);
        }
        assert!(l.lock().len() <= MAX_TRACKED);
    }
}
