//! Pages of devices: upserts by date, one atomic batch, queued
//! assignments, queries and counts, flushing, the page text shared with
//! its webhook event.

use super::*;

/// A page's assignment queue decides from each candidate's stored record,
/// read in the page's own batch: what it returns is written, `None` keeps
/// the record (or its absence) as it is.
pub(in crate::store::conformance) fn page_queues_assignments_from_stored_records(
    e: Arc<dyn Engine>,
) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let done = StoredAssignment {
        result: AssignResult::Success,
        attempts: 1,
        next_retry_unix: None,
        ..pending(T)
    };
    let mut first = BTreeMap::new();
    first.insert("A".to_owned(), done.clone());
    first.insert("B".to_owned(), pending(T));
    store.put_assignments(&acme, &first).expect("put");
    let devices: Vec<Device> = ["A", "B", "C", "D"]
        .iter()
        .map(|s| device(s, "added", None, "", ""))
        .collect();
    let seen = std::sync::Mutex::new(Vec::new());
    // A stored SUCCESS is queued again, a stored pending record is left,
    // C (nothing stored) is queued, D is not a candidate.
    let decide = |_: &str, stored: Option<&StoredAssignment>| {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stored.map(|r| r.result));
        match stored {
            Some(r) if r.result == AssignResult::Pending => None,
            _ => Some(pending(T + 5)),
        }
    };
    let devices = input(&devices);
    let summary = store
        .apply_page(
            &acme,
            PageApply {
                flush: true,
                text: None,
                devices: &devices,
                fetched_until: None,
                sync: &sync_at("c1"),
                outbox: None,
                assignments: AssignQueue {
                    candidates: vec!["A".into(), "B".into(), "C".into()],
                    decide: &decide,
                },
                now_unix: T,
            },
            |_| {},
        )
        .expect("apply");
    assert_eq!(summary.assignments, 2);
    assert_eq!(
        seen.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        vec![
            Some(AssignResult::Success),
            Some(AssignResult::Pending),
            None
        ]
    );
    let get = |s: &str| store.assignment(&acme, s).expect("get");
    assert_eq!(get("A"), Some(pending(T + 5)));
    assert_eq!(get("B"), Some(pending(T)));
    assert_eq!(get("C"), Some(pending(T + 5)));
    assert_eq!(get("D"), None);
}

