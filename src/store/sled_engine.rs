//! The sled engine: one sled tree; batches are applied with
//! `apply_batch` (atomic) and flushed before `commit` returns (durable).

use super::{Engine, Entry, StoreError, Write};
use std::path::Path;

pub struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
}

fn engine_err(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// sled's page cache.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl SledEngine {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // HighThroughput: sled's default (LowSpace) rewrites leaf pages on
        // nearly every update, which dominated applying a page of 1000
        // devices. A bounded cache keeps memory flat with millions of
        // devices (the default is 1 GiB).
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| StoreError::Engine(format!("opening {}: {e}", path.display())))?;
        let tree = db.open_tree("depd").map_err(engine_err)?;
        Ok(SledEngine { db, tree })
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(engine_err)?.map(|v| v.to_vec()))
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
            let (k, v) = item.map_err(engine_err)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for w in writes {
            match w {
                Write::Put(k, v) => batch.insert(k, v),
                Write::Delete(k) => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(engine_err)?;
        self.db.flush().map_err(engine_err)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(engine_err).map(|_| ())
    }
}
