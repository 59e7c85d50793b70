//! The per-name collections of the sync loop: device inventory, assignment
//! records (with an index by due time), webhook outbox and profile removals
//! made through depd.
//!
//! Key layout (`<name>` is the DEP name, which cannot contain NUL):
//!
//! | key | value |
//! |---|---|
//! | `d/<name>\0<serial>` | [`StoredDevice`] |
//! | `a/<name>\0<serial>` | [`StoredAssignment`] |
//! | `t/<name>\0<due: u64 BE><serial>` | [`StoredDueMark`]: an assignment is due at `due` |
//! | `o/<name>\0<seq: u64 BE>` | [`StoredOutboxEntry`] |
//! | `q/<name>\0` | [`StoredOutboxSeq`]: the next outbox sequence number |
//! | `r/<name>\0<serial>` | [`StoredRemoval`] |
//!
//! Big-endian numbers make key order the numeric order, so the oldest outbox
//! entry and the earliest due assignment are the first keys of their prefix.
//! Only a name's actor writes these keys, so its read-then-commit sequences
//! (read the stored records, decide, commit one batch) cannot race.

use super::record::{self, Record, StoredDueMark, StoredOutboxSeq, StoredRemoval};
use super::{
    Field, Store, StoreError, StoredAssignment, StoredDevice, StoredOutboxEntry, StoredSync, Write,
    field_key,
};
use crate::dep::wire::Device;
use crate::name::DepName;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DEVICE: &[u8] = b"d/";
const ASSIGNMENT: &[u8] = b"a/";
const DUE: &[u8] = b"t/";
const OUTBOX: &[u8] = b"o/";
const OUTBOX_SEQ: &[u8] = b"q/";
const REMOVAL: &[u8] = b"r/";

/// How many entries one engine scan reads while walking a collection.
const SCAN_CHUNK: usize = 1024;

fn prefix(kind: &[u8], name: &DepName) -> Vec<u8> {
    let mut key = kind.to_vec();
    key.extend_from_slice(name.as_str().as_bytes());
    key.push(0);
    key
}

fn key(kind: &[u8], name: &DepName, rest: &[u8]) -> Vec<u8> {
    let mut key = prefix(kind, name);
    key.extend_from_slice(rest);
    key
}

fn due_key(name: &DepName, due_unix: i64, serial: &str) -> Vec<u8> {
    // Times before 1970 do not occur; clamping keeps the key well-formed.
    let due = u64::try_from(due_unix).unwrap_or(0);
    let mut key = prefix(DUE, name);
    key.extend_from_slice(&due.to_be_bytes());
    key.extend_from_slice(serial.as_bytes());
    key
}

fn decode_at<R: Record>(key: &[u8], value: &[u8]) -> Result<R, StoreError> {
    record::decode(value).map_err(|source| StoreError::Record {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        source,
    })
}

fn suffix_str(key: &[u8], prefix_len: usize) -> String {
    String::from_utf8_lossy(&key[prefix_len..]).into_owned()
}

/// An RFC 3339 time as unix seconds; `None` when absent or unparseable
/// (such an event then counts as newest, as Apple's order says).
fn parse_time(text: Option<&str>) -> Option<i64> {
    let text = text?.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Whether an event dated `new` is older than the stored record dated
/// `old`. Equal dates apply (the later event of a page wins), and an event
/// without a date is taken as the newest, since Apple sends events in order.
fn is_stale(new: Option<i64>, old: Option<i64>) -> bool {
    matches!((new, old), (Some(new), Some(old)) if new < old)
}

fn stored_device(
    device: &Device,
    op_date_unix: Option<i64>,
    first_seen_unix: i64,
    now_unix: i64,
) -> Result<StoredDevice, StoreError> {
    let json = serde_json::to_string(device).map_err(|e| {
        StoreError::Engine(format!("encoding device {}: {e}", device.serial_number))
    })?;
    let op_type = device.op_type.clone().unwrap_or_default();
    Ok(StoredDevice {
        serial: device.serial_number.clone(),
        json,
        deleted: op_type == "deleted",
        op_type,
        op_date_unix,
        profile_status: device.profile_status.clone().unwrap_or_default(),
        profile_uuid: device.profile_uuid.clone().unwrap_or_default(),
        first_seen_unix,
        last_event_unix: now_unix,
    })
}

/// Everything one page of devices changes, written in one atomic batch.
#[derive(Debug)]
pub struct PageApply<'a> {
    /// The page's devices, as Apple sent them.
    pub devices: &'a [Device],
    /// The page's `fetched_until`: the date of devices without `op_date`.
    pub fetched_until: Option<&'a str>,
    /// The sync state after this page (cursor advanced).
    pub sync: &'a StoredSync,
    /// The webhook event of this page, when webhooks are configured.
    pub outbox: Option<OutboxEntry>,
    /// Assignment records to write (candidates of this page), by serial.
    pub assignments: BTreeMap<String, StoredAssignment>,
    pub now_unix: i64,
}

