//! The DEP-name actor's sync loop: it drives the plain rules of
//! `crate::sync` (cycle, backoff, assigner, webhook) with the name's Apple
//! session, its store and its clock.
//!
//! One cycle runs at a time per name. Every Apple answer is applied to the
//! store in one atomic, flushed batch (inventory, assignment work, webhook
//! event, cursor) before the next request goes out, so a crash loses
//! nothing. After a cycle the assigner works through what is due, then the
//! outbox is delivered; callers that asked to wait (`POST /v1/sync?wait=1`,
//! `depd sync --once`) hear back when both are done.
//!
//! Due times are clock times (the injected clock); a one-second tick looks
//! at them, so tests move the clock and tick instead of waiting.

use super::dep_name::DepNameActor;
use super::session::ActorSession;
use crate::clock::SharedClock;
use crate::dep::DepError;
use crate::dep::client::{self, DepClient};
use crate::dep::client::{Hold, Retries, RetryLog};
use crate::dep::wire::DevicePage;
use crate::name::DepName;
use crate::store::{
    CycleOutcome, DeviceList, DeviceQuery, Field, NameWrite, Store, StoreError, StoredAssignment,
    StoredCycle, SyncPhase,
};
use crate::sync::assigner::AssignPolicy;
use crate::sync::backoff::{self, Backoff, OsJitter, RequestRetry};
use crate::sync::cycle::{Action, Cycle, Request, Step};
use crate::sync::persist::{self, PageInput};
use crate::sync::webhook::{self, Delivery, DeliveryPolicy};
use actix::prelude::*;
use actix_web::web::Bytes;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// How often the actor looks at its schedule.
const TICK: Duration = Duration::from_secs(1);
/// How long the page limits `/account` advertises are trusted.
const ACCOUNT_TTL: time::Duration = time::Duration::hours(1);
/// The first cycle after start is spread over this much time, so that
/// thousands of names do not call Apple in the same second.
const START_SPREAD: Duration = Duration::from_secs(5);
/// Wait before trying again when the store failed under the assigner or
/// the webhook (a fault of the host, not of Apple).
const LOCAL_RETRY: time::Duration = time::Duration::seconds(60);
/// Pages fetched from Apple but not yet stored, across every name. With
/// thousands of names syncing at once, each holding a parsed page while it
/// waits for the store, memory grew with the number of names; a name now
/// waits for a slot before it asks Apple for a page.
const PAGES_IN_FLIGHT: usize = 32;
static PAGE_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PAGES_IN_FLIGHT);

/// How a cycle ended, as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Apple said there was no more.
    Complete,
    /// Apple handed back a cursor it had already given while saying there
    /// was more: stopped instead of looping.
    RepeatedCursor,
    Failed,
    /// Not run: the name has no tokens (`depd sync --once`).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::RepeatedCursor => "repeated_cursor",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

impl From<CycleOutcome> for Outcome {
    fn from(stored: CycleOutcome) -> Self {
        match stored {
            CycleOutcome::Complete => Outcome::Complete,
            CycleOutcome::RepeatedCursor => Outcome::RepeatedCursor,
            CycleOutcome::Failed => Outcome::Failed,
        }
    }
}

/// What one cycle did, for waiting callers.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub dep_name: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub pages: u64,
    /// Devices by `op_type` (`none` on fetch).
    pub devices: BTreeMap<String, u64>,
    /// Assignment results of the pass after the cycle.
    pub assignments: BTreeMap<String, u64>,
    /// Webhook events still waiting for delivery afterwards.
    pub webhook_backlog: u64,
}

impl CycleReport {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed | Outcome::Skipped) || self.webhook_backlog > 0
    }
}

/// `added=3 modified=1` for a log line.
fn counts_words(counts: &BTreeMap<String, u64>) -> String {
    let words: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
    if words.is_empty() {
        "none".to_owned()
    } else {
        words.join(" ")
    }
}

/// What `/account` says of request sizes, with when it was read.
#[derive(Debug, Clone, Copy)]
struct AccountLimits {
    /// `/server/devices` (and so `/devices/sync`) page maximum.
    fetch: Option<u32>,
    /// `/profile/devices` serials per call maximum.
    assign: Option<u32>,
    read_at: OffsetDateTime,
}

/// The last sync failure, for status.
#[derive(Debug, Clone)]
pub(super) struct SyncFailure {
    pub at: OffsetDateTime,
    pub error: DepError,
}

