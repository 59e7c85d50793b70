//! The assigner's rules: which devices get the name's assigner profile, how
//! assignment work is queued and batched, and what Apple's per-serial
//! answers do to a serial's record. Plain functions over records; time is
//! passed in.

use crate::dep::DepError;
use crate::dep::wire::{AssignResponse, Device};
use crate::settings::AssignerSettings;
use crate::store::{AssignResult, StoredAssignment, StoredDevice, SyncPhase};
use std::collections::{BTreeMap, BTreeSet};

/// Apple's limit for one `/profile/devices` call.
pub const APPLE_BATCH_MAX: usize = 1000;

/// The assigner's policy (from the `[assigner]` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignPolicy {
    /// Re-assign devices Apple reports `modified` with `profile_status`
    /// `removed` (unless the removal was made through depd).
    pub reassign_removed: bool,
    /// How long a removal made through depd protects a serial.
    pub removal_window_secs: i64,
    /// Wait after a `FAILED` answer.
    pub failed_cooldown_secs: i64,
    /// `FAILED` answers after which a serial is given up (flagged).
    pub max_failures: u32,
    /// Wait after `THROTTLED` when Apple gives no `retry_after_seconds`.
    pub throttled_cooldown_secs: i64,
    /// Serials per assignment call (at most [`APPLE_BATCH_MAX`]).
    pub batch_limit: usize,
}

impl AssignPolicy {
    pub fn from_settings(s: &AssignerSettings) -> Self {
        AssignPolicy {
            reassign_removed: s.reassign_removed,
            removal_window_secs: s.removal_window_secs,
            failed_cooldown_secs: s.failed_cooldown_secs,
            max_failures: s.max_failures,
            throttled_cooldown_secs: s.throttled_cooldown_secs,
            batch_limit: s.batch_limit,
        }
    }

    /// Serials per call: the configured limit, Apple's 1000 and the limit
    /// `/account` advertises for `/profile/devices`, whichever is least.
    pub fn batch_size(&self, account_max: Option<u32>) -> usize {
        let account = account_max.map_or(usize::MAX, |m| m as usize);
        self.batch_limit.min(APPLE_BATCH_MAX).min(account).max(1)
    }

    fn removed_through_depd(&self, removed_at: Option<i64>, now_unix: i64) -> bool {
        removed_at.is_some_and(|t| t >= now_unix - self.removal_window_secs)
    }
}

fn has_profile(uuid: Option<&str>, status: &str, profile: &str) -> bool {
    uuid == Some(profile) && !matches!(status, "" | "empty" | "removed")
}

