//! The per-name collections of the sync loop: device inventory, assignment
//! records, webhook outbox and profile removals made through depd.
//!
//! Key layout (`<name>` is the DEP name, which cannot contain NUL):
//!
//! | key | value |
//! |---|---|
//! | `gd/<name>\0<seg: u32 BE>` | [`StoredDeviceSegment`]: device records of one batch |
//! | `gj/<name>\0<seg: u32 BE>` | [`StoredJsonSegment`]: their JSON, slot by slot (a page's text, which its devices' JSON are ranges of, plus other texts) |
//! | `ga/<name>\0<seg: u32 BE>` | [`StoredAssignmentSegment`]: assignment records of one batch |
//! | `o/<name>\0<seq: u64 BE>` | [`StoredOutboxEntry`]: a webhook event, whose body may be a page's text stored in a `gj/` segment |
//! | `q/<name>\0` | [`StoredOutboxSeq`]: the next outbox sequence number |
//! | `r/<name>\0<serial>` | [`StoredRemoval`] |
//!
//! Devices and assignment records live in segments, located through the
//! name's in-memory index (`index.rs`, rebuilt from the segments on first
//! use): a page of 1000 devices is three engine writes, not thousands.
//! Earlier versions kept one key per device (`d/`), per assignment (`a/`)
//! and per due time (`t/`); those are moved into segments when the name's
//! index is first built ([`Store::migrate_legacy`]).
//!
//! A page's text is stored once. The first segment written for a page
//! keeps the page's whole text as Apple sent it in its JSON; its devices'
//! JSON are ranges of it, and the page's webhook event refers to that
//! segment instead of holding a copy. The segment's JSON therefore stays
//! until both its records are superseded and the events referring to it
//! are delivered, whichever comes last: the index counts each segment's
//! events waiting for delivery (rebuilt from the outbox with the index).
//!
//! Big-endian numbers make key order the numeric order, so the oldest outbox
//! entry is the first key of its prefix and segments are read in the order
//! they were written. Only a name's actor writes these keys, so its
//! read-then-commit sequences (read the stored records, decide, commit one
//! batch) cannot race; every write of a name's segments also holds the
//! name's index lock from planning until the batch is applied and the
//! index updated (a flush, when one is wanted, follows without the lock).

use super::index::{AssignFacts, DeviceFacts, Loc, NameIndex, SEGMENT_MAX, is_sparse};
use super::record::{
    self, DeviceSegmentRef, JsonSegmentRef, Record, StoredAssignmentSegment, StoredDeviceFields,
    StoredDeviceSegment, StoredEventBody, StoredJsonSegment, StoredOutboxSeq, StoredRemoval,
};
use super::{
    AssignResult, Entry, Field, Store, StoreError, StoredAssignment, StoredDevice,
    StoredOutboxEntry, StoredSync, Write, field_key,
};
use crate::dep::wire::Device;
use crate::name::DepName;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::PoisonError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DEVICE_SEG: &[u8] = b"gd/";
const JSON_SEG: &[u8] = b"gj/";
const ASSIGN_SEG: &[u8] = b"ga/";
const OUTBOX: &[u8] = b"o/";
const OUTBOX_SEQ: &[u8] = b"q/";
const REMOVAL: &[u8] = b"r/";
/// The one-key-per-record layout of earlier versions.
const LEGACY_DEVICE: &[u8] = b"d/";
const LEGACY_ASSIGNMENT: &[u8] = b"a/";
const LEGACY_DUE: &[u8] = b"t/";

/// How many entries one engine scan reads while walking a collection.
const SCAN_CHUNK: usize = 1024;

/// How many segments one scan reads while rebuilding an index.
const SEGMENT_SCAN: usize = 16;

/// At most this many sparse segments are compacted per batch and kind.
const COMPACT_PER_BATCH: usize = 2;

/// How often a reader retries when a segment was compacted away between
/// finding a record in the index and reading it.
const READ_TRIES: usize = 8;

/// Whether `engine` holds any record of the one-key-per-record layout (a
/// failed look counts as yes: the names are then checked one by one).
pub(super) fn holds_legacy(engine: &dyn super::Engine) -> bool {
    [LEGACY_DEVICE, LEGACY_ASSIGNMENT, LEGACY_DUE]
        .iter()
        .any(|kind| {
            engine
                .scan(kind, None, 1)
                .map_or(true, |found| !found.is_empty())
        })
}

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

fn seg_key(kind: &[u8], name: &DepName, seg: u32) -> Vec<u8> {
    key(kind, name, &seg.to_be_bytes())
}

fn decode_at<R: Record>(key: &[u8], value: &[u8]) -> Result<R, StoreError> {
    record::decode(value).map_err(|source| StoreError::Record {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        source,
    })
}

fn corrupt(what: String) -> StoreError {
    StoreError::Engine(format!("inconsistent store: {what}"))
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

/// The text at `start`, `len` bytes long, of `page`.
fn span_of(page: Option<&str>, start: u32, len: u32) -> Option<&str> {
    let start = start as usize;
    page?.get(start..start.checked_add(len as usize)?)
}

/// Where the JSON of a device record being written comes from.
enum Text {
    /// A span of the text of the page being applied (start, length).
    Page(u32, u32),
    /// Its own text.
    Own(String),
}

/// The record of a device of a page, and where its JSON comes from:
/// Apple's text (a span of the page's text, or the device's own), encoded
/// from its fields otherwise.
fn stored_device(
    device: &Device,
    page: Option<&str>,
    op_date_unix: Option<i64>,
    first_seen_unix: i64,
    now_unix: i64,
) -> Result<(StoredDeviceFields, Text), StoreError> {
    let text = match (device.span, &device.raw) {
        (Some((start, len)), _) if span_of(page, start, len).is_some() => Text::Page(start, len),
        (_, Some(raw)) => Text::Own(raw.to_string()),
        // Read from a page whose text is not at hand: its fields alone
        // would lose what Apple sent.
        (Some(_), None) => {
            return Err(StoreError::Engine(format!(
                "the JSON of device {} is not in the page given",
                device.serial_number
            )));
        }
        (None, None) => Text::Own(serde_json::to_string(device).map_err(|e| {
            StoreError::Engine(format!("encoding device {}: {e}", device.serial_number))
        })?),
    };
    let op_type = device.op_type.clone().unwrap_or_default();
    Ok((
        StoredDeviceFields {
            serial: device.serial_number.clone(),
            deleted: op_type == "deleted",
            op_type,
            op_date_unix,
            profile_status: device.profile_status.clone().unwrap_or_default(),
            profile_uuid: device.profile_uuid.clone().unwrap_or_default(),
            first_seen_unix,
            last_event_unix: now_unix,
        },
        text,
    ))
}

fn device_facts(d: &StoredDeviceFields) -> DeviceFacts<'_> {
    DeviceFacts {
        op_date_unix: d.op_date_unix,
        first_seen_unix: d.first_seen_unix,
        op_type: &d.op_type,
        profile_status: &d.profile_status,
        deleted: d.deleted,
    }
}