/// A webhook event to queue; the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub event_id: String,
    pub topic: String,
    pub body: String,
}

/// What [`Store::apply_page`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSummary {
    /// Device records created or replaced.
    pub upserted: usize,
    /// Events older than the stored record, not applied.
    pub stale: usize,
    /// Of `upserted`, devices marked deleted.
    pub deleted: usize,
    /// Devices without a serial number, which cannot be stored.
    pub ignored: usize,
    /// The outbox sequence number given to the page's webhook event.
    pub outbox_seq: Option<u64>,
    pub assignments: usize,
}

/// An inventory query. Every filter given must match exactly; `total`
/// counts all matches, `offset`/`limit` select the page returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    pub serial: Option<String>,
    pub op_type: Option<String>,
    pub profile_status: Option<String>,
    pub profile_uuid: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

impl DeviceQuery {
    fn matches(&self, d: &StoredDevice) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.serial, &d.serial)
            && eq(&self.op_type, &d.op_type)
            && eq(&self.profile_status, &d.profile_status)
            && eq(&self.profile_uuid, &d.profile_uuid)
    }
}

/// One page of an inventory query, in serial order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceList {
    pub total: usize,
    pub devices: Vec<StoredDevice>,
}

/// Inventory counts for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Every stored device, deleted ones included.
    pub total: u64,
    pub deleted: u64,
    /// By `op_type` of the latest event (`none` when it had none).
    pub by_op_type: BTreeMap<String, u64>,
    /// By `profile_status` (`none` when empty), deleted devices excluded.
    pub by_profile_status: BTreeMap<String, u64>,
}

/// Assignment counts for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentCounts {
    pub by_result: BTreeMap<&'static str, u64>,
    /// Waiting for a retry time still in the future.
    pub cooling_down: u64,
    pub gave_up: u64,
}

fn label(s: &str) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.into()
    }
}

/// Collects the writes of assignment changes, keeping the due index in step
/// with the records.
struct AssignmentWrites<'a> {
    store: &'a Store,
    name: &'a DepName,
    writes: Vec<Write>,
}

impl AssignmentWrites<'_> {
    fn put(&mut self, serial: &str, new: &StoredAssignment) -> Result<(), StoreError> {
        let old = self.store.assignment(self.name, serial)?;
        if let Some(due) = old.and_then(|o| o.next_retry_unix) {
            self.writes
                .push(Write::Delete(due_key(self.name, due, serial)));
        }
        if let Some(due) = new.next_retry_unix {
            self.writes.push(Write::Put(
                due_key(self.name, due, serial),
                record::encode(&StoredDueMark),
            ));
        }
        self.writes.push(Write::Put(
            key(ASSIGNMENT, self.name, serial.as_bytes()),
            record::encode(new),
        ));
        Ok(())
    }
}

