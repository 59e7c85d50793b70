//! The storage side of the sync loop: what a page, an assignment answer and
//! an assigner profile change write, combining the assigner's rules with
//! the store. These calls block: the name's actor (the only writer of its
//! name's records, so reading and then committing cannot race) runs them
//! on the blocking pool with `Store::blocking`.

use super::assigner::{self, AssignPolicy};
use super::rules::{Compiled, DeviceAttrs};
use crate::dep::DepError;
use crate::dep::wire::{AssignResponse, Device, DevicePage};
use crate::domain::name::DepName;
use crate::store::{
    AssignQueue, DeviceIn, DeviceJson, OutboxEntry, PageApply, PageSummary, Store, StoreError,
    StoredAssignment, StoredSync, SyncPhase,
};
use std::collections::BTreeMap;

/// What applying a page needs besides the page.
#[derive(Debug)]
pub struct PageInput<'a> {
    /// The phase of the request the page answers (`Cycle::pending`).
    pub phase: SyncPhase,
    /// The sync state after the page (`step.next.state()`).
    pub state: &'a StoredSync,
    /// The name's rules with its assigner profile (`Compiled::assigner_only`
    /// without rules); choosing nothing queues nothing.
    pub rules: &'a Compiled,
    pub policy: &'a AssignPolicy,
    /// The page's webhook event (`webhook::event`), when URLs are set.
    pub webhook: Option<OutboxEntry>,
    /// The page's text as Apple sent it (its devices' JSON is in it).
    pub text: Option<&'a str>,
    /// Flush before returning ([`PageApply::flush`]): another request of
    /// the cycle follows.
    pub flush: bool,
    pub now_unix: i64,
}

/// Whether a page's batch is flushed before the sync loop goes on: when
/// another request of the cycle follows (a page is durable before the next
/// one is asked for), and when the page carries a webhook event (an event
/// goes out only once its page is durable: a crash must not lose a page
/// whose event was delivered, or the page would be fetched and sent again
/// under another event id). Otherwise, the last page of a cycle, the next
/// flush makes it durable: sled's own every half second, a later commit or
/// shutdown.
pub fn flush_page(another_request: bool, has_event: bool) -> bool {
    another_request || has_event
}

/// Applies a page in one atomic batch: inventory, assignment work for the
/// page's candidates, webhook event, sync state. `stored` hears of it as
/// soon as it is applied and, when `input.flush`, flushed (see
/// [`Store::apply_page`]).
pub fn apply_page(
    store: &Store,
    name: &DepName,
    page: &DevicePage,
    input: PageInput<'_>,
    stored: impl FnOnce(&PageSummary),
) -> Result<PageSummary, StoreError> {
    let removals = store.removals(name, assigner::removal_checks(&page.devices))?;
    let chosen = assigner::rule_candidates(
        &page.devices,
        input.phase,
        input.rules,
        &removals,
        input.policy,
        input.now_unix,
    );
    let candidates: Vec<String> = chosen.keys().cloned().collect();
    let decide = |serial: &str, existing: Option<&StoredAssignment>| {
        let (profile, rule) = chosen.get(serial)?;
        let mut r = assigner::enqueue(existing, profile, input.now_unix)?;
        r.rule = rule.clone();
        Some(r)
    };
    let devices = devices_in(&page.devices)?;
    store.apply_page(
        name,
        PageApply {
            devices: &devices,
            text: input.text,
            fetched_until: Some(page.fetched_until.as_str()).filter(|s| !s.is_empty()),
            sync: input.state,
            outbox: input.webhook,
            assignments: AssignQueue {
                candidates,
                decide: &decide,
            },
            now_unix: input.now_unix,
            flush: input.flush,
        },
        stored,
    )
}

/// Apple's devices as the store takes them: the fields it keeps, and
/// their JSON as Apple sent it (a span of the page's text, or their own),
/// or encoded from their fields when neither is known.
pub fn devices_in(devices: &[Device]) -> Result<Vec<DeviceIn<'_>>, StoreError> {
    devices
        .iter()
        .map(|d| {
            let json = match (d.span, &d.raw) {
                (Some((start, len)), _) => DeviceJson::Span(start, len),
                (None, Some(raw)) => DeviceJson::Text(std::borrow::Cow::Borrowed(raw)),
                (None, None) => {
                    DeviceJson::Text(std::borrow::Cow::Owned(serde_json::to_string(d).map_err(
                        |e| StoreError::Engine(format!("encoding device {}: {e}", d.serial_number)),
                    )?))
                }
            };
            Ok(DeviceIn {
                serial: &d.serial_number,
                op_type: d.op_type.as_deref(),
                op_date: d.op_date.as_deref(),
                profile_status: d.profile_status.as_deref(),
                profile_uuid: d.profile_uuid.as_deref(),
                json,
            })
        })
        .collect()
}

