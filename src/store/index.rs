//! The in-memory index of a name's devices and assignment records.
//!
//! Devices and assignment records are stored in *segments*: one engine value
//! holds the records written by one batch (a page of devices, the answer to
//! one assignment call), so applying a page of 1000 devices is a handful of
//! engine writes instead of thousands. The index says where the current
//! record of each serial lives (segment, slot) and keeps the few fields that
//! decisions and counts need (op date, first seen, labels, assignment
//! result and due time), so the hot path never reads a segment back.
//!
//! The index is derived data: it is rebuilt from the segments when a name is
//! first used after start (`Store::index`). Segment numbers only grow, so
//! when a serial appears in several segments the highest one holds its
//! current record. A segment whose records were all superseded is deleted in
//! the batch that superseded the last one; one that is less than half live
//! is compacted (its live records moved into the batch's new segment).
//!
//! Memory: one 48-byte entry per serial plus a 4-byte hash slot (about
//! 60 MB for 1,000,000 serials), and 8 bytes per assignment that is due.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// A serial's key in the index: serials of up to 15 bytes inline (Apple's
/// serials are 10 to 12 characters), longer ones by number in `long`.
type Key = [u8; 16];
const LONG: u8 = 0xFF;
const INLINE_MAX: usize = 15;

/// No segment (the serial has no record of that kind).
pub(super) const NONE: u32 = u32::MAX;

/// At most this many records per segment (slots are `u16`).
pub(super) const SEGMENT_MAX: usize = 4096;

/// Segments with fewer live records than this are folded into the next
/// batch's segment.
pub(super) const SMALL_SEGMENT: u32 = 64;

/// Whether a segment of `len` records of which `live` are current is worth
/// compacting.
pub(super) fn is_sparse(len: u32, live: u32) -> bool {
    live > 0 && (live * 2 < len || live < SMALL_SEGMENT)
}

/// Flags of an entry.
const DELETED: u8 = 1;
const GAVE_UP: u8 = 2;

/// Where a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Loc {
    pub seg: u32,
    pub slot: u16,
}

/// What the index keeps of one serial.
#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    dev_seg: u32,
    asg_seg: u32,
    /// Unix seconds, 0 for none (times before 1970 do not occur).
    op_date: u32,
    first_seen: u32,
    /// Unix seconds the assignment is due, 0 for not due.
    next_retry: u32,
    dev_slot: u16,
    asg_slot: u16,
    op_type: u16,
    profile_status: u16,
    result: u8,
    flags: u8,
}

/// The device fields the index keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceFacts<'a> {
    pub op_date_unix: Option<i64>,
    pub first_seen_unix: i64,
    pub op_type: &'a str,
    pub profile_status: &'a str,
    pub deleted: bool,
}

/// The assignment fields the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AssignFacts {
    pub result: u8,
    pub next_retry_unix: Option<i64>,
    pub gave_up: bool,
}

/// A device as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DeviceView {
    pub loc: Loc,
    pub op_date_unix: Option<i64>,
    pub first_seen_unix: i64,
}

fn to_u32(t: Option<i64>) -> u32 {
    t.map_or(0, |t| u32::try_from(t.max(1)).unwrap_or(u32::MAX))
}

fn from_u32(t: u32) -> Option<i64> {
    (t != 0).then_some(i64::from(t))
}

/// Segment bookkeeping of one kind of record.
#[derive(Debug, Default)]
pub(super) struct Segments {
    /// The number the next new segment gets.
    pub next: u32,
    /// Record count and live count of every stored segment.
    pub sizes: BTreeMap<u32, (u32, u32)>,
}

impl Segments {
    pub fn live(&self, seg: u32) -> u32 {
        self.sizes.get(&seg).map_or(0, |s| s.1)
    }

    pub fn len(&self, seg: u32) -> u32 {
        self.sizes.get(&seg).map_or(0, |s| s.0)
    }

