//! The sled engine: one sled tree; batches are applied with
//! `apply_batch` (atomic) and flushed before `commit` returns (durable).
//!
//! Large values are stored in parts. sled's cache is split into 256
//! shards and never evicts the page it just touched, so a leaf page that
//! is larger than a shard's share of the cache stays in memory for good:
//! with pages of a few hundred KiB (a segment of 1000 devices, a webhook
//! body) the daemon kept every value it ever wrote. In parts of at most
//! [`PART_BYTES`] (16 entries per leaf: at most 128 KiB a page) the cache
//! bound holds.
//!
//! Values larger than [`COMPRESS_MIN`] are LZ4-compressed when that saves
//! at least an eighth. Most of what depd stores by volume is Apple's JSON
//! (device segments, webhook events), which shrinks 5-6 times. sled writes
//! every value several times over (each insert as a delta, then again when
//! its leaf page is consolidated or split: about 4 bytes to disk per byte
//! stored), so at a million devices the disk's bandwidth, not the CPU, set
//! the pace before compression.
//!
//! Value encoding in the tree:
//! - a value of at most [`PART_BYTES`] whose first byte is neither `0xFE`
//!   nor `0xFF` is stored as it is;
//! - other small values get a `0xFE` byte in front;
//! - a larger value is stored as a marker, `0xFF`, the number of parts
//!   (u32 BE) and the length (u64 BE), with its parts under
//!   `0xFF <key> <part: u32 BE>`, in the same batch;
//! - a compressed value is a marker `0xFF`, the number of parts (u32 BE),
//!   `u64::MAX` where the length was (so a version of depd that predates
//!   compression fails loudly on it instead of misreading it), the
//!   compressed length (u64 BE) and the value's length (u64 BE). With no
//!   parts the compressed bytes follow in the marker itself; otherwise they
//!   are in parts as above.
//!
//! Keys starting with `0xFF` are the parts' and refused from callers.

use super::{Engine, Entry, StoreError, Write};
use std::collections::HashMap;
use std::path::Path;

pub struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
}

