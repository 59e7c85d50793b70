//! Reading the inventory: one device, all devices in chunks, queries and
//! counts.

use super::*;

impl Store {
    /// Reads device records at the given places, grouped by segment, in
    /// the order given; `None` when a segment was compacted away meanwhile.
    pub(super) fn devices_at(
        &self,
        name: &DepName,
        wanted: &[(String, Loc)],
    ) -> Result<Option<Vec<StoredDevice>>, StoreError> {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_unstable_by_key(|&i| wanted[i].1);
        let mut out: Vec<Option<StoredDevice>> = vec![None; wanted.len()];
        let mut current: Option<(u32, Vec<Option<StoredDeviceFields>>, Vec<String>)> = None;
        for i in order {
            let (serial, loc) = &wanted[i];
            if current.as_ref().is_none_or(|(seg, _, _)| *seg != loc.seg) {
                let Some((f, j)) = self.read_device_segment(name, loc.seg)? else {
                    return Ok(None);
                };
                current = Some((loc.seg, f.devices.into_iter().map(Some).collect(), j));
            }
            let Some((_, fields, json)) = current.as_mut() else {
                return Ok(None);
            };
            let at = usize::from(loc.slot);
            match (fields.get_mut(at).and_then(Option::take), json.get_mut(at)) {
                (Some(f), Some(j)) if f.serial == *serial => {
                    out[i] = Some(f.join(std::mem::take(j)));
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(out.into_iter().flatten().collect()))
    }

    /// Looks records up in the index with `find` and reads them with
    /// `read`, again when a segment was compacted away in between.
    pub(super) fn read_located<T>(
        &self,
        name: &DepName,
        find: impl Fn(&NameIndex) -> Vec<(String, Loc)>,
        read: impl Fn(&[(String, Loc)]) -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..READ_TRIES {
            let wanted = self.with_index(name, |ix| Ok(find(ix)))?;
            if let Some(found) = read(&wanted)? {
                return Ok(found);
            }
        }
        Err(StoreError::Engine(format!(
            "records of {name} kept moving while being read"
        )))
    }

    /// One device of the inventory.
    pub fn device(&self, name: &DepName, serial: &str) -> Result<Option<StoredDevice>, StoreError> {
        let found = self.read_located(
            name,
            |ix| {
                ix.device(serial)
                    .map(|d| (serial.to_owned(), d.loc))
                    .into_iter()
                    .collect()
            },
            |wanted| self.devices_at(name, wanted),
        )?;
        Ok(found.into_iter().next())
    }

    /// Calls `f` with the live devices of each segment in turn (in no
    /// particular order of serials): for walking the whole inventory, e.g.
    /// on a profile change. Segments written meanwhile are walked too.
    pub fn each_device_chunk(
        &self,
        name: &DepName,
        mut f: impl FnMut(Vec<StoredDevice>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = None;
        while let Some(seg) = self.with_index(name, |ix| Ok(ix.next_device_segment(after)))? {
            after = Some(seg);
            // A segment compacted away meanwhile: its live records are in
            // a later segment, which this walk still reaches.
            let Some((fields, json)) = self.read_device_segment(name, seg)? else {
                continue;
            };
            let live = self.with_index(name, |ix| {
                let mut live = Vec::new();
                for (i, (d, j)) in fields.devices.into_iter().zip(json).enumerate() {
                    if ix.is_current_device(
                        &d.serial,
                        Loc {
                            seg,
                            slot: slot(i)?,
                        },
                    ) {
                        live.push(d.join(j));
                    }
                }
                Ok(live)
            })?;
            if !live.is_empty() {
                f(live)?;
            }
        }
        Ok(())
    }

    /// The inventory query of `GET /v1/devices/{name}`, in serial order.
    /// Without a serial or `profile_uuid` filter the index answers and only
    /// the page asked for is read; otherwise the candidates are read and
    /// filtered.
    pub fn query_devices(
        &self,
        name: &DepName,
        query: &DeviceQuery,
    ) -> Result<DeviceList, StoreError> {
        let find = |ix: &NameIndex| {
            let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            let mut found = Vec::new();
            match &query.serial {
                Some(serial) => {
                    if let Some(d) = ix.device(serial) {
                        found.push((serial.clone(), d.loc));
                    }
                }
                None => ix.each_device(|serial, loc, op_type, status, _| {
                    if eq(&query.op_type, op_type) && eq(&query.profile_status, status) {
                        found.push((serial.to_owned(), loc));
                    }
                }),
            }
            found.sort_unstable();
            found
        };
        let read = |wanted: &[(String, Loc)]| -> Result<Option<DeviceList>, StoreError> {
            let mut list = DeviceList::default();
            if query.profile_uuid.is_none() && query.serial.is_none() {
                // The index already decided: read only the page asked for.
                list.total = wanted.len();
                let page: Vec<(String, Loc)> = wanted
                    .iter()
                    .skip(query.offset)
                    .take(query.limit)
                    .cloned()
                    .collect();
                let Some(devices) = self.devices_at(name, &page)? else {
                    return Ok(None);
                };
                list.devices = devices.into_iter().filter(|d| query.matches(d)).collect();
                return Ok(Some(list));
            }
            let Some(devices) = self.devices_at(name, wanted)? else {
                return Ok(None);
            };
            for d in devices.into_iter().filter(|d| query.matches(d)) {
                if list.total >= query.offset && list.devices.len() < query.limit {
                    list.devices.push(d);
                }
                list.total += 1;
            }
            Ok(Some(list))
        };
        self.read_located(name, find, read)
    }

    /// Inventory counts of a name, from the index.
    pub fn device_counts(&self, name: &DepName) -> Result<DeviceCounts, StoreError> {
        self.with_index(name, |ix| {
            let mut c = DeviceCounts::default();
            ix.each_device(|_, _, op_type, status, deleted| {
                c.total += 1;
                *c.by_op_type.entry(label(op_type)).or_default() += 1;
                if deleted {
                    c.deleted += 1;
                } else {
                    *c.by_profile_status.entry(label(status)).or_default() += 1;
                }
            });
            Ok(c)
        })
    }
}
