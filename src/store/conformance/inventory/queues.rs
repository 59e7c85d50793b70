//! The outbox, assignment records and their due index, and removals.

use super::*;

pub(in crate::store::conformance) fn outbox_in_order(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let beta = DepName::parse("beta").expect("name");
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 0);
    // More than 256 entries: big-endian keys keep numeric order.
    for i in 0..300u64 {
        let s = store
            .apply_page(
                &acme,
                PageApply {
                    flush: true,
                    text: None,
                    devices: &[],
                    fetched_until: None,
                    sync: &sync_at("c"),
                    outbox: Some(OutboxEntry {
                        event_id: format!("e{i}"),
                        topic: "dep.SyncDevices".into(),
                        body: EventBody::Whole(format!("{i}")),
                    }),
                    assignments: AssignQueue::none(),
                    now_unix: T + i as i64,
                },
                |_| {},
            )
            .expect("apply");
        assert_eq!(s.outbox_seq, Some(i));
    }
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 300);
    assert_eq!(store.outbox_backlog(&beta).expect("backlog"), 0);
    let head = store.outbox_peek(&acme, 3).expect("peek");
    let ids: Vec<(u64, &str)> = head
        .iter()
        .map(|(s, e)| (*s, e.event_id.as_str()))
        .collect();
    assert_eq!(ids, [(0, "e0"), (1, "e1"), (2, "e2")]);
    assert_eq!(head[2].1.created_unix, T + 2);
    store.outbox_remove(&acme, &[0, 1]).expect("remove");
    store.outbox_remove(&acme, &[]).expect("nothing");
    assert_eq!(store.outbox_peek(&acme, 1).expect("peek")[0].0, 2);
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 298);
    let seqs: Vec<u64> = (2..300).collect();
    store.outbox_remove(&acme, &seqs).expect("remove");
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 0);
    // Numbers keep growing after the outbox emptied.
    let s = store
        .apply_page(
            &acme,
            PageApply {
                flush: true,
                text: None,
                devices: &[],
                fetched_until: None,
                sync: &sync_at("c"),
                outbox: Some(OutboxEntry {
                    event_id: "next".into(),
                    topic: "dep.SyncDevices".into(),
                    body: EventBody::Whole(String::new()),
                }),
                assignments: AssignQueue::none(),
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
    assert_eq!(s.outbox_seq, Some(300));
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 1);
}