const RESULTS: [AssignResult; 5] = [
    AssignResult::Pending,
    AssignResult::Success,
    AssignResult::NotAccessible,
    AssignResult::Failed,
    AssignResult::Throttled,
];

fn result_code(r: AssignResult) -> u8 {
    RESULTS.iter().position(|x| *x == r).unwrap_or(0) as u8
}

fn result_of(code: u8) -> AssignResult {
    RESULTS
        .get(usize::from(code))
        .copied()
        .unwrap_or(AssignResult::Pending)
}

fn assign_facts(a: &StoredAssignment) -> AssignFacts {
    AssignFacts {
        result: result_code(a.result),
        next_retry_unix: a.next_retry_unix,
        gave_up: a.gave_up,
    }
}

fn slot(i: usize) -> Result<u16, StoreError> {
    u16::try_from(i).map_err(|_| corrupt(format!("segment slot {i} out of range")))
}

/// Splits `items` into runs of at most [`SEGMENT_MAX`].
fn segments_of<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(SEGMENT_MAX).collect());
    }
    out
}

/// An assignment record with its serial, as stored in a segment.
type SerialAssignment = (String, StoredAssignment);

/// The segments that lose records to a batch, and how many each loses.
#[derive(Default)]
struct Kills(HashMap<u32, u32>);

impl Kills {
    fn add(&mut self, seg: u32) {
        *self.0.entry(seg).or_default() += 1;
    }

    /// Segments worth compacting ([`is_sparse`]) after the batch, least
    /// live first, at most [`COMPACT_PER_BATCH`].
    fn compaction(&self, sizes: &super::index::Segments) -> Vec<u32> {
        let after = |seg: u32| {
            sizes
                .live(seg)
                .saturating_sub(self.0.get(&seg).copied().unwrap_or(0))
        };
        let mut c: Vec<u32> = self
            .0
            .keys()
            .copied()
            .chain(sizes.sparse())
            .filter(|s| is_sparse(sizes.len(*s), after(*s)))
            .collect();
        c.sort_unstable_by_key(|s| (after(*s), *s));
        c.dedup();
        c.truncate(COMPACT_PER_BATCH);
        c
    }

    /// Segments left without a live record after the batch.
    fn emptied<'a>(&'a self, sizes: &'a super::index::Segments) -> impl Iterator<Item = u32> + 'a {
        self.0
            .iter()
            .filter(|(seg, n)| sizes.live(**seg) <= **n)
            .map(|(seg, _)| *seg)
    }
}

/// Device records planned into new segments, applied to the index once the
/// batch is committed.
#[derive(Default)]
struct DevicePlan {
    segments: Vec<(u32, usize)>,
    records: Vec<(Loc, StoredDeviceFields)>,
    /// The segment whose JSON holds the page's text, if any.
    page_seg: Option<u32>,
    /// A webhook event of the batch refers to `page_seg`'s JSON.
    page_ref: bool,
}

impl DevicePlan {
    fn apply(self, ix: &mut NameIndex) {
        for (seg, len) in self.segments {
            ix.add_device_segment(seg, len);
        }
        for (loc, d) in &self.records {
            ix.set_device(&d.serial, *loc, &device_facts(d));
        }
        if let (Some(seg), true) = (self.page_seg, self.page_ref) {
            ix.add_outbox_ref(seg);
        }
    }
}

#[derive(Default)]
struct AssignmentPlan {
    segments: Vec<(u32, usize)>,
    records: Vec<(Loc, String, AssignFacts)>,
}

impl AssignmentPlan {
    fn apply(self, ix: &mut NameIndex) {
        for (seg, len) in self.segments {
            ix.add_assignment_segment(seg, len);
        }
        for (loc, serial, facts) in &self.records {
            ix.set_assignment(serial, *loc, *facts);
        }
    }
}

/// Everything one page of devices changes, written in one atomic batch.
#[derive(Debug)]
pub struct PageApply<'a> {
    /// The page's devices, as Apple sent them.
    pub devices: &'a [Device],
    /// The page's text as Apple sent it, which devices read with
    /// [`crate::dep::wire::SyncPage`] are spans of: stored once, for the
    /// inventory and the webhook event.
    pub text: Option<&'a str>,
    /// The page's `fetched_until`: the date of devices without `op_date`.
    pub fetched_until: Option<&'a str>,
    /// The sync state after this page (cursor advanced).
    pub sync: &'a StoredSync,
    /// The webhook event of this page, when webhooks are configured.
    pub outbox: Option<OutboxEntry>,
    /// Assignment work for the page's candidates.
    pub assignments: AssignQueue<'a>,
    pub now_unix: i64,
    /// Flush the batch before returning: the next request of the cycle
    /// waits for the page to be durable, and so does the delivery of its
    /// webhook event (a crash must not lose a page whose event went out,
    /// or the page would go out again under another event id). The last
    /// page of a cycle without an event need not be: the next flush makes
    /// it durable, be it sled's own every half second, a later commit or
    /// shutdown, and a crash before that only means the page is fetched
    /// again.
    pub flush: bool,
}