/// Whether one event asks for the assigner profile `profile`:
/// - `op_type` `added`;
/// - no `op_type`, seen during a fetch;
/// - `modified` with `profile_status` `removed`, when the policy says so and
///   the removal was not made through depd within the window
///   (`removed_at`: when depd removed this serial's profile, if it did).
///
/// A device that already has `profile` is never a candidate (a resync of a
/// large inventory would otherwise re-assign every device).
pub fn is_candidate(
    device: &Device,
    phase: SyncPhase,
    profile: &str,
    removed_at: Option<i64>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> bool {
    let status = device.profile_status.as_deref().unwrap_or_default();
    if has_profile(device.profile_uuid.as_deref(), status, profile) {
        return false;
    }
    match device.op_type.as_deref().unwrap_or_default() {
        "added" => true,
        "" => phase == SyncPhase::Fetch,
        "modified" => {
            status == "removed"
                && policy.reassign_removed
                && !policy.removed_through_depd(removed_at, now_unix)
        }
        _ => false,
    }
}

/// The serials of a page whose removal history matters (so only those are
/// looked up in the store).
pub fn removal_checks(devices: &[Device]) -> impl Iterator<Item = &str> {
    devices
        .iter()
        .filter(|d| {
            d.op_type.as_deref() == Some("modified")
                && d.profile_status.as_deref() == Some("removed")
        })
        .map(|d| d.serial_number.as_str())
}

/// The candidates of a page, in serial order. Events are taken in page
/// order, so a serial whose last event is `deleted` is not a candidate.
pub fn candidates(
    devices: &[Device],
    phase: SyncPhase,
    profile: &str,
    removals: &BTreeMap<String, i64>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in devices.iter().filter(|d| !d.serial_number.is_empty()) {
        let removed_at = removals.get(&d.serial_number).copied();
        if is_candidate(d, phase, profile, removed_at, policy, now_unix) {
            out.insert(d.serial_number.clone());
        } else if d.op_type.as_deref() == Some("deleted") {
            out.remove(&d.serial_number);
        }
    }
    out
}

/// The record that queues `profile` for a serial, or `None` when work for
/// that profile is already under way (a pending, failed-and-cooling or
/// throttled record keeps its attempts and its wait). A `THROTTLED` wait is
/// kept even for a new profile: Apple throttles the serial, not the profile.
pub fn enqueue(
    existing: Option<&StoredAssignment>,
    profile: &str,
    now_unix: i64,
) -> Option<StoredAssignment> {
    if let Some(e) = existing
        && e.profile_uuid == profile
        && e.next_retry_unix.is_some()
    {
        return None;
    }
    let throttled_until = existing
        .filter(|e| e.result == AssignResult::Throttled)
        .and_then(|e| e.next_retry_unix);
    Some(StoredAssignment {
        profile_uuid: profile.to_owned(),
        result: AssignResult::Pending,
        attempts: 0,
        failures: 0,
        last_attempt_unix: existing.and_then(|e| e.last_attempt_unix),
        next_retry_unix: Some(throttled_until.map_or(now_unix, |t| t.max(now_unix))),
        gave_up: false,
    })
}

#[cfg(test)]
/// Splits due serials into assignment calls of at most `size` serials.
/// Every due serial gets the name's current profile: that is the only
/// profile the assigner hands out.
pub(crate) fn batches(due: &[(String, StoredAssignment)], size: usize) -> Vec<Vec<String>> {
    due.chunks(size.max(1))
        .map(|c| c.iter().map(|(s, _)| s.clone()).collect())
        .collect()
}

fn attempted(record: Option<&StoredAssignment>, profile: &str, now_unix: i64) -> StoredAssignment {
    let mut r = record.cloned().unwrap_or(StoredAssignment {
        profile_uuid: String::new(),
        result: AssignResult::Pending,
        attempts: 0,
        failures: 0,
        last_attempt_unix: None,
        next_retry_unix: None,
        gave_up: false,
    });
    r.profile_uuid = profile.to_owned();
    r.attempts = r.attempts.saturating_add(1);
    r.last_attempt_unix = Some(now_unix);
    r
}

fn failed(mut r: StoredAssignment, policy: &AssignPolicy, now_unix: i64) -> StoredAssignment {
    r.result = AssignResult::Failed;
    r.failures = r.failures.saturating_add(1);
    if r.failures >= policy.max_failures {
        r.gave_up = true;
        r.next_retry_unix = None;
    } else {
        r.next_retry_unix = Some(now_unix + policy.failed_cooldown_secs);
    }
    r
}

/// The records after Apple answered an assignment call for `sent`:
/// - `SUCCESS`: done;
/// - `NOT_ACCESSIBLE`: recorded, not retried;
/// - `FAILED` (also a serial missing from the answer or an unknown word):
///   retried after the cooldown, given up after `max_failures`;
/// - `THROTTLED`: retried after `retry_after_seconds`, else the throttle
///   cooldown; never given up.
pub fn apply_response(
    records: &BTreeMap<String, StoredAssignment>,
    profile: &str,
    sent: &[String],
    response: &AssignResponse,
    policy: &AssignPolicy,
    now_unix: i64,
) -> BTreeMap<String, StoredAssignment> {
    let throttle_wait = response
        .retry_after_seconds
        .and_then(|s| i64::try_from(s).ok())
        .unwrap_or(policy.throttled_cooldown_secs);
    sent.iter()
        .map(|serial| {
            let mut r = attempted(records.get(serial), profile, now_unix);
            let r = match response.devices.get(serial).map(String::as_str) {
                Some("SUCCESS") => {
                    r.result = AssignResult::Success;
                    r.next_retry_unix = None;
                    r
                }
                Some("NOT_ACCESSIBLE") => {
                    r.result = AssignResult::NotAccessible;
                    r.next_retry_unix = None;
                    r
                }
                Some("THROTTLED") => {
                    r.result = AssignResult::Throttled;
                    r.next_retry_unix = Some(now_unix.saturating_add(throttle_wait));
                    r
                }
                _ => failed(r, policy, now_unix),
            };
            (serial.clone(), r)
        })
        .collect()
}

/// The records after the whole assignment call failed. Only an answer that
/// blames the request (4xx other than session and token problems, an
/// unreadable answer) counts as a `FAILED` attempt for each serial; for
/// anything else (network, 5xx, throttling, session, terms, token) the
/// serials are not at fault: nothing changes and the caller backs off.
pub fn apply_call_error(
    records: &BTreeMap<String, StoredAssignment>,
    profile: &str,
    sent: &[String],
    error: &DepError,
    policy: &AssignPolicy,
    now_unix: i64,
) -> BTreeMap<String, StoredAssignment> {
    if !matches!(
        error,
        DepError::Rejected { .. } | DepError::NotFound { .. } | DepError::Decode(_)
    ) {
        return BTreeMap::new();
    }
    sent.iter()
        .map(|serial| {
            let r = attempted(records.get(serial), profile, now_unix);
            (serial.clone(), failed(r, policy, now_unix))
        })
        .collect()
}

/// Whether a stored device should get the new assigner profile `new` when
/// it replaces `old`: devices not deleted whose profile is the old one or
/// none, except those whose profile was removed on purpose (through depd
/// within the window, or at all when `reassign_removed` is off).
pub fn should_get_new_profile(
    device: &StoredDevice,
    old: Option<&str>,
    new: &str,
    removed_at: Option<i64>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> bool {
    if device.deleted || device.profile_uuid == new {
        return false;
    }
    let from_old_or_none =
        device.profile_uuid.is_empty() || Some(device.profile_uuid.as_str()) == old;
    let removed_on_purpose = device.profile_status == "removed"
        && (!policy.reassign_removed || policy.removed_through_depd(removed_at, now_unix));
    from_old_or_none && !removed_on_purpose
}

/// The serials an assigner pass has sent. A serial sent once in a pass
/// is not sent again in it, whatever the store says, so an answer that
/// leaves serials due within the same second cannot loop; the set is
/// carried into the pass that follows at once (work queued meanwhile), and
/// dropped otherwise, so what a pass remembers stays bounded. Serials are
/// remembered by hash (8 bytes, not the serial): a collision only leaves a
/// serial to a later pass.
#[derive(Debug, Default, Clone)]
pub struct SentSerials {
    hashes: std::collections::HashSet<u64, SentHasher>,
}

/// Fixed keys, so a set can be carried from one pass to the next.
type SentHasher = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

impl SentSerials {
    fn hash(serial: &str) -> u64 {
        use std::hash::BuildHasher as _;
        SentHasher::default().hash_one(serial)
    }

    /// Whether `serial` was sent earlier in this pass (or the one it
    /// continues).
    pub fn was_sent(&self, serial: &str) -> bool {
        self.hashes.contains(&Self::hash(serial))
    }

    /// Remembers a batch as sent.
    pub fn mark(&mut self, serials: &[String]) {
        self.hashes.extend(serials.iter().map(|s| Self::hash(s)));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hashes.len()
    }
}

/// What a pass did: per-serial results by name, the whole-call failure
/// that stopped it (a pass stops at the first, and the cooldown rules of
/// the records decide when those serials come back), and the earliest
/// retry still pending.
#[derive(Debug, Default)]
pub struct PassTally {
    pub results: BTreeMap<String, u64>,
    pub error: Option<crate::dep::DepError>,
    pub next_due: Option<i64>,
}

impl PassTally {
    /// Counts the records one answer wrote; returns each record's result
    /// name, for the metrics.
    pub fn count<'a>(
        &mut self,
        records: &'a BTreeMap<String, StoredAssignment>,
    ) -> impl Iterator<Item = &'static str> + 'a {
        for r in records.values() {
            *self
                .results
                .entry(r.result.as_str().to_owned())
                .or_default() += 1;
        }
        records.values().map(|r| r.result.as_str())
    }

    /// A whole call failed: the pass stops here.
    pub fn stop(&mut self, error: crate::dep::DepError) {
        self.error = Some(error);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const T: i64 = 1_700_000_000;

    pub(crate) fn policy() -> AssignPolicy {
        AssignPolicy {
            reassign_removed: true,
            removal_window_secs: 3600,
            failed_cooldown_secs: 3600,
            max_failures: 3,
            throttled_cooldown_secs: 86_400,
            batch_limit: 1000,
        }
    }

    pub(crate) fn dev(serial: &str, op: &str, status: &str, uuid: &str) -> Device {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Device {
            serial_number: serial.into(),
            op_type: some(op),
            profile_status: some(status),
            profile_uuid: some(uuid),
            ..Default::default()
        }
    }

    #[test]
    fn policy_from_default_settings() {
        assert_eq!(
            AssignPolicy::from_settings(&AssignerSettings::default()),
            policy()
        );
    }

    #[test]
    fn candidate_rules() {
        let p = policy();
        let c = |d: &Device, phase, removed_at| is_candidate(d, phase, "P", removed_at, &p, T);
        assert!(c(&dev("A", "added", "", ""), SyncPhase::Sync, None));
        assert!(c(&dev("A", "added", "", ""), SyncPhase::Fetch, None));
        assert!(c(&dev("A", "", "empty", ""), SyncPhase::Fetch, None));
        assert!(!c(&dev("A", "", "empty", ""), SyncPhase::Sync, None));
        assert!(c(
            &dev("A", "modified", "removed", ""),
            SyncPhase::Sync,
            None
        ));
        assert!(!c(
            &dev("A", "modified", "assigned", "X"),
            SyncPhase::Sync,
            None
        ));
        assert!(!c(&dev("A", "deleted", "", ""), SyncPhase::Sync, None));
        // Removed through depd within the window: left alone; later: not.
        assert!(!c(
            &dev("A", "modified", "removed", ""),
            SyncPhase::Sync,
            Some(T - 3600)
        ));
        assert!(c(
            &dev("A", "modified", "removed", ""),
            SyncPhase::Sync,
            Some(T - 3601)
        ));
        // Policy off.
        let off = AssignPolicy {
            reassign_removed: false,
            ..policy()
        };
        assert!(!is_candidate(
            &dev("A", "modified", "removed", ""),
            SyncPhase::Sync,
            "P",
            None,
            &off,
            T
        ));
        // Already has the profile (assigned or pushed): nothing to do; a
        // removed one with the same uuid still counts.
        assert!(!c(&dev("A", "", "assigned", "P"), SyncPhase::Fetch, None));
        assert!(!c(&dev("A", "added", "pushed", "P"), SyncPhase::Sync, None));
        assert!(c(
            &dev("A", "added", "assigned", "OTHER"),
            SyncPhase::Sync,
            None
        ));
        assert!(c(
            &dev("A", "modified", "removed", "P"),
            SyncPhase::Sync,
            None
        ));
    }

    #[test]
    fn page_candidates_follow_event_order() {
        let p = policy();
        let page = vec![
            dev("A", "added", "", ""),
            dev("B", "added", "", ""),
            dev("B", "deleted", "", ""),
            dev("C", "modified", "removed", ""),
            dev("D", "modified", "removed", ""),
            dev("", "added", "", ""),
            dev("E", "deleted", "", ""),
            dev("E", "added", "", ""),
        ];
        let checks: Vec<&str> = removal_checks(&page).collect();
        assert_eq!(checks, ["C", "D"]);
        let removals = BTreeMap::from([("D".to_string(), T - 10)]);
        let got = candidates(&page, SyncPhase::Sync, "P", &removals, &p, T);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["A", "C", "E"]);
    }

    #[test]
    fn enqueue_keeps_work_under_way() {
        let fresh = enqueue(None, "P", T).expect("queued");
        assert_eq!(fresh.result, AssignResult::Pending);
        assert_eq!((fresh.attempts, fresh.next_retry_unix), (0, Some(T)));
        let cooling = StoredAssignment {
            result: AssignResult::Failed,
            attempts: 1,
            failures: 1,
            next_retry_unix: Some(T + 100),
            ..fresh.clone()
        };
        assert_eq!(enqueue(Some(&cooling), "P", T), None);
        // A different profile replaces the work, but not Apple's throttle.
        let again = enqueue(Some(&cooling), "Q", T).expect("requeued");
        assert_eq!(
            (again.profile_uuid.as_str(), again.next_retry_unix),
            ("Q", Some(T))
        );
        let throttled = StoredAssignment {
            result: AssignResult::Throttled,
            ..cooling.clone()
        };
        assert_eq!(
            enqueue(Some(&throttled), "Q", T).and_then(|r| r.next_retry_unix),
            Some(T + 100)
        );
        // Done or given up: a new event queues it afresh.
        let done = StoredAssignment {
            result: AssignResult::Success,
            attempts: 1,
            next_retry_unix: None,
            last_attempt_unix: Some(T - 5),
            ..fresh
        };
        let re = enqueue(Some(&done), "P", T).expect("requeued");
        assert_eq!((re.attempts, re.failures, re.gave_up), (0, 0, false));
        assert_eq!(re.last_attempt_unix, Some(T - 5));
    }

    #[test]
    fn batch_sizes() {
        let p = policy();
        assert_eq!(p.batch_size(None), 1000);
        assert_eq!(p.batch_size(Some(250)), 250);
        assert_eq!(p.batch_size(Some(0)), 1);
        let big = AssignPolicy {
            batch_limit: 5000,
            ..policy()
        };
        assert_eq!(big.batch_size(Some(2000)), 1000);
        let due: Vec<(String, StoredAssignment)> = (0..5)
            .map(|i| (format!("S{i}"), enqueue(None, "P", T).expect("queued")))
            .collect();
        let b = batches(&due, 2);
        assert_eq!(b, vec![vec!["S0", "S1"], vec!["S2", "S3"], vec!["S4"]]);
        assert!(batches(&[], 2).is_empty());
    }

    fn answer(pairs: &[(&str, &str)], retry: Option<u64>) -> AssignResponse {
        AssignResponse {
            profile_uuid: "P".into(),
            devices: pairs
                .iter()
                .map(|(s, r)| (s.to_string(), r.to_string()))
                .collect(),
            retry_after_seconds: retry,
        }
    }

    #[test]
    fn responses_per_serial() {
        let p = policy();
        let sent: Vec<String> = ["A", "B", "C", "D", "E"].map(String::from).to_vec();
        let records: BTreeMap<String, StoredAssignment> = sent
            .iter()
            .map(|s| (s.clone(), enqueue(None, "P", T).expect("queued")))
            .collect();
        let got = apply_response(
            &records,
            "P",
            &sent,
            &answer(
                &[
                    ("A", "SUCCESS"),
                    ("B", "NOT_ACCESSIBLE"),
                    ("C", "FAILED"),
                    ("D", "THROTTLED"),
                ],
                Some(600),
            ),
            &p,
            T,
        );
        let view = |s: &str| {
            let r = &got[s];
            (r.result, r.attempts, r.next_retry_unix, r.gave_up)
        };
        assert_eq!(view("A"), (AssignResult::Success, 1, None, false));
        assert_eq!(view("B"), (AssignResult::NotAccessible, 1, None, false));
        assert_eq!(view("C"), (AssignResult::Failed, 1, Some(T + 3600), false));
        assert_eq!(
            view("D"),
            (AssignResult::Throttled, 1, Some(T + 600), false)
        );
        // Missing from the answer: a failure.
        assert_eq!(view("E"), (AssignResult::Failed, 1, Some(T + 3600), false));
        assert_eq!(got["A"].last_attempt_unix, Some(T));

        let throttled = apply_response(
            &records,
            "P",
            &sent[..1],
            &answer(&[("A", "THROTTLED")], None),
            &p,
            T,
        );
        assert_eq!(throttled["A"].next_retry_unix, Some(T + 86_400));
    }

    #[test]
    fn failed_gives_up_after_the_limit_and_throttles_do_not_count() {
        let p = policy();
        let sent = vec!["A".to_string()];
        let mut records =
            BTreeMap::from([("A".to_string(), enqueue(None, "P", T).expect("queued"))]);
        let mut now = T;
        for word in ["FAILED", "THROTTLED", "FAILED", "FAILED"] {
            records = apply_response(&records, "P", &sent, &answer(&[("A", word)], None), &p, now);
            now += 100_000;
        }
        let a = &records["A"];
        assert_eq!(
            (a.attempts, a.failures, a.gave_up, a.next_retry_unix),
            (4, 3, true, None)
        );
        assert_eq!(a.result, AssignResult::Failed);
    }

    #[test]
    fn call_errors_blame_serials_only_when_the_request_is_at_fault() {
        let p = policy();
        let sent = vec!["A".to_string()];
        let records = BTreeMap::from([("A".to_string(), enqueue(None, "P", T).expect("queued"))]);
        for err in [
            DepError::Timeout,
            DepError::TermsNotSigned,
            DepError::Throttled {
                status: 503,
                retry_after: None,
            },
            DepError::SessionRejected { status: 401 },
        ] {
            assert!(
                apply_call_error(&records, "P", &sent, &err, &p, T).is_empty(),
                "{err}"
            );
        }
        let err = DepError::Rejected {
            status: 400,
            code: "PROFILE_NOT_FOUND".into(),
        };
        let got = apply_call_error(&records, "P", &sent, &err, &p, T);
        assert_eq!(got["A"].result, AssignResult::Failed);
        assert_eq!(got["A"].next_retry_unix, Some(T + 3600));
    }

    fn stored(uuid: &str, status: &str, deleted: bool) -> StoredDevice {
        StoredDevice {
            serial: "A".into(),
            json: "{}".into(),
            op_type: String::new(),
            op_date_unix: None,
            profile_status: status.into(),
            profile_uuid: uuid.into(),
            first_seen_unix: T,
            last_event_unix: T,
            deleted,
        }
    }

    #[test]
    fn profile_change_targets() {
        let p = policy();
        let s = |d: &StoredDevice, removed_at| {
            should_get_new_profile(d, Some("OLD"), "NEW", removed_at, &p, T)
        };
        assert!(s(&stored("OLD", "assigned", false), None));
        assert!(s(&stored("OLD", "pushed", false), None));
        assert!(s(&stored("", "empty", false), None));
        assert!(!s(&stored("OTHER", "assigned", false), None));
        assert!(!s(&stored("NEW", "assigned", false), None));
        assert!(!s(&stored("OLD", "assigned", true), None));
        assert!(s(&stored("", "removed", false), None));
        assert!(!s(&stored("", "removed", false), Some(T - 60)));
        let off = AssignPolicy {
            reassign_removed: false,
            ..policy()
        };
        assert!(!should_get_new_profile(
            &stored("", "removed", false),
            None,
            "NEW",
            None,
            &off,
            T
        ));
        // No previous profile: devices without one.
        assert!(should_get_new_profile(
            &stored("", "", false),
            None,
            "NEW",
            None,
            &p,
            T
        ));
        assert!(!should_get_new_profile(
            &stored("OLD", "assigned", false),
            None,
            "NEW",
            None,
            &p,
            T
        ));
    }

    #[test]
    fn a_pass_sends_each_serial_once_and_tallies_results() {
        let mut sent = SentSerials::default();
        assert!(!sent.was_sent("A"));
        sent.mark(&["A".to_owned(), "B".to_owned()]);
        assert!(sent.was_sent("A") && sent.was_sent("B") && !sent.was_sent("C"));
        assert_eq!(sent.len(), 2);
        let carried = sent.clone();
        assert!(carried.was_sent("B"), "carried into the pass that follows");

        let mut tally = PassTally::default();
        let rec = |result| StoredAssignment {
            profile_uuid: "P".into(),
            result,
            attempts: 1,
            failures: 0,
            last_attempt_unix: None,
            next_retry_unix: None,
            gave_up: false,
        };
        let answer = BTreeMap::from([
            ("A".to_owned(), rec(AssignResult::Success)),
            ("B".to_owned(), rec(AssignResult::Failed)),
        ]);
        let names: Vec<&str> = tally.count(&answer).collect();
        assert_eq!(names.len(), 2);
        let again = BTreeMap::from([("C".to_owned(), rec(AssignResult::Success))]);
        let _ = tally.count(&again).count();
        assert_eq!(tally.results.get("SUCCESS"), Some(&2));
        assert_eq!(tally.results.get("FAILED"), Some(&1));
        tally.stop(crate::dep::DepError::Timeout);
        assert!(tally.error.is_some());
    }
}