/// The sync loop's state in the actor (the persisted part is in `cycle`).
pub struct Syncer {
    pub(super) cycle: Cycle,
    /// Bumped whenever a cycle starts or is abandoned: answers that arrive
    /// for an older generation are dropped.
    generation: u64,
    pub(super) next_at: Option<OffsetDateTime>,
    pub(super) last_failure: Option<SyncFailure>,
    /// The page maxima `/account` advertised, and when.
    limits: Option<AccountLimits>,
    assigning: bool,
    /// Work was queued while a pass ran (a page, the end of a cycle, a new
    /// profile): the pass may have looked before it was stored, so another
    /// pass follows at once.
    assign_requested: bool,
    pub(super) assign_at: Option<OffsetDateTime>,
    delivering: bool,
    pub(super) deliver_at: Option<OffsetDateTime>,
    delivery: Option<Delivery>,
    /// A finished cycle whose assignments and deliveries are under way.
    finishing: Option<CycleReport>,
    waiters: Vec<oneshot::Sender<CycleReport>>,
    /// Assignment results since the running (or finishing) cycle started:
    /// passes run during a cycle too, as its pages arrive.
    assigned_in_cycle: BTreeMap<String, u64>,
    /// Serials (hashed) sent by the passes since the last tick started one,
    /// carried from pass to pass (passes start as pages arrive, when a
    /// cycle ends, and one after the other while work is due) so that none
    /// is sent twice among them. Dropped when a pass leaves nothing due, and
    /// when the tick starts a pass: a serial Apple wants again at once is
    /// sent at most once a tick.
    chained_sent: Option<HashSet<u64, SentHasher>>,
    /// Apple's `Retry-After` (and `/session` hold-offs) for all the name's
    /// own calls.
    pub(super) hold: Arc<Hold>,
    /// In-place retries of the name's own calls, for status and metrics.
    pub(super) retry_log: Arc<RetryLog>,
}

impl Syncer {
    pub fn new(state: crate::store::StoredSync) -> Self {
        Syncer {
            cycle: Cycle::new(state),
            generation: 0,
            next_at: None,
            last_failure: None,
            limits: None,
            assigning: false,
            assign_requested: false,
            assign_at: None,
            delivering: false,
            deliver_at: None,
            delivery: None,
            finishing: None,
            waiters: Vec::new(),
            assigned_in_cycle: BTreeMap::new(),
            chained_sent: None,
            hold: Arc::default(),
            retry_log: Arc::default(),
        }
    }

    pub(super) fn is_busy(&self) -> bool {
        self.cycle.is_running() || self.finishing.is_some()
    }
}

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

