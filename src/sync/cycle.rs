//! The fetch/sync state machine of one name, as a plain value.
//!
//! A cycle is a run of requests: in the fetch phase `POST /server/devices`
//! with the cursor until Apple says `more_to_follow: false` (or
//! `EXHAUSTED_CURSOR`: everything was fetched before), then in the sync
//! phase `POST /devices/sync` until `more_to_follow: false`. Each method
//! takes the current value and an outcome and returns a [`Step`]: the next
//! value and what to do. The caller stores `next.state()` and only then
//! adopts `next`, so memory never runs ahead of disk.

use crate::dep::DepError;
use crate::dep::wire::DevicePage;
use crate::store::{CycleOutcome, StoredCycle, StoredSync, SyncPhase};
use std::collections::{BTreeMap, BTreeSet};

/// The next request of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `POST /server/devices`; no cursor starts a full fetch.
    Fetch { cursor: Option<String> },
    /// `POST /devices/sync` (Apple requires a cursor).
    Sync { cursor: String },
}

impl Request {
    pub fn phase(&self) -> SyncPhase {
        match self {
            Request::Fetch { .. } => SyncPhase::Fetch,
            Request::Sync { .. } => SyncPhase::Sync,
        }
    }

    pub fn cursor(&self) -> Option<&str> {
        match self {
            Request::Fetch { cursor } => cursor.as_deref(),
            Request::Sync { cursor } => Some(cursor),
        }
    }
}

/// What the caller does after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request and report its outcome to [`Cycle::on_page`] or
    /// [`Cycle::on_error`].
    Request(Request),
    /// The cycle ended (the report is also `next.state().last_cycle`).
    /// After `Failed`, wait [`super::backoff::Backoff::after_failure`] with
    /// `next.failures()`; otherwise wait for the next regular cycle.
    Finished(StoredCycle),
}

/// The result of feeding the machine: store `next.state()`, adopt `next`,
/// then do `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub next: Cycle,
    pub action: Action,
}

/// A page or error arrived while no cycle was running (a late answer to an
/// abandoned cycle): it must not move the cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no sync cycle is running")]
pub struct NotRunning;

/// One name's sync state: the persisted part and the running cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cycle {
    state: StoredSync,
    run: Option<Run>,
    /// Consecutive failed cycles, for the backoff (not persisted: after a
    /// restart the first retry is quick again).
    failures: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Run {
    started_unix: i64,
    pending: Request,
    pages: u64,
    counts: BTreeMap<String, u64>,
    /// Cursors sent in this cycle: one coming back with `more_to_follow`
    /// means Apple is looping.
    sent: BTreeSet<String>,
    /// A cursor error already restarted this cycle from a full fetch.
    restarted: bool,
}

impl Cycle {
    /// The machine for a name's stored state (or `StoredSync::default()`
    /// for a name never synced: a full fetch).
    pub fn new(state: StoredSync) -> Self {
        Cycle {
            state,
            run: None,
            failures: 0,
        }
    }

    /// What to persist.
    pub fn state(&self) -> &StoredSync {
        &self.state
    }

    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The request in flight, if a cycle runs: its phase is the webhook
    /// topic of the page that answers it.
    pub fn pending(&self) -> Option<&Request> {
        self.run.as_ref().map(|r| &r.pending)
    }

    /// Consecutive failed cycles.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts a cycle where the stored state left off. A running cycle is
    /// abandoned (its late answers get [`NotRunning`]).
    pub fn start(&self, now_unix: i64) -> Step {
        let request = match (&self.state.phase, &self.state.cursor) {
            (SyncPhase::Sync, Some(cursor)) => Request::Sync {
                cursor: cursor.clone(),
            },
            // Sync without a cursor is impossible at Apple: fetch instead.
            (_, cursor) => Request::Fetch {
                cursor: cursor.clone(),
            },
        };
        let mut next = self.clone();
        if request.phase() == SyncPhase::Fetch {
            next.state.phase = SyncPhase::Fetch;
        }
        next.run = Some(Run {
            started_unix: now_unix,
            pending: request.clone(),
            pages: 0,
            counts: BTreeMap::new(),
            sent: request.cursor().map(str::to_owned).into_iter().collect(),
            restarted: false,
        });
        Step {
            next,
            action: Action::Request(request),
        }
    }

