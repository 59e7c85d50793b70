//! Assignment records: reading, writing, the due queue and counts.

use super::*;

impl Store {
    /// Reads assignment records at the given places, grouped by segment;
    /// `None` when a segment was compacted away meanwhile.
    pub(super) fn assignments_at(
        &self,
        name: &DepName,
        wanted: &[(String, Loc)],
    ) -> Result<Option<Vec<(String, StoredAssignment)>>, StoreError> {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|&i| wanted[i].1);
        let mut out: Vec<Option<(String, StoredAssignment)>> = vec![None; wanted.len()];
        let mut current: Option<(u32, Vec<Option<SerialAssignment>>)> = None;
        for i in order {
            let (serial, loc) = &wanted[i];
            if current.as_ref().is_none_or(|(seg, _)| *seg != loc.seg) {
                let Some(s) = self.read_assignment_segment(name, loc.seg)? else {
                    return Ok(None);
                };
                current = Some((loc.seg, s.records.into_iter().map(Some).collect()));
            }
            let Some((_, records)) = current.as_mut() else {
                return Ok(None);
            };
            match records
                .get_mut(usize::from(loc.slot))
                .and_then(Option::take)
            {
                Some(r) if r.0 == *serial => out[i] = Some(r),
                _ => return Ok(None),
            }
        }
        Ok(Some(out.into_iter().flatten().collect()))
    }

    /// A serial's assignment record.
    pub fn assignment(
        &self,
        name: &DepName,
        serial: &str,
    ) -> Result<Option<StoredAssignment>, StoreError> {
        Ok(self.assignments(name, [serial])?.into_values().next())
    }

    /// The assignment records of the given serials that exist.
    pub fn assignments<'s>(
        &self,
        name: &DepName,
        serials: impl IntoIterator<Item = &'s str>,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let serials: Vec<&str> = serials.into_iter().collect();
        let found = self.read_located(
            name,
            |ix| {
                serials
                    .iter()
                    .filter_map(|s| ix.assignment(s).map(|l| ((*s).to_owned(), l)))
                    .collect()
            },
            |wanted| self.assignments_at(name, wanted),
        )?;
        Ok(found.into_iter().collect())
    }

    /// Writes assignment records in one atomic batch.
    pub fn put_assignments(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
    ) -> Result<(), StoreError> {
        self.write_assignments(name, records, true)
    }

    /// Like [`Self::put_assignments`] but not flushed: for the answers to
    /// assignment calls, which the assigner flushes once at the end of its
    /// pass. An answer lost in a crash leaves the serial's record as it was
    /// before the call (due), so it is sent again; assigning the profile a
    /// device already has changes nothing at Apple, and a lost `FAILED`
    /// costs one more attempt at most. The next commit (the next page),
    /// [`Store::flush`] or sled's own flush every half second makes it
    /// durable; sled's log keeps batches in order, so a later durable
    /// batch never survives without an earlier one.
    pub fn put_assignment_results(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
    ) -> Result<(), StoreError> {
        self.write_assignments(name, records, false)
    }

    pub(super) fn write_assignments(
        &self,
        name: &DepName,
        records: &BTreeMap<String, StoredAssignment>,
        flush: bool,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.with_index(name, |ix| {
            let mut writes = Vec::new();
            let plan = self.plan_assignments(name, ix, records.clone(), &mut writes)?;
            self.engine.apply(writes)?;
            plan.apply(ix);
            Ok(())
        })?;
        // After the index learned of the batch: a failed flush must not
        // leave the index behind what sled already holds.
        if flush { self.flush() } else { Ok(()) }
    }

    /// Assignments due at `now_unix` or earlier, earliest first, at most
    /// `limit`: the cost follows what is due, not the size of the inventory.
    /// The tests' view of the queue; the assigner takes its batches with
    /// [`Store::due_serials_where`].
    /// Serials due at the same second come in the order the index learned
    /// of them, which is not kept across restarts.
    #[cfg(test)]
    pub fn due_assignments(
        &self,
        name: &DepName,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        self.read_located(
            name,
            |ix| ix.due_where(now_unix, limit, |_| true),
            |wanted| self.assignments_at(name, wanted),
        )
    }

    /// The serials of [`Self::due_assignments`], from the index alone,
    /// passing over those `keep` refuses: the assigner's pass skips what it
    /// has already sent, some of which may still be due while their answer
    /// is being recorded. Recording the answer reads the records.
    pub fn due_serials_where(
        &self,
        name: &DepName,
        now_unix: i64,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        self.with_index(name, |ix| {
            Ok(ix
                .due_where(now_unix, limit, keep)
                .into_iter()
                .map(|(serial, _)| serial)
                .collect())
        })
    }

    /// The earliest time an assignment record of `name` is due.
    pub fn next_due_assignment(&self, name: &DepName) -> Result<Option<i64>, StoreError> {
        self.with_index(name, |ix| Ok(ix.next_due()))
    }

    /// Up to `limit` assignment records in serial order after `after`, for
    /// `GET /v1/assignments/{name}`.
    pub fn scan_assignments(
        &self,
        name: &DepName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, StoredAssignment)>, StoreError> {
        self.read_located(
            name,
            |ix| {
                let mut found = Vec::new();
                ix.each_assignment(|serial, loc, _| {
                    if after.is_none_or(|a| serial > a) {
                        found.push((serial.to_owned(), loc));
                    }
                });
                found.sort_unstable();
                found.truncate(limit);
                found
            },
            |wanted| self.assignments_at(name, wanted),
        )
    }

    /// Assignment counts by result, cooldowns pending and serials given up,
    /// from the index.
    pub fn assignment_counts(
        &self,
        name: &DepName,
        now_unix: i64,
    ) -> Result<AssignmentCounts, StoreError> {
        self.with_index(name, |ix| {
            let mut c = AssignmentCounts::default();
            ix.each_assignment(|_, _, a| {
                *c.by_result.entry(result_of(a.result).as_str()).or_default() += 1;
                c.cooling_down += u64::from(a.next_retry_unix.is_some_and(|t| t > now_unix));
                c.gave_up += u64::from(a.gave_up);
            });
            Ok(c)
        })
    }
}
