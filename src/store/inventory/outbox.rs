//! The webhook outbox: events waiting for delivery, in order.

use super::*;

impl Store {
    /// The oldest `limit` webhook events of a name, with their sequence
    /// numbers, in order, their bodies complete.
    pub fn outbox_peek(
        &self,
        name: &DepName,
        limit: usize,
    ) -> Result<Vec<(u64, PendingEvent)>, StoreError> {
        let p = prefix(OUTBOX, name);
        let mut out = Vec::new();
        for (k, v) in self.engine.scan(&p, None, limit)? {
            let Some(seq) = k[p.len()..].first_chunk::<8>() else {
                continue;
            };
            let entry: StoredOutboxEntry = decode_at(&k, &v)?;
            let body = match entry.body {
                StoredEventBody::Text(body) => body,
                // The segment's JSON stays while this event refers to it.
                StoredEventBody::Page { head, seg, tail } => {
                    let jk = seg_key(JSON_SEG, name, seg);
                    let Some(json) = self.engine.get(&jk)? else {
                        // Delivered and removed (with its page) since the
                        // scan read it: nothing to send.
                        if self.engine.get(&k)?.is_none() {
                            continue;
                        }
                        return Err(corrupt(format!(
                            "the page text of webhook event {} of {name} (segment {seg}) is missing",
                            entry.event_id
                        )));
                    };
                    let json: StoredJsonSegment = decode_at(&jk, &json)?;
                    let page = json.page.trim();
                    let mut body = String::with_capacity(head.len() + page.len() + tail.len());
                    body.push_str(&head);
                    body.push_str(page);
                    body.push_str(&tail);
                    body
                }
            };
            out.push((
                u64::from_be_bytes(*seq),
                PendingEvent {
                    event_id: entry.event_id,
                    topic: entry.topic,
                    created_unix: entry.created_unix,
                    body,
                },
            ));
        }
        Ok(out)
    }

    /// Removes delivered events, atomically, with the page text of a
    /// segment no record or event needs any more. The deliverer removes
    /// from the head of the outbox (delivery is in order), which keeps the
    /// sequence numbers of what is left contiguous.
    pub fn outbox_remove(&self, name: &DepName, seqs: &[u64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.with_index(name, |ix| {
            let mut writes = Vec::with_capacity(seqs.len());
            let mut dropped = Vec::new();
            for s in seqs {
                let k = key(OUTBOX, name, &s.to_be_bytes());
                if let Some(v) = self.engine.get(&k)?
                    && let StoredEventBody::Page { seg, .. } =
                        decode_at::<StoredOutboxEntry>(&k, &v)?.body
                {
                    dropped.push(seg);
                }
                writes.push(Write::Delete(k));
            }
            // A segment's JSON goes with the last event referring to it,
            // unless records of the segment still live.
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for seg in &dropped {
                *counts.entry(*seg).or_default() += 1;
            }
            for (seg, n) in counts {
                if ix.outbox_refs_of(seg) <= n && ix.devices.live(seg) == 0 {
                    writes.push(Write::Delete(seg_key(JSON_SEG, name, seg)));
                }
            }
            // Not flushed: delivery is at least once, so a removal lost in
            // a crash only means the event goes out again (and the index,
            // rebuilt then, counts its reference again). The next commit
            // (the next page) or sled's flush every half second makes it
            // durable.
            self.engine.apply(writes)?;
            for seg in dropped {
                ix.drop_outbox_ref(seg);
            }
            Ok(())
        })
    }

    /// How many webhook events wait for delivery: outbox entries are
    /// contiguous (see [`Store::outbox_remove`]), so this is the distance
    /// from the oldest to the next sequence number, without reading any
    /// event's body.
    pub fn outbox_backlog(&self, name: &DepName) -> Result<u64, StoreError> {
        // A name that never had an event has no sequence number (it is
        // written in the batch of every event): no scan.
        let seq_key = prefix(OUTBOX_SEQ, name);
        let Some(v) = self.engine.get(&seq_key)? else {
            return Ok(0);
        };
        let next = decode_at::<StoredOutboxSeq>(&seq_key, &v)?.next;
        let p = prefix(OUTBOX, name);
        let oldest = self.engine.first_key(&p)?.and_then(|k| {
            k[p.len()..]
                .first_chunk::<8>()
                .map(|s| u64::from_be_bytes(*s))
        });
        Ok(oldest.map_or(0, |oldest| next.saturating_sub(oldest)))
    }
}