/// Assignment work to queue with a page: each candidate's stored record
/// (if any) is read under the same index lock as the page's write, and
/// `decide` says what to write for it (nothing: leave it as it is).
pub struct AssignQueue<'a> {
    pub candidates: Vec<String>,
    pub decide: &'a dyn Fn(Option<&StoredAssignment>) -> Option<StoredAssignment>,
}

impl AssignQueue<'_> {
    /// No assignment work.
    pub fn none() -> Self {
        AssignQueue {
            candidates: Vec::new(),
            decide: &|_| None,
        }
    }
}

impl std::fmt::Debug for AssignQueue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignQueue")
            .field("candidates", &self.candidates)
            .finish_non_exhaustive()
    }
}

/// A webhook event to queue; the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub event_id: String,
    pub topic: String,
    pub body: EventBody,
}

/// A webhook event's body as queued.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Whole(String),
    /// `head`, the page's text without surrounding whitespace
    /// ([`PageApply::text`], which must be given), then `tail`.
    AroundPage {
        head: String,
        tail: String,
    },
}

impl EventBody {
    /// The whole body, with `page` (the page's text) where it goes.
    pub fn complete(&self, page: Option<&str>) -> Option<String> {
        match self {
            EventBody::Whole(body) => Some(body.clone()),
            EventBody::AroundPage { head, tail } => Some(format!("{head}{}{tail}", page?.trim())),
        }
    }
}

/// A webhook event waiting for delivery, its body complete.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub event_id: String,
    pub topic: String,
    pub created_unix: i64,
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

