use super::*;
use crate::settings::{FlagOverrides, Secret};
use crate::store::Store;
use time::macros::datetime;

fn tokens(ck: &str) -> Tokens {
    Tokens {
        consumer_key: ck.into(),
        consumer_secret: "cs".into(),
        access_token: "at".into(),
        access_secret: "as".into(),
        access_token_expiry_unix: 1,
    }
}

fn state() -> NameState {
    NameState::new(DepName::parse("acme").expect("name"), NameData::default())
}

fn apply(store: &Store, state: &mut NameState, change: Change) {
    store.commit(change.write).expect("commit");
    state.adopt(change.next);
}

#[test]
fn first_write_records_creation_and_persists_exactly_next() {
    let store = Store::memory();
    let mut s = state();
    assert!(!s.is_stored());
    let t0 = datetime!(2026-01-01 0:00 UTC);
    let c = s.put_tokens(&tokens("CK1"), false, t0).expect("put");
    apply(&store, &mut s, c);
    assert!(s.is_stored());
    assert_eq!(
        s.data().meta.as_ref().map(|m| m.created_unix),
        Some(t0.unix_timestamp())
    );
    assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
}

#[test]
fn consumer_key_change_needs_force() {
    let store = Store::memory();
    let mut s = state();
    let now = datetime!(2026-01-01 0:00 UTC);
    let c = s.put_tokens(&tokens("CK1"), false, now).expect("put");
    apply(&store, &mut s, c);
    let same = s.put_tokens(&tokens("CK1"), false, now);
    assert!(same.is_ok(), "same consumer key is a renewal");
    let err = s
        .put_tokens(&tokens("CK2"), false, now)
        .expect_err("mismatch");
    assert_eq!(
        err,
        RuleError::ConsumerKeyMismatch {
            stored: "CK1".into(),
            given: "CK2".into()
        }
    );
    let c = s.put_tokens(&tokens("CK2"), true, now).expect("forced");
    apply(&store, &mut s, c);
    assert_eq!(s.tokens().map(|t| t.consumer_key), Some("CK2".to_string()));
}

#[test]
fn base_url_falls_back_to_settings() {
    let settings = crate::settings::load(
        None,
        Vec::new(),
        &FlagOverrides {
            api_key: Some(Secret::new("k")),
            ..Default::default()
        },
    )
    .expect("settings");
    let store = Store::memory();
    let mut s = state();
    let now = datetime!(2026-01-01 0:00 UTC);
    assert_eq!(s.base_url(&settings), crate::settings::APPLE_BASE_URL);
    let c = s.put_base_url("http://127.0.0.1:1/p".into(), now);
    apply(&store, &mut s, c);
    assert_eq!(s.base_url(&settings), "http://127.0.0.1:1/p");
    let c = s.put_base_url(String::new(), now);
    apply(&store, &mut s, c);
    assert_eq!(s.base_url(&settings), crate::settings::APPLE_BASE_URL);
    assert_eq!(store.load_name(s.name()).expect("load").config, None);
}

#[test]
fn assigner_mod_time_changes_only_with_the_profile() {
    let store = Store::memory();
    let mut s = state();
    let t1 = datetime!(2026-01-01 0:00 UTC);
    let t2 = datetime!(2026-01-02 0:00 UTC);
    let c = s.put_assigner("P1".into(), t1);
    apply(&store, &mut s, c);
    let c = s.put_assigner("P1".into(), t2);
    apply(&store, &mut s, c);
    assert_eq!(
        s.data().assigner.as_ref().map(|a| a.modified_unix),
        Some(t1.unix_timestamp())
    );
    let c = s.put_assigner("P2".into(), t2);
    apply(&store, &mut s, c);
    let a = s.data().assigner.clone().expect("assigner");
    assert_eq!(
        (a.profile_uuid.as_str(), a.modified_unix),
        ("P2", t2.unix_timestamp())
    );
}

mod import_tests {
    use super::*;
    use crate::store::{CycleOutcome, Store, StoredCycle};
    use time::macros::datetime;

