//! Writing a page: planning its device and assignment records into new
//! segments, compacting sparse ones, and committing it all in one batch.

use super::*;

/// The segments that lose records to a batch, and how many each loses.
#[derive(Default)]
pub(super) struct Kills(HashMap<u32, u32>);

impl Kills {
    pub(super) fn add(&mut self, seg: u32) {
        *self.0.entry(seg).or_default() += 1;
    }

    /// Segments worth compacting ([`is_sparse`]) after the batch, least
    /// live first, at most [`COMPACT_PER_BATCH`].
    pub(super) fn compaction(&self, sizes: &crate::store::index::Segments) -> Vec<u32> {
        let after = |seg: u32| {
            sizes
                .live(seg)
                .saturating_sub(self.0.get(&seg).copied().unwrap_or(0))
        };
        let mut c: Vec<u32> = self
            .0
            .keys()
            .copied()
            .chain(sizes.sparse())
            .filter(|s| is_sparse(sizes.len(*s), after(*s)))
            .collect();
        c.sort_unstable_by_key(|s| (after(*s), *s));
        c.dedup();
        c.truncate(COMPACT_PER_BATCH);
        c
    }

    /// Segments left without a live record after the batch.
    pub(super) fn emptied<'a>(
        &'a self,
        sizes: &'a crate::store::index::Segments,
    ) -> impl Iterator<Item = u32> + 'a {
        self.0
            .iter()
            .filter(|(seg, n)| sizes.live(**seg) <= **n)
            .map(|(seg, _)| *seg)
    }
}

/// Device records planned into new segments, applied to the index once the
/// batch is committed.
#[derive(Default)]
pub(super) struct DevicePlan {
    segments: Vec<(u32, usize)>,
    records: Vec<(Loc, StoredDeviceFields)>,
    /// The segment whose JSON holds the page's text, if any.
    page_seg: Option<u32>,
    /// A webhook event of the batch refers to `page_seg`'s JSON.
    page_ref: bool,
}

impl DevicePlan {
    pub(super) fn apply(self, ix: &mut NameIndex) {
        for (seg, len) in self.segments {
            ix.add_device_segment(seg, len);
        }
        for (loc, d) in &self.records {
            ix.set_device(&d.serial, *loc, &device_facts(d));
        }
        if let (Some(seg), true) = (self.page_seg, self.page_ref) {
            ix.add_outbox_ref(seg);
        }
    }
}

#[derive(Default)]
pub(super) struct AssignmentPlan {
    segments: Vec<(u32, usize)>,
    records: Vec<(Loc, String, AssignFacts)>,
}

impl AssignmentPlan {
    pub(super) fn apply(self, ix: &mut NameIndex) {
        for (seg, len) in self.segments {
            ix.add_assignment_segment(seg, len);
        }
        for (loc, serial, facts) in &self.records {
            ix.set_assignment(serial, *loc, *facts);
        }
    }
}

