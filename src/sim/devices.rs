//! The device population and its event log, stored compactly (fixed-size
//! records, enums and table indices) so a million devices fit in well under
//! 100 MB; the JSON view is built only when a page is served.

use super::rng::Rng;
use serde::Serialize;
use std::collections::HashMap;

mod json;
pub(in crate::sim) use json::*;

/// Device families, as Apple names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Mac,
    IPhone,
    IPad,
    AppleTv,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Mac => "Mac",
            Family::IPhone => "iPhone",
            Family::IPad => "iPad",
            Family::AppleTv => "AppleTV",
        }
    }

    /// iPads report `iPadOS` from protocol version 7 on.
    fn os(self, protocol: u32) -> &'static str {
        match self {
            Family::Mac => "OSX",
            Family::IPhone => "iOS",
            Family::IPad if protocol >= 7 => "iPadOS",
            Family::IPad => "iOS",
            Family::AppleTv => "tvOS",
        }
    }
}

struct Model {
    name: &'static str,
    description: &'static str,
    family: Family,
}

const MODELS: &[Model] = &[
    Model {
        name: "MacBook Pro 14-inch",
        description: "MBP 14.2 SG/M3 PRO 11C CPU/14C GPU/18GB/512GB-USA",
        family: Family::Mac,
    },
    Model {
        name: "MacBook Pro 16-inch",
        description: "MBP 16.2 SB/M3 MAX 16C CPU/40C GPU/48GB/1TB-USA",
        family: Family::Mac,
    },
    Model {
        name: "MacBook Air 13-inch",
        description: "MBA 13.6 MDN/M2 8C CPU/8C GPU/8GB/256GB-USA",
        family: Family::Mac,
    },
    Model {
        name: "MacBook Air 15-inch",
        description: "MBA 15.3 STL/M3 8C CPU/10C GPU/16GB/512GB-USA",
        family: Family::Mac,
    },
    Model {
        name: "iMac 24-inch",
        description: "IMAC 24 BLU/M3 8C CPU/10C GPU/16GB/512GB-USA",
        family: Family::Mac,
    },
    Model {
        name: "Mac mini",
        description: "MAC MINI/M2 8C CPU/10C GPU/8GB/256GB-USA",
        family: Family::Mac,
    },
    Model {
        name: "iPhone 15 Pro",
        description: "IPHONE 15 PRO BLACK TITANIUM 128GB-USA",
        family: Family::IPhone,
    },
    Model {
        name: "iPhone 15",
        description: "IPHONE 15 BLUE 128GB-USA",
        family: Family::IPhone,
    },
    Model {
        name: "iPhone 14",
        description: "IPHONE 14 MIDNIGHT 128GB-USA",
        family: Family::IPhone,
    },
    Model {
        name: "iPhone SE (3rd generation)",
        description: "IPHONE SE STARLIGHT 64GB-USA",
        family: Family::IPhone,
    },
    Model {
        name: "iPad Pro 11-inch (4th generation)",
        description: "IPAD PRO 11 WI-FI 128GB SPACE GRAY-USA",
        family: Family::IPad,
    },
    Model {
        name: "iPad (10th generation)",
        description: "IPAD 10.9 WI-FI 64GB BLUE-USA",
        family: Family::IPad,
    },
    Model {
        name: "iPad Air (5th generation)",
        description: "IPAD AIR 10.9 WI-FI 64GB PURPLE-USA",
        family: Family::IPad,
    },
    Model {
        name: "Apple TV 4K",
        description: "APPLE TV 4K WI-FI 64GB-USA",
        family: Family::AppleTv,
    },
];

/// Index 0 means "no color": Apple omits the key for some devices.
const COLORS: &[&str] = &[
    "",
    "SPACE GRAY",
    "SILVER",
    "MIDNIGHT",
    "STARLIGHT",
    "BLACK",
    "BLUE",
    "GOLD",
];

const ASSIGNERS: &[&str] = &[
    "it-purchasing@example.com",
    "reseller-feed@apple.com",
    "asset-admin@example.com",
    "procurement@example.org",
];

/// Characters of Apple serial numbers (no `I` or `O`).
const SERIAL_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const LEGACY_PREFIXES: &[&[u8]] = &[b"C02", b"F9F", b"DMP", b"C1M", b"FVF"];

/// `profile_status` as Apple reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    Empty,
    Assigned,
    Pushed,
    Removed,
}

impl ProfileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileStatus::Empty => "",
            ProfileStatus::Assigned => "assigned",
            ProfileStatus::Pushed => "pushed",
            ProfileStatus::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Added,
    Modified,
    Deleted,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Added => "added",
            Op::Modified => "modified",
            Op::Deleted => "deleted",
        }
    }
}

