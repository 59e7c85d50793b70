//! The assigner: a pass over what is due, batch by batch, off the actor's
//! mailbox; the answers recorded while the next batch is sent.

use super::*;
use crate::sync::assigner::{PassTally, SentSerials};
use crate::sync::rules::{Compiled, RuleSet};

impl DepNameActor {
    /// The chooser changed (the rules, or the assigner profile): queues
    /// the inventory's devices whose target changed, then runs the
    /// assigner.
    pub(in crate::actors) fn on_targets_changed(
        &mut self,
        old: Compiled,
        new: Compiled,
        ctx: &mut Context<Self>,
    ) {
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let now = self.clock.now().unix_timestamp();
        tracing::info!(dep_name = %name, "assignment targets changed; queuing the inventory's devices");
        ctx.spawn(
            async move {
                store
                    .blocking(move |s| {
                        persist::apply_targets_change(s, &name, &old, &new, &policy, now)
                    })
                    .await
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(summary) => {
                    crate::daemon::heap::cycle_finished();
                    tracing::info!(
                        dep_name = %act.state.name(),
                        queued = summary.queued,
                        cancelled = summary.cancelled,
                        "devices queued for their new targets"
                    );
                    act.run_assigner(ctx);
                }
                Err(e) => {
                    tracing::error!(dep_name = %act.state.name(), error = %e, "queuing devices for their new targets failed");
                    act.syncer.assign_at = Some(act.clock.now() + LOCAL_RETRY);
                }
            }),
        );
    }

    /// The name's rules with its assigner profile as the implicit last
    /// rule. Stored rules were checked when they were stored; should they
    /// no longer compile, the assigner profile alone decides.
    pub(in crate::actors) fn compiled_rules(&self) -> Compiled {
        let assigner = self.assigner_profile();
        let Some(stored) = &self.state.data().rules else {
            return Compiled::assigner_only(assigner.as_deref());
        };
        let profiles = self.managed_profiles();
        match serde_json::from_str::<RuleSet>(&stored.json)
            .map_err(|e| e.to_string())
            .and_then(|set| {
                set.compile_with(assigner.as_deref(), &profiles)
                    .map_err(|e| e.to_string())
            }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(dep_name = %self.state.name(), error = %e, "the stored rules do not compile; using the assigner profile alone");
                Compiled::assigner_only(assigner.as_deref())
            }
        }
    }

    /// The name's managed profiles (none when the stored ones do not
    /// read, which is logged).
    pub(in crate::actors) fn managed_profiles(&self) -> crate::sync::profiles::Profiles {
        let Some(stored) = &self.state.data().profiles else {
            return Default::default();
        };
        crate::sync::profiles::parse(&stored.json).unwrap_or_else(|e| {
            tracing::error!(dep_name = %self.state.name(), error = %e, "the stored managed profiles do not read");
            Default::default()
        })
    }

    /// The profile the assigner hands out, if one is set.
    pub(in crate::actors) fn assigner_profile(&self) -> Option<String> {
        self.state
            .data()
            .assigner
            .as_ref()
            .map(|a| a.profile_uuid.clone())
            .filter(|p| !p.is_empty())
    }

    /// Works through the assignments due now, then schedules the next pass
    /// at the earliest retry time.
    pub(super) fn run_assigner(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.assigning {
            self.syncer.assign_requested = true;
            return;
        }
        let sent = self.syncer.chained_sent.take().unwrap_or_default();
        if !self.state.has_tokens() {
            self.syncer.assign_at = None;
            self.after_assigner(ctx);
            return;
        }
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
            policy,
            batch,
            clock: self.clock.clone(),
        };
        ctx.spawn(async move { job.run().await }.into_actor(self).map(
            |res, act, ctx| {
                act.syncer.assigning = false;
                match res {
                    Ok(pass) => {
                        act.syncer.assign_at = pass.tally.next_due.and_then(|t| {
                            OffsetDateTime::from_unix_timestamp(t).ok()
                        });
                        if let Some(e) = &pass.tally.error {
                            tracing::warn!(dep_name = %act.state.name(), error = %e, "an assignment call failed; retrying later");
                            let retry = act.clock.now() + e.retry_after().unwrap_or(Duration::from_secs(60));
                            act.syncer.assign_at = Some(act.syncer.assign_at.map_or(retry, |t| t.max(retry)));
                        }
                        for (k, v) in &pass.tally.results {
                            *act.syncer.assigned_in_cycle.entry(k.clone()).or_default() += v;
                        }
                        // Work queued while the pass ran (a cycle's pages
                        // keep coming) is for the next pass: start it now
                        // rather than at the next tick, while passes make
                        // progress or when new work was queued meanwhile.
                        let due = act.syncer.assign_at.is_some_and(|t| t <= act.clock.now());
                        let progress = !pass.tally.results.is_empty();
                        act.syncer.chained_sent = due.then_some(pass.sent);
                        if pass.tally.error.is_none() && (act.syncer.assign_requested || (due && progress)) {
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

    pub(super) fn after_assigner(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.finishing.is_some() && !self.syncer.delivering {
            self.kick_delivery(ctx);
        } else {
            self.maybe_notify(ctx);
        }
    }
}

/// One assigner pass, run off the actor's mailbox.
pub(super) struct AssignJob {
    store: Store,
    name: DepName,
    client: DepClient<ActorSession>,
    policy: AssignPolicy,
    batch: usize,
    clock: SharedClock,
    /// Serials not to send again, from the pass before.
    sent: SentSerials,
}

/// What a pass did, and the serials it sent (carried into a pass that
/// follows at once).
pub(super) struct AssignPass {
    pub(super) tally: PassTally,
    pub(super) sent: SentSerials,
}

impl AssignJob {
    /// Sends the due serials in batches. The answer to one call is recorded
    /// while the next batch is chosen and sent, so the store's work and
    /// Apple's overlap; at most one call is in flight.
    async fn run(mut self) -> Result<AssignPass, StoreError> {
        let mut tally = PassTally::default();
        // A pass takes what was due when it began: work queued meanwhile
        // (pages keep coming during a cycle) is for the next pass, so a
        // pass ends and what it remembers stays bounded. Serials it sent
        // are not sent again in it (`SentSerials`).
        let began = self.clock.now().unix_timestamp();
        let mut sent_in_pass = std::mem::take(&mut self.sent);
        // The previous call's answer, being recorded.
        let mut recording: Option<Recording> = None;
        loop {
            let next = self.send_next(began, &mut sent_in_pass);
            let (next, recorded) = match recording.take() {
                Some(r) => {
                    let (next, recorded) = futures_util::future::join(next, r).await;
                    (next, Some(recorded))
                }
                None => (next.await, None),
            };
            if let Some(recorded) = recorded {
                self.count(&mut tally, &recorded?);
            }
            let Some((serials, profile, answer, now)) = next? else {
                break;
            };
            let failed = answer.as_ref().err().cloned();
            recording = Some(Box::pin(self.record(serials, profile, answer, now)));
            if let Some(e) = failed {
                // The whole call failed: record it and stop here.
                if let Some(r) = recording.take() {
                    self.count(&mut tally, &r.await?);
                }
                tally.stop(e);
                break;
            }
        }
        if let Some(r) = recording.take() {
            self.count(&mut tally, &r.await?);
        }
        let n = self.name.clone();
        // One flush for the pass's answers (see `Store::put_assignment_results`).
        tally.next_due = self
            .store
            .blocking(move |s| {
                s.flush()?;
                s.next_due_assignment(&n)
            })
            .await?;
        Ok(AssignPass {
            tally,
            sent: sent_in_pass,
        })
    }

    /// Chooses the next batch of due serials not yet sent in this pass and
    /// sends it; `None` when there is none. Records carry their profile
    /// (rules give devices different ones): the batch is the due serials
    /// of the first due record's profile; the others stay due for the
    /// next batch.
    async fn send_next(
        &self,
        began: i64,
        sent_in_pass: &mut SentSerials,
    ) -> Result<Option<Sent>, StoreError> {
        let now = self.clock.now().unix_timestamp();
        let (n, batch) = (self.name.clone(), self.batch);
        // The set goes to the store's thread and back: serials sent but
        // still due (the previous answer is being recorded) are passed over.
        let sent = std::mem::take(sent_in_pass);
        let (chosen, sent) = self
            .store
            .blocking(move |s| {
                let due = s.due_serials_where(&n, began, batch.saturating_mul(4), |serial| {
                    !sent.was_sent(serial)
                })?;
                let records = s.assignments(&n, due.iter().map(String::as_str))?;
                let profile = due
                    .iter()
                    .find_map(|d| records.get(d))
                    .map(|r| r.profile_uuid.clone());
                let chosen = profile.map(|p| {
                    let serials: Vec<String> = due
                        .iter()
                        .filter(|d| records.get(*d).is_some_and(|r| r.profile_uuid == p))
                        .take(batch)
                        .cloned()
                        .collect();
                    (p, serials)
                });
                Ok((chosen, sent))
            })
            .await?;
        *sent_in_pass = sent;
        let Some((profile, serials)) = chosen.filter(|(_, s)| !s.is_empty()) else {
            return Ok(None);
        };
        sent_in_pass.mark(&serials);
        let answer = self.client.assign_profile(&profile, &serials).await;
        Ok(Some((serials, profile, answer, now)))
    }

    async fn record(
        &self,
        serials: Vec<String>,
        profile: String,
        answer: Result<crate::dep::wire::AssignResponse, DepError>,
        now: i64,
    ) -> Result<BTreeMap<String, StoredAssignment>, StoreError> {
        let (n, policy) = (self.name.clone(), self.policy.clone());
        self.store
            .blocking(move |s| {
                persist::record_assignment(s, &n, &profile, &serials, answer.as_ref(), &policy, now)
            })
            .await
    }

    fn count(&self, tally: &mut PassTally, records: &BTreeMap<String, StoredAssignment>) {
        for result in tally.count(records) {
            crate::metrics::assignment_results(self.name.as_str(), result, 1);
        }
    }
}

/// A batch sent: its serials, their profile, Apple's answer and when it
/// was sent.
pub(super) type Sent = (
    Vec<String>,
    String,
    Result<crate::dep::wire::AssignResponse, DepError>,
    i64,
);
/// An answer being recorded.
pub(super) type Recording<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<BTreeMap<String, StoredAssignment>, StoreError>>
            + 'a,
    >,
>;