pub(in crate::store::conformance) fn assignments_and_due_index(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let mut records = BTreeMap::new();
    records.insert("LATE".to_string(), pending(T + 500));
    records.insert("NOW".to_string(), pending(T));
    records.insert(
        "DONE".to_string(),
        StoredAssignment {
            result: AssignResult::Success,
            attempts: 1,
            next_retry_unix: None,
            ..pending(T)
        },
    );
    records.insert(
        "GAVEUP".to_string(),
        StoredAssignment {
            result: AssignResult::Failed,
            failures: 3,
            gave_up: true,
            rule: None,
            next_retry_unix: None,
            ..pending(T)
        },
    );
    records.insert("EARLY".to_string(), pending(T - 100));
    store.put_assignments(&acme, &records).expect("put");
    let due = |now| -> Vec<String> {
        store
            .due_assignments(&acme, now, 100)
            .expect("due")
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(due(T), ["EARLY", "NOW"], "earliest first, future excluded");
    assert_eq!(due(T + 500), ["EARLY", "NOW", "LATE"]);
    assert_eq!(
        store.due_assignments(&acme, T + 500, 2).expect("due").len(),
        2
    );
    // Rescheduling moves the index entry: no stale duplicate.
    let moved = BTreeMap::from([(
        "EARLY".to_string(),
        StoredAssignment {
            result: AssignResult::Failed,
            failures: 1,
            next_retry_unix: Some(T + 3600),
            ..pending(T)
        },
    )]);
    store.put_assignments(&acme, &moved).expect("put");
    assert_eq!(due(T + 500), ["NOW", "LATE"]);
    assert_eq!(due(T + 3600), ["NOW", "LATE", "EARLY"]);
    assert_eq!(
        store
            .assignment(&acme, "EARLY")
            .expect("get")
            .map(|a| a.failures),
        Some(1)
    );
    let got = store.assignments(&acme, ["NOW", "MISSING"]).expect("get");
    assert_eq!(got.keys().collect::<Vec<_>>(), ["NOW"]);
    let listed = store
        .scan_assignments(&acme, Some("EARLY"), 2)
        .expect("scan");
    let serials: Vec<&str> = listed.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(serials, ["GAVEUP", "LATE"]);
    let c = store.assignment_counts(&acme, T).expect("counts");
    assert_eq!(c.by_result.get("PENDING"), Some(&2));
    assert_eq!(c.by_result.get("FAILED"), Some(&2));
    assert_eq!(c.by_result.get("SUCCESS"), Some(&1));
    assert_eq!((c.cooling_down, c.gave_up), (2, 1));
}

pub(in crate::store::conformance) fn removals_window(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    store
        .record_removals(&acme, ["A", "B", ""], T)
        .expect("record");
    store
        .record_removals(&acme, ["C"], T + 100)
        .expect("record");
    store.record_removals(&acme, [], T).expect("nothing");
    let got = store.removals(&acme, ["A", "C", "X"]).expect("get");
    assert_eq!(
        got,
        BTreeMap::from([("A".to_string(), T), ("C".to_string(), T + 100)])
    );
    assert_eq!(store.prune_removals(&acme, T + 50).expect("prune"), 2);
    assert_eq!(
        store.removals(&acme, ["A", "B", "C"]).expect("get").len(),
        1
    );
    // Collections stay out of the names' prefix: load_all sees only acme's
    // fields (none here), not its devices or removals.
    assert!(store.load_all().expect("load_all").is_empty());
}

/// An event delivered and removed (with its page's text) by another
/// deliverer between a peek's scan and its read of the page is passed
/// over; a page text missing under an event that is still there is
/// reported.
pub(in crate::store::conformance) fn a_peek_passes_over_an_event_removed_meanwhile(
    inner: Arc<dyn Engine>,
) {
    let flaky = Arc::new(Flaky::new(inner));
    let store = Store::new(flaky.clone());
    let acme = DepName::parse("acme").expect("name");
    let owned: Vec<String> = (0..100).map(|i| format!("S{i:03}")).collect();
    let s: Vec<&str> = owned.iter().map(String::as_str).collect();
    let p1 = page_text("c1", &s, "2026-01-01T00:00:00Z");
    apply_text(&store, &acme, &p1, "e1", T);
    // Supersede the page's records: its text stays for the event only.
    let p2 = page_text("c2", &s, "2026-01-02T00:00:00Z");
    apply_text(&store, &acme, &p2, "e2", T + 1);
    let (event, page) = (b"o/acme\0".to_vec(), b"gj/acme\0".to_vec());
    let mut first_event = event.clone();
    first_event.extend_from_slice(&0u64.to_be_bytes());
    let mut first_page = page.clone();
    first_page.extend_from_slice(&0u32.to_be_bytes());
    *flaky.after_scan.lock().expect("hook") = Some((
        event.clone(),
        Box::new({
            let (k1, k2) = (first_event.clone(), first_page.clone());
            move |e: &dyn Engine| {
                e.apply(vec![Write::Delete(k1), Write::Delete(k2)])
                    .expect("removed meanwhile");
            }
        }),
    ));
    let events = store.outbox_peek(&acme, 1).expect("peek");
    assert!(events.is_empty(), "{events:?}");
    // The page of an event still queued is gone: that is damage.
    let mut second_page = page;
    second_page.extend_from_slice(&1u32.to_be_bytes());
    flaky
        .inner
        .apply(vec![Write::Delete(second_page)])
        .expect("damage");
    let err = store.outbox_peek(&acme, 1).expect_err("missing page");
    assert!(err.to_string().contains("is missing"), "{err}");
}