impl Store {
    /// Plans device records into new segments: the segment writes, the
    /// deletion of segments left empty, and the compaction of sparse ones
    /// (their live records join the new segments).
    ///
    /// The first new segment's JSON holds `page` (the text of the page the
    /// records come from, which their [`Text::Page`] spans refer to) as it
    /// is; other texts are copied after it. A segment left empty keeps its
    /// JSON while a webhook event refers to it.
    pub(super) fn plan_devices(
        &self,
        name: &DepName,
        ix: &NameIndex,
        records: Vec<(StoredDeviceFields, Text)>,
        page: Option<&str>,
        writes: &mut Vec<Write>,
    ) -> Result<DevicePlan, StoreError> {
        let mut plan = DevicePlan::default();
        if records.is_empty() {
            return Ok(plan);
        }
        let mut kills = Kills::default();
        for (r, _) in &records {
            if let Some(old) = ix.device(&r.serial) {
                kills.add(old.loc.seg);
            }
        }
        let written: HashSet<&str> = records.iter().map(|(r, _)| r.serial.as_str()).collect();
        let mut moved = Vec::new();
        for seg in kills.compaction(&ix.devices) {
            let Some((fields, texts)) = self.read_device_segment(name, seg)? else {
                return Err(corrupt(format!(
                    "device segment {seg} of {name} is missing"
                )));
            };
            for (i, (f, j)) in fields.devices.into_iter().zip(texts).enumerate() {
                let at = Loc {
                    seg,
                    slot: slot(i)?,
                };
                if ix.is_current_device(&f.serial, at) && !written.contains(f.serial.as_str()) {
                    kills.add(seg);
                    moved.push((f, Text::Own(j)));
                }
            }
        }
        drop(written);
        for seg in kills.emptied(&ix.devices) {
            writes.push(Write::Delete(seg_key(DEVICE_SEG, name, seg)));
            if !ix.has_outbox_ref(seg) {
                writes.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
            }
        }
        let mut all = records;
        all.extend(moved);
        let mut seg = ix.devices.next;
        let too_large = || corrupt(format!("a JSON segment of {name} over 4 GiB"));
        for (n, run) in segments_of(all).into_iter().enumerate() {
            // The page's text goes with the first segment only.
            let here = if n == 0 { page } else { None };
            // Texts not in `here` follow it, in `extra`.
            let base = here.map_or(0, str::len);
            let mut extra = String::new();
            let mut append = |t: &str| {
                let start = u32::try_from(base + extra.len()).ok()?;
                let len = u32::try_from(t.len()).ok()?;
                start.checked_add(len)?;
                extra.push_str(t);
                Some((start, len))
            };
            let mut spans = Vec::with_capacity(run.len());
            let mut fields = Vec::with_capacity(run.len());
            for (f, text) in run {
                let span = match (text, here) {
                    (Text::Page(start, len), Some(_)) => (start, len),
                    (Text::Page(start, len), None) => {
                        let t = span_of(page, start, len).ok_or_else(|| {
                            corrupt(format!("device {} has no text in its page", f.serial))
                        })?;
                        append(t).ok_or_else(too_large)?
                    }
                    (Text::Own(t), _) => append(&t).ok_or_else(too_large)?,
                };
                spans.push(span);
                fields.push(f);
            }
            writes.push(Write::Put(
                seg_key(DEVICE_SEG, name, seg),
                record::encode_as::<StoredDeviceSegment, _>(&DeviceSegmentRef { devices: &fields }),
            ));
            writes.push(Write::Put(
                seg_key(JSON_SEG, name, seg),
                record::encode_as::<StoredJsonSegment, _>(&JsonSegmentRef {
                    page: here.unwrap_or(""),
                    extra: &extra,
                    spans: &spans,
                }),
            ));
            if here.is_some() {
                plan.page_seg = Some(seg);
            }
            plan.segments.push((seg, fields.len()));
            for (i, f) in fields.into_iter().enumerate() {
                plan.records.push((
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    f,
                ));
            }
            seg = seg
                .checked_add(1)
                .ok_or_else(|| corrupt(format!("device segment numbers of {name} ran out")))?;
        }
        Ok(plan)
    }

    /// Plans assignment records into new segments, like [`Self::plan_devices`].
    pub(super) fn plan_assignments(
        &self,
        name: &DepName,
        ix: &NameIndex,
        records: BTreeMap<String, StoredAssignment>,
        writes: &mut Vec<Write>,
    ) -> Result<AssignmentPlan, StoreError> {
        let mut plan = AssignmentPlan::default();
        if records.is_empty() {
            return Ok(plan);
        }
        let mut kills = Kills::default();
        for serial in records.keys() {
            if let Some(old) = ix.assignment(serial) {
                kills.add(old.seg);
            }
        }
        let mut moved = Vec::new();
        for seg in kills.compaction(&ix.assigns) {
            let Some(s) = self.read_assignment_segment(name, seg)? else {
                return Err(corrupt(format!(
                    "assignment segment {seg} of {name} is missing"
                )));
            };
            for (i, (serial, a)) in s.records.into_iter().enumerate() {
                let at = Loc {
                    seg,
                    slot: slot(i)?,
                };
                if ix.is_current_assignment(&serial, at) && !records.contains_key(&serial) {
                    kills.add(seg);
                    moved.push((serial, a));
                }
            }
        }
        for seg in kills.emptied(&ix.assigns) {
            writes.push(Write::Delete(seg_key(ASSIGN_SEG, name, seg)));
        }
        let mut all: Vec<(String, StoredAssignment)> = records.into_iter().collect();
        all.extend(moved);
        let mut seg = ix.assigns.next;
        for run in segments_of(all) {
            for (i, (serial, a)) in run.iter().enumerate() {
                plan.records.push((
                    Loc {
                        seg,
                        slot: slot(i)?,
                    },
                    serial.clone(),
                    assign_facts(a),
                ));
            }
            plan.segments.push((seg, run.len()));
            writes.push(Write::Put(
                seg_key(ASSIGN_SEG, name, seg),
                record::encode(&StoredAssignmentSegment { records: run }),
            ));
            seg = seg
                .checked_add(1)
                .ok_or_else(|| corrupt(format!("assignment segment numbers of {name} ran out")))?;
        }
        Ok(plan)
    }

