//! The MDM service's collections. Only the owner of a
//! device channel (the enrollment shard it hashes to) writes the keys of
//! that channel and its user channels, so its read-decide-commit sequences
//! cannot race; push certificates are written by the API, one topic at a
//! time; the event outbox takes sequence numbers from one counter.
//!
//! | key | value |
//! |---|---|
//! | `md/<D>` | [`StoredMdmDevice`] (sealed) |
//! | `mu/<id>` | [`StoredMdmUser`] |
//! | `me/<id>` | [`StoredEnrollment`] (sealed); a user channel's ID is `<D>:<user>`, so `me/<D>:` lists them |
//! | `mc/<uuid>` | [`StoredCommand`] |
//! | `mk/<uuid>\0<id>` | a target of the command still holding its entry or result (with `delete_finished_commands`) |
//! | `mq/<id>\0<seq: u64 BE>` | [`StoredQueueEntry`]: outstanding, in enqueue order |
//! | `mr/<id>\0<uuid>` | [`StoredResult`] |
//! | `mp/<topic>` | [`StoredPushCert`] (sealed) |
//! | `mi/<id>` | [`StoredInvalidToken`]: the push token APNs refused, written by the push path |
//! | `mah/<hash>` | the device channel a certificate hash was bound to |
//! | `mad/<D>` | the hash `D` is bound to now (latest wins) |
//! | `mo/<seq: u64 BE>` | [`StoredMdmEvent`]: webhook events waiting, in order |
//! | `ms/<serial>\0<D>` | device channel `D` authenticated with this serial number |
//!
//! Every write of a request goes in one batch with its webhook event and
//! is flushed before the device gets its answer: an answered request is
//! never lost, nor is its event.

mod push;
mod query;
mod records;

pub use query::EnrollmentQuery;
pub use records::*;

use super::record::{self, Record};
use super::{Store, StoreError, Write};
use crate::mdm::certauth::Facts;
use std::sync::PoisonError;

const DEVICE: &[u8] = b"md/";
const USER: &[u8] = b"mu/";
const ENROLLMENT: &[u8] = b"me/";
const COMMAND: &[u8] = b"mc/";
const COMMAND_REF: &[u8] = b"mk/";
const QUEUE: &[u8] = b"mq/";
const RESULT: &[u8] = b"mr/";
const PUSH_CERT: &[u8] = b"mp/";
const HASH_DEVICE: &[u8] = b"mah/";
const DEVICE_HASH: &[u8] = b"mad/";
const OUTBOX: &[u8] = b"mo/";
const SERIAL: &[u8] = b"ms/";
const INVALID_TOKEN: &[u8] = b"mi/";

/// The prefixes of sealed MDM records (key rotation reseals them).
pub(crate) const SEALED_PREFIXES: [&[u8]; 3] = [DEVICE, ENROLLMENT, PUSH_CERT];

