use super::*;
use crate::store::StoredDevice;

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
    let mut records = BTreeMap::from([("A".to_string(), enqueue(None, "P", T).expect("queued"))]);
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

/// A change of the assigner profile alone (no rules) moves what the
/// NanoDEP assigner always moved: devices with the old profile or none,
/// not those removed on purpose, deleted, or with someone else's profile.
#[test]
fn profile_change_targets() {
    use crate::sync::persist::{TargetChange, target_change};
    use crate::sync::rules::Compiled;
    let change = |d: &StoredDevice, old: Option<&str>, removed_at, p: &AssignPolicy| {
        let (old, new) = (
            Compiled::assigner_only(old),
            Compiled::assigner_only(Some("NEW")),
        );
        let ours: std::collections::HashSet<&str> =
            old.uuids().union(&new.uuids()).copied().collect();
        let attrs = crate::sync::persist::device_attrs(d);
        matches!(
            target_change(d, &attrs, None, removed_at, &old, &new, &ours, p, T),
            Some(TargetChange::Queue { .. })
        )
    };
    let p = policy();
    let s = |d: &StoredDevice, removed_at| change(d, Some("OLD"), removed_at, &p);
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
    assert!(!change(&stored("", "removed", false), None, None, &off));
    // No previous profile: devices without one.
    assert!(change(&stored("", "", false), None, None, &p));
    assert!(!change(&stored("OLD", "assigned", false), None, None, &p));
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
        rule: None,
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