/// Records the outcome of one assignment call for `sent` (the answer, or
/// the error of the whole call) and returns the records written. Not
/// flushed: see [`Store::put_assignment_results`].
pub fn record_assignment(
    store: &Store,
    name: &DepName,
    profile: &str,
    sent: &[String],
    answer: Result<&AssignResponse, &DepError>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
    let records = store.assignments(name, sent.iter().map(String::as_str))?;
    let next = match answer {
        Ok(response) => {
            assigner::apply_response(&records, profile, sent, response, policy, now_unix)
        }
        Err(error) => assigner::apply_call_error(&records, profile, sent, error, policy, now_unix),
    };
    store.put_assignment_results(name, &next)?;
    Ok(next)
}

/// What a change of a name's rules (or its assigner profile) does to one
/// device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetChange {
    /// Queue `to` (with what chose it); `from` is the profile the device
    /// has, or the one already queued for it, or empty.
    Queue {
        from: String,
        to: String,
        rule: Option<String>,
    },
    /// Drop work queued for a profile the device no longer should get.
    Cancel { from: String },
}

/// The change for one stored device when the chooser goes from `old` to
/// `new`. Devices whose target did not change are not touched. A device
/// gets its new target unless it already has it, it was deleted, its
/// profile was removed on purpose (through depd within the window, or at
/// all when `reassign_removed` is off), or its profile came from
/// elsewhere and the new chooser does not force. depd's own successful
/// assignment is newer than the inventory's description (Apple reports it
/// only with the next sync), so it decides which profile a device has,
/// unless Apple has since reported the profile removed.
#[allow(clippy::too_many_arguments)]
pub fn target_change(
    device: &crate::store::StoredDevice,
    attrs: &DeviceAttrs<'_>,
    record: Option<&StoredAssignment>,
    removed_at: Option<i64>,
    old: &Compiled,
    new: &Compiled,
    ours: &std::collections::HashSet<&str>,
    policy: &AssignPolicy,
    now_unix: i64,
) -> Option<TargetChange> {
    if device.deleted {
        return None;
    }
    let (was, now) = (old.choose(attrs), new.choose(attrs));
    if was.target() == now.target() {
        return None;
    }
    let (mut profile, mut status) = (device.profile_uuid.as_str(), device.profile_status.as_str());
    if let Some(r) = record
        && r.result == crate::store::AssignResult::Success
        && status != "removed"
    {
        profile = r.profile_uuid.as_str();
        status = "assigned";
    }
    let queued = record
        .filter(|r| r.next_retry_unix.is_some())
        .map(|r| r.profile_uuid.as_str());
    let from = queued.unwrap_or(profile).to_owned();
    let Some(target) = now.target() else {
        return queued.map(|q| TargetChange::Cancel { from: q.to_owned() });
    };
    let has_it = profile == target && !matches!(status, "" | "empty" | "removed");
    let removed_on_purpose = device.profile_status == "removed"
        && (!policy.reassign_removed
            || removed_at.is_some_and(|t| t >= now_unix - policy.removal_window_secs));
    if has_it || removed_on_purpose {
        return queued
            .filter(|q| *q != target)
            .map(|q| TargetChange::Cancel { from: q.to_owned() });
    }
    if !now.forced() && !assigner::none_or_ours(Some(profile), status, ours) {
        return None;
    }
    Some(TargetChange::Queue {
        from,
        to: target.to_owned(),
        rule: now.label(),
    })
}

/// What rules look at of a stored device (its JSON as Apple sent it).
pub fn device_attrs(device: &crate::store::StoredDevice) -> DeviceAttrs<'_> {
    let mut attrs: DeviceAttrs<'_> = serde_json::from_str(&device.json).unwrap_or_default();
    attrs.serial = device.serial.clone();
    if attrs.op_type.is_none() && !device.op_type.is_empty() {
        attrs.op_type = Some(std::borrow::Cow::Borrowed(device.op_type.as_str()));
    }
    attrs.normalized()
}

/// The devices of a chunk whose target differs under `old` and `new`,
/// with their attributes: only these need their records read.
fn changed_targets<'d>(
    devices: &'d [crate::store::StoredDevice],
    old: &Compiled,
    new: &Compiled,
) -> Vec<(&'d crate::store::StoredDevice, DeviceAttrs<'d>)> {
    devices
        .iter()
        .filter(|d| !d.deleted)
        .filter_map(|d| {
            let attrs = device_attrs(d);
            (old.choose(&attrs).target() != new.choose(&attrs).target()).then_some((d, attrs))
        })
        .collect()
}

