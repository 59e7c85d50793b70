//! Stored record types and their encoding: one version byte, then the
//! bincode (2.x, standard configuration) encoding of the serde value.
//!
//! These types are depd's storage format and nothing else: the API and
//! Apple's wire JSON have their own types, converted at the boundary, so a
//! change to either does not silently change what is on disk. A new layout
//! gets a new version number and a `migrate` arm for the old one.

use crate::domain::tokens::{PkiPem, Tokens};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty value")]
    Empty,
    #[error("record version {found} is not known to this depd (newest known: {known})")]
    UnknownVersion { found: u8, known: u8 },
    #[error("undecodable record: {0}")]
    Decode(String),
}

/// A value stored in the engine.
pub trait Record: Serialize + DeserializeOwned {
    /// The version written by this build.
    const VERSION: u8;

    /// Reads a record written with an older `version`. The default knows no
    /// older versions.
    fn migrate(version: u8, _body: &[u8]) -> Result<Self, RecordError> {
        Err(RecordError::UnknownVersion {
            found: version,
            known: Self::VERSION,
        })
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub(crate) fn encode<R: Record>(value: &R) -> Vec<u8> {
    let mut out = vec![R::VERSION];
    // Encoding plain owned structs into a Vec cannot fail: bincode only
    // errors for writers that fail or for unsupported serde features
    // (which these record types do not use; the conformance tests prove it).
    if let Err(e) = bincode::serde::encode_into_std_write(value, &mut out, config()) {
        unreachable!("record encoding failed: {e}");
    }
    out
}

/// Encodes `value` as a record of type `R`: for a borrowed twin of `R`
/// whose serde shape is the same (`&str` for `String`, `&[T]` for
/// `Vec<T>`), so a large text is written without being copied into an
/// owned record first.
pub(crate) fn encode_as<R: Record, V: Serialize>(value: &V) -> Vec<u8> {
    let mut out = vec![R::VERSION];
    if let Err(e) = bincode::serde::encode_into_std_write(value, &mut out, config()) {
        unreachable!("record encoding failed: {e}");
    }
    out
}

pub(crate) fn decode<R: Record>(bytes: &[u8]) -> Result<R, RecordError> {
    let (&version, body) = bytes.split_first().ok_or(RecordError::Empty)?;
    if version != R::VERSION {
        return R::migrate(version, body);
    }
    decode_body(body)
}

/// The bincode body of a record (after its version byte), all of it.
pub(crate) fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RecordError> {
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| RecordError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(RecordError::Decode(format!(
            "{} trailing bytes",
            body.len() - used
        )));
    }
    Ok(value)
}

/// When a name was first stored. Present for every name with stored state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredMeta {
    pub created_unix: i64,
}

impl Record for StoredMeta {
    const VERSION: u8 = 1;
}

/// A name's OAuth1 credentials, as uploaded.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredTokens {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
    pub access_token_expiry_unix: i64,
}

impl Record for StoredTokens {
    const VERSION: u8 = 1;
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("consumer_key", &self.consumer_key)
            .field("access_token_expiry_unix", &self.access_token_expiry_unix)
            .finish_non_exhaustive()
    }
}

/// A token-PKI certificate and its private key, both PEM.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredPki {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Record for StoredPki {
    const VERSION: u8 = 1;
}

// The boundary between the records and the domain values they hold.

impl From<&Tokens> for StoredTokens {
    fn from(t: &Tokens) -> Self {
        StoredTokens {
            consumer_key: t.consumer_key.clone(),
            consumer_secret: t.consumer_secret.clone(),
            access_token: t.access_token.clone(),
            access_secret: t.access_secret.clone(),
            access_token_expiry_unix: t.access_token_expiry_unix,
        }
    }
}

impl From<&StoredTokens> for Tokens {
    fn from(t: &StoredTokens) -> Self {
        Tokens {
            consumer_key: t.consumer_key.clone(),
            consumer_secret: t.consumer_secret.clone(),
            access_token: t.access_token.clone(),
            access_secret: t.access_secret.clone(),
            access_token_expiry_unix: t.access_token_expiry_unix,
        }
    }
}

impl From<&PkiPem> for StoredPki {
    fn from(p: &PkiPem) -> Self {
        StoredPki {
            cert_pem: p.cert_pem.clone(),
            key_pem: p.key_pem.clone(),
        }
    }
}

