//! The index and its segments: rebuilding, compaction, the legacy
//! layout, and failures that must leave the index right.

use super::*;

pub(in crate::store::conformance) fn segment_keys(e: &dyn Engine, kind: &str) -> usize {
    e.scan(format!("{kind}/acme\0").as_bytes(), None, usize::MAX)
        .expect("scan")
        .len()
}

/// The index is derived data: a store opened afresh on the same engine
/// answers exactly as the one that wrote, and superseded records neither
/// pile up nor come back.
pub(in crate::store::conformance) fn index_rebuilds_and_segments_compact(e: Arc<dyn Engine>) {
    let store = Store::new(e.clone());
    let acme = DepName::parse("acme").expect("name");
    let serials: Vec<String> = (0..100).map(|i| format!("S{i:03}")).collect();
    let first: Vec<Device> = serials
        .iter()
        .map(|s| device(s, "", None, "empty", ""))
        .collect();
    apply(&store, &acme, &first, Some("2023-11-14T22:00:00Z"), "c0", T);
    // 60 of the 100 change one by one: the first segment falls below half
    // live and is compacted; every one-device segment but the newest is
    // superseded and deleted.
    for (i, s) in serials.iter().take(60).enumerate() {
        let d = device(s, "modified", Some("2023-11-15T00:00:00Z"), "assigned", "P");
        apply(&store, &acme, &[d], None, "c1", T + 1 + i as i64);
    }
    assert!(
        segment_keys(e.as_ref(), "gd") <= 3,
        "{} device segments kept",
        segment_keys(e.as_ref(), "gd")
    );
    assert_eq!(
        segment_keys(e.as_ref(), "gd"),
        segment_keys(e.as_ref(), "gj")
    );
    let mut queued = BTreeMap::new();
    for s in &serials[..10] {
        queued.insert(s.clone(), pending(T + 5));
    }
    store.put_assignments(&acme, &queued).expect("put");
    for s in &serials[..6] {
        let done = StoredAssignment {
            result: AssignResult::Success,
            attempts: 1,
            next_retry_unix: None,
            ..pending(T)
        };
        store
            .put_assignments(&acme, &BTreeMap::from([(s.clone(), done)]))
            .expect("put");
    }
    assert!(segment_keys(e.as_ref(), "ga") <= 3);

    let snapshot = |store: &Store| {
        let all = store
            .query_devices(
                &acme,
                &DeviceQuery {
                    limit: 1000,
                    ..Default::default()
                },
            )
            .expect("query");
        // Serials due at the same time come in no promised order.
        let mut due: Vec<String> = store
            .due_assignments(&acme, T + 5, 100)
            .expect("due")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        due.sort();
        (
            all,
            store.device_counts(&acme).expect("counts"),
            store.assignment_counts(&acme, T).expect("counts"),
            store.scan_assignments(&acme, None, 100).expect("scan"),
            due,
        )
    };
    let before = snapshot(&store);
    assert_eq!(before.0.total, 100);
    assert_eq!(before.1.by_profile_status.get("assigned"), Some(&60));
    assert_eq!(before.1.by_profile_status.get("empty"), Some(&40));
    assert_eq!(before.2.by_result.get("SUCCESS"), Some(&6));
    assert_eq!(before.4, serials[6..10].to_vec());
    let s000 = store.device(&acme, "S000").expect("get").expect("stored");
    assert_eq!(
        (s000.op_type.as_str(), s000.first_seen_unix),
        ("modified", T)
    );
    let s099 = store.device(&acme, "S099").expect("get").expect("stored");
    assert_eq!(s099.profile_status, "empty");

    let reopened = Store::new(e.clone());
    let after = snapshot(&reopened);
    assert_eq!(after.0, before.0, "inventory after reopening");
    assert_eq!(after.1, before.1, "device counts after reopening");
    assert_eq!(after.2, before.2, "assignment counts after reopening");
    assert_eq!(after.3, before.3, "assignments after reopening");
    assert_eq!(after.4, before.4, "due after reopening");
    assert_eq!(reopened.device(&acme, "S000").expect("get"), Some(s000));
    // The reopened store keeps writing where the old one stopped.
    apply(
        &reopened,
        &acme,
        &[device(
            "S099",
            "deleted",
            Some("2023-11-16T00:00:00Z"),
            "",
            "",
        )],
        None,
        "c2",
        T + 100,
    );
    let again = Store::new(e);
    let c = again.device_counts(&acme).expect("counts");
    assert_eq!((c.total, c.deleted), (100, 1));
}