impl DepNameActor {
    pub(super) fn start_sync_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let spread = START_SPREAD.min(self.settings.sync_interval(self.state.name()));
        let first = backoff::jittered(spread / 2, 1.0, &mut OsJitter);
        self.syncer.next_at = Some(now + first);
        // Resume work a previous run left: due assignments, undelivered events.
        self.syncer.assign_at = Some(now);
        self.syncer.deliver_at = Some(now);
        ctx.run_interval(TICK, |act, ctx| {
            act.sync_tick(ctx);
        });
    }

    /// Starts what is due. Returns whether a cycle started.
    pub(super) fn sync_tick(&mut self, ctx: &mut Context<Self>) -> bool {
        let now = self.clock.now();
        if let Some(t) = &self.state.data().tokens {
            let days = (t.access_token_expiry_unix - now.unix_timestamp()).div_euclid(86_400);
            crate::metrics::set_token_days_left(self.state.name().as_str(), days);
        }
        let due = |t: Option<OffsetDateTime>| t.is_some_and(|t| t <= now);
        let mut started = false;
        if self.settings.sync.auto
            && self.state.data().tokens.is_some()
            && !self.syncer.is_busy()
            && due(self.syncer.next_at)
        {
            self.start_cycle(false, ctx);
            started = true;
        }
        if !self.syncer.assigning && due(self.syncer.assign_at) {
            self.syncer.chained_sent = None;
            self.run_assigner(ctx);
        }
        if !self.syncer.delivering && due(self.syncer.deliver_at) {
            self.kick_delivery(ctx);
        }
        started
    }

    pub(super) fn on_settings_changed(&mut self, _ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let latest = now + self.settings.sync_interval(self.state.name());
        if self.syncer.next_at.is_none_or(|t| t > latest) {
            self.syncer.next_at = Some(latest);
        }
    }

    pub(super) fn on_profile_changed(
        &mut self,
        old: Option<String>,
        new: String,
        ctx: &mut Context<Self>,
    ) {
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let now = self.clock.now().unix_timestamp();
        tracing::info!(dep_name = %name, profile_uuid = %new, "assigner profile changed; queuing the inventory's devices");
        ctx.spawn(
            async move {
                store
                    .blocking(move |s| {
                        persist::apply_profile_change(
                            s,
                            &name,
                            old.as_deref(),
                            &new,
                            &policy,
                            now,
                        )
                    })
                    .await
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(queued) => {
                    tracing::info!(dep_name = %act.state.name(), queued, "devices queued for the new profile");
                    act.run_assigner(ctx);
                }
                Err(e) => {
                    tracing::error!(dep_name = %act.state.name(), error = %e, "queuing devices for the new profile failed");
                    act.syncer.assign_at = Some(act.clock.now() + LOCAL_RETRY);
                }
            }),
        );
    }

    /// The profile the assigner hands out, if one is set.
    fn assigner_profile(&self) -> Option<String> {
        self.state
            .data()
            .assigner
            .as_ref()
            .map(|a| a.profile_uuid.clone())
            .filter(|p| !p.is_empty())
    }

    /// The client of the name's own calls (pages, `/account`, assignment):
    /// transient failures are retried in place, and every call respects
    /// Apple's `Retry-After` for the name.
    fn dep_client(&self, ctx: &Context<Self>) -> DepClient<ActorSession> {
        let policy = RequestRetry::from_settings(&self.settings.sync);
        let policy_cap = policy.max_wait();
        let session = ActorSession::new(ctx.address()).holding(self.syncer.hold.clone());
        DepClient::new(self.target(), session, self.clock.clone())
            .named(self.state.name().as_str())
            .with_retries(Retries {
                decide: Box::new(move |failures, error| {
                    policy.wait(failures, error, &mut OsJitter)
                }),
                max_wait: policy_cap,
                hold: self.syncer.hold.clone(),
                log: self.syncer.retry_log.clone(),
            })
    }

    fn start_cycle(&mut self, resync: bool, ctx: &mut Context<Self>) {
        let now = self.clock.now().unix_timestamp();
        let step = if resync {
            self.syncer.cycle.resync(now)
        } else {
            self.syncer.cycle.start(now)
        };
        crate::heap::cycle_started();
        self.syncer.generation += 1;
        self.syncer.next_at = None;
        self.syncer.assigned_in_cycle.clear();
        tracing::info!(dep_name = %self.state.name(), resync, "sync cycle starting");
        let generation = self.syncer.generation;
        self.persist_step(generation, step, ctx);
    }

    /// Stores the step's sync state (when it changed), adopts it, acts.
    fn persist_step(&mut self, generation: u64, step: Step, ctx: &mut Context<Self>) {
        let state = step.next.state().clone();
        let changed = &state != self.syncer.cycle.state();
        let (store, name) = (self.store.clone(), self.state.name().clone());
        ctx.spawn(
            async move {
                if !changed {
                    return Ok(());
                }
                store
                    .blocking(move |s| {
                        let mut write = NameWrite::default();
                        write.put(&name, Field::Sync, &state);
                        s.commit(write)
                    })
                    .await
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                if generation != act.syncer.generation {
                    return;
                }
                match res {
                    Ok(()) => {
                        act.syncer.cycle = step.next;
                        act.on_action(generation, step.action, ctx);
                    }
                    Err(e) => act.cycle_store_failed(e, ctx),
                }
            }),
        );
    }

    fn on_action(&mut self, generation: u64, action: Action, ctx: &mut Context<Self>) {
        match action {
            Action::Request(request) => self.send_request(generation, request, ctx),
            Action::Finished(report) => self.finish_cycle(report, ctx),
        }
    }

    /// Sends the cycle's next request, first reading `/account`'s page
    /// limits when they are not known (or older than an hour).
    fn send_request(&mut self, generation: u64, request: Request, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let client = self.dep_client(ctx);
        let fresh = self
            .syncer
            .limits
            .is_some_and(|l| now - l.read_at < ACCOUNT_TTL);
        if !fresh {
            ctx.spawn(async move { client.account().await }.into_actor(self).map(
                move |res, act, ctx| {
                    if generation != act.syncer.generation {
                        return;
                    }
                    match res {
                        Ok(account) => {
                            act.syncer.limits = Some(AccountLimits {
                                fetch: account.limit_maximum("/server/devices"),
                                assign: account.limit_maximum("/profile/devices"),
                                read_at: now,
                            });
                            act.send_request(generation, request, ctx);
                        }
                        Err(e) => act.on_answer(generation, Err(e), None, ctx),
                    }
                },
            ));
            return;
        }
        let configured = self.settings.sync.page_limit;
        let limit = match self.syncer.limits.and_then(|l| l.fetch) {
            Some(max) => configured.min(max),
            None => configured,
        };
        let fut = async move {
            let slot = PAGE_SLOTS.acquire().await.ok();
            let answer = match request {
                Request::Fetch { cursor } => {
                    client
                        .fetch_devices_raw(cursor.as_deref(), Some(limit))
                        .await
                }
                Request::Sync { cursor } => client.sync_devices_raw(&cursor, Some(limit)).await,
            }
            .map(|(page, text)| (page.0, text));
            (answer, slot)
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |(res, slot), act, ctx| act.on_answer(generation, res, slot, ctx)),
        );
    }

    /// `slot` is held until the page is stored.
    fn on_answer(
        &mut self,
        generation: u64,
        answer: Result<(DevicePage, Bytes), DepError>,
        slot: Option<tokio::sync::SemaphorePermit<'static>>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.syncer.generation {
            return;
        }
        let now = self.clock.now();
        let (page, raw) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                if let Ok(step) = self.syncer.cycle.on_error(&e, now.unix_timestamp()) {
                    self.syncer.last_failure = Some(SyncFailure { at: now, error: e });
                    self.persist_step(generation, step, ctx);
                }
                return;
            }
        };
        let phase = self
            .syncer
            .cycle
            .pending()
            .map_or(SyncPhase::Fetch, Request::phase);
        let Ok(step) = self.syncer.cycle.on_page(&page, now.unix_timestamp()) else {
            return;
        };
        let name = self.state.name().clone();
        let webhook = if self.settings.webhook_urls(&name).is_empty() {
            None
        } else {
            match webhook::new_event_id()
                .and_then(|id| webhook::event(&name, phase, &page, Some(&raw), id, now))
            {
                Ok(event) => Some(event),
                Err(e) => {
                    // Without its event the page must not be stored (the
                    // webhook would miss it): end the cycle, retry later.
                    tracing::error!(dep_name = %name, error = %e, "building the webhook event failed");
                    self.cycle_store_failed(StoreError::Engine(e.to_string()), ctx);
                    return;
                }
            }
        };
        let profile = self.assigner_profile();
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let state = step.next.state().clone();
        let store = self.store.clone();
        let now_unix = now.unix_timestamp();
        // The cycle goes on once the page is durable; the store finishes
        // (index update, freeing the page) while the next request is out.
        let flush =
            persist::flush_page(matches!(step.action, Action::Request(_)), webhook.is_some());
        let (durable_tx, durable_rx) = oneshot::channel();
        let applying = actix_web::rt::spawn(async move {
            store
                .blocking(move |s| {
                    persist::apply_page(
                        s,
                        &name,
                        &page,
                        PageInput {
                            phase,
                            state: &state,
                            profile: profile.as_deref(),
                            policy: &policy,
                            webhook,
                            text: std::str::from_utf8(&raw).ok(),
                            flush,
                            now_unix,
                        },
                        |summary| {
                            let _ = durable_tx.send(summary.clone());
                        },
                    )
                })
                .await
        });
        ctx.spawn(
            async move {
                let _slot = slot;
                match durable_rx.await {
                    Ok(summary) => Ok(summary),
                    // Not stored: the task's answer says why.
                    Err(_) => match applying.await {
                        Ok(res) => res,
                        Err(e) => Err(StoreError::Task(e.to_string())),
                    },
                }
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                if generation != act.syncer.generation {
                    return;
                }
                match res {
                    Ok(summary) => {
                        act.syncer.cycle = step.next;
                        if summary.outbox_seq.is_some() {
                            act.kick_delivery(ctx);
                        }
                        if summary.assignments > 0 {
                            // At once, not at the next tick; a pass under
                            // way chains the next one when it ends.
                            act.run_assigner(ctx);
                        }
                        act.on_action(generation, step.action, ctx);
                    }
                    Err(e) => act.cycle_store_failed(e, ctx),
                }
            }),
        );
    }

    /// The store refused a write: the cycle ends without moving the cursor
    /// (what was not stored will be asked for again) and is retried later.
    fn cycle_store_failed(&mut self, e: StoreError, ctx: &mut Context<Self>) {
        tracing::error!(dep_name = %self.state.name(), error = %e, "storing sync progress failed; the cycle ends");
        let now = self.clock.now();
        self.syncer.generation += 1;
        self.syncer.cycle = Cycle::new(self.syncer.cycle.state().clone());
        let error = DepError::Unavailable(format!("storage: {e}"));
        self.syncer.last_failure = Some(SyncFailure {
            at: now,
            error: error.clone(),
        });
        let wait =
            Backoff::from_settings(&self.settings.sync).after_failure(1, &error, &mut OsJitter);
        self.syncer.next_at = Some(now + wait);
        self.syncer.finishing = Some(CycleReport {
            dep_name: self.state.name().as_str().to_owned(),
            outcome: Outcome::Failed,
            error: Some(error.to_string()),
            pages: 0,
            devices: BTreeMap::new(),
            assignments: BTreeMap::new(),
            webhook_backlog: 0,
        });
        self.maybe_notify(ctx);
    }

    fn finish_cycle(&mut self, report: StoredCycle, ctx: &mut Context<Self>) {
        crate::heap::cycle_finished();
        let now = self.clock.now();
        let name = self.state.name().clone();
        let failed = report.outcome == CycleOutcome::Failed;
        let wait = if failed {
            let error = self
                .syncer
                .last_failure
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_else(|| DepError::Decode(report.error.clone().unwrap_or_default()));
            Backoff::from_settings(&self.settings.sync).after_failure(
                self.syncer.cycle.failures(),
                &error,
                &mut OsJitter,
            )
        } else {
            self.syncer.last_failure = None;
            backoff::next_cycle(
                self.settings.sync_interval(&name),
                backoff::jitter_fraction(self.settings.sync.jitter_percent),
                &mut OsJitter,
            )
        };
        self.syncer.next_at = Some(now + wait);
        if failed {
            tracing::warn!(dep_name = %name, error = report.error.as_deref().unwrap_or(""), retry_in_secs = wait.as_secs(), "sync cycle failed");
        } else {
            tracing::info!(dep_name = %name, outcome = Outcome::from(report.outcome).as_str(), pages = report.pages, devices = %counts_words(&report.counts), next_in_secs = wait.as_secs(), "sync cycle finished");
        }
        crate::metrics::sync_cycle(name.as_str(), Outcome::from(report.outcome).as_str());
        for (op_type, n) in &report.counts {
            crate::metrics::synced_devices(name.as_str(), op_type, *n);
        }
        self.syncer.finishing = Some(CycleReport {
            dep_name: name.as_str().to_owned(),
            outcome: Outcome::from(report.outcome),
            error: report.error.clone(),
            pages: report.pages,
            devices: report.counts.clone(),
            assignments: BTreeMap::new(),
            webhook_backlog: 0,
        });
        let store = self.store.clone();
        let window = self.settings.assigner.removal_window_secs;
        let before = now.unix_timestamp() - window;
        ctx.spawn(
            async move {
                store
                    .blocking(move |s| {
                        s.prune_removals(&name, before)?;
                        s.device_counts(&name)
                    })
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok(counts) => crate::metrics::set_devices(act.state.name().as_str(), counts.total),
                Err(e) => {
                    tracing::warn!(dep_name = %act.state.name(), error = %e, "pruning removals or counting devices failed")
                }
            }),
        );
        self.run_assigner(ctx);
    }

    /// Works through the assignments due now, then schedules the next pass
    /// at the earliest retry time.
    fn run_assigner(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.assigning {
            self.syncer.assign_requested = true;
            return;
        }
        let sent = self.syncer.chained_sent.take().unwrap_or_default();
        let profile = self.assigner_profile();
        let (Some(profile), Some(_)) = (profile, self.state.data().tokens.as_ref()) else {
            self.syncer.assign_at = None;
            self.after_assigner(ctx);
            return;
        };
        self.syncer.assigning = true;
        self.syncer.assign_requested = false;
        self.syncer.assign_at = None;
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let batch = policy.batch_size(self.syncer.limits.and_then(|l| l.assign));
        let job = AssignJob {
            sent,
            store: self.store.clone(),
            name: self.state.name().clone(),
            client: self.dep_client(ctx),
            profile,
            policy,
            batch,
            clock: self.clock.clone(),
        };
        ctx.spawn(async move { job.run().await }.into_actor(self).map(
            |res, act, ctx| {
                act.syncer.assigning = false;
                match res {
                    Ok(pass) => {
                        act.syncer.assign_at = pass.next_due.and_then(|t| {
                            OffsetDateTime::from_unix_timestamp(t).ok()
                        });
                        if let Some(e) = &pass.error {
                            tracing::warn!(dep_name = %act.state.name(), error = %e, "an assignment call failed; retrying later");
                            let retry = act.clock.now() + e.retry_after().unwrap_or(Duration::from_secs(60));
                            act.syncer.assign_at = Some(act.syncer.assign_at.map_or(retry, |t| t.max(retry)));
                        }
                        for (k, v) in &pass.results {
                            *act.syncer.assigned_in_cycle.entry(k.clone()).or_default() += v;
                        }
                        // Work queued while the pass ran (a cycle's pages
                        // keep coming) is for the next pass: start it now
                        // rather than at the next tick, while passes make
                        // progress or when new work was queued meanwhile.
                        let due = act.syncer.assign_at.is_some_and(|t| t <= act.clock.now());
                        let progress = !pass.results.is_empty();
                        act.syncer.chained_sent = due.then_some(pass.sent);
                        if pass.error.is_none() && (act.syncer.assign_requested || (due && progress)) {
                            act.run_assigner(ctx);
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(dep_name = %act.state.name(), error = %e, "the assigner could not use the store");
                        act.syncer.assign_at = Some(act.clock.now() + LOCAL_RETRY);
                    }
                }
                act.after_assigner(ctx);
            },
        ));
    }

    fn after_assigner(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.finishing.is_some() && !self.syncer.delivering {
            self.kick_delivery(ctx);
        } else {
            self.maybe_notify(ctx);
        }
    }

    /// Delivers the outbox in order until it is empty or a URL fails.
    fn kick_delivery(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.delivering {
            return;
        }
        // A failed delivery waits for its retry time (the tick starts it);
        // new events queue behind it rather than hurry it.
        if self.syncer.deliver_at.is_some_and(|t| t > self.clock.now()) {
            self.maybe_notify(ctx);
            return;
        }
        let urls = self.settings.webhook_urls(self.state.name()).to_vec();
        if urls.is_empty() {
            self.syncer.deliver_at = None;
            self.maybe_notify(ctx);
            return;
        }
        self.syncer.delivering = true;
        self.syncer.deliver_at = None;
        let job = DeliverJob {
            store: self.store.clone(),
            name: self.state.name().clone(),
            urls,
            secret: self
                .settings
                .webhook
                .secret
                .as_ref()
                .map(|s| s.expose().as_bytes().to_vec()),
            policy: DeliveryPolicy::from_settings(&self.settings.webhook),
            connect_timeout: self.target().connect_timeout,
            user_agent: self.target().user_agent,
            clock: self.clock.clone(),
        };
        let carried = self.syncer.delivery.take();
        ctx.spawn(async move { job.run(carried).await }.into_actor(self).map(
            |res, act, ctx| {
                act.syncer.delivering = false;
                match res {
                    Ok(out) => {
                        act.syncer.delivery = out.pending;
                        act.syncer.deliver_at = out.retry_at;
                    }
                    Err(e) => {
                        tracing::error!(dep_name = %act.state.name(), error = %e, "webhook delivery could not use the store");
                        act.syncer.deliver_at = Some(act.clock.now() + LOCAL_RETRY);
                    }
                }
                act.maybe_notify(ctx);
            },
        ));
    }

    /// Answers the callers waiting for the finished cycle once its
    /// assignments and deliveries are done.
    fn maybe_notify(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.assigning || self.syncer.delivering || self.syncer.finishing.is_none() {
            return;
        }
        let Some(mut report) = self.syncer.finishing.take() else {
            return;
        };
        report.assignments = std::mem::take(&mut self.syncer.assigned_in_cycle);
        let waiters = std::mem::take(&mut self.syncer.waiters);
        if waiters.is_empty() {
            return;
        }
        let (store, name) = (self.store.clone(), self.state.name().clone());
        ctx.spawn(
            async move { store.blocking(move |s| s.outbox_backlog(&name)).await }
                .into_actor(self)
                .map(move |backlog, act, _| {
                    report.webhook_backlog = backlog.unwrap_or_else(|e| {
                        tracing::warn!(dep_name = %act.state.name(), error = %e, "reading the webhook backlog failed");
                        u64::MAX
                    });
                    for w in waiters {
                        let _ = w.send(report.clone());
                    }
                }),
        );
    }
}