    /// Forgets the cursor and starts a full fetch (`POST /v1/resync`).
    pub fn resync(&self, now_unix: i64) -> Step {
        let mut fresh = self.clone();
        fresh.state.phase = SyncPhase::Fetch;
        fresh.state.cursor = None;
        fresh.state.cursor_unix = None;
        fresh.start(now_unix)
    }

    /// Apple answered the pending request with a page. The caller applies
    /// the page together with `next.state()` (one batch), even when the
    /// cycle finished with it.
    pub fn on_page(&self, page: &DevicePage, now_unix: i64) -> Result<Step, NotRunning> {
        let mut next = self.clone();
        let Some(run) = next.run.as_mut() else {
            return Err(NotRunning);
        };
        run.pages += 1;
        for d in &page.devices {
            let op = d.op_type.as_deref().unwrap_or_default();
            let label = if op.is_empty() { "none" } else { op };
            *run.counts.entry(label.to_owned()).or_default() += 1;
        }
        if page.cursor.is_empty() {
            // Without a cursor nothing can continue; keep the old one.
            let error = DepError::Decode("Apple sent a page without a cursor".into());
            return Ok(next.finish(CycleOutcome::Failed, Some(&error), now_unix));
        }
        let phase = run.pending.phase();
        let repeated = run.sent.contains(&page.cursor);
        next.state.cursor = Some(page.cursor.clone());
        next.state.cursor_unix = Some(now_unix);
        if page.more_to_follow && repeated {
            return Ok(next.finish(CycleOutcome::RepeatedCursor, None, now_unix));
        }
        let request = match (phase, page.more_to_follow) {
            (SyncPhase::Fetch, true) => Request::Fetch {
                cursor: Some(page.cursor.clone()),
            },
            // The fetch is complete: sync right away, which reports what
            // changed while the fetch ran.
            (SyncPhase::Fetch, false) => {
                next.state.phase = SyncPhase::Sync;
                Request::Sync {
                    cursor: page.cursor.clone(),
                }
            }
            (SyncPhase::Sync, true) => Request::Sync {
                cursor: page.cursor.clone(),
            },
            (SyncPhase::Sync, false) => {
                return Ok(next.finish(CycleOutcome::Complete, None, now_unix));
            }
        };
        Ok(next.send(request))
    }

    /// Apple (or the way to it) failed the pending request.
    pub fn on_error(&self, error: &DepError, now_unix: i64) -> Result<Step, NotRunning> {
        let mut next = self.clone();
        let Some(run) = next.run.as_mut() else {
            return Err(NotRunning);
        };
        let phase = run.pending.phase();
        let cursor = run.pending.cursor().map(str::to_owned);
        match error {
            DepError::CursorExhausted if phase == SyncPhase::Fetch => {
                // Everything was fetched before: continue with sync.
                if let Some(cursor) = cursor {
                    next.state.phase = SyncPhase::Sync;
                    next.state.cursor = Some(cursor.clone());
                    return Ok(next.send(Request::Sync { cursor }));
                }
            }
            DepError::CursorExpired | DepError::CursorInvalid | DepError::CursorRequired
                if !run.restarted =>
            {
                // The cursor is useless: fetch everything again, once per
                // cycle, so a cursor error on a fresh fetch cannot loop.
                run.restarted = true;
                next.state.phase = SyncPhase::Fetch;
                next.state.cursor = None;
                next.state.cursor_unix = None;
                return Ok(next.send(Request::Fetch { cursor: None }));
            }
            _ => {}
        }
        Ok(next.finish(CycleOutcome::Failed, Some(error), now_unix))
    }

    fn send(mut self, request: Request) -> Step {
        if let Some(run) = self.run.as_mut() {
            if let Some(c) = request.cursor() {
                run.sent.insert(c.to_owned());
            }
            run.pending = request.clone();
        }
        Step {
            next: self,
            action: Action::Request(request),
        }
    }

