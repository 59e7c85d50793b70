//! Devices as Apple's JSON, written directly (no serde tree per device),
//! and the small value types it is made of: times, short texts, asset tags.

use super::*;

/// A defined profile: the JSON the client posted (minus `devices`).
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub profile_uuid: String,
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// A device as the JSON of a page or of details. Its times and asset tag
/// are kept as numbers and written on the way out, so building a page
/// allocates nothing per device.
#[derive(Debug, Serialize)]
pub struct DeviceJson<'a> {
    pub serial_number: &'a str,
    pub model: &'static str,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<AssetTag>,
    pub os: &'static str,
    pub device_family: &'static str,
    pub profile_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_assign_time: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_push_time: Option<Stamp>,
    pub device_assigned_date: Stamp,
    pub device_assigned_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_date: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<&'static str>,
}

impl DeviceJson<'_> {
    /// Appends the device's JSON to `out`: the same bytes as serde's
    /// (`serde_json::to_vec`), written directly. Pages are most of what
    /// depsim sends, and serde's string escaper was the largest part of
    /// making one.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = ObjectWriter::new(out);
        w.str("serial_number", self.serial_number);
        w.str("model", self.model);
        w.str("description", self.description);
        if let Some(c) = self.color {
            w.str("color", c);
        }
        if let Some(t) = self.asset_tag {
            w.str("asset_tag", t.text().as_str());
        }
        w.str("os", self.os);
        w.str("device_family", self.device_family);
        w.str("profile_status", self.profile_status);
        if let Some(u) = self.profile_uuid {
            w.str("profile_uuid", u);
        }
        if let Some(t) = self.profile_assign_time {
            w.str("profile_assign_time", t.text().as_str());
        }
        if let Some(t) = self.profile_push_time {
            w.str("profile_push_time", t.text().as_str());
        }
        w.str(
            "device_assigned_date",
            self.device_assigned_date.text().as_str(),
        );
        w.str("device_assigned_by", self.device_assigned_by);
        if let Some(o) = self.op_type {
            w.str("op_type", o);
        }
        if let Some(t) = self.op_date {
            w.str("op_date", t.text().as_str());
        }
        if let Some(r) = self.response_status {
            w.str("response_status", r);
        }
        w.end();
    }
}

/// Writes one JSON object's string members, as serde_json does.
pub(in crate::sim) struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub(in crate::sim) fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// `key` is one of depsim's own member names, which need no escaping.
    fn key(&mut self, key: &str, value_len: usize) {
        debug_assert!(!needs_escape(key));
        self.out.reserve(key.len() + value_len + 6);
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub(in crate::sim) fn str(&mut self, key: &str, value: &str) {
        self.key(key, value.len());
        push_json_str(self.out, value);
    }

    /// A member whose value is JSON written by `f`.
    pub(in crate::sim) fn raw(&mut self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        self.key(key, 0);
        f(self.out);
    }

    pub(in crate::sim) fn end(self) {
        self.out.push(b'}');
    }
}

/// Whether serde_json would escape something in `s` (a control character,
/// a quote or a backslash). Also true for DEL and non-ASCII, which serde
/// leaves as they are, so those strings simply take serde's path. No early
/// exit, so the loop is vectorised.
pub(in crate::sim) fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\') | (b >= 0x7f)
    })
}

/// A JSON string: copied as it is when nothing in it needs escaping (what
/// depsim writes almost always), escaped by serde_json otherwise.
pub(in crate::sim) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// A time as Apple writes it (RFC 3339, seconds, `Z`), kept as unix
/// seconds until written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub i64);

/// Up to 20 bytes of ASCII text, on the stack.
pub struct ShortText {
    buf: [u8; 20],
    len: usize,
}

impl ShortText {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Stamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`; empty for a time before year 0 or after
    /// 9999 (depsim never makes one).
    pub fn text(self) -> ShortText {
        let mut t = ShortText {
            buf: [0; 20],
            len: 0,
        };
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return t;
        }
        let digits = |buf: &mut [u8], v: i64| {
            let mut v = v;
            for b in buf.iter_mut().rev() {
                *b = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(&mut t.buf[0..4], y);
        t.buf[4] = b'-';
        digits(&mut t.buf[5..7], m);
        t.buf[7] = b'-';
        digits(&mut t.buf[8..10], d);
        t.buf[10] = b'T';
        digits(&mut t.buf[11..13], secs / 3600);
        t.buf[13] = b':';
        digits(&mut t.buf[14..16], secs / 60 % 60);
        t.buf[16] = b':';
        digits(&mut t.buf[17..19], secs % 60);
        t.buf[19] = b'Z';
        t.len = 20;
        t
    }
}

/// Year, month, day of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub(in crate::sim) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}

/// An asset tag, `ASSET-` and six digits (or more), kept as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetTag(pub u32);

impl AssetTag {
    pub fn text(self) -> ShortText {
        let mut t = ShortText {
            buf: [0; 20],
            len: 0,
        };
        t.buf[..6].copy_from_slice(b"ASSET-");
        let mut digits = [0u8; 10];
        let mut n = 0;
        let mut v = self.0;
        while v > 0 || n < 6 {
            digits[n] = b'0' + (v % 10) as u8;
            v /= 10;
            n += 1;
        }
        for (i, d) in digits[..n].iter().rev().enumerate() {
            t.buf[6 + i] = *d;
        }
        t.len = 6 + n;
        t
    }
}

impl Serialize for AssetTag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text().as_str())
    }
}