/// One assigner pass, run off the actor's mailbox.
struct AssignJob {
    store: Store,
    name: DepName,
    client: DepClient<ActorSession>,
    profile: String,
    policy: AssignPolicy,
    batch: usize,
    clock: SharedClock,
    /// Serials not to send again (hashed), from the pass before.
    sent: HashSet<u64, SentHasher>,
}

/// Hashes of the serials a pass sent: fixed keys, so a set can be carried
/// from one pass to the next.
type SentHasher = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

#[derive(Default)]
struct AssignPass {
    results: BTreeMap<String, u64>,
    /// The serials sent, hashed.
    sent: HashSet<u64, SentHasher>,
    /// The earliest retry still pending.
    next_due: Option<i64>,
    /// A whole call failed; the pass stopped there.
    error: Option<DepError>,
}

impl AssignJob {
    /// Sends the due serials in batches. The answer to one call is recorded
    /// while the next batch is chosen and sent, so the store's work and
    /// Apple's overlap; at most one call is in flight.
    async fn run(mut self) -> Result<AssignPass, StoreError> {
        let mut pass = AssignPass::default();
        // A pass takes what was due when it began: work queued meanwhile
        // (pages keep coming during a cycle) is for the next pass, so a
        // pass ends and what it remembers stays bounded.
        let began = self.clock.now().unix_timestamp();
        // A serial sent once in this pass is not sent again in it, whatever
        // the store says, so an answer that leaves serials due within the
        // same second cannot loop. Remembered by hash (8 bytes, not the
        // serial): a collision only leaves a serial to a later pass.
        let hasher = SentHasher::default();
        let mut sent_in_pass = std::mem::take(&mut self.sent);
        // The previous call's answer, being recorded.
        let mut recording: Option<Recording> = None;
        loop {
            let next = self.send_next(began, &hasher, &mut sent_in_pass);
            let (next, recorded) = match recording.take() {
                Some(r) => {
                    let (next, recorded) = futures_util::future::join(next, r).await;
                    (next, Some(recorded))
                }
                None => (next.await, None),
            };
            if let Some(recorded) = recorded {
                self.count(&mut pass, &recorded?);
            }
            let Some((serials, answer, now)) = next? else {
                break;
            };
            let failed = answer.as_ref().err().cloned();
            recording = Some(Box::pin(self.record(serials, answer, now)));
            if let Some(e) = failed {
                // The whole call failed: record it and stop here.
                if let Some(r) = recording.take() {
                    self.count(&mut pass, &r.await?);
                }
                pass.error = Some(e);
                break;
            }
        }
        if let Some(r) = recording.take() {
            self.count(&mut pass, &r.await?);
        }
        pass.sent = sent_in_pass;
        let n = self.name.clone();
        // One flush for the pass's answers (see `Store::put_assignment_results`).
        pass.next_due = self
            .store
            .blocking(move |s| {
                s.flush()?;
                s.next_due_assignment(&n)
            })
            .await?;
        Ok(pass)
    }