    /// Segments worth compacting: less than half of their records live,
    /// or fewer than [`SMALL_SEGMENT`] (small batches, such as the few
    /// events of a quiet sync, are folded together).
    pub fn sparse(&self) -> impl Iterator<Item = u32> + '_ {
        self.sizes
            .iter()
            .filter(|(_, (len, live))| is_sparse(*len, *live))
            .map(|(seg, _)| *seg)
    }

    fn add(&mut self, seg: u32, len: u32) {
        self.sizes.entry(seg).or_insert((len, 0));
        self.next = self.next.max(seg.saturating_add(1));
    }

    fn inc(&mut self, seg: u32) {
        if let Some(s) = self.sizes.get_mut(&seg) {
            s.1 += 1;
        }
    }

    fn dec(&mut self, seg: u32) {
        if let Some(s) = self.sizes.get_mut(&seg) {
            s.1 = s.1.saturating_sub(1);
            if s.1 == 0 {
                self.sizes.remove(&seg);
            }
        }
    }
}

/// A small string interner for labels (`op_type`, `profile_status`).
#[derive(Debug, Default)]
struct Labels {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u16>,
}

impl Labels {
    fn id(&mut self, s: &str) -> u16 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        // More distinct labels than fit would be a broken upstream; they
        // share the last id rather than fail a page.
        let id = u16::try_from(self.names.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.names.push(s.into());
            self.ids.insert(s.into(), id);
        }
        id
    }

    fn name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or("other", |s| s)
    }
}

/// The index of one name.
#[derive(Debug)]
pub(super) struct NameIndex {
    table: HashTable<u32>,
    /// foldhash (hashbrown's default): SipHash was 1.6 % of depd's CPU in a
    /// sync profile, for keys that are Apple's serial numbers.
    hasher: DefaultHashBuilder,
    entries: Vec<Entry>,
    long: HashMap<Box<str>, u32>,
    long_names: Vec<Box<str>>,
    labels: Labels,
    pub devices: Segments,
    pub assigns: Segments,
    /// Due assignments: (due unix, entry number).
    due: BTreeSet<(u32, u32)>,
    /// Device segments whose JSON (their page's text) webhook events still
    /// waiting for delivery refer to, with how many: that JSON stays when
    /// the segment's last record is superseded, and goes with the last such
    /// event.
    pub outbox_refs: HashMap<u32, u32>,
}

impl Default for NameIndex {
    fn default() -> Self {
        NameIndex {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            entries: Vec::new(),
            long: HashMap::new(),
            long_names: Vec::new(),
            labels: Labels::default(),
            devices: Segments::default(),
            assigns: Segments::default(),
            due: BTreeSet::new(),
            outbox_refs: HashMap::new(),
        }
    }
}

fn inline_key(serial: &str) -> Option<Key> {
    let b = serial.as_bytes();
    if b.len() > INLINE_MAX {
        return None;
    }
    let mut key = [0u8; 16];
    key[0] = b.len() as u8;
    key[1..=b.len()].copy_from_slice(b);
    Some(key)
}

impl NameIndex {
    fn find(&self, serial: &str) -> Option<u32> {
        match inline_key(serial) {
            Some(key) => {
                let hash = self.hasher.hash_one(key);
                self.table
                    .find(hash, |&i| self.entries[i as usize].key == key)
                    .copied()
            }
            None => self.long.get(serial).copied(),
        }
    }

    fn find_or_insert(&mut self, serial: &str) -> u32 {
        if let Some(i) = self.find(serial) {
            return i;
        }
        let i = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        let key = match inline_key(serial) {
            Some(key) => {
                let hash = self.hasher.hash_one(key);
                let (entries, hasher) = (&self.entries, &self.hasher);
                self.table
                    .insert_unique(hash, i, |&j| hasher.hash_one(entries[j as usize].key));
                key
            }
            None => {
                let n = u32::try_from(self.long_names.len()).unwrap_or(u32::MAX);
                self.long_names.push(serial.into());
                self.long.insert(serial.into(), i);
                let mut key = [0u8; 16];
                key[0] = LONG;
                key[1..5].copy_from_slice(&n.to_le_bytes());
                key
            }
        };
        self.entries.push(Entry {
            key,
            dev_seg: NONE,
            asg_seg: NONE,
            op_date: 0,
            first_seen: 0,
            next_retry: 0,
            dev_slot: 0,
            asg_slot: 0,
            op_type: 0,
            profile_status: 0,
            result: 0,
            flags: 0,
        });
        i
    }