    fn finish(mut self, outcome: CycleOutcome, error: Option<&DepError>, now_unix: i64) -> Step {
        let run = self.run.take();
        let report = StoredCycle {
            started_unix: run.as_ref().map_or(now_unix, |r| r.started_unix),
            ended_unix: now_unix,
            outcome,
            error: error.map(ToString::to_string),
            pages: run.as_ref().map_or(0, |r| r.pages),
            counts: run.map(|r| r.counts).unwrap_or_default(),
        };
        self.failures = match outcome {
            CycleOutcome::Failed => self.failures.saturating_add(1),
            CycleOutcome::Complete | CycleOutcome::RepeatedCursor => 0,
        };
        self.state.last_cycle = Some(report.clone());
        Step {
            next: self,
            action: Action::Finished(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dep::wire::Device;

    const T: i64 = 1_700_000_000;

    fn page(cursor: &str, more: bool, ops: &[&str]) -> DevicePage {
        DevicePage {
            cursor: cursor.into(),
            devices: ops
                .iter()
                .enumerate()
                .map(|(i, op)| Device {
                    serial_number: format!("S{i}"),
                    op_type: (!op.is_empty()).then(|| op.to_string()),
                    ..Default::default()
                })
                .collect(),
            fetched_until: String::new(),
            more_to_follow: more,
        }
    }

    fn fetch(c: Option<&str>) -> Action {
        Action::Request(Request::Fetch {
            cursor: c.map(Into::into),
        })
    }

    fn sync(c: &str) -> Action {
        Action::Request(Request::Sync { cursor: c.into() })
    }

    fn finished(step: &Step) -> &StoredCycle {
        match &step.action {
            Action::Finished(r) => r,
            other => panic!("expected the end of the cycle, got {other:?}"),
        }
    }

    fn must<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn full_fetch_then_sync_then_done() {
        let c = Cycle::new(StoredSync::default());
        let s = c.start(T);
        assert_eq!(s.action, fetch(None));
        let s = must(s.next.on_page(&page("c1", true, &["", ""]), T + 1));
        assert_eq!(s.action, fetch(Some("c1")));
        assert_eq!(s.next.state().phase, SyncPhase::Fetch);
        assert_eq!(s.next.state().cursor.as_deref(), Some("c1"));
        assert_eq!(s.next.state().cursor_unix, Some(T + 1));
        let s = must(s.next.on_page(&page("c2", false, &[""]), T + 2));
        assert_eq!(s.action, sync("c2"));
        assert_eq!(s.next.state().phase, SyncPhase::Sync);
        assert_eq!(s.next.pending().map(Request::phase), Some(SyncPhase::Sync));
        let s = must(
            s.next
                .on_page(&page("c3", true, &["added", "modified"]), T + 3),
        );
        assert_eq!(s.action, sync("c3"));
        let s = must(
            s.next
                .on_page(&page("c4", false, &["deleted", "added"]), T + 4),
        );
        let r = finished(&s);
        assert_eq!(r.outcome, CycleOutcome::Complete);
        assert_eq!((r.started_unix, r.ended_unix, r.pages), (T, T + 4, 4));
        let counts: Vec<(&str, u64)> = r.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            counts,
            [("added", 2), ("deleted", 1), ("modified", 1), ("none", 3)]
        );
        assert!(!s.next.is_running());
        assert_eq!(s.next.state().last_cycle.as_ref(), Some(r));
        assert_eq!(s.next.state().cursor.as_deref(), Some("c4"));
        // The next cycle (e.g. after a restart from the stored state) syncs.
        let again = Cycle::new(s.next.state().clone()).start(T + 10);
        assert_eq!(again.action, sync("c4"));
    }

    #[test]
    fn restart_in_fetch_phase_continues_the_fetch() {
        let state = StoredSync {
            phase: SyncPhase::Fetch,
            cursor: Some("half".into()),
            cursor_unix: Some(T),
            last_cycle: None,
        };
        assert_eq!(Cycle::new(state).start(T).action, fetch(Some("half")));
        let broken = StoredSync {
            phase: SyncPhase::Sync,
            ..StoredSync::default()
        };
        let s = Cycle::new(broken).start(T);
        assert_eq!(s.action, fetch(None));
        assert_eq!(s.next.state().phase, SyncPhase::Fetch);
    }

    #[test]
    fn exhausted_cursor_switches_to_sync() {
        let state = StoredSync {
            cursor: Some("old".into()),
            ..StoredSync::default()
        };
        let s = Cycle::new(state).start(T);
        let s = must(s.next.on_error(&DepError::CursorExhausted, T));
        assert_eq!(s.action, sync("old"));
        assert_eq!(s.next.state().phase, SyncPhase::Sync);
        // Exhausted without a cursor, or during sync, ends the cycle failed.
        let s = Cycle::default().start(T);
        let s = must(s.next.on_error(&DepError::CursorExhausted, T));
        assert_eq!(finished(&s).outcome, CycleOutcome::Failed);
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("c".into()),
            ..StoredSync::default()
        };
        let s = Cycle::new(state).start(T);
        let s = must(s.next.on_error(&DepError::CursorExhausted, T));
        assert_eq!(finished(&s).outcome, CycleOutcome::Failed);
    }

    #[test]
    fn cursor_errors_restart_a_full_fetch_once() {
        for err in [
            DepError::CursorExpired,
            DepError::CursorInvalid,
            DepError::CursorRequired,
        ] {
            let state = StoredSync {
                phase: SyncPhase::Sync,
                cursor: Some("stale".into()),
                cursor_unix: Some(T - 8 * 86_400),
                last_cycle: None,
            };
            let s = Cycle::new(state).start(T);
            let s = must(s.next.on_error(&err, T));
            assert_eq!(s.action, fetch(None), "{err}");
            assert_eq!(s.next.state().phase, SyncPhase::Fetch);
            assert_eq!(s.next.state().cursor, None);
            assert_eq!(s.next.state().cursor_unix, None);
            // The same error on the fresh fetch ends the cycle: no loop.
            let s = must(s.next.on_error(&err, T + 1));
            let r = finished(&s);
            assert_eq!(r.outcome, CycleOutcome::Failed);
            assert!(r.error.is_some());
            assert_eq!(s.next.failures(), 1);
        }
    }

    #[test]
    fn repeated_cursor_with_more_to_follow_ends_the_cycle() {
        let s = Cycle::default().start(T);
        let s = must(s.next.on_page(&page("a", true, &[""]), T));
        let s = must(s.next.on_page(&page("b", true, &[""]), T));
        let s = must(s.next.on_page(&page("a", true, &[""]), T + 5));
        let r = finished(&s);
        assert_eq!(r.outcome, CycleOutcome::RepeatedCursor);
        assert_eq!(r.pages, 3);
        assert_eq!(s.next.failures(), 0);
        // The same cursor without more_to_follow is a quiet sync: complete.
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("same".into()),
            ..StoredSync::default()
        };
        let s = Cycle::new(state).start(T);
        let s = must(s.next.on_page(&page("same", false, &[]), T));
        assert_eq!(finished(&s).outcome, CycleOutcome::Complete);
        // ...but with more_to_follow it is the loop the check is for.
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("same".into()),
            ..StoredSync::default()
        };
        let s = Cycle::new(state).start(T);
        let s = must(s.next.on_page(&page("same", true, &[]), T));
        assert_eq!(finished(&s).outcome, CycleOutcome::RepeatedCursor);
    }

    #[test]
    fn errors_fail_the_cycle_and_keep_the_cursor() {
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("keep".into()),
            cursor_unix: Some(T),
            last_cycle: None,
        };
        let mut c = Cycle::new(state);
        for n in 1..=3 {
            let s = c.start(T);
            let s = must(s.next.on_error(&DepError::Timeout, T + 1));
            let r = finished(&s);
            assert_eq!(r.outcome, CycleOutcome::Failed);
            assert_eq!(r.error.as_deref(), Some("Apple did not answer in time"));
            assert_eq!(s.next.failures(), n);
            assert_eq!(s.next.state().cursor.as_deref(), Some("keep"));
            c = s.next;
        }
        let s = c.start(T);
        let s = must(s.next.on_page(&page("next", false, &[]), T));
        assert_eq!(s.next.failures(), 0);
        let s = Cycle::default().start(T);
        let s = must(s.next.on_page(&page("", true, &[]), T));
        assert_eq!(finished(&s).outcome, CycleOutcome::Failed);
        assert_eq!(s.next.state().cursor, None);
    }

    #[test]
    fn answers_without_a_running_cycle_are_refused() {
        let c = Cycle::default();
        assert_eq!(c.on_page(&page("x", false, &[]), T), Err(NotRunning));
        assert_eq!(c.on_error(&DepError::Timeout, T), Err(NotRunning));
    }

    #[test]
    fn resync_forgets_the_cursor() {
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("c".into()),
            cursor_unix: Some(T),
            last_cycle: None,
        };
        let s = Cycle::new(state).resync(T);
        assert_eq!(s.action, fetch(None));
        assert_eq!(s.next.state().cursor, None);
        assert_eq!(s.next.state().phase, SyncPhase::Fetch);
        assert!(s.next.is_running());
    }
}