pub(in crate::store::conformance) fn page_upserts_by_op_date(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let ac = DepName::parse("ac").expect("name");
    // Apple's text of a device is stored as sent, unknown keys included.
    let mut first = device("A", "", None, "empty", "");
    first.raw =
        Some(r#"{"serial_number":"A","profile_status":"empty","future_key":{"kept":true}}"#.into());
    let s = apply(
        &store,
        &acme,
        &[
            first,
            device("B", "", None, "assigned", "P"),
            device("", "added", None, "", ""),
        ],
        Some("2023-11-14T22:00:00Z"),
        "c1",
        T,
    );
    assert_eq!((s.upserted, s.stale, s.deleted, s.ignored), (2, 0, 0, 1));
    let a = store.device(&acme, "A").expect("get").expect("stored");
    assert_eq!(
        a.op_date_unix,
        Some(1_699_999_200),
        "fetched_until dates a fetch"
    );
    assert_eq!(a.first_seen_unix, T);
    assert_eq!(
        a.json,
        r#"{"serial_number":"A","profile_status":"empty","future_key":{"kept":true}}"#
    );
    let b = store.device(&acme, "B").expect("get").expect("stored");
    let json: serde_json::Value = serde_json::from_str(&b.json).expect("json");
    assert_eq!(
        json["profile_uuid"], "P",
        "a device without its text is encoded"
    );
    assert_eq!(
        store.load_name(&acme).expect("load").sync,
        Some(sync_at("c1"))
    );
    assert_eq!(
        store.device(&ac, "A").expect("get"),
        None,
        "names are apart"
    );

    // A newer event replaces, an older one does not, equal dates apply in
    // page order; within one page the last newer event wins.
    let s = apply(
        &store,
        &acme,
        &[
            device(
                "A",
                "modified",
                Some("2023-11-14T23:00:00Z"),
                "assigned",
                "P",
            ),
            device("A", "modified", Some("2023-11-14T22:30:00Z"), "removed", ""),
            device("B", "modified", Some("2023-11-14T21:00:00Z"), "removed", ""),
            device("A", "modified", Some("2023-11-14T23:00:00Z"), "pushed", "P"),
        ],
        None,
        "c2",
        T + 10,
    );
    assert_eq!((s.upserted, s.stale), (2, 2));
    let a = store.device(&acme, "A").expect("get").expect("stored");
    assert_eq!(
        (
            a.profile_status.as_str(),
            a.op_type.as_str(),
            a.first_seen_unix,
            a.last_event_unix
        ),
        ("pushed", "modified", T, T + 10)
    );
    let b = store.device(&acme, "B").expect("get").expect("stored");
    assert_eq!(
        (b.profile_status.as_str(), b.last_event_unix),
        ("assigned", T)
    );

    // Deleted marks the record; a later add revives it.
    let s = apply(
        &store,
        &acme,
        &[device("B", "deleted", Some("2023-11-15T00:00:00Z"), "", "")],
        None,
        "c3",
        T + 20,
    );
    assert_eq!(s.deleted, 1);
    let b = store.device(&acme, "B").expect("get").expect("kept");
    assert!(b.deleted);
    assert_eq!(b.op_type, "deleted");
    assert_eq!(b.first_seen_unix, T);
    apply(
        &store,
        &acme,
        &[device("B", "added", Some("2023-11-16T00:00:00Z"), "", "")],
        None,
        "c4",
        T + 30,
    );
    assert!(
        !store
            .device(&acme, "B")
            .expect("get")
            .expect("kept")
            .deleted
    );
}

pub(in crate::store::conformance) fn page_is_one_atomic_batch(inner: Arc<dyn Engine>) {
    use std::sync::atomic::Ordering;
    let flaky = Arc::new(Flaky::new(inner));
    let store = Store::new(flaky.clone());
    let acme = DepName::parse("acme").expect("name");
    let page_apply = |cursor: &'static str, devices: &'static [&'static str]| {
        let devices: Vec<Device> = devices
            .iter()
            .map(|s| device(s, "added", None, "", ""))
            .collect();
        let sync = sync_at(cursor);
        let candidates = devices.iter().map(|d| d.serial_number.clone()).collect();
        let devices = input(&devices);
        store.apply_page(
            &acme,
            PageApply {
                flush: true,
                text: None,
                devices: &devices,
                fetched_until: None,
                sync: &sync,
                outbox: Some(OutboxEntry {
                    event_id: format!("e-{cursor}"),
                    topic: "dep.SyncDevices".into(),
                    body: EventBody::Whole(format!("{{\"cursor\":\"{cursor}\"}}")),
                }),
                assignments: AssignQueue {
                    candidates,
                    decide: &|_, _| Some(pending(T)),
                },
                now_unix: T,
            },
            |_| {},
        )
    };
    let s = page_apply("c1", &["A", "B"]).expect("apply");
    assert_eq!(
        flaky.commits.load(Ordering::SeqCst),
        1,
        "one batch per page"
    );
    assert_eq!((s.upserted, s.assignments, s.outbox_seq), (2, 2, Some(0)));

    flaky.fail.store(true, Ordering::SeqCst);
    assert!(page_apply("c2", &["C"]).is_err());
    flaky.fail.store(false, Ordering::SeqCst);
    assert_eq!(store.device(&acme, "C").expect("get"), None);
    assert_eq!(store.assignment(&acme, "C").expect("get"), None);
    assert_eq!(
        store.load_name(&acme).expect("load").sync,
        Some(sync_at("c1"))
    );
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 1);
    assert_eq!(store.due_assignments(&acme, T, 10).expect("due").len(), 2);

    let s = page_apply("c3", &["C"]).expect("apply");
    assert_eq!(
        s.outbox_seq,
        Some(1),
        "a failed page used no sequence number"
    );
}