impl From<&StoredPki> for PkiPem {
    fn from(p: &StoredPki) -> Self {
        PkiPem {
            cert_pem: p.cert_pem.clone(),
            key_pem: p.key_pem.clone(),
        }
    }
}

impl fmt::Debug for StoredPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPki")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// The name's Apple base URL, as set through the config API.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredConfig {
    pub base_url: String,
}

impl Record for StoredConfig {
    const VERSION: u8 = 1;
}

/// The profile the assigner gives new devices, and when it was last changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredAssigner {
    pub profile_uuid: String,
    pub modified_unix: i64,
}

impl Record for StoredAssigner {
    const VERSION: u8 = 1;
}

/// A name's assignment rules (`sync::rules::RuleSet`) as the JSON the API
/// took, and when they last changed. Kept as JSON so the rule language
/// can grow without a new record layout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredRules {
    pub json: String,
    pub modified_unix: i64,
}

impl Record for StoredRules {
    const VERSION: u8 = 1;
}

/// A name's managed profiles (`sync::profiles::Profiles`) as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredProfiles {
    pub json: String,
}

impl Record for StoredProfiles {
    const VERSION: u8 = 1;
}

/// Which request a name's sync loop makes next: `/server/devices` (fetch)
/// or `/devices/sync`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncPhase {
    #[default]
    Fetch,
    Sync,
}

/// How a sync cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CycleOutcome {
    /// Apple said `more_to_follow: false`.
    Complete,
    /// Apple handed back a cursor it had already given in this cycle while
    /// saying there was more: stopped instead of looping.
    RepeatedCursor,
    Failed,
}

/// The last finished sync cycle, for status and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCycle {
    pub started_unix: i64,
    pub ended_unix: i64,
    pub outcome: CycleOutcome,
    pub error: Option<String>,
    pub pages: u64,
    /// Devices by `op_type` (`none` for devices without one, as on fetch).
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// A name's sync position: phase and cursor survive restarts, so a
/// restarted daemon continues where it stopped instead of fetching again.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredSync {
    pub phase: SyncPhase,
    pub cursor: Option<String>,
    /// When Apple handed out `cursor` (Apple expires cursors after 7 days).
    pub cursor_unix: Option<i64>,
    pub last_cycle: Option<StoredCycle>,
}

impl Record for StoredSync {
    const VERSION: u8 = 1;
}

/// One device of the inventory: the latest event Apple sent for its serial,
/// as sent (JSON text, unknown keys included), plus depd's own fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredDevice {
    pub serial: String,
    /// The device object exactly as Apple sent it, as JSON text.
    pub json: String,
    /// `added`, `modified`, `deleted`, or empty (fetch).
    pub op_type: String,
    /// The event's `op_date`, else the page's `fetched_until`: the moment
    /// this description was true, used to refuse stale events.
    pub op_date_unix: Option<i64>,
    pub profile_status: String,
    pub profile_uuid: String,
    pub first_seen_unix: i64,
    pub last_event_unix: i64,
    /// Apple reported the device deleted; the record stays for history.
    pub deleted: bool,
}

impl Record for StoredDevice {
    const VERSION: u8 = 1;
}

/// A device record's fields in a device segment (`index.rs`): everything
/// of [`StoredDevice`] but the JSON, which lives in the segment's
/// [`StoredJsonSegment`] so that rebuilding the index reads only this.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredDeviceFields {
    pub serial: String,
    pub op_type: String,
    pub op_date_unix: Option<i64>,
    pub profile_status: String,
    pub profile_uuid: String,
    pub first_seen_unix: i64,
    pub last_event_unix: i64,
    pub deleted: bool,
}

impl StoredDeviceFields {
    pub fn split(d: StoredDevice) -> (StoredDeviceFields, String) {
        (
            StoredDeviceFields {
                serial: d.serial,
                op_type: d.op_type,
                op_date_unix: d.op_date_unix,
                profile_status: d.profile_status,
                profile_uuid: d.profile_uuid,
                first_seen_unix: d.first_seen_unix,
                last_event_unix: d.last_event_unix,
                deleted: d.deleted,
            },
            d.json,
        )
    }

