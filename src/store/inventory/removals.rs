//! Profile removals made through depd, remembered so the assigner does
//! not assign those devices again.

use super::*;

impl Store {
    /// Records that depd removed these serials' profile (its proxy or API),
    /// so the assigner leaves them alone for a while.
    pub fn record_removals<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        let value = record::encode(&StoredRemoval {
            removed_unix: now_unix,
        });
        let writes: Vec<Write> = serials
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Write::Put(key(REMOVAL, name, s.as_bytes()), value.clone()))
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        self.engine.commit(writes)
    }

    /// When depd removed the profile of each of these serials, for those it
    /// did.
    pub fn removals<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut out = BTreeMap::new();
        for serial in serials {
            let k = key(REMOVAL, name, serial.as_bytes());
            if let Some(v) = self.engine.get(&k)? {
                let r: StoredRemoval = decode_at(&k, &v)?;
                out.insert(serial.to_owned(), r.removed_unix);
            }
        }
        Ok(out)
    }

    /// Forgets removals made before `before_unix` (outside the window in
    /// which they matter); returns how many.
    pub fn prune_removals(&self, name: &DepName, before_unix: i64) -> Result<usize, StoreError> {
        let p = prefix(REMOVAL, name);
        let mut old = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self.engine.scan(&p, after.as_deref(), SCAN_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (k, v) in chunk {
                let r: StoredRemoval = decode_at(&k, &v)?;
                if r.removed_unix < before_unix {
                    old.push(Write::Delete(k));
                }
            }
        }
        let n = old.len();
        if n > 0 {
            self.engine.commit(old)?;
        }
        Ok(n)
    }
}
