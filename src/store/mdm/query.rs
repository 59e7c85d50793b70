//! Reading the MDM collections for people: enrollments by filter, a
//! channel's results, and the serial-number index that links an enrolled
//! device to its DEP inventory record.

use super::*;

/// Which enrollments `GET /v1/enrollments` lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrollmentQuery {
    /// [`crate::mdm::ids::EnrollType::code`].
    pub kind: Option<u8>,
    pub enabled: Option<bool>,
    pub topic: Option<String>,
    /// Last seen at or after (Unix seconds).
    pub seen_since: Option<i64>,
    /// Last seen before (Unix seconds).
    pub seen_before: Option<i64>,
    pub offset: usize,
    pub limit: usize,
}

impl EnrollmentQuery {
    fn matches(&self, e: &StoredEnrollment) -> bool {
        self.kind.is_none_or(|k| k == e.kind)
            && self.enabled.is_none_or(|v| v == e.enabled)
            && self.topic.as_deref().is_none_or(|t| t == e.topic)
            && self.seen_since.is_none_or(|t| e.last_seen_unix >= t)
            && self.seen_before.is_none_or(|t| e.last_seen_unix < t)
    }
}

impl MdmWrite {
    /// Indexes device channel `d` under its serial number.
    pub fn put_serial(&mut self, serial: &str, d: &str) -> &mut Self {
        self.writes
            .push(Write::Put(k2(SERIAL, serial, d.as_bytes()), Vec::new()));
        self
    }

    pub fn delete_serial(&mut self, serial: &str, d: &str) -> &mut Self {
        self.delete(k2(SERIAL, serial, d.as_bytes()))
    }
}

impl Store {
    /// Every entry of a prefix, in key order.
    pub(super) fn mdm_scan_all(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<crate::store::Entry>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = self.engine.scan(prefix, after.as_deref(), 1024)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            out.extend(batch);
        }
        Ok(out)
    }

    /// The enrollments matching `q`, in ID order: how many match, and the
    /// page `q.offset`, `q.limit`.
    pub fn mdm_enrollments(
        &self,
        q: &EnrollmentQuery,
    ) -> Result<(usize, Vec<(String, StoredEnrollment)>), StoreError> {
        let mut total = 0;
        let mut page = Vec::new();
        for (key, value) in self.mdm_scan_all(ENROLLMENT)? {
            let plain = if crate::store::secrets::is_sealed(&value) {
                self.key.open(&key, &value)?
            } else {
                value
            };
            let e: StoredEnrollment = decode_at(&key, &plain)?;
            if !q.matches(&e) {
                continue;
            }
            if total >= q.offset && page.len() < q.limit {
                page.push((
                    String::from_utf8_lossy(&key[ENROLLMENT.len()..]).into_owned(),
                    e,
                ));
            }
            total += 1;
        }
        Ok((total, page))
    }

    /// The latest result of every command reported by channel `id`.
    pub fn mdm_results(&self, id: &str) -> Result<Vec<(String, StoredResult)>, StoreError> {
        let prefix = k2(RESULT, id, b"");
        self.mdm_scan_all(&prefix)?
            .into_iter()
            .map(|(key, value)| {
                let uuid = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                Ok((uuid, decode_at(&key, &value)?))
            })
            .collect()
    }

    /// The device channels that authenticated with serial number `serial`.
    pub fn mdm_channels_of_serial(&self, serial: &str) -> Result<Vec<String>, StoreError> {
        if serial.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = k2(SERIAL, serial, b"");
        Ok(self
            .mdm_scan_all(&prefix)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect())
    }
}