    pub fn join(self, json: String) -> StoredDevice {
        StoredDevice {
            serial: self.serial,
            json,
            op_type: self.op_type,
            op_date_unix: self.op_date_unix,
            profile_status: self.profile_status,
            profile_uuid: self.profile_uuid,
            first_seen_unix: self.first_seen_unix,
            last_event_unix: self.last_event_unix,
            deleted: self.deleted,
        }
    }
}

/// The device records written by one batch, slot by slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredDeviceSegment {
    pub devices: Vec<StoredDeviceFields>,
}

impl Record for StoredDeviceSegment {
    const VERSION: u8 = 1;
}

/// [`StoredDeviceSegment`] borrowed, for writing.
#[derive(serde::Serialize)]
pub struct DeviceSegmentRef<'a> {
    pub devices: &'a [StoredDeviceFields],
}

/// The devices' JSON of a device segment, slot by slot. The first segment
/// of a page holds the page's whole text as Apple sent it (`page`), which
/// its devices' texts are ranges of and the page's webhook event reads
/// too; texts from elsewhere (records moved by compaction, devices without
/// a page) follow in `extra`. Each slot is `(start, len)` in `page`
/// followed by `extra`.
///
/// Version 1 kept one string per slot (`{json: Vec<String>}`), so a page's
/// text was stored twice (here and in its webhook event); it is read into
/// this shape.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredJsonSegment {
    pub page: String,
    pub extra: String,
    pub spans: Vec<(u32, u32)>,
}

/// [`StoredJsonSegment`] borrowed, for writing.
#[derive(serde::Serialize)]
pub struct JsonSegmentRef<'a> {
    pub page: &'a str,
    pub extra: &'a str,
    pub spans: &'a [(u32, u32)],
}

impl Record for StoredJsonSegment {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        #[derive(serde::Deserialize)]
        struct V1 {
            json: Vec<String>,
        }
        match version {
            1 => {
                let v1: V1 = decode_body(body)?;
                StoredJsonSegment::from_texts(v1.json.iter().map(String::as_str))
                    .ok_or_else(|| RecordError::Decode("JSON segment over 4 GiB".into()))
            }
            _ => Err(RecordError::UnknownVersion {
                found: version,
                known: Self::VERSION,
            }),
        }
    }
}

impl StoredJsonSegment {
    /// A segment of the given texts and no page; `None` past 4 GiB.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut seg = StoredJsonSegment::default();
        for t in texts {
            let span = seg.push_extra(t)?;
            seg.spans.push(span);
        }
        Some(seg)
    }

    /// Appends `text` to `extra`; its span, or `None` past 4 GiB.
    pub fn push_extra(&mut self, text: &str) -> Option<(u32, u32)> {
        let start = u32::try_from(self.page.len() + self.extra.len()).ok()?;
        let len = u32::try_from(text.len()).ok()?;
        start.checked_add(len)?;
        self.extra.push_str(text);
        Some((start, len))
    }

    /// The text of `slot`; `None` for a slot out of range or a span that
    /// does not fall within `page` or within `extra` on character
    /// boundaries (a damaged record).
    pub fn text(&self, slot: usize) -> Option<&str> {
        let (start, len) = *self.spans.get(slot)?;
        let (start, len) = (start as usize, len as usize);
        let end = start.checked_add(len)?;
        if end <= self.page.len() {
            self.page.get(start..end)
        } else {
            let at = start.checked_sub(self.page.len())?;
            self.extra.get(at..at + len)
        }
    }

    /// Every slot's text, owned; `None` when a span is damaged.
    pub fn into_texts(self) -> Option<Vec<String>> {
        (0..self.spans.len())
            .map(|i| self.text(i).map(str::to_owned))
            .collect()
    }
}

/// The result of the last assignment attempt of a serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AssignResult {
    /// Queued, not tried yet (or to be tried again).
    Pending,
    Success,
    NotAccessible,
    Failed,
    Throttled,
    /// Queued once, then no longer wanted (the rules changed): nothing
    /// more is tried.
    Cancelled,
}

impl AssignResult {
    /// The name Apple (and depd's API) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignResult::Pending => "PENDING",
            AssignResult::Success => "SUCCESS",
            AssignResult::NotAccessible => "NOT_ACCESSIBLE",
            AssignResult::Failed => "FAILED",
            AssignResult::Throttled => "THROTTLED",
            AssignResult::Cancelled => "CANCELLED",
        }
    }
}