    /// Applies one page in a single atomic batch, flushed when
    /// [`PageApply::flush`] says so: device records upserted (a stale event
    /// never replaces a newer record; `deleted` marks rather than
    /// removes), the webhook event queued, assignment work queued and the
    /// sync state advanced. A crash leaves either all of it or none, so the
    /// page is simply fetched again.
    ///
    /// Only the name's actor calls this, so reading the stored records first
    /// and committing afterwards cannot lose a concurrent write.
    ///
    /// The index learns of the batch as soon as it is applied, with the
    /// index still locked (no reader sees the index behind the store); the
    /// flush then runs with the index unlocked, and `stored` is called
    /// after it (after the apply when not flushing): the sync loop asks
    /// Apple for the next page once the page is durable.
    pub fn apply_page(
        &self,
        name: &DepName,
        apply: PageApply<'_>,
        stored: impl FnOnce(&PageSummary),
    ) -> Result<PageSummary, StoreError> {
        let flush = apply.flush;
        let summary = self.with_index(name, |ix| {
            let mut summary = PageSummary::default();
            let page_date = parse_time(apply.fetched_until);
            // The same serial may appear several times in one page: later
            // events are compared with the earlier ones of the page, not
            // only with what is stored.
            let mut devices: BTreeMap<&str, (StoredDeviceFields, Text)> = BTreeMap::new();
            for device in apply.devices {
                let serial = device.serial;
                if serial.is_empty() {
                    summary.ignored += 1;
                    continue;
                }
                let current = match devices.get(serial) {
                    Some((d, _)) => Some((d.op_date_unix, d.first_seen_unix)),
                    None => ix
                        .device(serial)
                        .map(|v| (v.op_date_unix, v.first_seen_unix)),
                };
                let op_date = parse_time(device.op_date).or(page_date);
                let first_seen = match current {
                    Some((old, _)) if is_stale(op_date, old) => {
                        summary.stale += 1;
                        continue;
                    }
                    Some((_, first_seen)) => first_seen,
                    None => apply.now_unix,
                };
                let record =
                    stored_device(device, apply.text, op_date, first_seen, apply.now_unix)?;
                summary.upserted += 1;
                summary.deleted += usize::from(record.0.deleted);
                devices.insert(serial, record);
            }

            let assignments = self.queue_assignments(name, ix, apply.assignments)?;
            let mut writes = Vec::with_capacity(8);
            let mut device_plan = self.plan_devices(
                name,
                ix,
                devices.into_values().collect(),
                apply.text,
                &mut writes,
            )?;
            summary.assignments = assignments.len();
            let assign_plan = self.plan_assignments(name, ix, assignments, &mut writes)?;
            if let Some(entry) = apply.outbox {
                let seq_key = prefix(OUTBOX_SEQ, name);
                let seq = match self.engine.get(&seq_key)? {
                    Some(v) => decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next,
                    None => 0,
                };
                let body = match (entry.body, device_plan.page_seg, apply.text) {
                    (EventBody::Whole(body), _, _) => StoredEventBody::Text(body),
                    // The page's text is stored once, with its devices.
                    (EventBody::AroundPage { head, tail }, Some(seg), Some(_)) => {
                        device_plan.page_ref = true;
                        StoredEventBody::Page { head, seg, tail }
                    }
                    // No device of the page is stored (all stale, say).
                    (body @ EventBody::AroundPage { .. }, None, Some(text)) => {
                        StoredEventBody::Text(body.complete(Some(text)).unwrap_or_default())
                    }
                    (EventBody::AroundPage { .. }, _, None) => {
                        return Err(StoreError::Engine(format!(
                            "the webhook event of a page of {name} needs the page's text"
                        )));
                    }
                };
                let stored = StoredOutboxEntry {
                    event_id: entry.event_id,
                    topic: entry.topic,
                    created_unix: apply.now_unix,
                    body,
                };
                writes.push(Write::Put(
                    key(OUTBOX, name, &seq.to_be_bytes()),
                    record::encode(&stored),
                ));
                writes.push(Write::Put(
                    seq_key,
                    record::encode(&StoredOutboxSeq { next: seq + 1 }),
                ));
                summary.outbox_seq = Some(seq);
            }
            writes.push(Write::Put(
                field_key(name, Field::Sync),
                record::encode(apply.sync),
            ));
            self.engine.apply(writes)?;
            device_plan.apply(ix);
            assign_plan.apply(ix);
            Ok(summary)
        })?;
        // The flush waits for the disk with the index unlocked: the
        // assigner and the webhook deliverer write meanwhile (the name's
        // index lock was busy nine tenths of a full fetch).
        if flush {
            self.flush()?;
        }
        stored(&summary);
        Ok(summary)
    }

    /// The records `queue` decides to write, from its candidates' stored
    /// records (read with the index locked: nothing moves meanwhile).
    pub(super) fn queue_assignments(
        &self,
        name: &DepName,
        ix: &NameIndex,
        queue: AssignQueue<'_>,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let wanted: Vec<(String, Loc)> = queue
            .candidates
            .iter()
            .filter_map(|s| ix.assignment(s).map(|l| (s.clone(), l)))
            .collect();
        let Some(found) = self.assignments_at(name, &wanted)? else {
            return Err(corrupt(format!(
                "assignment records of {name} are missing from their segments"
            )));
        };
        let existing: HashMap<String, StoredAssignment> = found.into_iter().collect();
        Ok(queue
            .candidates
            .into_iter()
            .filter_map(|s| (queue.decide)(&s, existing.get(&s)).map(|r| (s, r)))
            .collect())
    }
}
