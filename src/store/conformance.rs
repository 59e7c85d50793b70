//! One behavioural suite for every [`Engine`]; `sled` and `memory` must pass
//! the same checks, so code above the engine cannot tell them apart.

use super::*;
use crate::dep::wire::Device;
use std::collections::BTreeMap;

fn put(k: &str, v: &str) -> Write {
    Write::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    entries
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn get_put_delete(e: &dyn Engine) {
    assert_eq!(e.get(b"a").ok().flatten(), None);
    e.commit(vec![put("a", "1")]).expect("commit");
    assert_eq!(e.get(b"a").ok().flatten(), Some(b"1".to_vec()));
    e.commit(vec![put("a", "2")]).expect("overwrite");
    assert_eq!(e.get(b"a").ok().flatten(), Some(b"2".to_vec()));
    e.commit(vec![Write::Delete(b"a".to_vec())])
        .expect("delete");
    assert_eq!(e.get(b"a").ok().flatten(), None);
    e.commit(vec![Write::Delete(b"never".to_vec())])
        .expect("deleting a missing key is fine");
}

fn batch_applies_in_order(e: &dyn Engine) {
    e.commit(vec![
        put("b/1", "x"),
        put("b/2", "y"),
        Write::Delete(b"b/1".to_vec()),
        put("b/2", "z"),
    ])
    .expect("commit");
    assert_eq!(e.get(b"b/1").ok().flatten(), None);
    assert_eq!(e.get(b"b/2").ok().flatten(), Some(b"z".to_vec()));
}

fn scan_prefix_order_after_limit(e: &dyn Engine) {
    e.commit(vec![
        put("p/c", "3"),
        put("p/a", "1"),
        put("p/b", "2"),
        put("p", "not under p/"),
        put("q/a", "other prefix"),
        put("o/z", "before"),
    ])
    .expect("commit");
    let all = e.scan(b"p/", None, 100).expect("scan");
    assert_eq!(keys(&all), ["p/a", "p/b", "p/c"]);
    assert_eq!(all[1].1, b"2".to_vec());
    let two = e.scan(b"p/", None, 2).expect("scan");
    assert_eq!(keys(&two), ["p/a", "p/b"]);
    let rest = e.scan(b"p/", Some(b"p/b"), 100).expect("scan");
    assert_eq!(keys(&rest), ["p/c"]);
    let none = e.scan(b"p/", Some(b"p/c"), 100).expect("scan");
    assert!(none.is_empty());
    let before_prefix = e.scan(b"p/", Some(b"a"), 100).expect("scan");
    assert_eq!(keys(&before_prefix), ["p/a", "p/b", "p/c"]);
    assert!(e.scan(b"zz", None, 10).expect("scan").is_empty());
    assert!(e.scan(b"p/", None, 0).expect("scan").is_empty());
}

fn binary_keys_and_values(e: &dyn Engine) {
    let key = vec![b'k', 0, 255, 1];
    let value: Vec<u8> = (0..=255).collect();
    e.commit(vec![Write::Put(key.clone(), value.clone())])
        .expect("commit");
    assert_eq!(e.get(&key).ok().flatten(), Some(value));
    let found = e.scan(&[b'k', 0], None, 10).expect("scan");
    assert_eq!(found.len(), 1);
}

fn typed_store(e: Arc<dyn Engine>) {
    let store = Store::new(e);
    let acme = DepName::parse("acme").expect("name");
    let beta = DepName::parse("beta").expect("name");
    let ac = DepName::parse("ac").expect("name");
    assert_eq!(store.load_name(&acme).expect("load"), NameData::default());

    let tokens = StoredTokens {
        consumer_key: "CK".into(),
        consumer_secret: "CS".into(),
        access_token: "AT".into(),
        access_secret: "AS".into(),
        access_token_expiry_unix: 1_800_000_000,
    };
    let mut w = NameWrite::default();
    w.put(&beta, Field::Meta, &StoredMeta { created_unix: 2 })
        .put(&beta, Field::Tokens, &tokens);
    store.commit(w).expect("commit");
    let mut w = NameWrite::default();
    w.put(&acme, Field::Meta, &StoredMeta { created_unix: 1 })
        .put(
            &acme,
            Field::Config,
            &StoredConfig {
                base_url: "http://127.0.0.1:1".into(),
            },
        )
        .put(
            &acme,
            Field::Assigner,
            &StoredAssigner {
                profile_uuid: "P1".into(),
                modified_unix: 5,
            },
        );
    store.commit(w).expect("commit");
    // "ac" is a prefix of "acme": the NUL separator keeps them apart.
    let mut w = NameWrite::default();
    w.put(&ac, Field::Meta, &StoredMeta { created_unix: 3 });
    store.commit(w).expect("commit");

    let all = store.load_all().expect("load_all");
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ac", "acme", "beta"]);
    assert_eq!(all[2].1.tokens.as_ref(), Some(&tokens));
    assert_eq!(all[1].1.tokens, None);
    assert_eq!(
        all[1].1.assigner.as_ref().map(|a| a.profile_uuid.as_str()),
        Some("P1")
    );
    assert_eq!(store.load_name(&acme).expect("load"), all[1].1);
    assert_eq!(
        store.load_name(&ac).expect("load").meta,
        Some(StoredMeta { created_unix: 3 })
    );

    let mut w = NameWrite::default();
    w.delete(&acme, Field::Config);
    store.commit(w).expect("commit");
    assert_eq!(store.load_name(&acme).expect("load").config, None);
    store.commit(NameWrite::default()).expect("empty commit");
    store.flush().expect("flush");
}

fn corrupt_record_is_reported(e: Arc<dyn Engine>) {
    let acme = DepName::parse("acme").expect("name");
    e.commit(vec![Write::Put(
        field_key(&acme, Field::Tokens),
        vec![9, 9],
    )])
    .expect("commit");
    let store = Store::new(e);
    let err = store.load_name(&acme).expect_err("corrupt");
    let msg = err.to_string();
    assert!(
        msg.contains("n/acme/tokens") && msg.contains("version 9"),
        "{msg}"
    );
}

/// An engine wrapper that counts commits and can be told to fail them, to
/// prove a page is one batch and that a failed batch leaves nothing.
struct Flaky {
    inner: Arc<dyn Engine>,
    commits: std::sync::atomic::AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    /// The prefixes scanned, in order.
    scans: Mutex<Vec<Vec<u8>>>,
    flushes: std::sync::atomic::AtomicUsize,
    /// Flushes fail (batches still apply).
    fail_flush: std::sync::atomic::AtomicBool,
    /// Runs once, right after the next scan of a prefix starting with the
    /// given bytes has read its entries: another thread's write landing
    /// between a reader's scan and its next read.
    after_scan: Mutex<Option<AfterScan>>,
}

type AfterScan = (Vec<u8>, Box<dyn FnOnce(&dyn Engine) + Send>);

impl Flaky {
    fn new(inner: Arc<dyn Engine>) -> Self {
        Flaky {
            inner,
            commits: Default::default(),
            fail: Default::default(),
            scans: Default::default(),
            flushes: Default::default(),
            fail_flush: Default::default(),
            after_scan: Default::default(),
        }
    }
}

impl Engine for Flaky {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(prefix.to_vec());
        let found = self.inner.scan(prefix, after, limit)?;
        let mut hook = self
            .after_scan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hook.as_ref().is_some_and(|(p, _)| prefix.starts_with(p))
            && let Some((_, then)) = hook.take()
        {
            then(self.inner.as_ref());
        }
        Ok(found)
    }
    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Engine("injected failure".into()));
        }
        self.inner.apply(writes)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_flush.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Engine("injected flush failure".into()));
        }
        self.inner.flush()
    }
}