fn k(kind: &[u8], id: &str) -> Vec<u8> {
    let mut key = kind.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn k2(kind: &[u8], id: &str, rest: &[u8]) -> Vec<u8> {
    let mut key = k(kind, id);
    key.push(0);
    key.extend_from_slice(rest);
    key
}

fn decode_at<R: Record>(key: &[u8], value: &[u8]) -> Result<R, StoreError> {
    record::decode(value).map_err(|source| StoreError::Record {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        source,
    })
}

/// The writes of one MDM request, committed atomically and durably.
#[derive(Debug, Default)]
pub struct MdmWrite {
    writes: Vec<Write>,
    sealed: Vec<usize>,
}

impl MdmWrite {
    fn put<R: Record>(&mut self, key: Vec<u8>, value: &R, sealed: bool) -> &mut Self {
        if sealed {
            self.sealed.push(self.writes.len());
        }
        self.writes.push(Write::Put(key, record::encode(value)));
        self
    }

    fn delete(&mut self, key: Vec<u8>) -> &mut Self {
        self.writes.push(Write::Delete(key));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn put_device(&mut self, d: &str, v: &StoredMdmDevice) -> &mut Self {
        self.put(k(DEVICE, d), v, true)
    }
    pub fn put_user(&mut self, id: &str, v: &StoredMdmUser) -> &mut Self {
        self.put(k(USER, id), v, false)
    }
    pub fn put_enrollment(&mut self, id: &str, v: &StoredEnrollment) -> &mut Self {
        self.put(k(ENROLLMENT, id), v, true)
    }
    pub fn put_command(&mut self, uuid: &str, v: &StoredCommand) -> &mut Self {
        self.put(k(COMMAND, uuid), v, false)
    }
    pub fn delete_command(&mut self, uuid: &str) -> &mut Self {
        self.delete(k(COMMAND, uuid))
    }
    pub fn put_command_ref(&mut self, uuid: &str, id: &str) -> &mut Self {
        self.writes
            .push(Write::Put(k2(COMMAND_REF, uuid, id.as_bytes()), Vec::new()));
        self
    }
    pub fn delete_command_ref(&mut self, uuid: &str, id: &str) -> &mut Self {
        self.delete(k2(COMMAND_REF, uuid, id.as_bytes()))
    }
    pub fn put_queue_entry(&mut self, id: &str, seq: u64, v: &StoredQueueEntry) -> &mut Self {
        self.put(k2(QUEUE, id, &seq.to_be_bytes()), v, false)
    }
    pub fn delete_queue_entry(&mut self, id: &str, seq: u64) -> &mut Self {
        self.delete(k2(QUEUE, id, &seq.to_be_bytes()))
    }
    pub fn put_result(&mut self, id: &str, uuid: &str, v: &StoredResult) -> &mut Self {
        self.put(k2(RESULT, id, uuid.as_bytes()), v, false)
    }
    pub fn delete_result(&mut self, id: &str, uuid: &str) -> &mut Self {
        self.delete(k2(RESULT, id, uuid.as_bytes()))
    }
    pub fn put_push_cert(&mut self, topic: &str, v: &StoredPushCert) -> &mut Self {
        self.put(k(PUSH_CERT, topic), v, true)
    }
    /// Binds device channel `d` to certificate hash `hash` (replacing its
    /// earlier binding; the earlier hash stays known).
    pub fn associate(&mut self, d: &str, hash: &str) -> &mut Self {
        self.writes
            .push(Write::Put(k(HASH_DEVICE, hash), d.as_bytes().to_vec()));
        self.writes
            .push(Write::Put(k(DEVICE_HASH, d), hash.as_bytes().to_vec()));
        self
    }
    pub fn put_event(&mut self, seq: u64, v: &StoredMdmEvent) -> &mut Self {
        self.put(
            k(OUTBOX, "").into_iter().chain(seq.to_be_bytes()).collect(),
            v,
            false,
        )
    }
}

impl Store {
    fn mdm_get<R: Record>(&self, key: &[u8], sealed: bool) -> Result<Option<R>, StoreError> {
        let Some(value) = self.engine.get(key)? else {
            return Ok(None);
        };
        if sealed && super::secrets::is_sealed(&value) {
            let plain = self.key.open(key, &value)?;
            return decode_at(key, &plain).map(Some);
        }
        decode_at(key, &value).map(Some)
    }

    /// Commits writes atomically and durably.
    pub fn mdm_commit(&self, write: MdmWrite) -> Result<(), StoreError> {
        self.mdm_apply(write)?;
        self.mdm_durable()
    }

    /// Applies one request's writes atomically: readers see them at once;
    /// they are durable after [`Store::mdm_durable`].
    pub fn mdm_apply(&self, write: MdmWrite) -> Result<(), StoreError> {
        if write.writes.is_empty() {
            return Ok(());
        }
        let mut writes = write.writes;
        for at in write.sealed {
            if let Some(Write::Put(key, value)) = writes.get_mut(at) {
                *value = self.key.seal(key, value)?;
            }
        }
        self.engine.apply(writes)
    }

    /// Returns once everything applied before the call is durable: one
    /// flush shared with every other caller of the moment (group commit).
    pub fn mdm_durable(&self) -> Result<(), StoreError> {
        self.group.durable(self.engine.as_ref())
    }

    /// [`Store::mdm_durable`] for async callers: they hold no thread while
    /// they wait; one of them runs the flush on the blocking pool.
    pub async fn mdm_durable_async(&self) -> Result<(), StoreError> {
        self.group_async.durable(self.engine.clone()).await
    }

    pub fn mdm_device(&self, d: &str) -> Result<Option<StoredMdmDevice>, StoreError> {
        self.mdm_get(&k(DEVICE, d), true)
    }

    pub fn mdm_user(&self, id: &str) -> Result<Option<StoredMdmUser>, StoreError> {
        self.mdm_get(&k(USER, id), false)
    }

    pub fn mdm_enrollment(&self, id: &str) -> Result<Option<StoredEnrollment>, StoreError> {
        self.mdm_get(&k(ENROLLMENT, id), true)
    }

    /// The user channels of device channel `d` that sent a `TokenUpdate`.
    pub fn mdm_user_enrollments(
        &self,
        d: &str,
    ) -> Result<Vec<(String, StoredEnrollment)>, StoreError> {
        let prefix = k(ENROLLMENT, &format!("{d}:"));
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = self.engine.scan(&prefix, after.as_deref(), 256)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (key, value) in batch {
                let plain = if super::secrets::is_sealed(&value) {
                    self.key.open(&key, &value)?
                } else {
                    value
                };
                let id = String::from_utf8_lossy(&key[ENROLLMENT.len()..]).into_owned();
                out.push((id, decode_at(&key, &plain)?));
            }
        }
        Ok(out)
    }

    pub fn mdm_command(&self, uuid: &str) -> Result<Option<StoredCommand>, StoreError> {
        self.mdm_get(&k(COMMAND, uuid), false)
    }

    /// Whether another target of the command still holds it.
    pub fn mdm_command_referenced(&self, uuid: &str) -> Result<bool, StoreError> {
        let mut prefix = k(COMMAND_REF, uuid);
        prefix.push(0);
        Ok(self.engine.first_key(&prefix)?.is_some())
    }

    /// The outstanding queue of an enrollment, in order.
    pub fn mdm_queue(&self, id: &str) -> Result<Vec<(u64, StoredQueueEntry)>, StoreError> {
        let prefix = k2(QUEUE, id, b"");
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = self.engine.scan(&prefix, after.as_deref(), 256)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (key, value) in batch {
                let Some(seq) = key[prefix.len()..].first_chunk::<8>() else {
                    continue;
                };
                out.push((u64::from_be_bytes(*seq), decode_at(&key, &value)?));
            }
        }
        Ok(out)
    }

    pub fn mdm_result(&self, id: &str, uuid: &str) -> Result<Option<StoredResult>, StoreError> {
        self.mdm_get(&k2(RESULT, id, uuid.as_bytes()), false)
    }

    pub fn mdm_push_cert(&self, topic: &str) -> Result<Option<StoredPushCert>, StoreError> {
        self.mdm_get(&k(PUSH_CERT, topic), true)
    }

    /// The stored facts certificate authorisation decides on.
    pub fn mdm_cert_facts(&self, d: &str, hash: &str) -> Result<Facts, StoreError> {
        let bound = self.engine.get(&k(DEVICE_HASH, d))?;
        Ok(Facts {
            associated: bound.as_deref() == Some(hash.as_bytes()),
            device_has_hash: bound.is_some(),
            hash_known: self.engine.get(&k(HASH_DEVICE, hash))?.is_some(),
        })
    }

    /// The device channel a certificate hash is bound to now, if any: the
    /// one it was bound to, provided that channel's binding is still it.
    pub fn mdm_enrollment_by_hash(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let Some(d) = self.engine.get(&k(HASH_DEVICE, hash))? else {
            return Ok(None);
        };
        let d = String::from_utf8_lossy(&d).into_owned();
        let current = self.engine.get(&k(DEVICE_HASH, &d))?;
        Ok((current.as_deref() == Some(hash.as_bytes())).then_some(d))
    }

    /// The next outbox sequence number (a process-wide counter, started
    /// past the last stored event).
    pub fn mdm_next_event_seq(&self) -> Result<u64, StoreError> {
        let mut next = self.mdm_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = match *next {
            Some(n) => n,
            None => {
                let mut last = 0u64;
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let batch = self.engine.scan(OUTBOX, after.as_deref(), 1024)?;
                    let Some((key, _)) = batch.last() else { break };
                    if let Some(seq) = key[OUTBOX.len()..].first_chunk::<8>() {
                        last = u64::from_be_bytes(*seq);
                    }
                    after = Some(key.clone());
                }
                last + 1
            }
        };
        *next = Some(seq + 1);
        Ok(seq)
    }

    /// The oldest `limit` MDM webhook events, in order.
    pub fn mdm_outbox_peek(&self, limit: usize) -> Result<Vec<(u64, StoredMdmEvent)>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.engine.scan(OUTBOX, None, limit)? {
            if let Some(seq) = key[OUTBOX.len()..].first_chunk::<8>() {
                out.push((u64::from_be_bytes(*seq), decode_at(&key, &value)?));
            }
        }
        Ok(out)
    }

    /// How many MDM webhook events wait (up to `cap`).
    pub fn mdm_outbox_len(&self, cap: usize) -> Result<usize, StoreError> {
        Ok(self.engine.scan(OUTBOX, None, cap)?.len())
    }

    /// Removes delivered events.
    pub fn mdm_outbox_remove(&self, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let writes = seqs
            .iter()
            .map(|s| Write::Delete(OUTBOX.iter().copied().chain(s.to_be_bytes()).collect()))
            .collect();
        self.engine.commit(writes)
    }
}