fn engine_err(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// How often, and how far apart, opening is tried again while the
/// database is locked.
const LOCK_RETRIES: u32 = 40;
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// sled's page cache. The hot set is small (the newest segments, read
/// back by the assigner and the webhook deliverer), and since large values
/// are compressed it is a fifth of the bytes. The cache stays full while
/// the daemon idles, so it is kept small: 8 MiB (10,000 names after a
/// cycle: 140-141 → 134 MiB resident against 16 MiB; 1,000,000 devices no
/// slower in alternating runs).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The largest value stored in one piece, and the size of the parts of
/// larger ones.
const PART_BYTES: usize = 8 * 1024;

/// Values larger than this are compressed when it pays.
const COMPRESS_MIN: usize = 1024;

const ESCAPED: u8 = 0xFE;
const PARTED: u8 = 0xFF;

/// The marker of a value in parts: `0xFF`, count, length.
const MARKER_LEN: usize = 13;
/// The length field of a compressed value's marker.
const COMPRESSED: u64 = u64::MAX;
/// The marker of a compressed value, before any inline bytes.
const PACKED_MARKER_LEN: usize = MARKER_LEN + 16;
/// LZ4 expands at most about 255 times; a marker claiming more is damaged
/// (and is not worth allocating for).
const LZ4_MAX_RATIO: u64 = 255;

fn part_key(key: &[u8], part: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 5);
    k.push(PARTED);
    k.extend_from_slice(key);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// A stored value: in one piece, the marker of a value in parts, or a
/// compressed value (inline when `count` is 0, else in parts).
enum Stored<'a> {
    Whole(&'a [u8]),
    Parts {
        count: u32,
        len: u64,
    },
    Packed {
        count: u32,
        packed_len: u64,
        len: u64,
        inline: &'a [u8],
    },
}

fn be_u32(raw: &[u8], at: usize) -> Option<u32> {
    let b = raw.get(at..at + 4)?;
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}

fn be_u64(raw: &[u8], at: usize) -> Option<u64> {
    let b = raw.get(at..at + 8)?;
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

fn malformed() -> StoreError {
    StoreError::Engine("malformed value marker".into())
}

fn parse(raw: &[u8]) -> Result<Stored<'_>, StoreError> {
    match raw.first() {
        Some(&ESCAPED) => Ok(Stored::Whole(&raw[1..])),
        Some(&PARTED) => {
            let (count, len) = be_u32(raw, 1).zip(be_u64(raw, 5)).ok_or_else(malformed)?;
            if len != COMPRESSED {
                return Ok(Stored::Parts { count, len });
            }
            let (packed_len, len) = be_u64(raw, MARKER_LEN)
                .zip(be_u64(raw, MARKER_LEN + 8))
                .ok_or_else(malformed)?;
            let inline = &raw[PACKED_MARKER_LEN..];
            let inline_len = if count == 0 { packed_len } else { 0 };
            if inline.len() as u64 != inline_len {
                return Err(malformed());
            }
            Ok(Stored::Packed {
                count,
                packed_len,
                len,
                inline,
            })
        }
        _ => Ok(Stored::Whole(raw)),
    }
}

/// `value` compressed, when that saves at least an eighth of it.
fn pack(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() <= COMPRESS_MIN {
        return None;
    }
    let packed = lz4_flex::block::compress(value);
    (packed.len() + PACKED_MARKER_LEN <= value.len() - value.len() / 8).then_some(packed)
}

/// The value `packed` holds, which the marker says is `len` bytes long.
fn unpack(key: &[u8], packed: &[u8], len: u64) -> Result<Vec<u8>, StoreError> {
    let damaged = |why: String| {
        StoreError::Engine(format!(
            "compressed value of {} is damaged: {why}",
            String::from_utf8_lossy(key)
        ))
    };
    if len > (packed.len() as u64).saturating_mul(LZ4_MAX_RATIO) {
        return Err(damaged(format!("{} bytes cannot hold {len}", packed.len())));
    }
    let len = usize::try_from(len).map_err(|_| damaged("too long".into()))?;
    let mut out = vec![0; len];
    match lz4_flex::block::decompress_into(packed, &mut out) {
        Ok(n) if n == len => Ok(out),
        Ok(n) => Err(damaged(format!("{n} bytes, its marker says {len}"))),
        Err(e) => Err(damaged(e.to_string())),
    }
}

fn marker(count: u32, len: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(MARKER_LEN);
    m.push(PARTED);
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(&len.to_be_bytes());
    m
}

impl SledEngine {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // HighThroughput: sled's default (LowSpace) rewrites leaf pages on
        // nearly every update. A bounded cache keeps memory flat (the
        // default is 1 GiB); see the module comment for why values are
        // stored in parts.
        let open = || {
            sled::Config::new()
                .path(path)
                .mode(sled::Mode::HighThroughput)
                .cache_capacity(CACHE_BYTES)
                .open()
        };
        // A database closed a moment ago in this process can still be
        // locked by sled's background flusher, which exits on its own
        // shortly after: try again for up to a second before reporting it
        // (a lock held by another process outlasts that).
        let mut tries = 0;
        let db = loop {
            match open() {
                Err(e) if is_lock_error(&e) && tries < LOCK_RETRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(e) if is_lock_error(&e) => {
                    return Err(StoreError::Locked(path.display().to_string()));
                }
                other => {
                    break other.map_err(|e| {
                        StoreError::Engine(format!("opening {}: {e}", path.display()))
                    })?;
                }
            }
        };
        let tree = db.open_tree("depd").map_err(engine_err)?;
        Ok(SledEngine { db, tree })
    }

    /// The value of `key` from its stored form.
    fn assemble(&self, key: &[u8], raw: &[u8]) -> Result<Vec<u8>, StoreError> {
        match parse(raw)? {
            Stored::Whole(v) => Ok(v.to_vec()),
            Stored::Parts { count, len } => self.gather(key, count, len),
            Stored::Packed {
                count: 0,
                len,
                inline,
                ..
            } => unpack(key, inline, len),
            Stored::Packed {
                count,
                packed_len,
                len,
                ..
            } => unpack(key, &self.gather(key, count, packed_len)?, len),
        }
    }

    /// The `count` parts of `key`'s value, joined: `len` bytes.
    fn gather(&self, key: &[u8], count: u32, len: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 30));
        for part in 0..count {
            let piece = self
                .tree
                .get(part_key(key, part))
                .map_err(engine_err)?
                .ok_or_else(|| {
                    StoreError::Engine(format!(
                        "value of {} lacks part {part} of {count}",
                        String::from_utf8_lossy(key)
                    ))
                })?;
            out.extend_from_slice(&piece);
        }
        if out.len() as u64 != len {
            return Err(StoreError::Engine(format!(
                "value of {} is {} bytes, its marker says {len}",
                String::from_utf8_lossy(key),
                out.len()
            )));
        }
        Ok(out)
    }

    /// How many parts `key`'s value has now: as written earlier in this
    /// batch, else as stored.
    fn parts_now(&self, key: &[u8], in_batch: &HashMap<Vec<u8>, u32>) -> Result<u32, StoreError> {
        if let Some(n) = in_batch.get(key) {
            return Ok(*n);
        }
        match self.tree.get(key).map_err(engine_err)? {
            Some(raw) => Ok(match parse(&raw)? {
                Stored::Parts { count, .. } | Stored::Packed { count, .. } => count,
                Stored::Whole(_) => 0,
            }),
            None => Ok(0),
        }
    }
}