const T: i64 = 1_700_000_000;

fn device(serial: &str, op: &str, date: Option<&str>, status: &str, uuid: &str) -> Device {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Device {
        serial_number: serial.into(),
        op_type: some(op),
        op_date: date.map(Into::into),
        profile_status: some(status),
        profile_uuid: some(uuid),
        ..Default::default()
    }
}

fn sync_at(cursor: &str) -> StoredSync {
    StoredSync {
        phase: SyncPhase::Sync,
        cursor: Some(cursor.into()),
        cursor_unix: Some(T),
        last_cycle: None,
    }
}

fn apply(
    store: &Store,
    name: &DepName,
    devices: &[Device],
    fetched_until: Option<&str>,
    cursor: &str,
    now: i64,
) -> PageSummary {
    store
        .apply_page(
            name,
            PageApply {
                flush: true,
                text: None,
                devices,
                fetched_until,
                sync: &sync_at(cursor),
                outbox: None,
                assignments: AssignQueue::none(),
                now_unix: now,
            },
            |_| {},
        )
        .expect("apply page")
}

fn pending(now: i64) -> StoredAssignment {
    StoredAssignment {
        profile_uuid: "P".into(),
        result: AssignResult::Pending,
        attempts: 0,
        failures: 0,
        last_attempt_unix: None,
        next_retry_unix: Some(now),
        gave_up: false,
    }
}

