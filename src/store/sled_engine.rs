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
//! Value encoding in the tree:
//! - a value of at most [`PART_BYTES`] whose first byte is neither `0xFE`
//!   nor `0xFF` is stored as it is;
//! - other small values get a `0xFE` byte in front;
//! - a larger value is stored as a marker, `0xFF`, the number of parts
//!   (u32 BE) and the length (u64 BE), with its parts under
//!   `0xFF <key> <part: u32 BE>`, in the same batch.
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
/// back by the assigner and the webhook deliverer): at 1,000,000 devices
/// 64, 32, 16 and 8 MiB measured alike in throughput, and the cache stays
/// full while the daemon idles, so 16 MiB (10,000 names after a cycle:
/// 156 → 146 MiB resident against 32 MiB; 8 MiB gained nothing more).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The largest value stored in one piece, and the size of the parts of
/// larger ones.
const PART_BYTES: usize = 8 * 1024;

const ESCAPED: u8 = 0xFE;
const PARTED: u8 = 0xFF;

fn part_key(key: &[u8], part: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 5);
    k.push(PARTED);
    k.extend_from_slice(key);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// A stored value: in one piece, or the marker of a value in parts.
enum Stored<'a> {
    Whole(&'a [u8]),
    Parts { count: u32, len: u64 },
}

fn parse(raw: &[u8]) -> Result<Stored<'_>, StoreError> {
    match raw.first() {
        Some(&ESCAPED) => Ok(Stored::Whole(&raw[1..])),
        Some(&PARTED) => {
            let count = raw.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let len = raw.get(5..13).and_then(|b| <[u8; 8]>::try_from(b).ok());
            match (count, len) {
                (Some(c), Some(l)) => Ok(Stored::Parts {
                    count: u32::from_be_bytes(c),
                    len: u64::from_be_bytes(l),
                }),
                _ => Err(StoreError::Engine("malformed value marker".into())),
            }
        }
        _ => Ok(Stored::Whole(raw)),
    }
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
                Err(e)
                    if tries < LOCK_RETRIES && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
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
        let (count, len) = match parse(raw)? {
            Stored::Whole(v) => return Ok(v.to_vec()),
            Stored::Parts { count, len } => (count, len),
        };
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
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
                Stored::Parts { count, .. } => count,
                Stored::Whole(_) => 0,
            }),
            None => Ok(0),
        }
    }
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
                Write::Put(k, v) if v.len() > PART_BYTES => {
                    let count = u32::try_from(v.len().div_ceil(PART_BYTES))
                        .map_err(|_| StoreError::Engine("value too large".into()))?;
                    for (i, piece) in v.chunks(PART_BYTES).enumerate() {
                        // `i < count`, which fits in u32.
                        batch.insert(part_key(&k, i as u32), piece);
                    }
                    let mut marker = Vec::with_capacity(13);
                    marker.push(PARTED);
                    marker.extend_from_slice(&count.to_be_bytes());
                    marker.extend_from_slice(&(v.len() as u64).to_be_bytes());
                    batch.insert(k, marker);
                    count
                }
                Write::Put(k, v) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_stored(e: &SledEngine) -> usize {
        e.tree.scan_prefix([PARTED]).count()
    }

    #[test]
    fn large_values_are_stored_in_parts_and_leave_none_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = SledEngine::open(dir.path()).expect("open");
        let big: Vec<u8> = (0..PART_BYTES * 3 + 5).map(|i| (i % 251) as u8).collect();
        let bigger: Vec<u8> = vec![0xFF; PART_BYTES * 5];
        e.commit(vec![Write::Put(b"k/a".to_vec(), big.clone())])
            .expect("put");
        assert_eq!(parts_stored(&e), 4);
        assert_eq!(e.get(b"k/a").expect("get"), Some(big.clone()));
        e.commit(vec![
            Write::Put(b"k/b".to_vec(), bigger.clone()),
            Write::Put(b"k/c".to_vec(), vec![0xFE, 1]),
            Write::Put(b"k/d".to_vec(), vec![0xFF]),
        ])
        .expect("put");
        let all = e.scan(b"k/", None, 10).expect("scan");
        assert_eq!(
            all,
            vec![
                (b"k/a".to_vec(), big.clone()),
                (b"k/b".to_vec(), bigger.clone()),
                (b"k/c".to_vec(), vec![0xFE, 1]),
                (b"k/d".to_vec(), vec![0xFF]),
            ]
        );
        // Shrinking, replacing by a small value, and putting then deleting
        // in one batch leave no part behind.
        e.commit(vec![Write::Put(b"k/b".to_vec(), big.clone())])
            .expect("shrink");
        assert_eq!(parts_stored(&e), 8);
        e.commit(vec![
            Write::Put(b"k/a".to_vec(), b"small".to_vec()),
            Write::Put(b"k/e".to_vec(), bigger.clone()),
            Write::Delete(b"k/e".to_vec()),
            Write::Delete(b"k/b".to_vec()),
        ])
        .expect("replace");
        assert_eq!(parts_stored(&e), 0);
        assert_eq!(e.get(b"k/a").expect("get"), Some(b"small".to_vec()));
        assert_eq!(e.get(b"k/e").expect("get"), None);
        assert!(
            e.commit(vec![Write::Put(vec![0xFF, 1], vec![1])]).is_err(),
            "reserved keys are refused"
        );
    }
}
