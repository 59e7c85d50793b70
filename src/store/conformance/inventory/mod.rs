//! The typed store and the inventory over an engine. The scenarios are
//! grouped by collection; the helpers they share are here.

use super::super::*;
use crate::dep::wire::Device;
use std::collections::BTreeMap;

mod pages;
mod queues;
mod records;
mod segments;
pub(in crate::store::conformance) use pages::*;
pub(in crate::store::conformance) use queues::*;
pub(in crate::store::conformance) use records::*;
pub(in crate::store::conformance) use segments::*;

/// An engine wrapper that counts commits and can be told to fail them, to
/// prove a page is one batch and that a failed batch leaves nothing.
pub(in crate::store::conformance) struct Flaky {
    inner: Arc<dyn Engine>,
    commits: std::sync::atomic::AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    /// The prefixes scanned, in order.
    scans: Mutex<Vec<Vec<u8>>>,
    flushes: std::sync::atomic::AtomicUsize,
    /// Flushes fail (batches still apply).
    fail_flush: std::sync::atomic::AtomicBool,
    /// Runs once, right after the next scan of a prefix starting with the
    /// given bytes has read its entries: another thread's write landing
    /// between a reader's scan and its next read.
    after_scan: Mutex<Option<AfterScan>>,
}

pub(in crate::store::conformance) type AfterScan = (Vec<u8>, Box<dyn FnOnce(&dyn Engine) + Send>);

impl Flaky {
    fn new(inner: Arc<dyn Engine>) -> Self {
        Flaky {
            inner,
            commits: Default::default(),
            fail: Default::default(),
            scans: Default::default(),
            flushes: Default::default(),
            fail_flush: Default::default(),
            after_scan: Default::default(),
        }
    }
}

impl Engine for Flaky {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(prefix.to_vec());
        let found = self.inner.scan(prefix, after, limit)?;
        let mut hook = self
            .after_scan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hook.as_ref().is_some_and(|(p, _)| prefix.starts_with(p))
            && let Some((_, then)) = hook.take()
        {
            then(self.inner.as_ref());
        }
        Ok(found)
    }
    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Engine("injected failure".into()));
        }
        self.inner.apply(writes)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_flush.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Engine("injected flush failure".into()));
        }
        self.inner.flush()
    }
}

pub(in crate::store::conformance) const T: i64 = 1_700_000_000;

pub(in crate::store::conformance) fn device(
    serial: &str,
    op: &str,
    date: Option<&str>,
    status: &str,
    uuid: &str,
) -> Device {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Device {
        serial_number: serial.into(),
        op_type: some(op),
        op_date: date.map(Into::into),
        profile_status: some(status),
        profile_uuid: some(uuid),
        ..Default::default()
    }
}

pub(in crate::store::conformance) fn sync_at(cursor: &str) -> StoredSync {
    StoredSync {
        phase: SyncPhase::Sync,
        cursor: Some(cursor.into()),
        cursor_unix: Some(T),
        last_cycle: None,
    }
}

pub(in crate::store::conformance) fn apply(
    store: &Store,
    name: &DepName,
    devices: &[Device],
    fetched_until: Option<&str>,
    cursor: &str,
    now: i64,
) -> PageSummary {
    let devices = input(devices);
    store
        .apply_page(
            name,
            PageApply {
                flush: true,
                text: None,
                devices: &devices,
                fetched_until,
                sync: &sync_at(cursor),
                outbox: None,
                assignments: AssignQueue::none(),
                now_unix: now,
            },
            |_| {},
        )
        .expect("apply page")
}

/// Apple's devices as the store takes them, converted as the sync loop
/// does.
pub(in crate::store) fn input(devices: &[Device]) -> Vec<crate::store::DeviceIn<'_>> {
    crate::sync::persist::devices_in(devices).expect("devices")
}

pub(in crate::store::conformance) fn pending(now: i64) -> StoredAssignment {
    StoredAssignment {
        profile_uuid: "P".into(),
        result: AssignResult::Pending,
        attempts: 0,
        failures: 0,
        last_attempt_unix: None,
        next_retry_unix: Some(now),
        gave_up: false,
        rule: None,
    }
}

/// A page read as sync reads it (devices as spans of its text) and applied
/// with its webhook event.
pub(in crate::store::conformance) fn apply_text(
    store: &Store,
    name: &DepName,
    text: &str,
    event: &str,
    now: i64,
) -> PageSummary {
    let crate::dep::wire::SyncPage(page) = crate::dep::wire::SyncPage::parse(text).expect("page");
    let devices = input(&page.devices);
    store
        .apply_page(
            name,
            PageApply {
                flush: true,
                devices: &devices,
                text: Some(text),
                fetched_until: None,
                sync: &sync_at(&page.cursor),
                outbox: Some(OutboxEntry {
                    event_id: event.into(),
                    topic: "dep.SyncDevices".into(),
                    body: EventBody::AroundPage {
                        head: format!(r#"{{"event_id":"{event}","page":"#),
                        tail: "}".into(),
                    },
                }),
                assignments: AssignQueue::none(),
                now_unix: now,
            },
            |_| {},
        )
        .expect("apply page")
}

pub(in crate::store::conformance) fn page_text(
    cursor: &str,
    serials: &[&str],
    date: &str,
) -> String {
    let devices: Vec<String> = serials
        .iter()
        .map(|s| {
            format!(
                r#"{{"serial_number":"{s}","op_type":"modified","op_date":"{date}","extra":{{"k":[1,"{cursor}"]}}}}"#
            )
        })
        .collect();
    format!(
        " {{\"cursor\":\"{cursor}\",\"devices\":[ {} ],\"more_to_follow\":false}}\n",
        devices.join(" , ")
    )
}
