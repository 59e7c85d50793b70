//! What the push path keeps: the stored push certificates, and the push
//! tokens APNs refused. The push path writes `mi/` directly, not through
//! an enrollment shard: each record names the token it is about, so a
//! `TokenUpdate` racing with it cannot be undone by it.

use super::*;

impl MdmWrite {
    /// Forgets a refused token (a `TokenUpdate` brought a new one).
    pub fn delete_invalid_token(&mut self, id: &str) -> &mut Self {
        self.delete(k(INVALID_TOKEN, id))
    }
}

impl Store {
    /// Every stored push certificate, by topic.
    pub fn mdm_push_certs(&self) -> Result<Vec<(String, StoredPushCert)>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.mdm_scan_all(PUSH_CERT)? {
            let plain = if super::super::secrets::is_sealed(&value) {
                self.key.open(&key, &value)?
            } else {
                value
            };
            let topic = String::from_utf8_lossy(&key[PUSH_CERT.len()..]).into_owned();
            out.push((topic, decode_at(&key, &plain)?));
        }
        Ok(out)
    }

    /// The token APNs refused for enrollment `id`, if it is still the
    /// enrollment's token (`current_token_hex`).
    pub fn mdm_invalid_token(
        &self,
        id: &str,
        current_token_hex: &str,
    ) -> Result<Option<StoredInvalidToken>, StoreError> {
        let r: Option<StoredInvalidToken> = self.mdm_get(&k(INVALID_TOKEN, id), false)?;
        Ok(r.filter(|r| r.token_hex == current_token_hex))
    }

    /// Records that APNs refused the tokens (written and flushed together).
    pub fn mdm_mark_tokens_invalid(
        &self,
        marks: &[(String, StoredInvalidToken)],
    ) -> Result<(), StoreError> {
        let mut w = MdmWrite::default();
        for (id, r) in marks {
            w.put(k(INVALID_TOKEN, id), r, false);
        }
        self.mdm_commit(w)
    }
}
