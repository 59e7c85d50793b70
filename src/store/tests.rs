use super::*;
use crate::dep::wire::Device;
use std::sync::PoisonError;

/// A fetch page of `devices` without assignment work or webhook event.
fn page<'a>(devices: &'a [DeviceIn<'a>], sync: &'a StoredSync) -> PageApply<'a> {
    PageApply {
        flush: true,
        text: None,
        devices,
        fetched_until: None,
        sync,
        outbox: None,
        assignments: AssignQueue::none(),
        now_unix: 1,
    }
}

/// Stores `count` devices (serials `{name}000`…) for each of `names`.
fn fill(store: &Store, names: &[&str], count: usize) -> Vec<DepName> {
    let names: Vec<DepName> = names
        .iter()
        .map(|n| DepName::parse(n).expect("name"))
        .collect();
    for name in &names {
        let devices: Vec<Device> = (0..count)
            .map(|i| Device {
                serial_number: format!("{name}{i:03}"),
                ..Default::default()
            })
            .collect();
        let devices = conformance::inventory::input(&devices);
        store
            .apply_page(name, page(&devices, &StoredSync::default()), |_| {})
            .expect("apply");
    }
    names
}

#[test]
fn a_page_is_reported_stored_once_committed_and_indexed_with_the_index_free() {
    let store = Store::memory();
    let name = DepName::parse("a").expect("name");
    let devices = [Device {
        serial_number: "S1".into(),
        ..Default::default()
    }];
    let devices = conformance::inventory::input(&devices);
    let mut heard = Vec::new();
    let summary = store
        .apply_page(&name, page(&devices, &StoredSync::default()), |summary| {
            let stored = store.engine.scan(b"", None, usize::MAX).expect("scan");
            let cache = store.indexes.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = cache
                .slots
                .get(&name)
                .map(|c| c.slot.clone())
                .expect("slot");
            drop(cache);
            // Committed, in the index, and the index is free (the
            // flush ran without it).
            let indexed = slot
                .try_lock()
                .ok()
                .and_then(|g| g.as_ref().map(|ix| ix.device("S1").is_some()));
            heard.push((summary.upserted, !stored.is_empty(), indexed));
        })
        .expect("apply");
    assert_eq!(heard, [(1, true, Some(true))]);
    assert_eq!(summary.upserted, 1);
    assert!(store.device(&name, "S1").expect("read").is_some());
}

#[test]
fn small_indexes_are_dropped_and_rebuilt() {
    let store = Store::memory();
    store
        .indexes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .max_small = 250;
    let names = fill(&store, &["a", "b", "c"], 100);
    let loaded = |name: &DepName| {
        let cache = store.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = cache.slots.get(name).map(|c| c.slot.clone()).expect("slot");
        drop(cache);
        slot.lock().map(|g| g.is_some()).unwrap_or(false)
    };
    assert!(!loaded(&names[0]), "the least recently used went");
    assert!(loaded(&names[2]));
    // Rebuilt on use, with everything in it.
    assert_eq!(store.device_counts(&names[0]).expect("counts").total, 100);
    assert!(store.device(&names[0], "a042").expect("get").is_some());
    assert!(loaded(&names[0]));
}

#[test]
fn idle_release_forgets_small_indexes_not_in_use() {
    let store = Store::memory();
    let names = fill(&store, &["a", "b"], 10);
    // "b" is in use: someone holds its slot.
    let held = store
        .indexes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .slot(&names[1]);
    assert_eq!(store.release_idle_memory(), 10, "only a's serials");
    let cache = store.indexes.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(!cache.slots.contains_key(&names[0]));
    assert!(cache.slots.contains_key(&names[1]));
    assert_eq!(cache.small_serials, 10);
    drop((cache, held));
    // Rebuilt on use, with everything in it.
    assert_eq!(store.device_counts(&names[0]).expect("counts").total, 10);
    assert!(store.device(&names[0], "a007").expect("get").is_some());
    assert_eq!(store.release_idle_memory(), 20);
    assert!(
        store
            .indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .is_empty()
    );
}
