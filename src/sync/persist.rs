//! The storage side of the sync loop: what a page, an assignment answer and
//! an assigner profile change write, combining the assigner's rules with
//! the store. These calls block: the name's actor (the only writer of its
//! name's records, so reading and then committing cannot race) runs them
//! on the blocking pool with `Store::blocking`.

use super::assigner::{self, AssignPolicy};
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
    /// The name's assigner profile; none or empty: nothing is queued.
    pub profile: Option<&'a str>,
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
    let profile = input.profile.filter(|p| !p.is_empty());
    let candidates = match profile {
        Some(profile) => {
            let removals = store.removals(name, assigner::removal_checks(&page.devices))?;
            assigner::candidates(
                &page.devices,
                input.phase,
                profile,
                &removals,
                input.policy,
                input.now_unix,
            )
            .into_iter()
            .collect()
        }
        None => Vec::new(),
    };
    let decide = |existing: Option<&StoredAssignment>| {
        profile.and_then(|p| assigner::enqueue(existing, p, input.now_unix))
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

/// Queues the new assigner profile for the inventory's devices that should
/// have it ([`assigner::should_get_new_profile`]), one commit per stored
/// segment of devices, without asking Apple. Returns how many were queued.
/// Running it again is harmless: work already queued for `new` is left as
/// it is.
pub fn apply_profile_change(
    store: &Store,
    name: &DepName,
    old: Option<&str>,
    new: &str,
    policy: &AssignPolicy,
    now_unix: i64,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    store.each_device_chunk(name, |devices| {
        let removals = store.removals(
            name,
            devices
                .iter()
                .filter(|d| d.profile_status == "removed")
                .map(|d| d.serial.as_str()),
        )?;
        // depd's own successful assignment is newer than the inventory's
        // description (Apple reports it only with the next sync), so it
        // decides which profile a device has, unless Apple has since
        // reported the profile removed.
        let assigned = store.assignments(name, devices.iter().map(|d| d.serial.as_str()))?;
        let targets: Vec<&str> = devices
            .iter()
            .filter(|d| {
                let removed_at = removals.get(&d.serial).copied();
                match assigned.get(&d.serial) {
                    Some(a)
                        if a.result == crate::store::AssignResult::Success
                            && d.profile_status != "removed" =>
                    {
                        let mut seen = (*d).clone();
                        seen.profile_uuid = a.profile_uuid.clone();
                        seen.profile_status = "assigned".into();
                        assigner::should_get_new_profile(
                            &seen, old, new, removed_at, policy, now_unix,
                        )
                    }
                    _ => {
                        assigner::should_get_new_profile(d, old, new, removed_at, policy, now_unix)
                    }
                }
            })
            .map(|d| d.serial.as_str())
            .collect();
        let records: BTreeMap<String, StoredAssignment> = targets
            .into_iter()
            .filter_map(|s| {
                assigner::enqueue(assigned.get(s), new, now_unix).map(|r| (s.to_owned(), r))
            })
            .collect();
        queued += records.len();
        store.put_assignments(name, &records)
    })?;
    Ok(queued)
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
                profile: Some("P"),
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
                profile: None,
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
                profile: None,
                policy: &p,
                webhook: None,
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
        store.record_removals(&n, ["MINE"], T).expect("removal");
        let queued =
            apply_profile_change(&store, &n, Some("OLD"), "NEW", &p, T + 1).expect("change");
        assert_eq!(queued, 3);
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
            apply_profile_change(&store, &n, Some("OLD"), "NEW", &p, T + 2).expect("again"),
            0
        );
    }
}
