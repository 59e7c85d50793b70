//! One behavioural suite for every [`Engine`]; `sled` and `memory` must pass
//! the same checks, so code above the engine cannot tell them apart.

use super::*;

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

fn run_all(make: &dyn Fn() -> Arc<dyn Engine>) {
    get_put_delete(make().as_ref());
    batch_applies_in_order(make().as_ref());
    scan_prefix_order_after_limit(make().as_ref());
    binary_keys_and_values(make().as_ref());
    typed_store(make());
    corrupt_record_is_reported(make());
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
    {
        let store = Store::open_sled(dir.path()).expect("open");
        let mut w = NameWrite::default();
        w.put(&acme, Field::Meta, &StoredMeta { created_unix: 7 });
        store.commit(w).expect("commit");
    }
    let store = Store::open_sled(dir.path()).expect("reopen");
    assert_eq!(
        store.load_name(&acme).expect("load").meta,
        Some(StoredMeta { created_unix: 7 })
    );
}