const NO_PROFILE: u32 = u32::MAX;
const DELETED: u8 = 1;
const DISOWNED: u8 = 2;
const LOCKED: u8 = 4;

/// One device in 56 bytes.
#[derive(Debug, Clone)]
struct Dev {
    serial: [u8; 12],
    model: u8,
    color: u8,
    status: ProfileStatus,
    flags: u8,
    assigned_by: u8,
    profile: u32,
    asset_tag: u32,
    assign_time: i64,
    push_time: i64,
    assigned_date: i64,
}

impl Dev {
    fn serial(&self) -> &str {
        let len = self.serial.iter().position(|b| *b == 0).unwrap_or(12);
        // Serials are generated from ASCII characters only.
        std::str::from_utf8(&self.serial[..len]).unwrap_or("")
    }

    fn visible(&self) -> bool {
        self.flags & (DELETED | DISOWNED) == 0
    }
}

/// One sync event; the profile fields are a snapshot taken when it happened.
#[derive(Debug, Clone, Copy)]
struct Event {
    device: u32,
    op: Op,
    status: ProfileStatus,
    profile: u32,
    date: i64,
}

/// The assignment state of one serial, for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeviceState {
    pub serial_number: String,
    pub model: String,
    pub profile_uuid: String,
    pub profile_status: String,
    pub deleted: bool,
    pub disowned: bool,
    pub activation_locked: bool,
}

/// Apple's time format: RFC 3339, seconds, `Z`.
pub fn format_time(unix: i64) -> String {
    Stamp(unix).text().as_str().to_owned()
}

/// Why an operation on one serial did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, deleted or disowned: Apple's `NOT_ACCESSIBLE`.
    NotAccessible,
    AlreadyLocked,
    NotSupported,
}

pub struct Population {
    devs: Vec<Dev>,
    /// foldhash: SipHash made each of the 1000 lookups of an assignment
    /// call cost several times the map's memory access.
    by_serial: HashMap<[u8; 12], u32, hashbrown::DefaultHashBuilder>,
    events: Vec<Event>,
    profiles: Vec<Profile>,
    profile_index: HashMap<String, u32>,
    rng: Rng,
}

impl Population {
    /// `n` devices generated from `seed`; `now` anchors their dates.
    pub fn generate(n: usize, seed: u64, now: i64) -> Self {
        let mut p = Population {
            devs: Vec::with_capacity(n),
            by_serial: HashMap::with_capacity_and_hasher(n, Default::default()),
            events: Vec::new(),
            profiles: Vec::new(),
            profile_index: HashMap::new(),
            rng: Rng::new(seed),
        };
        let mut body = serde_json::Map::new();
        body.insert("profile_name".into(), "Default enrollment".into());
        body.insert("url".into(), "https://mdm.example.com/enroll".into());
        let default_profile = p.define_profile(body);
        for _ in 0..n {
            let idx = p.new_device(now);
            let roll = p.rng.below(100);
            let dev = &mut p.devs[idx as usize];
            // A realistic mix: most devices unassigned, some assigned or
            // already enrolled, a few whose profile was removed.
            if roll < 30 {
                dev.profile = default_profile;
                dev.status = ProfileStatus::Assigned;
                dev.assign_time = dev.assigned_date + 3600;
                if roll < 15 {
                    dev.status = ProfileStatus::Pushed;
                    dev.push_time = dev.assign_time + 86_400;
                }
            } else if roll < 32 {
                dev.status = ProfileStatus::Removed;
            }
        }
        p
    }

    fn new_serial(&mut self) -> [u8; 12] {
        loop {
            let mut s = [0u8; 12];
            let (start, len) = if self.rng.chance(30) {
                let prefix = LEGACY_PREFIXES[self.rng.below(LEGACY_PREFIXES.len() as u64) as usize];
                s[..3].copy_from_slice(prefix);
                (3, 12)
            } else {
                (0, 10)
            };
            for b in &mut s[start..len] {
                *b = SERIAL_CHARS[self.rng.below(SERIAL_CHARS.len() as u64) as usize];
            }
            if !self.by_serial.contains_key(&s) {
                return s;
            }
        }
    }

    fn new_device(&mut self, now: i64) -> u32 {
        let serial = self.new_serial();
        let model = self.rng.below(MODELS.len() as u64) as u8;
        let color = self.rng.below(COLORS.len() as u64) as u8;
        let asset_tag = if self.rng.chance(60) {
            1 + self.rng.below(999_999) as u32
        } else {
            0
        };
        let assigned_by = self.rng.below(ASSIGNERS.len() as u64) as u8;
        let assigned_date = now - self.rng.below(2 * 365 * 86_400) as i64;
        let idx = self.devs.len() as u32;
        self.devs.push(Dev {
            serial,
            model,
            color,
            status: ProfileStatus::Empty,
            flags: 0,
            assigned_by,
            profile: NO_PROFILE,
            asset_tag,
            assign_time: 0,
            push_time: 0,
            assigned_date,
        });
        self.by_serial.insert(serial, idx);
        idx
    }

