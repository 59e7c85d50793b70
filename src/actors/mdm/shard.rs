//! Enrollment shards: the owners of MDM enrollment state. A device channel
//! (and with it its user channels) belongs to the shard its ID hashes to,
//! for the life of the process; a shard handles one message at a time, so
//! every read-decide-commit sequence on a channel's keys is alone. Shards
//! keep no per-enrollment state in memory (it lives in the store), so a
//! host holds any number of enrollments in the same memory.

use crate::mdm::ids::EnrollmentId;
use crate::mdm::message::{Checkin, Report};
use crate::mdm::service::{self, Answer, Config, DeviceRequest, EnqueueError, ServiceError};
use crate::store::Store;
use actix::prelude::*;
use std::collections::BTreeMap;

/// The shard answers once the request's batch is applied; the caller
/// ([`super::Mdm`]) waits for it to be durable before the device gets its
/// answer, so the shard takes the next request during the flush.
pub struct EnrollmentShard {
    store: Store,
}

impl EnrollmentShard {
    pub fn new(store: Store) -> Self {
        EnrollmentShard { store }
    }
}

impl Actor for EnrollmentShard {
    type Context = Context<Self>;
}

/// What a device sent.
pub enum Inbound {
    Checkin(Checkin),
    Report(Report),
}

/// A device's request for a channel this shard owns.
#[derive(Message)]
#[rtype(result = "Result<Answer, ServiceError>")]
pub struct DoRequest {
    pub cfg: Config,
    pub req: DeviceRequest,
    pub inbound: Inbound,
    pub id: EnrollmentId,
}

/// Queue a stored command for channels this shard owns.
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<String, EnqueueError>, crate::store::StoreError>")]
pub struct DoEnqueue {
    pub ids: Vec<String>,
    pub uuid: String,
    pub now_unix: i64,
}

impl Handler<DoRequest> for EnrollmentShard {
    type Result = AtomicResponse<Self, Result<Answer, ServiceError>>;
    fn handle(&mut self, msg: DoRequest, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let fut = async move {
            store
                .blocking_mdm(move |s| {
                    Ok(match &msg.inbound {
                        Inbound::Checkin(m) => service::checkin(s, &msg.cfg, &msg.req, m, &msg.id),
                        Inbound::Report(r) => service::report(s, &msg.cfg, &msg.req, r, &msg.id),
                    })
                })
                .await
                .map_err(ServiceError::Store)
                .and_then(|r| r)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

/// Drop a channel's outstanding commands.
#[derive(Message)]
#[rtype(result = "Result<Option<usize>, crate::store::StoreError>")]
pub struct DoClearQueue(pub String);

impl Handler<DoClearQueue> for EnrollmentShard {
    type Result = AtomicResponse<Self, Result<Option<usize>, crate::store::StoreError>>;
    fn handle(&mut self, msg: DoClearQueue, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let fut = async move {
            store
                .blocking_mdm(move |s| service::clear_queue(s, &msg.0))
                .await
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

impl Handler<DoEnqueue> for EnrollmentShard {
    type Result =
        AtomicResponse<Self, Result<BTreeMap<String, EnqueueError>, crate::store::StoreError>>;
    fn handle(&mut self, msg: DoEnqueue, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let fut = async move {
            store
                .blocking_mdm(move |s| service::enqueue(s, &msg.ids, &msg.uuid, msg.now_unix))
                .await
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

/// The shard that owns device channel `d` among `n` (FNV-1a: stable
/// across runs and platforms).
pub fn shard_of(d: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in d.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n.max(1) as u64) as usize
}