    fn serial_of<'a>(&'a self, e: &'a Entry) -> &'a str {
        if e.key[0] == LONG {
            let n = u32::from_le_bytes([e.key[1], e.key[2], e.key[3], e.key[4]]);
            return self.long_names.get(n as usize).map_or("", |s| s);
        }
        let len = usize::from(e.key[0]).min(INLINE_MAX);
        std::str::from_utf8(&e.key[1..=len]).unwrap_or("")
    }

    /// How many serials the index knows.
    pub fn serials(&self) -> usize {
        self.entries.len()
    }

    /// The device record of a serial, as the index knows it.
    pub fn device(&self, serial: &str) -> Option<DeviceView> {
        let e = &self.entries[self.find(serial)? as usize];
        (e.dev_seg != NONE).then(|| DeviceView {
            loc: Loc {
                seg: e.dev_seg,
                slot: e.dev_slot,
            },
            op_date_unix: from_u32(e.op_date),
            first_seen_unix: i64::from(e.first_seen),
        })
    }

    /// Where a serial's assignment record lives.
    pub fn assignment(&self, serial: &str) -> Option<Loc> {
        let e = &self.entries[self.find(serial)? as usize];
        (e.asg_seg != NONE).then_some(Loc {
            seg: e.asg_seg,
            slot: e.asg_slot,
        })
    }

    /// Whether `loc` holds the current device record of `serial`.
    pub fn is_current_device(&self, serial: &str, loc: Loc) -> bool {
        self.device(serial).is_some_and(|d| d.loc == loc)
    }

    pub fn is_current_assignment(&self, serial: &str, loc: Loc) -> bool {
        self.assignment(serial) == Some(loc)
    }

    /// Records that `serial`'s device record now lives at `loc`.
    pub fn set_device(&mut self, serial: &str, loc: Loc, facts: &DeviceFacts<'_>) {
        let i = self.find_or_insert(serial) as usize;
        let (op_type, status) = (
            self.labels.id(facts.op_type),
            self.labels.id(facts.profile_status),
        );
        let old = self.entries[i].dev_seg;
        if old != NONE {
            self.devices.dec(old);
        }
        self.devices.inc(loc.seg);
        let e = &mut self.entries[i];
        e.dev_seg = loc.seg;
        e.dev_slot = loc.slot;
        e.op_date = to_u32(facts.op_date_unix);
        e.first_seen = to_u32(Some(facts.first_seen_unix));
        e.op_type = op_type;
        e.profile_status = status;
        e.flags = (e.flags & !DELETED) | if facts.deleted { DELETED } else { 0 };
    }

    /// Records that `serial`'s assignment record now lives at `loc`.
    pub fn set_assignment(&mut self, serial: &str, loc: Loc, facts: AssignFacts) {
        let i = self.find_or_insert(serial);
        let e = &self.entries[i as usize];
        let (old_seg, old_due) = (e.asg_seg, e.next_retry);
        if old_seg != NONE {
            self.assigns.dec(old_seg);
        }
        if old_due != 0 {
            self.due.remove(&(old_due, i));
        }
        self.assigns.inc(loc.seg);
        let due = to_u32(facts.next_retry_unix);
        if due != 0 {
            self.due.insert((due, i));
        }
        let e = &mut self.entries[i as usize];
        e.asg_seg = loc.seg;
        e.asg_slot = loc.slot;
        e.next_retry = due;
        e.result = facts.result;
        e.flags = (e.flags & !GAVE_UP) | if facts.gave_up { GAVE_UP } else { 0 };
    }

    /// Registers a new segment of `len` records (before its records are
    /// set).
    pub fn add_device_segment(&mut self, seg: u32, len: usize) {
        self.devices
            .add(seg, u32::try_from(len).unwrap_or(u32::MAX));
    }