    /// Chooses the next batch of due serials not yet sent in this pass and
    /// sends it; `None` when there is none.
    async fn send_next(
        &self,
        began: i64,
        hasher: &SentHasher,
        sent_in_pass: &mut HashSet<u64, SentHasher>,
    ) -> Result<Option<Sent>, StoreError> {
        let now = self.clock.now().unix_timestamp();
        let (n, batch, h) = (self.name.clone(), self.batch, hasher.clone());
        // The set goes to the store's thread and back: serials sent but
        // still due (the previous answer is being recorded) are passed over.
        let sent = std::mem::take(sent_in_pass);
        let (serials, sent) = self
            .store
            .blocking(move |s| {
                let due = s.due_serials_where(&n, began, batch, |serial| {
                    !sent.contains(&h.hash_one(serial))
                })?;
                Ok((due, sent))
            })
            .await?;
        *sent_in_pass = sent;
        if serials.is_empty() {
            return Ok(None);
        }
        sent_in_pass.extend(serials.iter().map(|s| hasher.hash_one(s)));
        let answer = self.client.assign_profile(&self.profile, &serials).await;
        Ok(Some((serials, answer, now)))
    }

    async fn record(
        &self,
        serials: Vec<String>,
        answer: Result<crate::dep::wire::AssignResponse, DepError>,
        now: i64,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let (n, profile, policy) = (self.name.clone(), self.profile.clone(), self.policy.clone());
        self.store
            .blocking(move |s| {
                persist::record_assignment(s, &n, &profile, &serials, answer.as_ref(), &policy, now)
            })
            .await
    }

