//! The rules for one DEP name's stored state, as a plain struct: each
//! operation checks its preconditions and returns a [`Change`] (the writes
//! to commit and the state that results) without touching anything. The
//! DEP-name actor commits the writes and only then adopts the new state, so
//! a failed commit leaves memory and disk as they were.

use crate::domain::name::DepName;
use crate::domain::tokens::{PkiPem, Tokens};
use crate::settings::Settings;
use crate::store::{
    Field, NameData, NameWrite, StoredAssigner, StoredConfig, StoredMeta, StoredPki,
    StoredProfiles, StoredRules, StoredSync, StoredTokens, SyncPhase,
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

    /// The name's OAuth tokens, if any.
    pub fn tokens(&self) -> Option<Tokens> {
        self.data.tokens.as_ref().map(Tokens::from)
    }

    /// When the name's access token expires (Unix seconds), if it has one.
    pub fn token_expiry_unix(&self) -> Option<i64> {
        self.data
            .tokens
            .as_ref()
            .map(|t| t.access_token_expiry_unix)
    }

    /// Whether the name has OAuth tokens.
    pub fn has_tokens(&self) -> bool {
        self.data.tokens.is_some()
    }

    /// The staging token-PKI pair, if one waits for a token file.
    pub fn pki_staging(&self) -> Option<PkiPem> {
        self.data.pki_staging.as_ref().map(PkiPem::from)
    }

    /// The current token-PKI pair, if any.
    pub fn pki_current(&self) -> Option<PkiPem> {
        self.data.pki_current.as_ref().map(PkiPem::from)
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
        tokens: &Tokens,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Change, RuleError> {
        if let Some(stored) = &self.data.tokens
            && stored.consumer_key != tokens.consumer_key
            && !force
        {
            return Err(RuleError::ConsumerKeyMismatch {
                stored: stored.consumer_key.clone(),
                given: tokens.consumer_key.clone(),
            });
        }
        let tokens = StoredTokens::from(tokens);
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

    /// Replaces the assignment rules (checked by the caller) with `json`;
    /// `None` removes them.
    pub fn put_rules(&self, json: Option<String>, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        match json {
            None => {
                change.write.delete(&self.name, Field::Rules);
                change.next.rules = None;
            }
            Some(json) => {
                let rules = StoredRules {
                    json,
                    modified_unix: now.unix_timestamp(),
                };
                change.write.put(&self.name, Field::Rules, &rules);
                change.next.rules = Some(rules);
            }
        }
        change
    }

    /// Replaces the managed profiles with `json` (checked by the caller).
    pub fn put_profiles(&self, json: String, now: OffsetDateTime) -> Change {
        let mut change = self.begin(now);
        let profiles = StoredProfiles { json };
        change.write.put(&self.name, Field::Profiles, &profiles);
        change.next.profiles = Some(profiles);
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
    pub fn put_pki_staging(&self, pki: &PkiPem, now: OffsetDateTime) -> Change {
        let pki = StoredPki::from(pki);
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
        tokens: &Tokens,
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
        tokens: &Tokens,
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
    pub fn import_pki_current(&self, pki: &PkiPem, now: OffsetDateTime) -> Change {
        let pki = StoredPki::from(pki);
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
mod tests;