/// A serial's assignment state. `next_retry_unix` is set while work is due
/// (now or later) and `None` when nothing more will be tried.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredAssignment {
    pub profile_uuid: String,
    pub result: AssignResult,
    /// Assignment calls made for this serial since it was queued.
    pub attempts: u32,
    /// Of those, answered `FAILED` (what the retry limit counts).
    pub failures: u32,
    pub last_attempt_unix: Option<i64>,
    pub next_retry_unix: Option<i64>,
    /// `FAILED` too often: no more automatic attempts (shown in status).
    pub gave_up: bool,
    /// What chose the profile: `pin`, `rule:<name>`, `assigner`; `None`
    /// for records from before rules.
    pub rule: Option<String>,
}

/// Version 1 of [`StoredAssignment`]: before `rule`.
#[derive(serde::Deserialize)]
struct StoredAssignmentV1 {
    profile_uuid: String,
    result: AssignResult,
    attempts: u32,
    failures: u32,
    last_attempt_unix: Option<i64>,
    next_retry_unix: Option<i64>,
    gave_up: bool,
}

impl From<StoredAssignmentV1> for StoredAssignment {
    fn from(v: StoredAssignmentV1) -> Self {
        StoredAssignment {
            profile_uuid: v.profile_uuid,
            result: v.result,
            attempts: v.attempts,
            failures: v.failures,
            last_attempt_unix: v.last_attempt_unix,
            next_retry_unix: v.next_retry_unix,
            gave_up: v.gave_up,
            rule: None,
        }
    }
}

impl Record for StoredAssignment {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            1 => decode_body::<StoredAssignmentV1>(body).map(Into::into),
            found => Err(RecordError::UnknownVersion {
                found,
                known: Self::VERSION,
            }),
        }
    }
}

/// The assignment records written by one batch, slot by slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredAssignmentSegment {
    pub records: Vec<(String, StoredAssignment)>,
}

impl Record for StoredAssignmentSegment {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        #[derive(serde::Deserialize)]
        struct V1 {
            records: Vec<(String, StoredAssignmentV1)>,
        }
        match version {
            1 => decode_body::<V1>(body).map(|v| StoredAssignmentSegment {
                records: v.records.into_iter().map(|(s, r)| (s, r.into())).collect(),
            }),
            found => Err(RecordError::UnknownVersion {
                found,
                known: Self::VERSION,
            }),
        }
    }
}

/// One webhook event waiting for delivery. The body is fixed when the
/// page is applied, so every retry sends the same bytes and `event_id`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredOutboxEntry {
    pub event_id: String,
    pub topic: String,
    pub created_unix: i64,
    pub body: StoredEventBody,
}

/// A webhook event's body.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum StoredEventBody {
    /// The whole body.
    Text(String),
    /// `head`, then the page text of device segment `seg`'s JSON
    /// ([`StoredJsonSegment::page`], without surrounding whitespace), then
    /// `tail`: the page is stored once, for the inventory and the event.
    /// The segment's JSON is kept while such an event refers to it.
    Page {
        head: String,
        seg: u32,
        tail: String,
    },
}

impl Record for StoredOutboxEntry {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        #[derive(serde::Deserialize)]
        struct V1 {
            event_id: String,
            topic: String,
            created_unix: i64,
            body: String,
        }
        match version {
            1 => {
                let v1: V1 = decode_body(body)?;
                Ok(StoredOutboxEntry {
                    event_id: v1.event_id,
                    topic: v1.topic,
                    created_unix: v1.created_unix,
                    body: StoredEventBody::Text(v1.body),
                })
            }
            _ => Err(RecordError::UnknownVersion {
                found: version,
                known: Self::VERSION,
            }),
        }
    }
}

/// A profile removal made through depd (its proxy or API), so the assigner
/// does not undo it when Apple reports the device `removed`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredRemoval {
    pub removed_unix: i64,
}

impl Record for StoredRemoval {
    const VERSION: u8 = 1;
}

/// The next outbox sequence number of a name (outbox keys must keep
/// growing even after every entry was delivered and deleted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredOutboxSeq {
    pub next: u64,
}

impl Record for StoredOutboxSeq {
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests;
