//! The assigner's rules: which devices get the name's assigner profile, how
//! assignment work is queued and batched, and what Apple's per-serial
//! answers do to a serial's record. Plain functions over records; time is
//! passed in.

use super::rules::{Compiled, DeviceAttrs};
use crate::dep::DepError;
use crate::dep::wire::{AssignResponse, Device};
use crate::settings::AssignerSettings;
use crate::store::{AssignResult, StoredAssignment, SyncPhase};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

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

/// The candidates of a page for the single profile `profile` (the
/// NanoDEP assigner alone), in serial order.
#[cfg(test)]
pub fn candidates(
    devices: &[Device],
    phase: SyncPhase,
    profile: &str,
    removals: &BTreeMap<String, i64>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> std::collections::BTreeSet<String> {
    let rules = Compiled::assigner_only(Some(profile));
    rule_candidates(devices, phase, &rules, removals, policy, now_unix)
        .into_keys()
        .collect()
}

/// Whether a device's current profile is none, or one depd hands out
/// (`ours`): a rule without `force` may take only such devices.
pub fn none_or_ours(uuid: Option<&str>, status: &str, ours: &HashSet<&str>) -> bool {
    let uuid = uuid.unwrap_or_default();
    uuid.is_empty() || matches!(status, "" | "empty" | "removed") || ours.contains(uuid)
}

/// The candidates of a page and the profile each should get (with what
/// chose it), in serial order. Events are taken in page order, so a
/// serial whose last event is `deleted` is not a candidate. A device is a
/// candidate when the rules give it a profile it does not have, its event
/// asks for one ([`is_candidate`]), and its current profile is none or
/// depd's, unless the chooser forces (a pin, a `force` rule, the NanoDEP
/// assigner).
pub fn rule_candidates(
    devices: &[Device],
    phase: SyncPhase,
    rules: &Compiled,
    removals: &BTreeMap<String, i64>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> BTreeMap<String, (String, Option<String>)> {
    let ours = rules.uuids();
    let mut out = BTreeMap::new();
    for d in devices.iter().filter(|d| !d.serial_number.is_empty()) {
        if d.op_type.as_deref() == Some("deleted") {
            out.remove(&d.serial_number);
            continue;
        }
        let attrs = DeviceAttrs {
            serial: d.serial_number.clone(),
            device_family: d.device_family.as_deref().map(Cow::Borrowed),
            model: d.model.as_deref().map(Cow::Borrowed),
            os: d.os.as_deref().map(Cow::Borrowed),
            description: d.description.as_deref().map(Cow::Borrowed),
            color: d.color.as_deref().map(Cow::Borrowed),
            device_assigned_by: d.device_assigned_by.as_deref().map(Cow::Borrowed),
            op_type: d.op_type.as_deref().map(Cow::Borrowed),
        }
        .normalized();
        let choice = rules.choose(&attrs);
        let Some(target) = choice.target() else {
            continue;
        };
        let removed_at = removals.get(&d.serial_number).copied();
        let status = d.profile_status.as_deref().unwrap_or_default();
        let legacy = matches!(choice, super::rules::Choice::Assigner(_));
        if is_candidate(d, phase, target, removed_at, policy, now_unix)
            && (legacy || choice.forced() || none_or_ours(d.profile_uuid.as_deref(), status, &ours))
        {
            out.insert(d.serial_number.clone(), (target.to_owned(), choice.label()));
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
        rule: None,
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
        rule: None,
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
pub(crate) mod tests;