    #[test]
    fn imported_values_keep_nanodeps_times_and_the_last_cycle() {
        let store = Store::memory();
        let now = datetime!(2026-03-01 0:00 UTC);
        let modified = datetime!(2025-01-01 0:00 UTC);
        let cycle = StoredCycle {
            started_unix: 1,
            ended_unix: 2,
            outcome: CycleOutcome::Complete,
            error: None,
            pages: 1,
            counts: Default::default(),
        };
        let data = NameData {
            sync: Some(StoredSync {
                last_cycle: Some(cycle.clone()),
                ..StoredSync::default()
            }),
            ..NameData::default()
        };
        let mut s = NameState::new(DepName::parse("acme").expect("name"), data);
        let c = s.import_assigner("P1".into(), modified, now);
        store.commit(c.write).expect("commit");
        s.adopt(c.next);
        let c = s.import_sync_cursor("CUR".into(), now);
        store.commit(c.write).expect("commit");
        s.adopt(c.next);
        let stored = store.load_name(s.name()).expect("load");
        assert_eq!(
            stored.meta.map(|m| m.created_unix),
            Some(now.unix_timestamp())
        );
        assert_eq!(
            stored.assigner.map(|a| a.modified_unix),
            Some(modified.unix_timestamp())
        );
        let sync = stored.sync.expect("sync");
        assert_eq!(
            (sync.phase, sync.cursor.as_deref(), sync.last_cycle),
            (SyncPhase::Sync, Some("CUR"), Some(cycle))
        );
    }
}

mod pki_tests {
    use super::*;
    use crate::store::Store;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn pki(tag: &str) -> PkiPem {
        PkiPem {
            cert_pem: format!("cert {tag}").into_bytes(),
            key_pem: format!("key {tag}").into_bytes(),
        }
    }

    fn tokens(ck: &str) -> Tokens {
        Tokens {
            consumer_key: ck.into(),
            consumer_secret: "cs".into(),
            access_token: "at".into(),
            access_secret: "as".into(),
            access_token_expiry_unix: 1,
        }
    }

    fn apply(store: &Store, state: &mut NameState, change: Change) {
        store.commit(change.write).expect("commit");
        state.adopt(change.next);
    }

    fn staged(store: &Store, tag: &str) -> NameState {
        let mut s = NameState::new(DepName::parse("acme").expect("name"), NameData::default());
        let c = s.put_pki_staging(&pki(tag), NOW);
        apply(store, &mut s, c);
        s
    }

    #[test]
    fn renewal_with_the_current_pair_keeps_staging_and_checks_the_key() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        assert_eq!(
            s.renew_with_current_pki(&tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::CurrentChanged),
            "no current pair yet"
        );
        let c = s
            .promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(&pki("B"), NOW);
        apply(&store, &mut s, c);
        let mut renewed = tokens("CK1");
        renewed.access_token = "at2".into();
        let c = s
            .renew_with_current_pki(&renewed, b"cert A", false, NOW)
            .expect("renew");
        apply(&store, &mut s, c);
        assert_eq!(s.pki_current(), Some(pki("A")));
        assert_eq!(s.pki_staging(), Some(pki("B")), "staging stays staged");
        assert_eq!(s.tokens(), Some(renewed));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
        let before = s.data().clone();
        assert_eq!(
            s.renew_with_current_pki(&tokens("CK1"), b"cert B", false, NOW)
                .err(),
            Some(PkiRuleError::CurrentChanged)
        );
        assert!(matches!(
            s.renew_with_current_pki(&tokens("CK2"), b"cert A", false, NOW),
            Err(PkiRuleError::Tokens(RuleError::ConsumerKeyMismatch { .. }))
        ));
        assert_eq!(s.data(), &before);
        s.renew_with_current_pki(&tokens("CK2"), b"cert A", true, NOW)
            .expect("force replaces the consumer key");
    }

    #[test]
    fn staging_replaces_staging_but_not_current() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        assert!(s.is_stored(), "staging a pair creates the name");
        let c = s
            .promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(&pki("B"), NOW);
        apply(&store, &mut s, c);
        assert_eq!(s.pki_current(), Some(pki("A")));
        assert_eq!(s.pki_staging(), Some(pki("B")));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
    }

    #[test]
    fn promotion_stores_tokens_and_empties_staging() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        let c = s
            .promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        assert_eq!(s.pki_current(), Some(pki("A")));
        assert_eq!(s.pki_staging(), None);
        assert_eq!(s.tokens(), Some(tokens("CK1")));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
        assert_eq!(
            s.promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::NoStaging)
        );
    }

    #[test]
    fn refused_promotions_change_nothing() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        let c = s
            .promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(&pki("B"), NOW);
        apply(&store, &mut s, c);
        let before = s.data().clone();

        let mismatch = s.promote_pki_staging(&tokens("CK2"), b"cert B", false, NOW);
        assert!(matches!(
            mismatch,
            Err(PkiRuleError::Tokens(RuleError::ConsumerKeyMismatch { .. }))
        ));
        assert_eq!(
            s.promote_pki_staging(&tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::StagingChanged)
        );
        assert_eq!(s.data(), &before);

        let c = s
            .promote_pki_staging(&tokens("CK2"), b"cert B", true, NOW)
            .expect("forced");
        apply(&store, &mut s, c);
        assert_eq!(s.pki_current(), Some(pki("B")));
        assert_eq!(s.tokens(), Some(tokens("CK2")));
    }
}
