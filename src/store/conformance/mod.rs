//! One behavioural suite for every [`Engine`]; `sled` and `memory` must pass
//! the same checks, so code above the engine cannot tell them apart.
//!
//! The engine's contract (get, put, delete, ordered prefix scans, atomic
//! batches) is checked here; `inventory.rs` checks the typed store and the
//! inventory built on it, over each engine. Every scenario is its own test
//! per engine (`memory::…`, `sled::…`), so one failure hides no other.

use super::*;

pub(in crate::store) mod inventory;
mod mdm;
use inventory::*;
use mdm::*;

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

/// A fresh memory engine.
fn memory_engine() -> (Option<tempfile::TempDir>, Arc<dyn Engine>) {
    (None, Arc::new(MemoryEngine::default()))
}

/// A fresh sled engine in a temporary directory (kept for the test).
fn sled_engine() -> (Option<tempfile::TempDir>, Arc<dyn Engine>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = SledEngine::open(dir.path()).expect("open sled");
    (Some(dir), Arc::new(engine))
}

/// One `#[test]` per scenario and engine: engine scenarios take
/// `&dyn Engine`, store scenarios `Arc<dyn Engine>`.
macro_rules! per_engine {
    ($engine:ident: engine [$($e:ident),* $(,)?] store [$($s:ident),* $(,)?]) => {
        mod $engine {
            $(
                #[test]
                fn $e() {
                    let (_dir, engine) = super::$engine();
                    super::$e(engine.as_ref());
                }
            )*
            $(
                #[test]
                fn $s() {
                    let (_dir, engine) = super::$engine();
                    super::$s(engine);
                }
            )*
        }
    };
}

per_engine!(memory_engine: engine [get_put_delete, batch_applies_in_order, scan_prefix_order_after_limit, binary_keys_and_values] store [typed_store, corrupt_record_is_reported, page_upserts_by_op_date, page_is_one_atomic_batch, page_queues_assignments_from_stored_records, inventory_query_and_counts, outbox_in_order, assignments_and_due_index, removals_window, index_rebuilds_and_segments_compact, legacy_layout_migrates, no_legacy_lookups_without_legacy_records, page_text_is_shared_by_inventory_and_event, pages_are_flushed_when_asked, a_failed_flush_leaves_the_index_right, a_peek_passes_over_an_event_removed_meanwhile, mdm_enroll_tally_and_reenroll, mdm_certauth, mdm_queue_walkthrough, mdm_check_out_disables_and_keeps_the_queue, mdm_user_channels_follow_their_device, mdm_finished_commands_can_be_deleted, mdm_events_queue_in_order]);
per_engine!(sled_engine: engine [get_put_delete, batch_applies_in_order, scan_prefix_order_after_limit, binary_keys_and_values] store [typed_store, corrupt_record_is_reported, page_upserts_by_op_date, page_is_one_atomic_batch, page_queues_assignments_from_stored_records, inventory_query_and_counts, outbox_in_order, assignments_and_due_index, removals_window, index_rebuilds_and_segments_compact, legacy_layout_migrates, no_legacy_lookups_without_legacy_records, page_text_is_shared_by_inventory_and_event, pages_are_flushed_when_asked, a_failed_flush_leaves_the_index_right, a_peek_passes_over_an_event_removed_meanwhile, mdm_enroll_tally_and_reenroll, mdm_certauth, mdm_queue_walkthrough, mdm_check_out_disables_and_keeps_the_queue, mdm_user_channels_follow_their_device, mdm_finished_commands_can_be_deleted, mdm_events_queue_in_order]);

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