    pub fn add_assignment_segment(&mut self, seg: u32, len: usize) {
        self.assigns
            .add(seg, u32::try_from(len).unwrap_or(u32::MAX));
    }

    /// A webhook event now refers to segment `seg`'s JSON.
    pub fn add_outbox_ref(&mut self, seg: u32) {
        *self.outbox_refs.entry(seg).or_default() += 1;
    }

    /// A webhook event referring to `seg`'s JSON was delivered.
    pub fn drop_outbox_ref(&mut self, seg: u32) {
        if let Some(n) = self.outbox_refs.get_mut(&seg) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.outbox_refs.remove(&seg);
            }
        }
    }

    /// How many webhook events waiting for delivery refer to `seg`'s JSON.
    pub fn outbox_refs_of(&self, seg: u32) -> u32 {
        self.outbox_refs.get(&seg).copied().unwrap_or(0)
    }

    /// Whether a webhook event still needs segment `seg`'s JSON.
    pub fn has_outbox_ref(&self, seg: u32) -> bool {
        self.outbox_refs.contains_key(&seg)
    }

    /// Forgets segments no record points to (after a rebuild: their
    /// records were all superseded by later segments).
    pub fn retain_live(&mut self) {
        self.devices.sizes.retain(|_, (_, live)| *live > 0);
        self.assigns.sizes.retain(|_, (_, live)| *live > 0);
    }

    /// Up to `limit` serials whose assignment is due at `now_unix` or
    /// earlier, earliest first, with where their records live. Serials
    /// `keep` refuses are passed over and do not count towards `limit`.
    pub fn due_where(
        &self,
        now_unix: i64,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, Loc)> {
        let now = u32::try_from(now_unix.max(0)).unwrap_or(u32::MAX);
        self.due
            .iter()
            .take_while(|(due, _)| *due <= now)
            .filter_map(|&(_, i)| {
                let e = &self.entries[i as usize];
                let serial = self.serial_of(e);
                (e.asg_seg != NONE && keep(serial)).then(|| {
                    (
                        serial.to_owned(),
                        Loc {
                            seg: e.asg_seg,
                            slot: e.asg_slot,
                        },
                    )
                })
            })
            .take(limit)
            .collect()
    }

    /// The earliest time an assignment record is due, if any is.
    pub fn next_due(&self) -> Option<i64> {
        self.due
            .iter()
            .find(|&&(_, i)| self.entries[i as usize].asg_seg != NONE)
            .and_then(|&(due, _)| from_u32(due))
    }

    /// Every device record: serial, where it lives, and its labels and
    /// deleted flag, in no particular order.
    pub fn each_device(&self, mut f: impl FnMut(&str, Loc, &str, &str, bool)) {
        for e in &self.entries {
            if e.dev_seg != NONE {
                f(
                    self.serial_of(e),
                    Loc {
                        seg: e.dev_seg,
                        slot: e.dev_slot,
                    },
                    self.labels.name(e.op_type),
                    self.labels.name(e.profile_status),
                    e.flags & DELETED != 0,
                );
            }
        }
    }

    /// Every assignment record: serial, where it lives, and its facts.
    pub fn each_assignment(&self, mut f: impl FnMut(&str, Loc, AssignFacts)) {
        for e in &self.entries {
            if e.asg_seg != NONE {
                f(
                    self.serial_of(e),
                    Loc {
                        seg: e.asg_seg,
                        slot: e.asg_slot,
                    },
                    AssignFacts {
                        result: e.result,
                        next_retry_unix: from_u32(e.next_retry),
                        gave_up: e.flags & GAVE_UP != 0,
                    },
                );
            }
        }
    }

    /// The first device segment after `after` (all when `None`).
    pub fn next_device_segment(&self, after: Option<u32>) -> Option<u32> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        if after == Some(u32::MAX) {
            return None;
        }
        self.devices.sizes.range(start..).next().map(|(s, _)| *s)
    }
}

#[cfg(test)]
mod tests;