impl Store {
    /// Applies one page in a single atomic, durable batch: device records
    /// upserted (a stale event never replaces a newer record; `deleted`
    /// marks rather than removes), the webhook event queued, assignment work
    /// queued and the sync state advanced. A crash leaves either all of it
    /// or none, so the page is simply fetched again.
    ///
    /// Only the name's actor calls this, so reading the stored records first
    /// and committing afterwards cannot lose a concurrent write.
    pub fn apply_page(
        &self,
        name: &DepName,
        apply: PageApply<'_>,
    ) -> Result<PageSummary, StoreError> {
        let mut summary = PageSummary::default();
        let page_date = parse_time(apply.fetched_until);
        // The same serial may appear several times in one page: later events
        // are compared with the earlier ones of the page, not only with disk.
        // The flag says whether the record changed and must be written.
        let mut devices: BTreeMap<&str, (StoredDevice, bool)> = BTreeMap::new();
        for device in apply.devices {
            let serial = device.serial_number.as_str();
            if serial.is_empty() {
                summary.ignored += 1;
                continue;
            }
            let stored = match devices.remove(serial) {
                Some(seen) => Some(seen),
                None => self.device(name, serial)?.map(|d| (d, false)),
            };
            let op_date = parse_time(device.op_date.as_deref()).or(page_date);
            let first_seen = match stored {
                Some((old, dirty)) if is_stale(op_date, old.op_date_unix) => {
                    summary.stale += 1;
                    devices.insert(serial, (old, dirty));
                    continue;
                }
                Some((old, _)) => old.first_seen_unix,
                None => apply.now_unix,
            };
            let record = stored_device(device, op_date, first_seen, apply.now_unix)?;
            summary.upserted += 1;
            summary.deleted += usize::from(record.deleted);
            devices.insert(serial, (record, true));
        }

        let mut writes = AssignmentWrites {
            store: self,
            name,
            writes: Vec::with_capacity(devices.len() + 2 * apply.assignments.len() + 3),
        };
        for (serial, assignment) in &apply.assignments {
            writes.put(serial, assignment)?;
        }
        summary.assignments = apply.assignments.len();
        let mut writes = writes.writes;
        for (serial, (device, _)) in devices.into_iter().filter(|(_, (_, dirty))| *dirty) {
            writes.push(Write::Put(
                key(DEVICE, name, serial.as_bytes()),
                record::encode(&device),
            ));
        }
        if let Some(entry) = apply.outbox {
            let seq_key = prefix(OUTBOX_SEQ, name);
            let seq = match self.engine.get(&seq_key)? {
                Some(v) => decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next,
                None => 0,
            };
            let stored = StoredOutboxEntry {
                event_id: entry.event_id,
                topic: entry.topic,
                created_unix: apply.now_unix,
                body: entry.body,
            };
            writes.push(Write::Put(
                key(OUTBOX, name, &seq.to_be_bytes()),
                record::encode(&stored),
            ));
            writes.push(Write::Put(
                seq_key,
                record::encode(&StoredOutboxSeq { next: seq + 1 }),
            ));
            summary.outbox_seq = Some(seq);
        }
        writes.push(Write::Put(
            field_key(name, Field::Sync),
            record::encode(apply.sync),
        ));
        self.engine.commit(writes)?;
        Ok(summary)
    }

    /// One device of the inventory.
    pub fn device(&self, name: &DepName, serial: &str) -> Result<Option<StoredDevice>, StoreError> {
        let k = key(DEVICE, name, serial.as_bytes());
        self.engine.get(&k)?.map(|v| decode_at(&k, &v)).transpose()
    }