/// Puts `bytes` into `batch` as parts of `key`'s value; returns how many.
fn put_parts(batch: &mut sled::Batch, key: &[u8], bytes: &[u8]) -> Result<u32, StoreError> {
    let count = u32::try_from(bytes.len().div_ceil(PART_BYTES))
        .map_err(|_| StoreError::Engine("value too large".into()))?;
    for (i, piece) in bytes.chunks(PART_BYTES).enumerate() {
        // `i < count`, which fits in u32.
        batch.insert(part_key(key, i as u32), piece);
    }
    Ok(count)
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tree.get(key).map_err(engine_err)? {
            Some(raw) => self.assemble(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn first_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // Prefixes never start with PARTED (such keys are refused), so the
        // parts, which sort last, are never among the answers.
        match self.tree.scan_prefix(prefix).keys().next() {
            Some(k) => Ok(Some(k.map_err(engine_err)?.to_vec())),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let iter = match after {
            Some(a) if a >= prefix => {
                let mut start = a.to_vec();
                start.push(0);
                self.tree.range(start..)
            }
            _ => self.tree.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, raw) = item.map_err(engine_err)?;
            if !k.starts_with(prefix) || k.first() == Some(&PARTED) || out.len() >= limit {
                break;
            }
            let value = self.assemble(&k, &raw)?;
            out.push((k.to_vec(), value));
        }
        Ok(out)
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut in_batch: HashMap<Vec<u8>, u32> = HashMap::new();
        for w in writes {
            let key = match &w {
                Write::Put(k, _) | Write::Delete(k) => k.clone(),
            };
            if key.first() == Some(&PARTED) {
                return Err(StoreError::Engine(
                    "keys starting with byte 0xFF are reserved".into(),
                ));
            }
            let old_parts = self.parts_now(&key, &in_batch)?;
            let new_parts = match w {
                Write::Put(k, v) => match pack(&v) {
                    Some(packed) => {
                        let inline = PACKED_MARKER_LEN + packed.len() <= PART_BYTES;
                        let count = if inline {
                            0
                        } else {
                            put_parts(&mut batch, &k, &packed)?
                        };
                        let mut m = marker(count, COMPRESSED);
                        m.extend_from_slice(&(packed.len() as u64).to_be_bytes());
                        m.extend_from_slice(&(v.len() as u64).to_be_bytes());
                        if inline {
                            m.extend_from_slice(&packed);
                        }
                        batch.insert(k, m);
                        count
                    }
                    None if v.len() > PART_BYTES => {
                        let count = put_parts(&mut batch, &k, &v)?;
                        batch.insert(k, marker(count, v.len() as u64));
                        count
                    }
                    None => {
                        if matches!(v.first(), Some(&ESCAPED | &PARTED)) {
                            let mut escaped = Vec::with_capacity(v.len() + 1);
                            escaped.push(ESCAPED);
                            escaped.extend_from_slice(&v);
                            batch.insert(k, escaped);
                        } else {
                            batch.insert(k, v);
                        }
                        0
                    }
                },
                Write::Delete(k) => {
                    batch.remove(k);
                    0
                }
            };
            for part in new_parts..old_parts {
                batch.remove(part_key(&key, part));
            }
            in_batch.insert(key, new_parts);
        }
        self.tree.apply_batch(batch).map_err(engine_err)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(engine_err).map(|_| ())
    }
}

/// Whether sled could not open the directory because another process
/// holds its lock. sled reports that only as an I/O error of kind `Other`
/// whose message it writes itself ("could not acquire lock on …"); that
/// message is the one signal it gives, so it is matched at its start.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::Other
        && io.to_string().starts_with("could not acquire lock"))
}

#[cfg(test)]
mod tests;
