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

use super::apple_session::ActorSession;
use super::dep_name::DepNameActor;
use crate::dep::DepError;
use crate::dep::client::Retries;
use crate::dep::client::{self, DepClient};
use crate::dep::wire::DevicePage;
use crate::domain::clock::SharedClock;
use crate::domain::name::DepName;
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
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::oneshot;

mod assign;
mod deliver;
mod messages;

use super::syncer::{AccountLimits, SyncFailure, counts_words};
pub use super::syncer::{CycleReport, Outcome};
pub use messages::{ListAssignments, QueryDevices, RecordRemovals, SyncNow, SyncRefused, Tick};

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
        if let Some(expiry) = self.state.token_expiry_unix() {
            let days = (expiry - now.unix_timestamp()).div_euclid(86_400);
            crate::metrics::set_token_days_left(self.state.name().as_str(), days);
        }
        let due = |t: Option<OffsetDateTime>| t.is_some_and(|t| t <= now);
        let mut started = false;
        if self.settings.sync.auto
            && self.state.has_tokens()
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

    /// The client of the name's own calls (pages, `/account`, assignment):
    /// transient failures are retried in place, and every call respects
    /// Apple's `Retry-After` for the name.
    pub(in crate::actors) fn dep_client(&self, ctx: &Context<Self>) -> DepClient<ActorSession> {
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
        crate::daemon::heap::cycle_started();
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
        let rules = self.compiled_rules();
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
                            rules: &rules,
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
        crate::daemon::heap::cycle_finished();
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
