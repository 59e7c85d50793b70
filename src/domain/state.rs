//! The rules for one DEP name's stored state, as a plain struct: each
//! operation checks its preconditions and returns a [`Change`] (the writes
//! to commit and the state that results) without touching anything. The
//! DEP-name actor commits the writes and only then adopts the new state, so
//! a failed commit leaves memory and disk as they were.

use crate::domain::name::DepName;
use crate::settings::Settings;
use crate::store::{
    Field, NameData, NameWrite, StoredAssigner, StoredConfig, StoredMeta, StoredPki, StoredSync,
    StoredTokens, SyncPhase,
};
use time::OffsetDateTime;

/// A checked modification: commit `write`, then adopt `next`.
#[derive(Debug)]
pub struct Change {
    pub write: NameWrite,
    pub next: NameData,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "the uploaded tokens have consumer key {given:?} but this DEP name has {stored:?}; \
         use force=1 to replace them"
    )]
    ConsumerKeyMismatch { stored: String, given: String },
}

/// One name's state in memory, mirroring what is stored.
#[derive(Debug, Clone)]
pub struct NameState {
    name: DepName,
    data: NameData,
}

impl NameState {
    pub fn new(name: DepName, data: NameData) -> Self {
        NameState { name, data }
    }

    pub fn name(&self) -> &DepName {
        &self.name
    }

    pub fn data(&self) -> &NameData {
        &self.data
    }

    /// Whether anything is stored for this name.
    pub fn is_stored(&self) -> bool {
        self.data.meta.is_some()
    }

    pub fn adopt(&mut self, next: NameData) {
        self.data = next;
    }

    /// Starts a change, recording the name's creation time on its first write.
    fn begin(&self, now: OffsetDateTime) -> Change {
        let mut change = Change {
            write: NameWrite::default(),
            next: self.data.clone(),
        };
        if self.data.meta.is_none() {
            let meta = StoredMeta {
                created_unix: now.unix_timestamp(),
            };
            change.write.put(&self.name, Field::Meta, &meta);
            change.next.meta = Some(meta);
        }
        change
    }

    /// Stores new OAuth tokens. A different consumer key than the stored
    /// one means the tokens belong to another MDM server in Apple's portal
    /// (or the server was renewed by another admin): refused unless forced.
    pub fn put_tokens(
        &self,
        tokens: StoredTokens,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Change, RuleError> {
        if let Some(stored) = &self.data.tokens
            && stored.consumer_key != tokens.consumer_key
            && !force
        {
            return Err(RuleError::ConsumerKeyMismatch {
                stored: stored.consumer_key.clone(),
                given: tokens.consumer_key,
            });
        }
        let mut change = self.begin(now);
        change.write.put(&self.name, Field::Tokens, &tokens);
        change.next.tokens = Some(tokens);
        Ok(change)
    }

    /// The base URL in effect: the stored one, else the configured default.
    pub fn base_url<'a>(&'a self, settings: &'a Settings) -> &'a str {
        match &self.data.config {
            Some(c) => &c.base_url,
            None => settings.default_base_url(&self.name),
        }
    }

    /// Stores a base URL (already validated); an empty one removes the
    /// stored URL so the configured default applies again.
    pub fn put_base_url(&self, base_url: String, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        if base_url.is_empty() {
            change.write.delete(&self.name, Field::Config);
            change.next.config = None;
        } else {
            let config = StoredConfig { base_url };
            change.write.put(&self.name, Field::Config, &config);
            change.next.config = Some(config);
        }
        change
    }

    /// Sets the assigner profile. The modification time changes only when
    /// the profile does, so re-sending the same UUID is a no-op for the
    /// assigner.
    pub fn put_assigner(&self, profile_uuid: String, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        if let Some(current) = &self.data.assigner
            && current.profile_uuid == profile_uuid
        {
            return change;
        }
        let assigner = StoredAssigner {
            profile_uuid,
            modified_unix: now.unix_timestamp(),
        };
        change.write.put(&self.name, Field::Assigner, &assigner);
        change.next.assigner = Some(assigner);
        change
    }
}

/// Why a token-PKI change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiRuleError {
    #[error(
        "no staging certificate exists for this DEP name; download one with GET /v1/tokenpki first"
    )]
    NoStaging,
    #[error(
        "the staging certificate was replaced while the token file was being decrypted; upload the token file again"
    )]
    StagingChanged,
    #[error(
        "the current certificate was replaced while the token file was being decrypted; upload the token file again"
    )]
    CurrentChanged,
    #[error(transparent)]
    Tokens(#[from] RuleError),
}