/// depd's own profiles under either chooser (a rule without force may
/// take devices that have one).
fn ours_of<'c>(old: &'c Compiled, new: &'c Compiled) -> std::collections::HashSet<&'c str> {
    old.uuids().union(&new.uuids()).copied().collect()
}

/// The records and removal times of `changed`.
#[allow(clippy::type_complexity)]
fn records_of(
    store: &Store,
    name: &DepName,
    changed: &[(&crate::store::StoredDevice, DeviceAttrs<'_>)],
) -> Result<(BTreeMap<String, StoredAssignment>, BTreeMap<String, i64>), StoreError> {
    let removals = store.removals(
        name,
        changed
            .iter()
            .filter(|(d, _)| d.profile_status == "removed")
            .map(|(d, _)| d.serial.as_str()),
    )?;
    let assigned = store.assignments(name, changed.iter().map(|(d, _)| d.serial.as_str()))?;
    Ok((assigned, removals))
}

/// Walks the inventory with two threads: this one reads the stored
/// segments (and checks which records are current), a second one runs
/// `work` on each chunk meanwhile. Reading and deciding take about as long
/// as each other for a large inventory, so on two cores the walk takes
/// about half the time.
fn pipelined<S: Send>(
    store: &Store,
    name: &DepName,
    state: S,
    work: impl FnMut(&mut S, Vec<crate::store::StoredDevice>) -> Result<(), StoreError> + Send,
) -> Result<S, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<crate::store::StoredDevice>>(4);
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let (mut state, mut work) = (state, work);
            for chunk in rx {
                work(&mut state, chunk)?;
            }
            Ok::<S, StoreError>(state)
        });
        let scanned = store.each_device_chunk(name, |chunk| {
            // A closed channel: the worker failed; its error is reported.
            tx.send(chunk)
                .map_err(|_| StoreError::Task("the inventory walk's worker stopped".into()))
        });
        drop(tx);
        let state = worker
            .join()
            .map_err(|_| StoreError::Task("the inventory walk's worker panicked".into()))??;
        scanned.map(|()| state)
    })
}

/// What a rules change did (or, previewed, would do).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChangeSummary {
    pub queued: usize,
    pub cancelled: usize,
    /// (from, to) → devices.
    pub moves: BTreeMap<(String, String), usize>,
}

/// Queues what a change of the chooser from `old` to `new` asks of the
/// inventory's devices ([`target_change`]), one commit per stored
/// segment of devices, without asking Apple. Running it again is
/// harmless: work already queued for a target is left as it is.
pub fn apply_targets_change(
    store: &Store,
    name: &DepName,
    old: &Compiled,
    new: &Compiled,
    policy: &AssignPolicy,
    now_unix: i64,
) -> Result<ChangeSummary, StoreError> {
    let ours = ours_of(old, new);
    pipelined(store, name, ChangeSummary::default(), |summary, devices| {
        let changed = changed_targets(&devices, old, new);
        if changed.is_empty() {
            return Ok(());
        }
        let (assigned, removals) = records_of(store, name, &changed)?;
        let mut records = BTreeMap::new();
        for (d, attrs) in &changed {
            let record = assigned.get(&d.serial);
            let removed_at = removals.get(&d.serial).copied();
            match target_change(
                d, attrs, record, removed_at, old, new, &ours, policy, now_unix,
            ) {
                Some(TargetChange::Queue { from, to, rule }) => {
                    if let Some(mut r) = assigner::enqueue(record, &to, now_unix) {
                        r.rule = rule;
                        records.insert(d.serial.clone(), r);
                        summary.queued += 1;
                        *summary.moves.entry((from, to)).or_default() += 1;
                    }
                }
                Some(TargetChange::Cancel { .. }) => {
                    if let Some(mut r) = record.cloned() {
                        r.result = crate::store::AssignResult::Cancelled;
                        r.next_retry_unix = None;
                        records.insert(d.serial.clone(), r);
                        summary.cancelled += 1;
                    }
                }
                None => {}
            }
        }
        store.put_assignments(name, &records)
    })
}