/// A page's assignment queue decides from each candidate's stored record,
/// read in the page's own batch: what it returns is written, `None` keeps
/// the record (or its absence) as it is.
fn page_queues_assignments_from_stored_records(e: Arc<dyn Engine>) {
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
    let decide = |stored: Option<&StoredAssignment>| {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stored.map(|r| r.result));
        match stored {
            Some(r) if r.result == AssignResult::Pending => None,
            _ => Some(pending(T + 5)),
        }
    };
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

fn page_upserts_by_op_date(e: Arc<dyn Engine>) {
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

fn page_is_one_atomic_batch(inner: Arc<dyn Engine>) {
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
                    decide: &|_| Some(pending(T)),
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

fn inventory_query_and_counts(e: Arc<dyn Engine>) {
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

fn outbox_in_order(e: Arc<dyn Engine>) {
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

fn assignments_and_due_index(e: Arc<dyn Engine>) {
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

fn removals_window(e: Arc<dyn Engine>) {
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

fn segment_keys(e: &dyn Engine, kind: &str) -> usize {
    e.scan(format!("{kind}/acme\0").as_bytes(), None, usize::MAX)
        .expect("scan")
        .len()
}

/// The index is derived data: a store opened afresh on the same engine
/// answers exactly as the one that wrote, and superseded records neither
/// pile up nor come back.
fn index_rebuilds_and_segments_compact(e: Arc<dyn Engine>) {
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
fn legacy_layout_migrates(e: Arc<dyn Engine>) {
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

/// A page is flushed before `stored` hears of it when asked (another
/// request follows), and only applied otherwise (the cycle's last page).
fn pages_are_flushed_when_asked(inner: Arc<dyn Engine>) {
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
                    devices: &[device("S1", "added", None, "", "")],
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

/// A store opened without old-layout records never looks for them again,
/// and a name that never had a webhook event is not searched for one:
/// building a name's index reads only its two segment prefixes.
fn no_legacy_lookups_without_legacy_records(inner: Arc<dyn Engine>) {
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

/// A page read as sync reads it (devices as spans of its text) and applied
/// with its webhook event.
fn apply_text(store: &Store, name: &DepName, text: &str, event: &str, now: i64) -> PageSummary {
    let crate::dep::wire::SyncPage(page) = crate::dep::wire::SyncPage::parse(text).expect("page");
    store
        .apply_page(
            name,
            PageApply {
                flush: true,
                devices: &page.devices,
                text: Some(text),
                fetched_until: None,
                sync: &sync_at(&page.cursor),
                outbox: Some(OutboxEntry {
                    event_id: event.into(),
                    topic: "dep.SyncDevices".into(),
                    body: EventBody::AroundPage {
                        head: format!(r#"{{"event_id":"{event}","page":"#),
                        tail: "}".into(),
                    },
                }),
                assignments: AssignQueue::none(),
                now_unix: now,
            },
            |_| {},
        )
        .expect("apply page")
}

fn page_text(cursor: &str, serials: &[&str], date: &str) -> String {
    let devices: Vec<String> = serials
        .iter()
        .map(|s| {
            format!(
                r#"{{"serial_number":"{s}","op_type":"modified","op_date":"{date}","extra":{{"k":[1,"{cursor}"]}}}}"#
            )
        })
        .collect();
    format!(
        " {{\"cursor\":\"{cursor}\",\"devices\":[ {} ],\"more_to_follow\":false}}\n",
        devices.join(" , ")
    )
}

/// A page's text is stored once: the inventory's device texts are ranges
/// of it and its webhook event refers to it. It stays while either needs
/// it, in both orders of delivery and supersession, across a rebuilt
/// index, and goes with the last. (Pages of 100 devices: smaller segments
/// would be compacted, which copies their live records' texts.)
fn page_text_is_shared_by_inventory_and_event(e: Arc<dyn Engine>) {
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

/// A failed flush leaves the index describing what sled holds (the batch
/// was applied): reads and later writes go on, for pages and for
/// assignment answers.
fn a_failed_flush_leaves_the_index_right(inner: Arc<dyn Engine>) {
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

/// An event delivered and removed (with its page's text) by another
/// deliverer between a peek's scan and its read of the page is passed
/// over; a page text missing under an event that is still there is
/// reported.
fn a_peek_passes_over_an_event_removed_meanwhile(inner: Arc<dyn Engine>) {
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

fn run_all(make: &dyn Fn() -> Arc<dyn Engine>) {
    get_put_delete(make().as_ref());
    batch_applies_in_order(make().as_ref());
    scan_prefix_order_after_limit(make().as_ref());
    binary_keys_and_values(make().as_ref());
    typed_store(make());
    corrupt_record_is_reported(make());
    page_upserts_by_op_date(make());
    page_is_one_atomic_batch(make());
    page_queues_assignments_from_stored_records(make());
    inventory_query_and_counts(make());
    outbox_in_order(make());
    assignments_and_due_index(make());
    removals_window(make());
    index_rebuilds_and_segments_compact(make());
    legacy_layout_migrates(make());
    no_legacy_lookups_without_legacy_records(make());
    page_text_is_shared_by_inventory_and_event(make());
    pages_are_flushed_when_asked(make());
    a_failed_flush_leaves_the_index_right(make());
    a_peek_passes_over_an_event_removed_meanwhile(make());
}

#[test]
fn memory_engine_conforms() {
    run_all(&|| Arc::new(MemoryEngine::default()));
}

#[test]
fn sled_engine_conforms() {
    let dirs = std::cell::RefCell::new(Vec::new());
    run_all(&|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = SledEngine::open(dir.path()).expect("open sled");
        dirs.borrow_mut().push(dir);
        Arc::new(engine)
    });
}

#[test]
fn sled_commits_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = DepName::parse("acme").expect("name");
    let key = super::secrets::SecretsKey::generate().expect("key");
    {
        let store = Store::open_sled(dir.path(), key.clone()).expect("open");
        let mut w = NameWrite::default();
        w.put(&acme, Field::Meta, &StoredMeta { created_unix: 7 });
        store.commit(w).expect("commit");
    }
    let store = Store::open_sled(dir.path(), key).expect("reopen");
    assert_eq!(
        store.load_name(&acme).expect("load").meta,
        Some(StoredMeta { created_unix: 7 })
    );
}