/// Token PKI: a new key pair is staged; only a successful token upload
/// promotes it, so the current key keeps signing until then.
impl NameState {
    /// Stores a freshly generated pair as the staging pair, replacing any
    /// earlier staging pair; the current pair is untouched.
    pub fn put_pki_staging(&self, pki: StoredPki, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        change.write.put(&self.name, Field::PkiStaging, &pki);
        change.next.pki_staging = Some(pki);
        change
    }

    /// Stores tokens decrypted with the staging pair and promotes that pair
    /// to current, all in one change. `staging_cert_pem` is the certificate
    /// the caller decrypted with: if staging changed meanwhile, nothing
    /// happens. The consumer-key check comes first, so a refused upload
    /// promotes nothing. Nothing stays staged afterwards (as in NanoDEP):
    /// staging always means "waiting for a token file".
    pub fn promote_pki_staging(
        &self,
        tokens: StoredTokens,
        staging_cert_pem: &[u8],
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Change, PkiRuleError> {
        let staging = self
            .data
            .pki_staging
            .as_ref()
            .ok_or(PkiRuleError::NoStaging)?;
        if staging.cert_pem != staging_cert_pem {
            return Err(PkiRuleError::StagingChanged);
        }
        let mut change = self.put_tokens(tokens, force, now)?;
        change.write.put(&self.name, Field::PkiCurrent, staging);
        change.write.delete(&self.name, Field::PkiStaging);
        change.next.pki_current = Some(staging.clone());
        change.next.pki_staging = None;
        Ok(change)
    }

    /// Stores tokens from a renewal: a token file decrypted with the
    /// current pair, which Apple encrypts to the certificate already
    /// registered for the MDM server. Nothing is promoted and a staging pair,
    /// if any, stays staged. `current_cert_pem` is the certificate the caller
    /// decrypted with: if the current pair changed meanwhile, nothing
    /// happens. The consumer-key check applies as for any token upload.
    pub fn renew_with_current_pki(
        &self,
        tokens: StoredTokens,
        current_cert_pem: &[u8],
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Change, PkiRuleError> {
        let current = self
            .data
            .pki_current
            .as_ref()
            .ok_or(PkiRuleError::CurrentChanged)?;
        if current.cert_pem != current_cert_pem {
            return Err(PkiRuleError::CurrentChanged);
        }
        Ok(self.put_tokens(tokens, force, now)?)
    }
}

/// Carrying state over from NanoDEP (`depd import-nanodep`): values that
/// the API cannot set directly because, in NanoDEP, they were already the
/// result of an API flow.
impl NameState {
    /// Stores a current key pair as is: NanoDEP promoted it already.
    pub fn import_pki_current(&self, pki: StoredPki, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        change.write.put(&self.name, Field::PkiCurrent, &pki);
        change.next.pki_current = Some(pki);
        change
    }

    /// Sets the assigner with NanoDEP's modification time (which decides
    /// which devices count as new to it), not the time of the import.
    pub fn import_assigner(
        &self,
        profile_uuid: String,
        modified: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Change {
        let mut change = self.begin(now);
        let assigner = StoredAssigner {
            profile_uuid,
            modified_unix: modified.unix_timestamp(),
        };
        change.write.put(&self.name, Field::Assigner, &assigner);
        change.next.assigner = Some(assigner);
        change
    }

    /// Continues from NanoDEP's cursor: the next cycle asks Apple for the
    /// changes since it (`/devices/sync`) instead of fetching everything.
    /// The last cycle's record, if any, stays.
    pub fn import_sync_cursor(&self, cursor: String, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        let sync = StoredSync {
            phase: SyncPhase::Sync,
            cursor: Some(cursor),
            // NanoDEP does not record when Apple handed the cursor out.
            cursor_unix: None,
            last_cycle: self.data.sync.as_ref().and_then(|s| s.last_cycle.clone()),
        };
        change.write.put(&self.name, Field::Sync, &sync);
        change.next.sync = Some(sync);
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{FlagOverrides, Secret};
    use crate::store::Store;
    use time::macros::datetime;

    fn tokens(ck: &str) -> StoredTokens {
        StoredTokens {
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
        let c = s.put_tokens(tokens("CK1"), false, t0).expect("put");
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
        let c = s.put_tokens(tokens("CK1"), false, now).expect("put");
        apply(&store, &mut s, c);
        let same = s.put_tokens(tokens("CK1"), false, now);
        assert!(same.is_ok(), "same consumer key is a renewal");
        let err = s
            .put_tokens(tokens("CK2"), false, now)
            .expect_err("mismatch");
        assert_eq!(
            err,
            RuleError::ConsumerKeyMismatch {
                stored: "CK1".into(),
                given: "CK2".into()
            }
        );
        let c = s.put_tokens(tokens("CK2"), true, now).expect("forced");
        apply(&store, &mut s, c);
        assert_eq!(
            s.data().tokens.as_ref().map(|t| t.consumer_key.as_str()),
            Some("CK2")
        );
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
}

#[cfg(test)]
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

#[cfg(test)]
mod pki_tests {
    use super::*;
    use crate::store::Store;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn pki(tag: &str) -> StoredPki {
        StoredPki {
            cert_pem: format!("cert {tag}").into_bytes(),
            key_pem: format!("key {tag}").into_bytes(),
        }
    }

    fn tokens(ck: &str) -> StoredTokens {
        StoredTokens {
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
        let c = s.put_pki_staging(pki(tag), NOW);
        apply(store, &mut s, c);
        s
    }

    #[test]
    fn renewal_with_the_current_pair_keeps_staging_and_checks_the_key() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        assert_eq!(
            s.renew_with_current_pki(tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::CurrentChanged),
            "no current pair yet"
        );
        let c = s
            .promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(pki("B"), NOW);
        apply(&store, &mut s, c);
        let mut renewed = tokens("CK1");
        renewed.access_token = "at2".into();
        let c = s
            .renew_with_current_pki(renewed.clone(), b"cert A", false, NOW)
            .expect("renew");
        apply(&store, &mut s, c);
        assert_eq!(s.data().pki_current, Some(pki("A")));
        assert_eq!(s.data().pki_staging, Some(pki("B")), "staging stays staged");
        assert_eq!(s.data().tokens, Some(renewed));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
        let before = s.data().clone();
        assert_eq!(
            s.renew_with_current_pki(tokens("CK1"), b"cert B", false, NOW)
                .err(),
            Some(PkiRuleError::CurrentChanged)
        );
        assert!(matches!(
            s.renew_with_current_pki(tokens("CK2"), b"cert A", false, NOW),
            Err(PkiRuleError::Tokens(RuleError::ConsumerKeyMismatch { .. }))
        ));
        assert_eq!(s.data(), &before);
        s.renew_with_current_pki(tokens("CK2"), b"cert A", true, NOW)
            .expect("force replaces the consumer key");
    }

    #[test]
    fn staging_replaces_staging_but_not_current() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        assert!(s.is_stored(), "staging a pair creates the name");
        let c = s
            .promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(pki("B"), NOW);
        apply(&store, &mut s, c);
        assert_eq!(s.data().pki_current, Some(pki("A")));
        assert_eq!(s.data().pki_staging, Some(pki("B")));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
    }

    #[test]
    fn promotion_stores_tokens_and_empties_staging() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        let c = s
            .promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        assert_eq!(s.data().pki_current, Some(pki("A")));
        assert_eq!(s.data().pki_staging, None);
        assert_eq!(s.data().tokens, Some(tokens("CK1")));
        assert_eq!(&store.load_name(s.name()).expect("load"), s.data());
        assert_eq!(
            s.promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::NoStaging)
        );
    }

    #[test]
    fn refused_promotions_change_nothing() {
        let store = Store::memory();
        let mut s = staged(&store, "A");
        let c = s
            .promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
            .expect("promote");
        apply(&store, &mut s, c);
        let c = s.put_pki_staging(pki("B"), NOW);
        apply(&store, &mut s, c);
        let before = s.data().clone();

        let mismatch = s.promote_pki_staging(tokens("CK2"), b"cert B", false, NOW);
        assert!(matches!(
            mismatch,
            Err(PkiRuleError::Tokens(RuleError::ConsumerKeyMismatch { .. }))
        ));
        assert_eq!(
            s.promote_pki_staging(tokens("CK1"), b"cert A", false, NOW)
                .err(),
            Some(PkiRuleError::StagingChanged)
        );
        assert_eq!(s.data(), &before);

        let c = s
            .promote_pki_staging(tokens("CK2"), b"cert B", true, NOW)
            .expect("forced");
        apply(&store, &mut s, c);
        assert_eq!(s.data().pki_current, Some(pki("B")));
        assert_eq!(s.data().tokens, Some(tokens("CK2")));
    }
}