impl Store {
    /// Runs `f` with the name's index, building it from the stored segments
    /// first when this is the name's first use. Writers hold it from
    /// planning until their batch is applied and the index updated, so the
    /// index always describes what sled holds.
    fn with_index<T>(
        &self,
        name: &DepName,
        f: impl FnOnce(&mut NameIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let slot = self
            .indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slot(name);
        let mut guard = match slot.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic while the index was being changed: it may not
                // match the store any more, so build it again.
                slot.clear_poison();
                let mut g = poisoned.into_inner();
                *g = None;
                g
            }
        };
        let ix = match guard.as_mut() {
            Some(ix) => ix,
            None => guard.insert(self.load_index(name)?),
        };
        let result = f(ix);
        let serials = ix.serials();
        drop(guard);
        self.indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released(name, serials);
        result
    }

    /// Builds a name's index from its segments (moving records of the
    /// earlier one-key-per-record layout into segments first), and deletes
    /// segments whose records were all superseded.
    fn load_index(&self, name: &DepName) -> Result<NameIndex, StoreError> {
        let mut ix = NameIndex::default();
        let mut seen_devices = Vec::new();
        self.each_segment::<StoredDeviceSegment>(DEVICE_SEG, name, |seg, s| {
            ix.add_device_segment(seg, s.devices.len());
            seen_devices.push(seg);
            for (i, d) in s.devices.iter().enumerate() {
                ix.set_device(
                    &d.serial,
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    &device_facts(d),
                );
            }
            Ok(())
        })?;
        let mut seen_assigns = Vec::new();
        self.each_segment::<StoredAssignmentSegment>(ASSIGN_SEG, name, |seg, s| {
            ix.add_assignment_segment(seg, s.records.len());
            seen_assigns.push(seg);
            for (i, (serial, a)) in s.records.iter().enumerate() {
                ix.set_assignment(
                    serial,
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    assign_facts(a),
                );
            }
            Ok(())
        })?;
        ix.retain_live();
        // Webhook events waiting for delivery that keep a segment's JSON
        // (a name that never had an event has no sequence number).
        let p = prefix(OUTBOX, name);
        let mut after: Option<Vec<u8>> = None;
        let mut any = self.engine.get(&prefix(OUTBOX_SEQ, name))?.is_some();
        while any {
            let chunk = self.engine.scan(&p, after.as_deref(), SCAN_CHUNK)?;
            any = chunk.len() == SCAN_CHUNK;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (k, v) in chunk {
                if let StoredEventBody::Page { seg, .. } =
                    decode_at::<StoredOutboxEntry>(&k, &v)?.body
                {
                    ix.add_outbox_ref(seg);
                    // Never reuse the number of a segment whose JSON stays.
                    ix.devices.next = ix.devices.next.max(seg.saturating_add(1));
                }
            }
        }
        let mut garbage = Vec::new();
        for seg in seen_devices {
            if ix.devices.live(seg) == 0 {
                garbage.push(Write::Delete(seg_key(DEVICE_SEG, name, seg)));
                if !ix.has_outbox_ref(seg) {
                    garbage.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
                }
            }
        }
        for seg in seen_assigns {
            if ix.assigns.live(seg) == 0 {
                garbage.push(Write::Delete(seg_key(ASSIGN_SEG, name, seg)));
            }
        }
        if !garbage.is_empty() {
            self.engine.commit(garbage)?;
        }
        self.migrate_legacy(name, &mut ix)?;
        Ok(ix)
    }

    /// Calls `f` on every segment of a kind of a name, in segment order.
    fn each_segment<R: Record>(
        &self,
        kind: &[u8],
        name: &DepName,
        mut f: impl FnMut(u32, R) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let p = prefix(kind, name);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self.engine.scan(&p, after.as_deref(), SEGMENT_SCAN)?;
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, v) in chunk {
                let Some(seg) = k[p.len()..].first_chunk::<4>() else {
                    continue;
                };
                f(u32::from_be_bytes(*seg), decode_at(&k, &v)?)?;
            }
        }
    }

    /// Moves records of the one-key-per-record layout (`d/`, `a/`, `t/`)
    /// into segments, a chunk per batch, deleting the old keys in the same
    /// batch: an interrupted migration continues on the next start.
    fn migrate_legacy(&self, name: &DepName, ix: &mut NameIndex) -> Result<(), StoreError> {
        if !self.legacy {
            return Ok(());
        }
        self.drain_legacy(LEGACY_DEVICE, name, ix, |store, ix, chunk, writes| {
            let records = chunk
                .iter()
                .map(|(k, v)| {
                    let (fields, json) =
                        StoredDeviceFields::split(decode_at::<StoredDevice>(k, v)?);
                    Ok((fields, Text::Own(json)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let plan = store.plan_devices(name, ix, records, None, writes)?;
            Ok(move |ix: &mut NameIndex| plan.apply(ix))
        })?;
        let assigns = prefix(LEGACY_ASSIGNMENT, name);
        self.drain_legacy(LEGACY_ASSIGNMENT, name, ix, |store, ix, chunk, writes| {
            let records = chunk
                .iter()
                .map(|(k, v)| {
                    let serial = String::from_utf8_lossy(&k[assigns.len()..]).into_owned();
                    Ok((serial, decode_at::<StoredAssignment>(k, v)?))
                })
                .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
            let plan = store.plan_assignments(name, ix, records, writes)?;
            Ok(move |ix: &mut NameIndex| plan.apply(ix))
        })?;
        // The due marks are derived from the assignment records: dropped.
        self.drain_legacy(LEGACY_DUE, name, ix, |_, _, _, _| {
            Ok(|_: &mut NameIndex| {})
        })
    }

    /// Deletes the keys under `kind`'s prefix of a name, a chunk per batch,
    /// with the writes `plan` adds for each chunk; the index is changed by
    /// what `plan` returns, once the batch is committed.
    fn drain_legacy<A: FnOnce(&mut NameIndex)>(
        &self,
        kind: &[u8],
        name: &DepName,
        ix: &mut NameIndex,
        plan: impl Fn(&Store, &NameIndex, &[Entry], &mut Vec<Write>) -> Result<A, StoreError>,
    ) -> Result<(), StoreError> {
        let p = prefix(kind, name);
        loop {
            let chunk = self.engine.scan(&p, None, 1000)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut writes = Vec::with_capacity(chunk.len() + 4);
            let apply = plan(self, ix, &chunk, &mut writes)?;
            writes.extend(chunk.into_iter().map(|(k, _)| Write::Delete(k)));
            self.engine.commit(writes)?;
            apply(ix);
        }
    }

    /// A device segment's records and their JSON texts, slot by slot.
    fn read_device_segment(
        &self,
        name: &DepName,
        seg: u32,
    ) -> Result<Option<(StoredDeviceSegment, Vec<String>)>, StoreError> {
        let (fk, jk) = (seg_key(DEVICE_SEG, name, seg), seg_key(JSON_SEG, name, seg));
        let (Some(fields), Some(json)) = (self.engine.get(&fk)?, self.engine.get(&jk)?) else {
            return Ok(None);
        };
        let fields: StoredDeviceSegment = decode_at(&fk, &fields)?;
        let json: StoredJsonSegment = decode_at(&jk, &json)?;
        let texts = json.into_texts().ok_or_else(|| {
            corrupt(format!(
                "the JSON of device segment {seg} of {name} has a damaged span"
            ))
        })?;
        if fields.devices.len() != texts.len() {
            return Err(corrupt(format!(
                "device segment {seg} of {name} has {} records and {} JSON texts",
                fields.devices.len(),
                texts.len()
            )));
        }
        Ok(Some((fields, texts)))
    }

    fn read_assignment_segment(
        &self,
        name: &DepName,
        seg: u32,
    ) -> Result<Option<StoredAssignmentSegment>, StoreError> {
        let k = seg_key(ASSIGN_SEG, name, seg);
        self.engine.get(&k)?.map(|v| decode_at(&k, &v)).transpose()
    }

    /// Plans device records into new segments: the segment writes, the
    /// deletion of segments left empty, and the compaction of sparse ones
    /// (their live records join the new segments).
    ///
    /// The first new segment's JSON holds `page` (the text of the page the
    /// records come from, which their [`Text::Page`] spans refer to) as it
    /// is; other texts are copied after it. A segment left empty keeps its
    /// JSON while a webhook event refers to it.
    fn plan_devices(
        &self,
        name: &DepName,
        ix: &NameIndex,
        records: Vec<(StoredDeviceFields, Text)>,
        page: Option<&str>,
        writes: &mut Vec<Write>,
    ) -> Result<DevicePlan, StoreError> {
        let mut plan = DevicePlan::default();
        if records.is_empty() {
            return Ok(plan);
        }
        let mut kills = Kills::default();
        for (r, _) in &records {
            if let Some(old) = ix.device(&r.serial) {
                kills.add(old.loc.seg);
            }
        }
        let written: HashSet<&str> = records.iter().map(|(r, _)| r.serial.as_str()).collect();
        let mut moved = Vec::new();
        for seg in kills.compaction(&ix.devices) {
            let Some((fields, texts)) = self.read_device_segment(name, seg)? else {
                return Err(corrupt(format!(
                    "device segment {seg} of {name} is missing"
                )));
            };
            for (i, (f, j)) in fields.devices.into_iter().zip(texts).enumerate() {
                let at = Loc {
                    seg,
                    slot: slot(i)?,
                };
                if ix.is_current_device(&f.serial, at) && !written.contains(f.serial.as_str()) {
                    kills.add(seg);
                    moved.push((f, Text::Own(j)));
                }
            }
        }
        drop(written);
        for seg in kills.emptied(&ix.devices) {
            writes.push(Write::Delete(seg_key(DEVICE_SEG, name, seg)));
            if !ix.has_outbox_ref(seg) {
                writes.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
            }
        }
        let mut all = records;
        all.extend(moved);
        let mut seg = ix.devices.next;
        let too_large = || corrupt(format!("a JSON segment of {name} over 4 GiB"));
        for (n, run) in segments_of(all).into_iter().enumerate() {
            // The page's text goes with the first segment only.
            let here = if n == 0 { page } else { None };
            // Texts not in `here` follow it, in `extra`.
            let base = here.map_or(0, str::len);
            let mut extra = String::new();
            let mut append = |t: &str| {
                let start = u32::try_from(base + extra.len()).ok()?;
                let len = u32::try_from(t.len()).ok()?;
                start.checked_add(len)?;
                extra.push_str(t);
                Some((start, len))
            };
            let mut spans = Vec::with_capacity(run.len());
            let mut fields = Vec::with_capacity(run.len());
            for (f, text) in run {
                let span = match (text, here) {
                    (Text::Page(start, len), Some(_)) => (start, len),
                    (Text::Page(start, len), None) => {
                        let t = span_of(page, start, len).ok_or_else(|| {
                            corrupt(format!("device {} has no text in its page", f.serial))
                        })?;
                        append(t).ok_or_else(too_large)?
                    }
                    (Text::Own(t), _) => append(&t).ok_or_else(too_large)?,
                };
                spans.push(span);
                fields.push(f);
            }
            writes.push(Write::Put(
                seg_key(DEVICE_SEG, name, seg),
                record::encode_as::<StoredDeviceSegment, _>(&DeviceSegmentRef { devices: &fields }),
            ));
            writes.push(Write::Put(
                seg_key(JSON_SEG, name, seg),
                record::encode_as::<StoredJsonSegment, _>(&JsonSegmentRef {
                    page: here.unwrap_or(""),
                    extra: &extra,
                    spans: &spans,
                }),
            ));
            if here.is_some() {
                plan.page_seg = Some(seg);
            }
            plan.segments.push((seg, fields.len()));
            for (i, f) in fields.into_iter().enumerate() {
                plan.records.push((
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    f,
                ));
            }
            seg = seg
                .checked_add(1)
                .ok_or_else(|| corrupt(format!("device segment numbers of {name} ran out")))?;
        }
        Ok(plan)
    }

    /// Plans assignment records into new segments, like [`Self::plan_devices`].
    fn plan_assignments(
        &self,
        name: &DepName,
        ix: &NameIndex,
        records: BTreeMap<String, StoredAssignment>,
        writes: &mut Vec<Write>,
    ) -> Result<AssignmentPlan, StoreError> {
        let mut plan = AssignmentPlan::default();
        if records.is_empty() {
            return Ok(plan);
        }
        let mut kills = Kills::default();
        for serial in records.keys() {
            if let Some(old) = ix.assignment(serial) {
                kills.add(old.seg);
            }
        }
        let mut moved = Vec::new();
        for seg in kills.compaction(&ix.assigns) {
            let Some(s) = self.read_assignment_segment(name, seg)? else {
                return Err(corrupt(format!(
                    "assignment segment {seg} of {name} is missing"
                )));
            };
            for (i, (serial, a)) in s.records.into_iter().enumerate() {
                let at = Loc {
                    seg,
                    slot: slot(i)?,
                };
                if ix.is_current_assignment(&serial, at) && !records.contains_key(&serial) {
                    kills.add(seg);
                    moved.push((serial, a));
                }
            }
        }
        for seg in kills.emptied(&ix.assigns) {
            writes.push(Write::Delete(seg_key(ASSIGN_SEG, name, seg)));
        }
        let mut all: Vec<(String, StoredAssignment)> = records.into_iter().collect();
        all.extend(moved);
        let mut seg = ix.assigns.next;
        for run in segments_of(all) {
            for (i, (serial, a)) in run.iter().enumerate() {
                plan.records.push((
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    serial.clone(),
                    assign_facts(a),
                ));
            }
            plan.segments.push((seg, run.len()));
            writes.push(Write::Put(
                seg_key(ASSIGN_SEG, name, seg),
                record::encode(&StoredAssignmentSegment { records: run }),
            ));
            seg = seg
                .checked_add(1)
                .ok_or_else(|| corrupt(format!("assignment segment numbers of {name} ran out")))?;
        }
        Ok(plan)
    }

    /// Applies one page in a single atomic batch, flushed when
    /// [`PageApply::flush`] says so: device records upserted (a stale event
    /// never replaces a newer record; `deleted` marks rather than
    /// removes), the webhook event queued, assignment work queued and the
    /// sync state advanced. A crash leaves either all of it or none, so the
    /// page is simply fetched again.
    ///
    /// Only the name's actor calls this, so reading the stored records first
    /// and committing afterwards cannot lose a concurrent write.
    ///
    /// The index learns of the batch as soon as it is applied, with the
    /// index still locked (no reader sees the index behind the store); the
    /// flush then runs with the index unlocked, and `stored` is called
    /// after it (after the apply when not flushing): the sync loop asks
    /// Apple for the next page once the page is durable.
    pub fn apply_page(
        &self,
        name: &DepName,
        apply: PageApply<'_>,
        stored: impl FnOnce(&PageSummary),
    ) -> Result<PageSummary, StoreError> {
        let flush = apply.flush;
        let summary = self.with_index(name, |ix| {
            let mut summary = PageSummary::default();
            let page_date = parse_time(apply.fetched_until);
            // The same serial may appear several times in one page: later
            // events are compared with the earlier ones of the page, not
            // only with what is stored.
            let mut devices: BTreeMap<&str, (StoredDeviceFields, Text)> = BTreeMap::new();
            for device in apply.devices {
                let serial = device.serial_number.as_str();
                if serial.is_empty() {
                    summary.ignored += 1;
                    continue;
                }
                let current = match devices.get(serial) {
                    Some((d, _)) => Some((d.op_date_unix, d.first_seen_unix)),
                    None => ix
                        .device(serial)
                        .map(|v| (v.op_date_unix, v.first_seen_unix)),
                };
                let op_date = parse_time(device.op_date.as_deref()).or(page_date);
                let first_seen = match current {
                    Some((old, _)) if is_stale(op_date, old) => {
                        summary.stale += 1;
                        continue;
                    }
                    Some((_, first_seen)) => first_seen,
                    None => apply.now_unix,
                };
                let record =
                    stored_device(device, apply.text, op_date, first_seen, apply.now_unix)?;
                summary.upserted += 1;
                summary.deleted += usize::from(record.0.deleted);
                devices.insert(serial, record);
            }

            let assignments = self.queue_assignments(name, ix, apply.assignments)?;
            let mut writes = Vec::with_capacity(8);
            let mut device_plan = self.plan_devices(
                name,
                ix,
                devices.into_values().collect(),
                apply.text,
                &mut writes,
            )?;
            summary.assignments = assignments.len();
            let assign_plan = self.plan_assignments(name, ix, assignments, &mut writes)?;
            if let Some(entry) = apply.outbox {
                let seq_key = prefix(OUTBOX_SEQ, name);
                let seq = match self.engine.get(&seq_key)? {
                    Some(v) => decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next,
                    None => 0,
                };
                let body = match (entry.body, device_plan.page_seg, apply.text) {
                    (EventBody::Whole(body), _, _) => StoredEventBody::Text(body),
                    // The page's text is stored once, with its devices.
                    (EventBody::AroundPage { head, tail }, Some(seg), Some(_)) => {
                        device_plan.page_ref = true;
                        StoredEventBody::Page { head, seg, tail }
                    }
                    // No device of the page is stored (all stale, say).
                    (body @ EventBody::AroundPage { .. }, None, Some(text)) => {
                        StoredEventBody::Text(body.complete(Some(text)).unwrap_or_default())
                    }
                    (EventBody::AroundPage { .. }, _, None) => {
                        return Err(StoreError::Engine(format!(
                            "the webhook event of a page of {name} needs the page's text"
                        )));
                    }
                };
                let stored = StoredOutboxEntry {
                    event_id: entry.event_id,
                    topic: entry.topic,
                    created_unix: apply.now_unix,
                    body,
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
            self.engine.apply(writes)?;
            device_plan.apply(ix);
            assign_plan.apply(ix);
            Ok(summary)
        })?;
        // The flush waits for the disk with the index unlocked: the
        // assigner and the webhook deliverer write meanwhile (the name's
        // index lock was busy nine tenths of a full fetch).
        if flush {
            self.flush()?;
        }
        stored(&summary);
        Ok(summary)
    }

    /// The records `queue` decides to write, from its candidates' stored
    /// records (read with the index locked: nothing moves meanwhile).
    fn queue_assignments(
        &self,
        name: &DepName,
        ix: &NameIndex,
        queue: AssignQueue<'_>,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let wanted: Vec<(String, Loc)> = queue
            .candidates
            .iter()
            .filter_map(|s| ix.assignment(s).map(|l| (s.clone(), l)))
            .collect();
        let Some(found) = self.assignments_at(name, &wanted)? else {
            return Err(corrupt(format!(
                "assignment records of {name} are missing from their segments"
            )));
        };
        let existing: HashMap<String, StoredAssignment> = found.into_iter().collect();
        Ok(queue
            .candidates
            .into_iter()
            .filter_map(|s| (queue.decide)(existing.get(&s)).map(|r| (s, r)))
            .collect())
    }

    /// Reads device records at the given places, grouped by segment, in
    /// the order given; `None` when a segment was compacted away meanwhile.
    fn devices_at(
        &self,
        name: &DepName,
        wanted: &[(String, Loc)],
    ) -> Result<Option<Vec<StoredDevice>>, StoreError> {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|&i| wanted[i].1);
        let mut out: Vec<Option<StoredDevice>> = vec![None; wanted.len()];
        let mut current: Option<(u32, Vec<Option<StoredDeviceFields>>, Vec<String>)> = None;
        for i in order {
            let (serial, loc) = &wanted[i];
            if current.as_ref().is_none_or(|(seg, _, _)| *seg != loc.seg) {
                let Some((f, j)) = self.read_device_segment(name, loc.seg)? else {
                    return Ok(None);
                };
                current = Some((loc.seg, f.devices.into_iter().map(Some).collect(), j));
            }
            let Some((_, fields, json)) = current.as_mut() else {
                return Ok(None);
            };
            let at = usize::from(loc.slot);
            match (fields.get_mut(at).and_then(Option::take), json.get_mut(at)) {
                (Some(f), Some(j)) if f.serial == *serial => {
                    out[i] = Some(f.join(std::mem::take(j)));
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(out.into_iter().flatten().collect()))
    }

    /// Looks records up in the index with `find` and reads them with
    /// `read`, again when a segment was compacted away in between.
    fn read_located<T>(
        &self,
        name: &DepName,
        find: impl Fn(&NameIndex) -> Vec<(String, Loc)>,
        read: impl Fn(&[(String, Loc)]) -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..READ_TRIES {
            let wanted = self.with_index(name, |ix| Ok(find(ix)))?;
            if let Some(found) = read(&wanted)? {
                return Ok(found);
            }
        }
        Err(StoreError::Engine(format!(
            "records of {name} kept moving while being read"
        )))
    }

    /// One device of the inventory.
    pub fn device(&self, name: &DepName, serial: &str) -> Result<Option<StoredDevice>, StoreError> {
        let found = self.read_located(
            name,
            |ix| {
                ix.device(serial)
                    .map(|d| (serial.to_owned(), d.loc))
                    .into_iter()
                    .collect()
            },
            |wanted| self.devices_at(name, wanted),
        )?;
        Ok(found.into_iter().next())
    }

    /// Calls `f` with the live devices of each segment in turn (in no
    /// particular order of serials): for walking the whole inventory, e.g.
    /// on a profile change. Segments written meanwhile are walked too.
    pub fn each_device_chunk(
        &self,
        name: &DepName,
        mut f: impl FnMut(Vec<StoredDevice>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = None;
        while let Some(seg) = self.with_index(name, |ix| Ok(ix.next_device_segment(after)))? {
            after = Some(seg);
            // A segment compacted away meanwhile: its live records are in
            // a later segment, which this walk still reaches.
            let Some((fields, json)) = self.read_device_segment(name, seg)? else {
                continue;
            };
            let live = self.with_index(name, |ix| {
                let mut live = Vec::new();
                for (i, (d, j)) in fields.devices.into_iter().zip(json).enumerate() {
                    if ix.is_current_device(
                        &d.serial,
                        Loc {
                            seg,
                            slot: slot(i)?,
                        },
                    ) {
                        live.push(d.join(j));
                    }
                }
                Ok(live)
            })?;
            if !live.is_empty() {
                f(live)?;
            }
        }
        Ok(())
    }

    /// The inventory query of `GET /v1/devices/{name}`, in serial order.
    /// Without a serial or `profile_uuid` filter the index answers and only
    /// the page asked for is read; otherwise the candidates are read and
    /// filtered.
    pub fn query_devices(
        &self,
        name: &DepName,
        query: &DeviceQuery,
    ) -> Result<DeviceList, StoreError> {
        let find = |ix: &NameIndex| {
            let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            let mut found = Vec::new();
            match &query.serial {
                Some(serial) => {
                    if let Some(d) = ix.device(serial) {
                        found.push((serial.clone(), d.loc));
                    }
                }
                None => ix.each_device(|serial, loc, op_type, status, _| {
                    if eq(&query.op_type, op_type) && eq(&query.profile_status, status) {
                        found.push((serial.to_owned(), loc));
                    }
                }),
            }
            found.sort_unstable();
            found
        };
        let read = |wanted: &[(String, Loc)]| -> Result<Option<DeviceList>, StoreError> {
            let mut list = DeviceList::default();
            if query.profile_uuid.is_none() && query.serial.is_none() {
                // The index already decided: read only the page asked for.
                list.total = wanted.len();
                let page: Vec<(String, Loc)> = wanted
                    .iter()
                    .skip(query.offset)
                    .take(query.limit)
                    .cloned()
                    .collect();
                let Some(devices) = self.devices_at(name, &page)? else {
                    return Ok(None);
                };
                list.devices = devices.into_iter().filter(|d| query.matches(d)).collect();
                return Ok(Some(list));
            }
            let Some(devices) = self.devices_at(name, wanted)? else {
                return Ok(None);
            };
            for d in devices.into_iter().filter(|d| query.matches(d)) {
                if list.total >= query.offset && list.devices.len() < query.limit {
                    list.devices.push(d);
                }
                list.total += 1;
            }
            Ok(Some(list))
        };
        self.read_located(name, find, read)
    }

    /// Inventory counts of a name, from the index.
    pub fn device_counts(&self, name: &DepName) -> Result<DeviceCounts, StoreError> {
        self.with_index(name, |ix| {
            let mut c = DeviceCounts::default();
            ix.each_device(|_, _, op_type, status, deleted| {
                c.total += 1;
                *c.by_op_type.entry(label(op_type)).or_default() += 1;
                if deleted {
                    c.deleted += 1;
                } else {
                    *c.by_profile_status.entry(label(status)).or_default() += 1;
                }
            });
            Ok(c)
        })
    }

    /// Reads assignment records at the given places, grouped by segment;
    /// `None` when a segment was compacted away meanwhile.
    fn assignments_at(
        &self,
        name: &DepName,
        wanted: &[(String, Loc)],
    ) -> Result<Option<Vec<(String, StoredAssignment)>>, StoreError> {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|&i| wanted[i].1);
        let mut out: Vec<Option<(String, StoredAssignment)>> = vec![None; wanted.len()];
        let mut current: Option<(u32, Vec<Option<SerialAssignment>>)> = None;
        for i in order {
            let (serial, loc) = &wanted[i];
            if current.as_ref().is_none_or(|(seg, _)| *seg != loc.seg) {
                let Some(s) = self.read_assignment_segment(name, loc.seg)? else {
                    return Ok(None);
                };
                current = Some((loc.seg, s.records.into_iter().map(Some).collect()));
            }
            let Some((_, records)) = current.as_mut() else {
                return Ok(None);
            };
            match records
                .get_mut(usize::from(loc.slot))
                .and_then(Option::take)
            {
                Some(r) if r.0 == *serial => out[i] = Some(r),
                _ => return Ok(None),
            }
        }
        Ok(Some(out.into_iter().flatten().collect()))
    }

    /// A serial's assignment record.
    pub fn assignment(
        &self,
        name: &DepName,
        serial: &str,
    ) -> Result<Option<StoredAssignment>, StoreError> {
        Ok(self.assignments(name, [serial])?.into_values().next())
    }

    /// The assignment records of the given serials that exist.
    pub fn assignments<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let serials: Vec<&str> = serials.into_iter().collect();
        let found = self.read_located(
            name,
            |ix| {
                serials
                    .iter()
                    .filter_map(|s| ix.assignment(s).map(|l| ((*s).to_owned(), l)))
                    .collect()
            },
            |wanted| self.assignments_at(name, wanted),
        )?;
        Ok(found.into_iter().collect())
    }

    /// Writes assignment records in one atomic batch.
    pub fn put_assignments(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
    ) -> Result<(), StoreError> {
        self.write_assignments(name, records, true)
    }

    /// Like [`Self::put_assignments`] but not flushed: for the answers to
    /// assignment calls, which the assigner flushes once at the end of its
    /// pass. An answer lost in a crash leaves the serial's record as it was
    /// before the call (due), so it is sent again; assigning the profile a
    /// device already has changes nothing at Apple, and a lost `FAILED`
    /// costs one more attempt at most. The next commit (the next page),
    /// [`Store::flush`] or sled's own flush every half second makes it
    /// durable; sled's log keeps batches in order, so a later durable
    /// batch never survives without an earlier one.
    pub fn put_assignment_results(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
    ) -> Result<(), StoreError> {
        self.write_assignments(name, records, false)
    }

    fn write_assignments(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
        flush: bool,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with_index(name, |ix| {
            let mut writes = Vec::new();
            let plan = self.plan_assignments(name, ix, records.clone(), &mut writes)?;
            self.engine.apply(writes)?;
            plan.apply(ix);
            Ok(())
        })?;
        // After the index learned of the batch: a failed flush must not
        // leave the index behind what sled already holds.
        if flush { self.flush() } else { Ok(()) }
    }

    /// Assignments due at `now_unix` or earlier, earliest first, at most
    /// `limit`: the cost follows what is due, not the size of the inventory.
    /// The tests' view of the queue; the assigner takes its batches with
    /// [`Store::due_serials_where`].
    /// Serials due at the same second come in the order the index learned
    /// of them, which is not kept across restarts.
    #[cfg(test)]
    pub fn due_assignments(
        &self,
        name: &DepName,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        self.read_located(
            name,
            |ix| ix.due_where(now_unix, limit, |_| true),
            |wanted| self.assignments_at(name, wanted),
        )
    }

    /// The serials of [`Self::due_assignments`], from the index alone,
    /// passing over those `keep` refuses: the assigner's pass skips what it
    /// has already sent, some of which may still be due while their answer
    /// is being recorded. Recording the answer reads the records.
    pub fn due_serials_where(
        &self,
        name: &DepName,
        now_unix: i64,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        self.with_index(name, |ix| {
            Ok(ix
                .due_where(now_unix, limit, keep)
                .into_iter()
                .map(|(serial, _)| serial)
                .collect())
        })
    }

    /// The earliest time an assignment record of `name` is due.
    pub fn next_due_assignment(&self, name: &DepName) -> Result<Option<i64>, StoreError> {
        self.with_index(name, |ix| Ok(ix.next_due()))
    }

    /// Up to `limit` assignment records in serial order after `after`, for
    /// `GET /v1/assignments/{name}`.
    pub fn scan_assignments(
        &self,
        name: &DepName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        self.read_located(
            name,
            |ix| {
                let mut found = Vec::new();
                ix.each_assignment(|serial, loc, _| {
                    if after.is_none_or(|a| serial > a) {
                        found.push((serial.to_owned(), loc));
                    }
                });
                found.sort_unstable();
                found.truncate(limit);
                found
            },
            |wanted| self.assignments_at(name, wanted),
        )
    }

    /// Assignment counts by result, cooldowns pending and serials given up,
    /// from the index.
    pub fn assignment_counts(
        &self,
        name: &DepName,
        now_unix: i64,
    ) -> Result<AssignmentCounts, StoreError> {
        self.with_index(name, |ix| {
            let mut c = AssignmentCounts::default();
            ix.each_assignment(|_, _, a| {
                *c.by_result.entry(result_of(a.result).as_str()).or_default() += 1;
                c.cooling_down += u64::from(a.next_retry_unix.is_some_and(|t| t > now_unix));
                c.gave_up += u64::from(a.gave_up);
            });
            Ok(c)
        })
    }

    /// The oldest `limit` webhook events of a name, with their sequence
    /// numbers, in order, their bodies complete.
    pub fn outbox_peek(
        &self,
        name: &DepName,
        limit: usize,
    ) -> Result<Vec<(u64, PendingEvent)>, StoreError> {
        let p = prefix(OUTBOX, name);
        let mut out = Vec::new();
        for (k, v) in self.engine.scan(&p, None, limit)? {
            let Some(seq) = k[p.len()..].first_chunk::<8>() else {
                continue;
            };
            let entry: StoredOutboxEntry = decode_at(&k, &v)?;
            let body = match entry.body {
                StoredEventBody::Text(body) => body,
                // The segment's JSON stays while this event refers to it.
                StoredEventBody::Page { head, seg, tail } => {
                    let jk = seg_key(JSON_SEG, name, seg);
                    let Some(json) = self.engine.get(&jk)? else {
                        // Delivered and removed (with its page) since the
                        // scan read it: nothing to send.
                        if self.engine.get(&k)?.is_none() {
                            continue;
                        }
                        return Err(corrupt(format!(
                            "the page text of webhook event {} of {name} (segment {seg}) is missing",
                            entry.event_id
                        )));
                    };
                    let json: StoredJsonSegment = decode_at(&jk, &json)?;
                    let page = json.page.trim();
                    let mut body = String::with_capacity(head.len() + page.len() + tail.len());
                    body.push_str(&head);
                    body.push_str(page);
                    body.push_str(&tail);
                    body
                }
            };
            out.push((
                u64::from_be_bytes(*seq),
                PendingEvent {
                    event_id: entry.event_id,
                    topic: entry.topic,
                    created_unix: entry.created_unix,
                    body,
                },
            ));
        }
        Ok(out)
    }

    /// Removes delivered events, atomically, with the page text of a
    /// segment no record or event needs any more. The deliverer removes
    /// from the head of the outbox (delivery is in order), which keeps the
    /// sequence numbers of what is left contiguous.
    pub fn outbox_remove(&self, name: &DepName, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.with_index(name, |ix| {
            let mut writes = Vec::with_capacity(seqs.len());
            let mut dropped = Vec::new();
            for s in seqs {
                let k = key(OUTBOX, name, &s.to_be_bytes());
                if let Some(v) = self.engine.get(&k)?
                    && let StoredEventBody::Page { seg, .. } =
                        decode_at::<StoredOutboxEntry>(&k, &v)?.body
                {
                    dropped.push(seg);
                }
                writes.push(Write::Delete(k));
            }
            // A segment's JSON goes with the last event referring to it,
            // unless records of the segment still live.
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for seg in &dropped {
                *counts.entry(*seg).or_default() += 1;
            }
            for (seg, n) in counts {
                if ix.outbox_refs_of(seg) <= n && ix.devices.live(seg) == 0 {
                    writes.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
                }
            }
            // Not flushed: delivery is at least once, so a removal lost in
            // a crash only means the event goes out again (and the index,
            // rebuilt then, counts its reference again). The next commit
            // (the next page) or sled's flush every half second makes it
            // durable.
            self.engine.apply(writes)?;
            for seg in dropped {
                ix.drop_outbox_ref(seg);
            }
            Ok(())
        })
    }

    /// How many webhook events wait for delivery: outbox entries are
    /// contiguous (see [`Store::outbox_remove`]), so this is the distance
    /// from the oldest to the next sequence number, without reading any
    /// event's body.
    pub fn outbox_backlog(&self, name: &DepName) -> Result<u64, StoreError> {
        // A name that never had an event has no sequence number (it is
        // written in the batch of every event): no scan.
        let seq_key = prefix(OUTBOX_SEQ, name);
        let Some(v) = self.engine.get(&seq_key)? else {
            return Ok(0);
        };
        let next = decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next;
        let p = prefix(OUTBOX, name);
        let oldest = self.engine.first_key(&p)?.and_then(|k| {
            k[p.len()..]
                .first_chunk::<8>()
                .map(|s| u64::from_be_bytes(*s))
        });
        Ok(oldest.map_or(0, |oldest| next.saturating_sub(oldest)))
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
