//! The in-memory engine: a `BTreeMap` behind a mutex. Used by unit tests and
//! as the second implementation that keeps the [`Engine`] API honest.

use super::{Engine, Entry, StoreError, Write};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub struct MemoryEngine {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for w in writes {
            match w {
                Write::Put(k, v) => {
                    map.insert(k, v);
                }
                Write::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
