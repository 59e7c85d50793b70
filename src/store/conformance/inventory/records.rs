//! Typed records over an engine: round trips, and damage reported.

use super::*;

pub(in crate::store::conformance) fn typed_store(e: Arc<dyn Engine>) {
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

pub(in crate::store::conformance) fn corrupt_record_is_reported(e: Arc<dyn Engine>) {
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
