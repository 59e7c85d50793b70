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

use super::{
    AssignResult, Entry, Field, Store, StoreError, StoredAssignment, StoredDevice,
    StoredOutboxEntry, StoredSync, Write, field_key,
};
use crate::domain::name::DepName;
use crate::store::index::{AssignFacts, DeviceFacts, Loc, NameIndex, SEGMENT_MAX, is_sparse};
use crate::store::record::{
    self, DeviceSegmentRef, JsonSegmentRef, Record, StoredAssignmentSegment, StoredDeviceFields,
    StoredDeviceSegment, StoredEventBody, StoredJsonSegment, StoredOutboxSeq, StoredRemoval,
};
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

/// A device of a page as the store takes it: the fields it keeps apart
/// from the JSON, and where that JSON is. Not Apple's wire type: the sync
/// loop converts at its boundary (`sync::persist::devices_in`), so a
/// change to what depd reads from Apple does not reach the storage format.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceIn<'a> {
    pub serial: &'a str,
    /// Apple's `op_type` (`added`, `modified`, `deleted`), if any.
    pub op_type: Option<&'a str>,
    /// Apple's `op_date`, RFC 3339, if any.
    pub op_date: Option<&'a str>,
    pub profile_status: Option<&'a str>,
    pub profile_uuid: Option<&'a str>,
    pub json: DeviceJson<'a>,
}

/// Where the JSON of a [`DeviceIn`] is.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceJson<'a> {
    /// A span (start, length in bytes) of the text of the page being
    /// applied ([`PageApply::text`]), which must then be given.
    Span(u32, u32),
    /// Its own text.
    Text(std::borrow::Cow<'a, str>),
}

/// The record of a device of a page, and where its JSON comes from.
fn stored_device(
    device: &DeviceIn<'_>,
    page: Option<&str>,
    op_date_unix: Option<i64>,
    first_seen_unix: i64,
    now_unix: i64,
) -> Result<(StoredDeviceFields, Text), StoreError> {
    let text = match &device.json {
        DeviceJson::Span(start, len) if span_of(page, *start, *len).is_some() => {
            Text::Page(*start, *len)
        }
        // Read from a page whose text is not at hand: its fields alone
        // would lose what Apple sent.
        DeviceJson::Span(..) => {
            return Err(StoreError::Engine(format!(
                "the JSON of device {} is not in the page given",
                device.serial
            )));
        }
        DeviceJson::Text(text) => Text::Own(text.to_string()),
    };
    let op_type = device.op_type.unwrap_or_default().to_owned();
    Ok((
        StoredDeviceFields {
            serial: device.serial.to_owned(),
            deleted: op_type == "deleted",
            op_type,
            op_date_unix,
            profile_status: device.profile_status.unwrap_or_default().to_owned(),
            profile_uuid: device.profile_uuid.unwrap_or_default().to_owned(),
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

const RESULTS: [AssignResult; 6] = [
    AssignResult::Pending,
    AssignResult::Success,
    AssignResult::NotAccessible,
    AssignResult::Failed,
    AssignResult::Throttled,
    AssignResult::Cancelled,
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

mod assignments;
mod devices;
mod index_io;
mod outbox;
mod pages;
mod removals;

/// Everything one page of devices changes, written in one atomic batch.
#[derive(Debug)]
pub struct PageApply<'a> {
    /// The page's devices.
    pub devices: &'a [DeviceIn<'a>],
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
/// `decide` says what to write for the serial (nothing: leave it as it
/// is).
pub struct AssignQueue<'a> {
    pub candidates: Vec<String>,
    pub decide: &'a dyn Fn(&str, Option<&StoredAssignment>) -> Option<StoredAssignment>,
}

impl AssignQueue<'_> {
    /// No assignment work.
    pub fn none() -> Self {
        AssignQueue {
            candidates: Vec::new(),
            decide: &|_, _| None,
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