/// The preview of a candidate chooser: what it would choose for the
/// inventory and what applying it would move, changing nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Preview {
    /// Per rule of the candidate, in order: devices it chooses for, and
    /// up to five of their serials.
    pub rules: Vec<(String, usize, Vec<String>)>,
    pub pinned: usize,
    pub excluded: usize,
    pub assigner: usize,
    pub unmatched_devices: usize,
    pub changes: ChangeSummary,
    /// Rules that match no device; rules that match some, but only
    /// devices an earlier rule takes.
    pub unmatched: Vec<String>,
    pub shadowed: Vec<String>,
}

/// Previews `new` against the chooser in effect (`old`).
pub fn preview(
    store: &Store,
    name: &DepName,
    old: &Compiled,
    new: &Compiled,
    policy: &AssignPolicy,
    now_unix: i64,
) -> Result<Preview, StoreError> {
    use super::rules::Choice;
    let names: Vec<String> = new.rule_names().map(str::to_owned).collect();
    let ours = ours_of(old, new);
    let start = (
        vec![(0usize, Vec::new()); names.len()],
        vec![false; names.len()],
        Preview::default(),
    );
    let (mut first, any, mut p) = pipelined(store, name, start, |(first, any, p), devices| {
        let mut changed = Vec::new();
        for d in devices.iter().filter(|d| !d.deleted) {
            let attrs = device_attrs(d);
            let choice = new.choose(&attrs);
            match choice {
                Choice::Rule { index, .. } => {
                    if let Some((n, sample)) = first.get_mut(index) {
                        *n += 1;
                        if sample.len() < 5 {
                            sample.push(d.serial.clone());
                        }
                    }
                }
                Choice::Pinned(_) => p.pinned += 1,
                Choice::Excluded => p.excluded += 1,
                Choice::Assigner(_) => p.assigner += 1,
                Choice::Nothing => p.unmatched_devices += 1,
            }
            // A rule that matched some device is neither unmatched nor
            // (if it never came first) anything but shadowed: only rules
            // that matched nothing yet are tried.
            for (i, hit) in any.iter_mut().enumerate() {
                if !*hit && new.rule_matches(i, &attrs) {
                    *hit = true;
                }
            }
            if old.choose(&attrs).target() != choice.target() {
                changed.push((d, attrs));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let (assigned, removals) = records_of(store, name, &changed)?;
        for (d, attrs) in &changed {
            let record = assigned.get(&d.serial);
            let removed_at = removals.get(&d.serial).copied();
            match target_change(
                d, attrs, record, removed_at, old, new, &ours, policy, now_unix,
            ) {
                Some(TargetChange::Queue { from, to, .. })
                    if assigner::enqueue(record, &to, now_unix).is_some() =>
                {
                    p.changes.queued += 1;
                    *p.changes.moves.entry((from, to)).or_default() += 1;
                }
                Some(TargetChange::Cancel { .. }) if record.is_some() => p.changes.cancelled += 1,
                _ => {}
            }
        }
        Ok(())
    })?;
    for (i, name) in names.into_iter().enumerate() {
        let (n, sample) = std::mem::take(&mut first[i]);
        if !any[i] {
            p.unmatched.push(name.clone());
        } else if n == 0 {
            p.shadowed.push(name.clone());
        }
        p.rules.push((name, n, sample));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AssignResult;
    use crate::sync::assigner::tests::{T, dev, policy};
    use crate::sync::webhook;

    fn name() -> DepName {
        DepName::parse("acme").expect("name")
    }

    fn page(devices: Vec<crate::dep::wire::Device>, cursor: &str) -> DevicePage {
        DevicePage {
            cursor: cursor.into(),
            devices,
            fetched_until: "2023-11-14T22:13:20Z".into(),
            more_to_follow: false,
        }
    }

    #[test]
    fn pages_with_a_next_request_or_an_event_are_flushed() {
        assert!(flush_page(true, false));
        assert!(flush_page(true, true));
        assert!(flush_page(false, true), "a cycle's last page with an event");
        assert!(!flush_page(false, false), "a cycle's last page without one");
    }

    #[test]
    fn a_page_queues_candidates_and_its_event() {
        let store = Store::memory();
        let n = name();
        let p = policy();
        store
            .record_removals(&n, ["MINE"], T - 60)
            .expect("removal");
        let pg = page(
            vec![
                dev("NEW", "added", "", ""),
                dev("MINE", "modified", "removed", ""),
                dev("THEIRS", "modified", "removed", ""),
                dev("OTHER", "modified", "assigned", "X"),
            ],
            "c1",
        );
        let state = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some("c1".into()),
            cursor_unix: Some(T),
            last_cycle: None,
        };
        let at = time::OffsetDateTime::from_unix_timestamp(T).expect("time");
        let event = webhook::event(&n, SyncPhase::Sync, &pg, None, "e1".into(), at).expect("event");
        let summary = apply_page(
            &store,
            &n,
            &pg,
            PageInput {
                flush: true,
                text: None,
                phase: SyncPhase::Sync,
                state: &state,
                rules: &Compiled::assigner_only(Some("P")),
                policy: &p,
                webhook: Some(event),
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
        assert_eq!((summary.upserted, summary.assignments), (4, 2));
        assert_eq!(summary.outbox_seq, Some(0));
        let due: Vec<String> = store
            .due_assignments(&n, T, 10)
            .expect("due")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(due, ["NEW", "THEIRS"]);
        assert_eq!(store.load_name(&n).expect("load").sync, Some(state));
        assert_eq!(store.outbox_backlog(&n).expect("backlog"), 1);

        // Without a profile nothing is queued.
        let n2 = DepName::parse("beta").expect("name");
        let s = apply_page(
            &store,
            &n2,
            &pg,
            PageInput {
                flush: true,
                text: None,
                phase: SyncPhase::Sync,
                state: &StoredSync::default(),
                rules: &Compiled::default(),
                policy: &p,
                webhook: None,
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
        assert_eq!((s.assignments, s.outbox_seq), (0, None));
    }

    #[test]
    fn assignment_answers_are_recorded_and_reschedule() {
        let store = Store::memory();
        let n = name();
        let p = policy();
        let queued = BTreeMap::from([
            (
                "A".to_string(),
                assigner::enqueue(None, "P", T).expect("queued"),
            ),
            (
                "B".to_string(),
                assigner::enqueue(None, "P", T).expect("queued"),
            ),
        ]);
        store.put_assignments(&n, &queued).expect("put");
        let due = store.due_assignments(&n, T, 1000).expect("due");
        let batch = assigner::batches(&due, p.batch_size(None));
        assert_eq!(batch, vec![vec!["A", "B"]]);
        let answer = AssignResponse {
            profile_uuid: "P".into(),
            devices: BTreeMap::from([
                ("A".to_string(), "SUCCESS".to_string()),
                ("B".to_string(), "FAILED".to_string()),
            ]),
            retry_after_seconds: None,
        };
        record_assignment(&store, &n, "P", &batch[0], Ok(&answer), &p, T).expect("record");
        assert!(store.due_assignments(&n, T, 10).expect("due").is_empty());
        let later = store.due_assignments(&n, T + 3600, 10).expect("due");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0, "B");
        assert_eq!(later[0].1.result, AssignResult::Failed);
        let a = store.assignment(&n, "A").expect("get").expect("record");
        assert_eq!(a.result, AssignResult::Success);
        // A transient call error leaves the records as they were.
        let err = DepError::Timeout;
        let none = record_assignment(&store, &n, "P", &["B".into()], Err(&err), &p, T + 3600)
            .expect("record");
        assert!(none.is_empty());
        assert_eq!(
            store.due_assignments(&n, T + 3600, 10).expect("due").len(),
            1
        );
    }

    #[test]
    fn profile_change_queues_from_the_inventory() {
        let store = Store::memory();
        let n = name();
        let p = policy();
        let pg = page(
            vec![
                dev("OLD1", "", "assigned", "OLD"),
                dev("NONE", "", "empty", ""),
                dev("OTHER", "", "assigned", "X"),
                dev("GONE", "deleted", "", "OLD"),
                dev("MINE", "modified", "removed", ""),
                dev("OLD2", "", "pushed", "OLD"),
            ],
            "c",
        );
        apply_page(
            &store,
            &n,
            &pg,
            PageInput {
                flush: true,
                text: None,
                phase: SyncPhase::Fetch,
                state: &StoredSync::default(),
                rules: &Compiled::default(),
                policy: &p,
                webhook: None,
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
        store.record_removals(&n, ["MINE"], T).expect("removal");
        let (old, new) = (
            Compiled::assigner_only(Some("OLD")),
            Compiled::assigner_only(Some("NEW")),
        );
        let queued = apply_targets_change(&store, &n, &old, &new, &p, T + 1).expect("change");
        assert_eq!(queued.queued, 3);
        let due: Vec<String> = store
            .due_assignments(&n, T + 1, 10)
            .expect("due")
            .into_iter()
            .map(|(s, r)| {
                assert_eq!(r.profile_uuid, "NEW");
                s
            })
            .collect();
        assert_eq!(due, ["NONE", "OLD1", "OLD2"]);
        // Again: nothing new.
        assert_eq!(
            apply_targets_change(&store, &n, &old, &new, &p, T + 2)
                .expect("again")
                .queued,
            0
        );
    }
}