/// Records of the one-key-per-record layout of earlier versions are moved
/// into segments when the name is first used, and the old keys go.
pub(in crate::store::conformance) fn legacy_layout_migrates(e: Arc<dyn Engine>) {
    let acme = DepName::parse("acme").expect("name");
    let legacy = StoredDevice {
        serial: "OLD1".into(),
        json: r#"{"serial_number":"OLD1"}"#.into(),
        op_type: "added".into(),
        op_date_unix: Some(T - 10),
        profile_status: "empty".into(),
        profile_uuid: String::new(),
        first_seen_unix: T - 100,
        last_event_unix: T - 10,
        deleted: false,
    };
    let mut due_key = b"t/acme\0".to_vec();
    due_key.extend_from_slice(&(T as u64).to_be_bytes());
    due_key.extend_from_slice(b"OLD1");
    e.commit(vec![
        Write::Put(b"d/acme\0OLD1".to_vec(), super::record::encode(&legacy)),
        Write::Put(b"a/acme\0OLD1".to_vec(), super::record::encode(&pending(T))),
        Write::Put(due_key, vec![1]),
    ])
    .expect("legacy");
    let store = Store::new(e.clone());
    assert_eq!(store.device(&acme, "OLD1").expect("get"), Some(legacy));
    let due = store.due_assignments(&acme, T, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, "OLD1");
    for kind in ["d", "a", "t"] {
        assert_eq!(segment_keys(e.as_ref(), kind), 0, "{kind}/ keys left");
    }
}

/// A store opened without old-layout records never looks for them again,
/// and a name that never had a webhook event is not searched for one:
/// building a name's index reads only its two segment prefixes.
pub(in crate::store::conformance) fn no_legacy_lookups_without_legacy_records(
    inner: Arc<dyn Engine>,
) {
    let flaky = Arc::new(Flaky::new(inner));
    let store = Store::new(flaky.clone());
    let scans = |f: &Flaky| {
        std::mem::take(
            &mut *f
                .scans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    };
    let at_open = scans(&flaky);
    assert_eq!(at_open.len(), 3, "one look per old prefix at open");
    let acme = DepName::parse("acme").expect("name");
    apply(
        &store,
        &acme,
        &[device("S1", "added", None, "", "")],
        None,
        "c1",
        T,
    );
    assert_eq!(store.device_counts(&acme).expect("counts").total, 1);
    let old: Vec<&[u8]> = vec![b"d/", b"a/", b"t/"];
    let scanned = scans(&flaky);
    for prefix in &scanned {
        assert!(
            !old.iter().any(|o| prefix.starts_with(o)),
            "looked for old records under {}",
            String::from_utf8_lossy(prefix)
        );
    }
    // Nor for webhook events of a name that never had one.
    let shown: Vec<String> = scanned
        .iter()
        .map(|p| String::from_utf8_lossy(p).replace('\0', "/"))
        .collect();
    assert_eq!(shown, ["gd/acme/", "ga/acme/"]);
    assert_eq!(store.outbox_backlog(&acme).expect("backlog"), 0);
    assert!(scans(&flaky).is_empty(), "the backlog of no events is read");
}

/// A failed flush leaves the index describing what sled holds (the batch
/// was applied): reads and later writes go on, for pages and for
/// assignment answers.
pub(in crate::store::conformance) fn a_failed_flush_leaves_the_index_right(inner: Arc<dyn Engine>) {
    use std::sync::atomic::Ordering;
    let flaky = Arc::new(Flaky::new(inner));
    let store = Store::new(flaky.clone());
    let acme = DepName::parse("acme").expect("name");
    store
        .put_assignments(&acme, &BTreeMap::from([("A".to_string(), pending(T))]))
        .expect("first");
    flaky.fail_flush.store(true, Ordering::SeqCst);
    let done = StoredAssignment {
        result: AssignResult::Success,
        next_retry_unix: None,
        ..pending(T)
    };
    let records = BTreeMap::from([("A".to_string(), done)]);
    assert!(store.put_assignments(&acme, &records).is_err());
    let page = [device("S1", "added", None, "", "")];
    let page = input(&page);
    let failed = store.apply_page(
        &acme,
        PageApply {
            devices: &page,
            text: None,
            fetched_until: None,
            sync: &sync_at("c1"),
            outbox: None,
            assignments: AssignQueue::none(),
            now_unix: T,
            flush: true,
        },
        |_| panic!("a page whose flush failed is not stored"),
    );
    assert!(failed.is_err());
    flaky.fail_flush.store(false, Ordering::SeqCst);
    let got = store.assignment(&acme, "A").expect("read");
    assert_eq!(got.map(|a| a.result), Some(AssignResult::Success));
    assert!(store.device(&acme, "S1").expect("read").is_some());
    // Later writes take fresh segment numbers: nothing is overwritten.
    store
        .put_assignments(&acme, &BTreeMap::from([("B".to_string(), pending(T))]))
        .expect("later");
    apply(
        &store,
        &acme,
        &[device("S2", "added", None, "", "")],
        None,
        "c2",
        T,
    );
    for serial in ["A", "B"] {
        assert!(
            store.assignment(&acme, serial).expect("read").is_some(),
            "{serial}"
        );
    }
    for serial in ["S1", "S2"] {
        assert!(
            store.device(&acme, serial).expect("read").is_some(),
            "{serial}"
        );
    }
    let fresh = Store::new(flaky.clone());
    assert_eq!(fresh.device_counts(&acme).expect("counts").total, 2);
}