    fn count(&self, pass: &mut AssignPass, records: &BTreeMap<String, StoredAssignment>) {
        for r in records.values() {
            *pass
                .results
                .entry(r.result.as_str().to_owned())
                .or_default() += 1;
            crate::metrics::assignment_results(self.name.as_str(), r.result.as_str(), 1);
        }
    }
}

/// A batch sent: its serials, Apple's answer and when it was sent.
type Sent = (
    Vec<String>,
    Result<crate::dep::wire::AssignResponse, DepError>,
    i64,
);
/// An answer being recorded.
type Recording<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<BTreeMap<String, StoredAssignment>, StoreError>>
            + 'a,
    >,
>;

/// Delivery of the outbox, oldest first, run off the actor's mailbox.
struct DeliverJob {
    store: Store,
    name: DepName,
    urls: Vec<String>,
    secret: Option<Vec<u8>>,
    policy: DeliveryPolicy,
    connect_timeout: Duration,
    user_agent: String,
    clock: SharedClock,
}

struct Delivered {
    /// The event still being delivered (which URLs have it).
    pending: Option<Delivery>,
    retry_at: Option<OffsetDateTime>,
}

impl DeliverJob {
    async fn run(self, carried: Option<Delivery>) -> Result<Delivered, StoreError> {
        let mut carried = carried;
        loop {
            let n = self.name.clone();
            let next = self.store.blocking(move |s| s.outbox_peek(&n, 1)).await?;
            let Some((seq, entry)) = next.into_iter().next() else {
                crate::metrics::set_webhook_backlog(self.name.as_str(), 0);
                return Ok(Delivered {
                    pending: None,
                    retry_at: None,
                });
            };
            let mut delivery = match carried.take() {
                Some(d) if d.seq() == seq => d,
                _ => Delivery::new(seq, self.urls.len()),
            };
            for i in delivery.pending() {
                let started = std::time::Instant::now();
                let status = self.post(&self.urls[i], &entry.body).await;
                if !status.is_some_and(webhook::is_delivered) {
                    let answer =
                        status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
                    tracing::warn!(dep_name = %self.name, url = %crate::redact::url(&self.urls[i]), answer = %answer, event_id = %entry.event_id, "webhook delivery failed");
                }
                crate::metrics::webhook_delivery(
                    self.name.as_str(),
                    status.is_some_and(webhook::is_delivered),
                    started.elapsed(),
                );
                delivery.record(i, status);
            }
            if delivery.is_complete() {
                let n = self.name.clone();
                self.store
                    .blocking(move |s| s.outbox_remove(&n, &[seq]))
                    .await?;
                continue;
            }
            let wait = delivery.retry_in(&self.policy, &mut OsJitter);
            let n = self.name.clone();
            let backlog = self.store.blocking(move |s| s.outbox_backlog(&n)).await?;
            crate::metrics::set_webhook_backlog(self.name.as_str(), backlog);
            return Ok(Delivered {
                pending: Some(delivery),
                retry_at: Some(self.clock.now() + wait),
            });
        }
    }