pub(in crate::store::conformance) fn inventory_query_and_counts(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let devices: Vec<Device> = (0..25)
        .map(|i| {
            let (op, status, uuid) = match i % 3 {
                0 => ("added", "empty", ""),
                1 => ("modified", "assigned", "P"),
                _ => ("deleted", "", ""),
            };
            device(&format!("S{i:02}"), op, None, status, uuid)
        })
        .collect();
    apply(&store, &acme, &devices, None, "c", T);
    let q = |query: DeviceQuery| store.query_devices(&acme, &query).expect("query");
    let all = q(DeviceQuery {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(all.total, 25);
    let serials: Vec<&str> = all.devices.iter().map(|d| d.serial.as_str()).collect();
    assert_eq!(serials[..3], ["S00", "S01", "S02"]);
    assert_eq!(serials.len(), 10);
    let last = q(DeviceQuery {
        offset: 20,
        limit: 10,
        ..Default::default()
    });
    assert_eq!((last.total, last.devices.len()), (25, 5));
    assert_eq!(last.devices[0].serial, "S20");
    let modified = q(DeviceQuery {
        op_type: Some("modified".into()),
        offset: 2,
        limit: 3,
        ..Default::default()
    });
    assert_eq!(modified.total, 8);
    let serials: Vec<&str> = modified.devices.iter().map(|d| d.serial.as_str()).collect();
    assert_eq!(serials, ["S07", "S10", "S13"]);
    let by_profile = q(DeviceQuery {
        profile_uuid: Some("P".into()),
        profile_status: Some("assigned".into()),
        limit: 100,
        ..Default::default()
    });
    assert_eq!(by_profile.total, 8);
    let one = q(DeviceQuery {
        serial: Some("S03".into()),
        limit: 1,
        ..Default::default()
    });
    assert_eq!((one.total, one.devices[0].serial.as_str()), (1, "S03"));
    let miss = q(DeviceQuery {
        serial: Some("S03".into()),
        op_type: Some("deleted".into()),
        limit: 1,
        ..Default::default()
    });
    assert_eq!((miss.total, miss.devices.len()), (0, 0));
    let none = q(DeviceQuery {
        serial: Some("NOPE".into()),
        limit: 1,
        ..Default::default()
    });
    assert_eq!(none.total, 0);
    assert_eq!(q(DeviceQuery::default()).total, 25, "limit 0 still counts");

    let c = store.device_counts(&acme).expect("counts");
    assert_eq!((c.total, c.deleted), (25, 8));
    assert_eq!(c.by_op_type.get("added"), Some(&9));
    assert_eq!(c.by_op_type.get("deleted"), Some(&8));
    assert_eq!(c.by_profile_status.get("assigned"), Some(&8));
    assert_eq!(c.by_profile_status.get("empty"), Some(&9));
    assert_eq!(
        c.by_profile_status.get("none"),
        None,
        "deleted devices not counted"
    );
    let beta = DepName::parse("beta").expect("name");
    assert_eq!(
        store.device_counts(&beta).expect("counts"),
        DeviceCounts::default()
    );
}

/// A page is flushed before `stored` hears of it when asked (another
/// request follows), and only applied otherwise (the cycle's last page).
pub(in crate::store::conformance) fn pages_are_flushed_when_asked(inner: Arc<dyn Engine>) {
    use std::sync::atomic::Ordering;
    let flaky = Arc::new(Flaky::new(inner));
    let store = Store::new(flaky.clone());
    let acme = DepName::parse("acme").expect("name");
    for (flush, want) in [(true, 1), (false, 0)] {
        let before = flaky.flushes.load(Ordering::SeqCst);
        let heard = std::cell::Cell::new(None);
        store
            .apply_page(
                &acme,
                PageApply {
                    devices: &input(&[device("S1", "added", None, "", "")]),
                    text: None,
                    fetched_until: None,
                    sync: &sync_at("c"),
                    outbox: None,
                    assignments: AssignQueue::none(),
                    now_unix: T,
                    flush,
                },
                |_| heard.set(Some(flaky.flushes.load(Ordering::SeqCst) - before)),
            )
            .expect("apply");
        assert_eq!(heard.get(), Some(want), "flush {flush}");
        assert_eq!(flaky.flushes.load(Ordering::SeqCst) - before, want);
    }
    // Applied either way: readers see it at once.
    assert_eq!(store.device_counts(&acme).expect("counts").total, 1);
}

/// A page's text is stored once: the inventory's device texts are ranges
/// of it and its webhook event refers to it. It stays while either needs
/// it, in both orders of delivery and supersession, across a rebuilt
/// index, and goes with the last. (Pages of 100 devices: smaller segments
/// would be compacted, which copies their live records' texts.)
pub(in crate::store::conformance) fn page_text_is_shared_by_inventory_and_event(
    e: Arc<dyn Engine>,
) {
    let store = Store::new(e.clone());
    let acme = DepName::parse("acme").expect("name");
    let owned =
        |prefix: &str| -> Vec<String> { (0..100).map(|i| format!("{prefix}{i:03}")).collect() };
    let (ss, tt) = (owned("S"), owned("T"));
    let s: Vec<&str> = ss.iter().map(String::as_str).collect();
    let t: Vec<&str> = tt.iter().map(String::as_str).collect();
    let p1 = page_text("c1", &s, "2026-01-01T00:00:00Z");
    apply_text(&store, &acme, &p1, "e1", T);
    // The event goes out with the page as sent, without the whitespace
    // around it; the devices read back as sent.
    let events = store.outbox_peek(&acme, 10).expect("peek");
    assert_eq!(
        events[0].1.body,
        format!(r#"{{"event_id":"e1","page":{}}}"#, p1.trim())
    );
    let a = store.device(&acme, "S000").expect("get").expect("S000");
    assert!(p1.contains(&a.json) && a.json.starts_with('{') && a.json.contains(r#""S000""#));
    // One copy: the stored event holds the envelope, not the page.
    let stored: usize = e
        .scan(b"o/acme\0", None, 10)
        .expect("scan")
        .iter()
        .map(|(_, v)| v.len())
        .sum();
    assert!(stored < 100, "the event's record is {stored} bytes");
    assert_eq!(segment_keys(e.as_ref(), "gj"), 1);

    // Superseded before delivery: the records' segment goes, its text
    // stays for the event, until the event is delivered.
    let p2 = page_text("c2", &s, "2026-01-02T00:00:00Z");
    apply_text(&store, &acme, &p2, "e2", T + 1);
    assert_eq!(segment_keys(e.as_ref(), "gd"), 1);
    assert_eq!(segment_keys(e.as_ref(), "gj"), 2);
    // A store opened afresh knows the event still needs it.
    let store = Store::new(e.clone());
    let events = store.outbox_peek(&acme, 10).expect("peek");
    assert_eq!(events.len(), 2);
    assert!(events[0].1.body.contains(r#""cursor":"c1""#));
    // A new page gets a segment of its own beside the kept one.
    let p3 = page_text("c3", &t, "2026-01-03T00:00:00Z");
    apply_text(&store, &acme, &p3, "e3", T + 2);
    assert_eq!(segment_keys(e.as_ref(), "gj"), 3);
    assert!(
        store.outbox_peek(&acme, 1).expect("peek")[0]
            .1
            .body
            .contains(r#""c1""#)
    );
    store.outbox_remove(&acme, &[0]).expect("delivered");
    assert_eq!(segment_keys(e.as_ref(), "gj"), 2);

    // Delivered before superseded: the texts stay for the records.
    store.outbox_remove(&acme, &[1, 2]).expect("delivered");
    assert_eq!(segment_keys(e.as_ref(), "gj"), 2);
    let b = store.device(&acme, "S099").expect("get").expect("S099");
    assert!(p2.contains(&b.json) && b.json.contains(r#""c2""#));
    let c = store.device(&acme, "T000").expect("get").expect("T000");
    assert!(p3.contains(&c.json));
    // ...and go with the last of them.
    let both: Vec<&str> = s.iter().chain(&t).copied().collect();
    let p4 = page_text("c4", &both, "2026-01-04T00:00:00Z");
    apply_text(&store, &acme, &p4, "e4", T + 3);
    store.outbox_remove(&acme, &[3]).expect("delivered");
    assert_eq!(segment_keys(e.as_ref(), "gd"), 1);
    assert_eq!(segment_keys(e.as_ref(), "gj"), 1);
    for serial in ["S000", "S099", "T000", "T099"] {
        let d = store.device(&acme, serial).expect("get").expect("device");
        assert!(p4.contains(&d.json), "{serial}");
    }

    // A page none of whose devices is stored (all stale) keeps its text
    // in the event itself.
    let old = page_text("c5", &["S000"], "2025-01-01T00:00:00Z");
    let summary = apply_text(&store, &acme, &old, "e5", T + 4);
    assert_eq!((summary.upserted, summary.stale), (0, 1));
    let events = store.outbox_peek(&acme, 10).expect("peek");
    assert_eq!(
        events[0].1.body,
        format!(r#"{{"event_id":"e5","page":{}}}"#, old.trim())
    );
    assert_eq!(segment_keys(e.as_ref(), "gj"), 1);
    store.outbox_remove(&acme, &[4]).expect("delivered");
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 0);

    // An index rebuilt while an event waits still keeps that event's page
    // when its records are superseded afterwards.
    let q1 = page_text("q1", &s, "2026-02-01T00:00:00Z");
    apply_text(&store, &acme, &q1, "e6", T + 5);
    let store = Store::new(e.clone());
    let q2 = page_text("q2", &s, "2026-02-02T00:00:00Z");
    apply_text(&store, &acme, &q2, "e7", T + 6);
    let events = store.outbox_peek(&acme, 10).expect("peek");
    assert_eq!(events.len(), 2);
    assert!(events[0].1.body.contains(r#""cursor":"q1""#));
    store.outbox_remove(&acme, &[5, 6]).expect("delivered");
    assert_eq!(
        store
            .device(&acme, "S000")
            .expect("get")
            .map(|d| p4.contains(&d.json)),
        Some(false)
    );
    assert!(store.device(&acme, "T000").expect("get").is_some());
}
