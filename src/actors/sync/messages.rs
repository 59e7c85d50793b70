//! The sync loop's messages and their handlers: start a cycle, tick, and
//! the inventory queries the API sends.

use super::*;

/// Start a cycle now (`POST /v1/sync`); `resync` forgets the cursor first.
/// With `wait`, the answer comes when the cycle, its assignments and its
/// webhook deliveries are done; a cycle already running is waited for
/// rather than interrupted (unless `resync`).
#[derive(Message)]
#[rtype(result = "Result<Option<CycleReport>, SyncRefused>")]
pub struct SyncNow {
    pub resync: bool,
    pub wait: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRefused {
    #[error("no OAuth tokens are stored for this DEP name")]
    NoTokens,
    #[error("the DEP name's actor stopped")]
    Stopped,
}

/// Look at the schedule now (the one-second timer sends the same);
/// answers whether a cycle started. Tests use it after moving the clock.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Tick;

/// Serials whose profile was removed through depd: the assigner must not
/// undo that when Apple reports them `removed`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordRemovals(pub Vec<String>);

/// An inventory query, with each device's assignment record.
#[derive(Message)]
#[rtype(result = "Result<(DeviceList, BTreeMap<String, StoredAssignment>), StoreError>")]
pub struct QueryDevices(pub DeviceQuery);

/// Assignment records in serial order, after `after`.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, StoredAssignment)>, StoreError>")]
pub struct ListAssignments {
    pub after: Option<String>,
    pub limit: usize,
}

impl Handler<SyncNow> for DepNameActor {
    type Result = ResponseActFuture<Self, Result<Option<CycleReport>, SyncRefused>>;

    fn handle(&mut self, msg: SyncNow, ctx: &mut Self::Context) -> Self::Result {
        if !self.state.has_tokens() {
            return Box::pin(fut::ready(Err(SyncRefused::NoTokens)));
        }
        if msg.resync || !self.syncer.is_busy() {
            self.start_cycle(msg.resync, ctx);
        }
        if !msg.wait {
            return Box::pin(fut::ready(Ok(None)));
        }
        let (tx, rx) = oneshot::channel();
        self.syncer.waiters.push(tx);
        Box::pin(
            async move { rx.await.map(Some).map_err(|_| SyncRefused::Stopped) }.into_actor(self),
        )
    }
}

impl Handler<Tick> for DepNameActor {
    type Result = bool;

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) -> bool {
        self.sync_tick(ctx)
    }
}

impl Handler<RecordRemovals> for DepNameActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: RecordRemovals, _: &mut Self::Context) -> Self::Result {
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let now = self.clock.now().unix_timestamp();
        Box::pin(
            async move {
                store
                    .blocking(move |s| s.record_removals(&name, msg.0.iter().map(String::as_str), now))
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| {
                if let Err(e) = res {
                    tracing::error!(dep_name = %act.state.name(), error = %e, "recording profile removals failed");
                }
            }),
        )
    }
}

impl Handler<QueryDevices> for DepNameActor {
    type Result =
        ResponseFuture<Result<(DeviceList, BTreeMap<String, StoredAssignment>), StoreError>>;

    fn handle(&mut self, msg: QueryDevices, _: &mut Self::Context) -> Self::Result {
        let (store, name) = (self.store.clone(), self.state.name().clone());
        Box::pin(async move {
            store
                .blocking(move |s| {
                    let list = s.query_devices(&name, &msg.0)?;
                    let assignments =
                        s.assignments(&name, list.devices.iter().map(|d| d.serial.as_str()))?;
                    Ok((list, assignments))
                })
                .await
        })
    }
}

impl Handler<ListAssignments> for DepNameActor {
    type Result = ResponseFuture<Result<Vec<(String, StoredAssignment)>, StoreError>>;

    fn handle(&mut self, msg: ListAssignments, _: &mut Self::Context) -> Self::Result {
        let (store, name) = (self.store.clone(), self.state.name().clone());
        Box::pin(async move {
            store
                .blocking(move |s| s.scan_assignments(&name, msg.after.as_deref(), msg.limit))
                .await
        })
    }
}
