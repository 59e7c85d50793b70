//! Building a name's index from its segments (and from the one-key-per-
//! record layout of earlier versions), and reading segments back.

use super::*;

impl Store {
    /// Runs `f` with the name's index, building it from the stored segments
    /// first when this is the name's first use. Writers hold it from
    /// planning until their batch is applied and the index updated, so the
    /// index always describes what sled holds.
    pub(super) fn with_index<T>(
        &self,
        name: &DepName,
        f: impl FnOnce(&mut NameIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let slot = self
            .indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .slot(name);
        let mut guard = match slot.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic while the index was being changed: it may not
                // match the store any more, so build it again.
                slot.clear_poison();
                let mut g = poisoned.into_inner();
                *g = None;
                g
            }
        };
        let ix = match guard.as_mut() {
            Some(ix) => ix,
            None => guard.insert(self.load_index(name)?),
        };
        let result = f(ix);
        let serials = ix.serials();
        drop(guard);
        self.indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released(name, serials);
        result
    }

    /// Builds a name's index from its segments (moving records of the
    /// earlier one-key-per-record layout into segments first), and deletes
    /// segments whose records were all superseded.
    pub(super) fn load_index(&self, name: &DepName) -> Result<NameIndex, StoreError> {
        let mut ix = NameIndex::default();
        let mut seen_devices = Vec::new();
        self.each_segment::<StoredDeviceSegment>(DEVICE_SEG, name, |seg, s| {
            ix.add_device_segment(seg, s.devices.len());
            seen_devices.push(seg);
            for (i, d) in s.devices.iter().enumerate() {
                ix.set_device(
                    &d.serial,
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    &device_facts(d),
                );
            }
            Ok(())
        })?;
        let mut seen_assigns = Vec::new();
        self.each_segment::<StoredAssignmentSegment>(ASSIGN_SEG, name, |seg, s| {
            ix.add_assignment_segment(seg, s.records.len());
            seen_assigns.push(seg);
            for (i, (serial, a)) in s.records.iter().enumerate() {
                ix.set_assignment(
                    serial,
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    assign_facts(a),
                );
            }
            Ok(())
        })?;
        ix.retain_live();
        // Webhook events waiting for delivery that keep a segment's JSON
        // (a name that never had an event has no sequence number).
        let p = prefix(OUTBOX, name);
        let mut after: Option<Vec<u8>> = None;
        let mut any = self.engine.get(&prefix(OUTBOX_SEQ, name))?.is_some();
        while any {
            let chunk = self.engine.scan(&p, after.as_deref(), SCAN_CHUNK)?;
            any = chunk.len() == SCAN_CHUNK;
            let Some((last, _)) = chunk.last() else { break };
            after = Some(last.clone());
            for (k, v) in chunk {
                if let StoredEventBody::Page { seg, .. } =
                    decode_at::<StoredOutboxEntry>(&k, &v)?.body
                {
                    ix.add_outbox_ref(seg);
                    // Never reuse the number of a segment whose JSON stays.
                    ix.devices.next = ix.devices.next.max(seg.saturating_add(1));
                }
            }
        }
        let mut garbage = Vec::new();
        for seg in seen_devices {
            if ix.devices.live(seg) == 0 {
                garbage.push(Write::Delete(seg_key(DEVICE_SEG, name, seg)));
                if !ix.has_outbox_ref(seg) {
                    garbage.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
                }
            }
        }
        for seg in seen_assigns {
            if ix.assigns.live(seg) == 0 {
                garbage.push(Write::Delete(seg_key(ASSIGN_SEG, name, seg)));
            }
        }
        if !garbage.is_empty() {
            self.engine.commit(garbage)?;
        }
        self.migrate_legacy(name, &mut ix)?;
        Ok(ix)
    }

    /// Calls `f` on every segment of a kind of a name, in segment order.
    pub(super) fn each_segment<R: Record>(
        &self,
        kind: &[u8],
        name: &DepName,
        mut f: impl FnMut(u32, R) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let p = prefix(kind, name);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self.engine.scan(&p, after.as_deref(), SEGMENT_SCAN)?;
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, v) in chunk {
                let Some(seg) = k[p.len()..].first_chunk::<4>() else {
                    continue;
                };
                f(u32::from_be_bytes(*seg), decode_at(&k, &v)?)?;
            }
        }
    }

    /// Moves records of the one-key-per-record layout (`d/`, `a/`, `t/`)
    /// into segments, a chunk per batch, deleting the old keys in the same
    /// batch: an interrupted migration continues on the next start.
    pub(super) fn migrate_legacy(
        &self,
        name: &DepName,
        ix: &mut NameIndex,
    ) -> Result<(), StoreError> {
        if !self.legacy {
            return Ok(());
        }
        self.drain_legacy(LEGACY_DEVICE, name, ix, |store, ix, chunk, writes| {
            let records = chunk
                .iter()
                .map(|(k, v)| {
                    let (fields, json) =
                        StoredDeviceFields::split(decode_at::<StoredDevice>(k, v)?);
                    Ok((fields, Text::Own(json)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let plan = store.plan_devices(name, ix, records, None, writes)?;
            Ok(move |ix: &mut NameIndex| plan.apply(ix))
        })?;
        let assigns = prefix(LEGACY_ASSIGNMENT, name);
        self.drain_legacy(LEGACY_ASSIGNMENT, name, ix, |store, ix, chunk, writes| {
            let records = chunk
                .iter()
                .map(|(k, v)| {
                    let serial = String::from_utf8_lossy(&k[assigns.len()..]).into_owned();
                    Ok((serial, decode_at::<StoredAssignment>(k, v)?))
                })
                .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
            let plan = store.plan_assignments(name, ix, records, writes)?;
            Ok(move |ix: &mut NameIndex| plan.apply(ix))
        })?;
        // The due marks are derived from the assignment records: dropped.
        self.drain_legacy(LEGACY_DUE, name, ix, |_, _, _, _| {
            Ok(|_: &mut NameIndex| {})
        })
    }

    /// Deletes the keys under `kind`'s prefix of a name, a chunk per batch,
    /// with the writes `plan` adds for each chunk; the index is changed by
    /// what `plan` returns, once the batch is committed.
    pub(super) fn drain_legacy<A: FnOnce(&mut NameIndex)>(
        &self,
        kind: &[u8],
        name: &DepName,
        ix: &mut NameIndex,
        plan: impl Fn(&Store, &NameIndex, &[Entry], &mut Vec<Write>) -> Result<A, StoreError>,
    ) -> Result<(), StoreError> {
        let p = prefix(kind, name);
        loop {
            let chunk = self.engine.scan(&p, None, 1000)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut writes = Vec::with_capacity(chunk.len() + 4);
            let apply = plan(self, ix, &chunk, &mut writes)?;
            writes.extend(chunk.into_iter().map(|(k, _)| Write::Delete(k)));
            self.engine.commit(writes)?;
            apply(ix);
        }
    }

    /// A device segment's records and their JSON texts, slot by slot.
    pub(super) fn read_device_segment(
        &self,
        name: &DepName,
        seg: u32,
    ) -> Result<Option<(StoredDeviceSegment, Vec<String>)>, StoreError> {
        let (fk, jk) = (seg_key(DEVICE_SEG, name, seg), seg_key(JSON_SEG, name, seg));
        let (Some(fields), Some(json)) = (self.engine.get(&fk)?, self.engine.get(&jk)?) else {
            return Ok(None);
        };
        let fields: StoredDeviceSegment = decode_at(&fk, &fields)?;
        let json: StoredJsonSegment = decode_at(&jk, &json)?;
        let texts = json.into_texts().ok_or_else(|| {
            corrupt(format!(
                "the JSON of device segment {seg} of {name} has a damaged span"
            ))
        })?;
        if fields.devices.len() != texts.len() {
            return Err(corrupt(format!(
                "device segment {seg} of {name} has {} records and {} JSON texts",
                fields.devices.len(),
                texts.len()
            )));
        }
        Ok(Some((fields, texts)))
    }

    pub(super) fn read_assignment_segment(
        &self,
        name: &DepName,
        seg: u32,
    ) -> Result<Option<StoredAssignmentSegment>, StoreError> {
        let k = seg_key(ASSIGN_SEG, name, seg);
        self.engine.get(&k)?.map(|v| decode_at(&k, &v)).transpose()
    }
}