    pub fn len(&self) -> usize {
        self.devs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devs.is_empty()
    }

    pub fn event_count(&self) -> u64 {
        self.events.len() as u64
    }

    pub fn serial_at(&self, idx: usize) -> Option<&str> {
        self.devs.get(idx).map(Dev::serial)
    }

    fn lookup(&self, serial: &str) -> Option<u32> {
        let bytes = serial.as_bytes();
        if bytes.is_empty() || bytes.len() > 12 {
            return None;
        }
        let mut key = [0u8; 12];
        key[..bytes.len()].copy_from_slice(bytes);
        self.by_serial.get(&key).copied()
    }

    /// The index of a serial Apple would still show this organisation.
    fn accessible(&self, serial: &str) -> Result<u32, Refusal> {
        self.lookup(serial)
            .filter(|i| self.devs[*i as usize].visible())
            .ok_or(Refusal::NotAccessible)
    }

    pub fn is_accessible(&self, serial: &str) -> bool {
        self.accessible(serial).is_ok()
    }

    fn record(&mut self, device: u32, op: Op, now: i64) {
        let d = &self.devs[device as usize];
        self.events.push(Event {
            device,
            op,
            status: d.status,
            profile: d.profile,
            date: now,
        });
    }

    // ---- profiles ----

    pub fn define_profile(&mut self, body: serde_json::Map<String, serde_json::Value>) -> u32 {
        let uuid = format!("{:016X}{:016X}", self.rng.next_u64(), self.rng.next_u64());
        let idx = self.profiles.len() as u32;
        self.profile_index.insert(uuid.clone(), idx);
        self.profiles.push(Profile {
            profile_uuid: uuid,
            body,
        });
        idx
    }

    pub fn profile(&self, uuid: &str) -> Option<&Profile> {
        self.profile_index
            .get(uuid)
            .and_then(|i| self.profiles.get(*i as usize))
    }

    pub fn profile_id(&self, uuid: &str) -> Option<u32> {
        self.profile_index.get(uuid).copied()
    }

    pub fn profile_uuid(&self, id: u32) -> Option<&str> {
        self.profiles
            .get(id as usize)
            .map(|p| p.profile_uuid.as_str())
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    // ---- changes made through Apple's API ----

    pub fn assign(&mut self, serial: &str, profile: u32, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let d = &mut self.devs[i as usize];
        d.profile = profile;
        d.status = ProfileStatus::Assigned;
        d.assign_time = now;
        d.push_time = 0;
        self.record(i, Op::Modified, now);
        Ok(())
    }

    pub fn remove_profile(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let d = &mut self.devs[i as usize];
        d.profile = NO_PROFILE;
        d.status = ProfileStatus::Removed;
        d.assign_time = 0;
        d.push_time = 0;
        self.record(i, Op::Modified, now);
        Ok(())
    }

    /// Permanent: the device leaves the organisation (a `deleted` event).
    pub fn disown(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        self.devs[i as usize].flags |= DISOWNED;
        self.record(i, Op::Deleted, now);
        Ok(())
    }

    pub fn activation_lock(&mut self, serial: &str) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let d = &mut self.devs[i as usize];
        if MODELS[d.model as usize].family == Family::AppleTv {
            return Err(Refusal::NotSupported);
        }
        if d.flags & LOCKED != 0 {
            return Err(Refusal::AlreadyLocked);
        }
        d.flags |= LOCKED;
        Ok(())
    }

    // ---- changes made "in Apple's portal" (admin events) ----

    /// `n` new devices, each an `added` event; returns their serials.
    pub fn add_devices(&mut self, n: usize, now: i64) -> Vec<String> {
        (0..n)
            .map(|_| {
                let i = self.new_device(now);
                self.devs[i as usize].assigned_date = now;
                self.record(i, Op::Added, now);
                self.devs[i as usize].serial().to_string()
            })
            .collect()
    }

    /// An attribute change (a new asset tag): a `modified` event.
    pub fn modify(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let tag = 1 + self.rng.below(999_999) as u32;
        self.devs[i as usize].asset_tag = tag;
        self.record(i, Op::Modified, now);
        Ok(())
    }

    /// Released from this MDM server in the portal: a `deleted` event.
    pub fn delete(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        self.devs[i as usize].flags |= DELETED;
        self.record(i, Op::Deleted, now);
        Ok(())
    }