    /// One POST; the status, or `None` when there was no answer.
    async fn post(&self, url: &str, body: &str) -> Option<u16> {
        let mut req = client::http_client(self.connect_timeout, None)
            .post(url)
            .timeout(self.policy.timeout)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("User-Agent", self.user_agent.as_str()));
        if let Some(secret) = &self.secret {
            match webhook::signature(secret, body.as_bytes()) {
                Ok(sig) => req = req.insert_header((webhook::SIGNATURE_HEADER, sig)),
                Err(e) => {
                    tracing::error!(error = %e, "signing the webhook body failed");
                    return None;
                }
            }
        }
        match req.send_body(body.to_owned()).await {
            Ok(mut resp) => {
                // Drain the answer so the connection can be reused.
                let _ = resp.body().limit(64 * 1024).await;
                Some(resp.status().as_u16())
            }
            Err(e) => {
                // awc's error may quote the URL: it is left out.
                let error = match &e {
                    awc::error::SendRequestError::Timeout => "timed out".to_owned(),
                    awc::error::SendRequestError::Connect(c) => format!("connect: {c}"),
                    _ => "request failed".to_owned(),
                };
                tracing::debug!(url = %crate::redact::url(url), error = %error, "webhook POST failed");
                None
            }
        }
    }
}

impl Handler<SyncNow> for DepNameActor {
    type Result = ResponseActFuture<Self, Result<Option<CycleReport>, SyncRefused>>;

    fn handle(&mut self, msg: SyncNow, ctx: &mut Self::Context) -> Self::Result {
        if self.state.data().tokens.is_none() {
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