    /// Up to `limit` devices in serial order, starting after `after`: for
    /// walking the whole inventory in chunks (e.g. on a profile change).
    pub fn scan_devices(
        &self,
        name: &DepName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredDevice>, StoreError> {
        let p = prefix(DEVICE, name);
        let after = after.map(|a| key(DEVICE, name, a.as_bytes()));
        self.engine
            .scan(&p, after.as_deref(), limit)?
            .into_iter()
            .map(|(k, v)| decode_at(&k, &v))
            .collect()
    }

    /// Calls `f` on every device of a name, in serial order.
    fn each_device(
        &self,
        name: &DepName,
        mut f: impl FnMut(StoredDevice),
    ) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let chunk = self.scan_devices(name, after.as_deref(), SCAN_CHUNK)?;
            let Some(last) = chunk.last() else {
                return Ok(());
            };
            after = Some(last.serial.clone());
            chunk.into_iter().for_each(&mut f);
        }
    }

    /// The inventory query of `GET /v1/devices/{name}`. A serial filter is
    /// one lookup; other filters walk the name's inventory.
    pub fn query_devices(
        &self,
        name: &DepName,
        query: &DeviceQuery,
    ) -> Result<DeviceList, StoreError> {
        let mut list = DeviceList::default();
        let mut take = |d: StoredDevice| {
            if query.matches(&d) {
                if list.total >= query.offset && list.devices.len() < query.limit {
                    list.devices.push(d);
                }
                list.total += 1;
            }
        };
        match &query.serial {
            Some(serial) => {
                if let Some(d) = self.device(name, serial)? {
                    take(d);
                }
            }
            None => self.each_device(name, take)?,
        }
        Ok(list)
    }

    /// Inventory counts of a name (walks the inventory: status callers
    /// should cache the answer rather than ask on every request).
    pub fn device_counts(&self, name: &DepName) -> Result<DeviceCounts, StoreError> {
        let mut c = DeviceCounts::default();
        self.each_device(name, |d| {
            c.total += 1;
            *c.by_op_type.entry(label(&d.op_type)).or_default() += 1;
            if d.deleted {
                c.deleted += 1;
            } else {
                *c.by_profile_status
                    .entry(label(&d.profile_status))
                    .or_default() += 1;
            }
        })?;
        Ok(c)
    }

    /// A serial's assignment record.
    pub fn assignment(
        &self,
        name: &DepName,
        serial: &str,
    ) -> Result<Option<StoredAssignment>, StoreError> {
        let k = key(ASSIGNMENT, name, serial.as_bytes());
        self.engine.get(&k)?.map(|v| decode_at(&k, &v)).transpose()
    }

    /// The assignment records of the given serials that exist.
    pub fn assignments<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let mut out = BTreeMap::new();
        for serial in serials {
            if let Some(a) = self.assignment(name, serial)? {
                out.insert(serial.to_owned(), a);
            }
        }
        Ok(out)
    }

    /// Writes assignment records in one atomic batch, keeping the due index.
    pub fn put_assignments(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writes = AssignmentWrites {
            store: self,
            name,
            writes: Vec::new(),
        };
        for (serial, record) in records {
            writes.put(serial, record)?;
        }
        self.engine.commit(writes.writes)
    }

    /// Assignments due at `now_unix` or earlier, earliest first, at most
    /// `limit`: reads the due index, so the cost follows what is due, not
    /// the size of the inventory.
    pub fn due_assignments(
        &self,
        name: &DepName,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        let p = prefix(DUE, name);
        let now = u64::try_from(now_unix).unwrap_or(0);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        while out.len() < limit {
            let chunk = self.engine.scan(&p, after.as_deref(), SCAN_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (k, _) in chunk {
                let rest = &k[p.len()..];
                let Some((due, serial)) = rest.split_first_chunk::<8>() else {
                    continue;
                };
                let due = u64::from_be_bytes(*due);
                if due > now || out.len() >= limit {
                    return Ok(out);
                }
                let serial = String::from_utf8_lossy(serial).into_owned();
                // The index and the records are written in the same batches;
                // a mark that disagrees with its record would be a bug, and
                // is skipped rather than trusted.
                if let Some(a) = self.assignment(name, &serial)?
                    && a.next_retry_unix
                        .is_some_and(|t| u64::try_from(t).unwrap_or(0) == due)
                {
                    out.push((serial, a));
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` assignment records in serial order after `after`, for
    /// `GET /v1/assignments/{name}`.
    pub fn scan_assignments(
        &self,
        name: &DepName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        let p = prefix(ASSIGNMENT, name);
        let after = after.map(|a| key(ASSIGNMENT, name, a.as_bytes()));
        self.engine
            .scan(&p, after.as_deref(), limit)?
            .into_iter()
            .map(|(k, v)| Ok((suffix_str(&k, p.len()), decode_at(&k, &v)?)))
            .collect()
    }

    /// Assignment counts by result, cooldowns pending and serials given up.
    pub fn assignment_counts(
        &self,
        name: &DepName,
        now_unix: i64,
    ) -> Result<AssignmentCounts, StoreError> {
        let mut c = AssignmentCounts::default();
        let mut after: Option<String> = None;
        loop {
            let chunk = self.scan_assignments(name, after.as_deref(), SCAN_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (_, a) in chunk {
                *c.by_result.entry(a.result.as_str()).or_default() += 1;
                c.cooling_down += u64::from(a.next_retry_unix.is_some_and(|t| t > now_unix));
                c.gave_up += u64::from(a.gave_up);
            }
        }
        Ok(c)
    }

    /// The oldest `limit` webhook events of a name, with their sequence
    /// numbers, in order.
    pub fn outbox_peek(
        &self,
        name: &DepName,
        limit: usize,
    ) -> Result<Vec<(u64, StoredOutboxEntry)>, StoreError> {
        let p = prefix(OUTBOX, name);
        let mut out = Vec::new();
        for (k, v) in self.engine.scan(&p, None, limit)? {
            let Some(seq) = k[p.len()..].first_chunk::<8>() else {
                continue;
            };
            out.push((u64::from_be_bytes(*seq), decode_at(&k, &v)?));
        }
        Ok(out)
    }

    /// Removes delivered events, atomically. The deliverer removes from the
    /// head of the outbox (delivery is in order), which keeps the sequence
    /// numbers of what is left contiguous.
    pub fn outbox_remove(&self, name: &DepName, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.engine.commit(
            seqs.iter()
                .map(|s| Write::Delete(key(OUTBOX, name, &s.to_be_bytes())))
                .collect(),
        )
    }

    /// How many webhook events wait for delivery: outbox entries are
    /// contiguous (see [`Store::outbox_remove`]), so this is the distance
    /// from the oldest to the next sequence number, without reading bodies
    /// beyond the first.
    pub fn outbox_backlog(&self, name: &DepName) -> Result<u64, StoreError> {
        let Some((oldest, _)) = self.outbox_peek(name, 1)?.into_iter().next() else {
            return Ok(0);
        };
        let seq_key = prefix(OUTBOX_SEQ, name);
        let next = match self.engine.get(&seq_key)? {
            Some(v) => decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next,
            None => oldest + 1,
        };
        Ok(next.saturating_sub(oldest))
    }

    /// Records that depd removed these serials' profile (its proxy or API),
    /// so the assigner leaves them alone for a while.
    pub fn record_removals<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let value = record::encode(&StoredRemoval {
            removed_unix: now_unix,
        });
        let writes: Vec<Write> = serials
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Write::Put(key(REMOVAL, name, s.as_bytes()), value.clone()))
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.engine.commit(writes)
    }

    /// When depd removed the profile of each of these serials, for those it
    /// did.
    pub fn removals<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut out = BTreeMap::new();
        for serial in serials {
            let k = key(REMOVAL, name, serial.as_bytes());
            if let Some(v) = self.engine.get(&k)? {
                let r: StoredRemoval = decode_at(&k, &v)?;
                out.insert(serial.to_owned(), r.removed_unix);
            }
        }
        Ok(out)
    }

    /// Forgets removals made before `before_unix` (outside the window in
    /// which they matter); returns how many.
    pub fn prune_removals(&self, name: &DepName, before_unix: i64) -> Result<usize, StoreError> {
        let p = prefix(REMOVAL, name);
        let mut old = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self.engine.scan(&p, after.as_deref(), SCAN_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (k, v) in chunk {
                let r: StoredRemoval = decode_at(&k, &v)?;
                if r.removed_unix < before_unix {
                    old.push(Write::Delete(k));
                }
            }
        }
        let n = old.len();
        if n > 0 {
            self.engine.commit(old)?;
        }
        Ok(n)
    }
}