    /// Assigned to another MDM server and back: the profile is gone, so a
    /// `modified` event with `profile_status` `removed` and a new
    /// assignment date.
    pub fn move_away_and_back(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let d = &mut self.devs[i as usize];
        d.profile = NO_PROFILE;
        d.status = ProfileStatus::Removed;
        d.assign_time = 0;
        d.push_time = 0;
        d.assigned_date = now;
        self.record(i, Op::Modified, now);
        Ok(())
    }

    /// The device enrolled and fetched its profile: `pushed`.
    pub fn push_profile(&mut self, serial: &str, now: i64) -> Result<(), Refusal> {
        let i = self.accessible(serial)?;
        let d = &mut self.devs[i as usize];
        if d.profile == NO_PROFILE {
            return Err(Refusal::NotAccessible);
        }
        d.status = ProfileStatus::Pushed;
        d.push_time = now;
        self.record(i, Op::Modified, now);
        Ok(())
    }

    // ---- views ----

    fn json(&self, i: u32, status: ProfileStatus, profile: u32, protocol: u32) -> DeviceJson<'_> {
        let d = &self.devs[i as usize];
        let model = &MODELS[d.model as usize];
        let nonzero = |t: i64| (t != 0).then_some(Stamp(t));
        DeviceJson {
            serial_number: d.serial(),
            model: model.name,
            description: model.description,
            color: (d.color != 0).then(|| COLORS[d.color as usize]),
            asset_tag: (d.asset_tag != 0).then_some(AssetTag(d.asset_tag)),
            os: model.family.os(protocol),
            device_family: model.family.name(),
            profile_status: status.as_str(),
            profile_uuid: self.profile_uuid(profile),
            profile_assign_time: if profile == NO_PROFILE {
                None
            } else {
                nonzero(d.assign_time)
            },
            profile_push_time: if status == ProfileStatus::Pushed {
                nonzero(d.push_time)
            } else {
                None
            },
            device_assigned_date: Stamp(d.assigned_date),
            device_assigned_by: ASSIGNERS[d.assigned_by as usize],
            op_type: None,
            op_date: None,
            response_status: None,
        }
    }

    /// Details of one serial (`POST /devices`): `None` when Apple would say
    /// `NOT_FOUND`.
    pub fn details(&self, serial: &str, protocol: u32) -> Option<DeviceJson<'_>> {
        let i = self.accessible(serial).ok()?;
        let d = &self.devs[i as usize];
        let mut j = self.json(i, d.status, d.profile, protocol);
        j.response_status = Some("SUCCESS");
        Some(j)
    }

    /// One fetch page from device index `start`: the devices and the index
    /// to continue from (`len()` when done).
    pub fn fetch_page(
        &self,
        start: u64,
        limit: usize,
        protocol: u32,
    ) -> (Vec<DeviceJson<'_>>, u64) {
        let len = self.devs.len();
        let mut at = usize::try_from(start).unwrap_or(len).min(len);
        let mut out = Vec::with_capacity(limit.min(len - at));
        while at < len && out.len() < limit {
            let d = &self.devs[at];
            if d.visible() {
                out.push(self.json(at as u32, d.status, d.profile, protocol));
            }
            at += 1;
        }
        // Skip hidden devices so `more_to_follow` is false when only they remain.
        while at < len && !self.devs[at].visible() {
            at += 1;
        }
        (out, at as u64)
    }

    /// Sync events from sequence `seq`: the devices and the next sequence.
    pub fn sync_page(&self, seq: u64, limit: usize, protocol: u32) -> (Vec<DeviceJson<'_>>, u64) {
        let len = self.events.len();
        let from = usize::try_from(seq).unwrap_or(len).min(len);
        let to = from.saturating_add(limit).min(len);
        let out = self.events[from..to]
            .iter()
            .map(|e| {
                let mut j = self.json(e.device, e.status, e.profile, protocol);
                j.op_type = Some(e.op.as_str());
                j.op_date = Some(Stamp(e.date));
                j
            })
            .collect();
        (out, to as u64)
    }

    pub fn state(&self, serial: &str) -> Option<DeviceState> {
        let i = self.lookup(serial)?;
        let d = &self.devs[i as usize];
        Some(DeviceState {
            serial_number: d.serial().to_string(),
            model: MODELS[d.model as usize].name.to_string(),
            profile_uuid: self.profile_uuid(d.profile).unwrap_or("").to_string(),
            profile_status: d.status.as_str().to_string(),
            deleted: d.flags & DELETED != 0,
            disowned: d.flags & DISOWNED != 0,
            activation_locked: d.flags & LOCKED != 0,
        })
    }
}

#[cfg(test)]
mod tests;
