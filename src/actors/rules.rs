//! A DEP name's assignment rules, through its actor: the only writer of
//! the name's state. Storing new rules queues the devices whose target
//! changed (as an assigner profile change does); a preview computes the
//! same decisions and changes nothing.

use super::dep_name::{DepNameActor, NameOpError};
use crate::store::{StoreError, StoredRules};
use crate::sync::assigner::AssignPolicy;
use crate::sync::persist::{self, Preview};
use crate::sync::rules::{RuleError, RuleSet};
use actix::prelude::*;

/// Why rules were not stored or previewed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error(transparent)]
    Op(#[from] NameOpError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored rules, if any.
#[derive(Message)]
#[rtype(result = "Option<StoredRules>")]
pub struct GetRules;

impl Handler<GetRules> for DepNameActor {
    type Result = Option<StoredRules>;
    fn handle(&mut self, _: GetRules, _: &mut Self::Context) -> Self::Result {
        self.state.data().rules.clone()
    }
}

/// Replace the rules (an empty set removes them); answers the stored set.
#[derive(Message)]
#[rtype(result = "Result<RuleSet, RulesError>")]
pub struct PutRules(pub RuleSet);

impl Handler<PutRules> for DepNameActor {
    type Result = AtomicResponse<Self, Result<RuleSet, RulesError>>;
    fn handle(&mut self, PutRules(set): PutRules, _: &mut Self::Context) -> Self::Result {
        let assigner = self.assigner_profile();
        if let Err(e) = set.compile_with(assigner.as_deref(), &self.managed_profiles()) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e.into()))));
        }
        let before = self.compiled_rules();
        let empty = set == RuleSet::default();
        let json = match serde_json::to_string(&set) {
            Ok(j) => j,
            Err(e) => {
                let e = StoreError::Engine(format!("encoding rules: {e}"));
                return AtomicResponse::new(Box::pin(fut::ready(Err(e.into()))));
            }
        };
        let change = self
            .state
            .put_rules((!empty).then_some(json), self.clock.now());
        self.commit_and::<RuleSet, RulesError>(change, set, move |act, ctx| {
            let after = act.compiled_rules();
            act.on_targets_changed(before, after, ctx);
        })
    }
}

/// What a candidate rule set would choose and move; changes nothing.
#[derive(Message)]
#[rtype(result = "Result<Preview, RulesError>")]
pub struct PreviewRules(pub RuleSet);

impl Handler<PreviewRules> for DepNameActor {
    type Result = ResponseFuture<Result<Preview, RulesError>>;
    fn handle(&mut self, PreviewRules(set): PreviewRules, _: &mut Self::Context) -> Self::Result {
        let assigner = self.assigner_profile();
        let new = match set.compile_with(assigner.as_deref(), &self.managed_profiles()) {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        let old = self.compiled_rules();
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let policy = AssignPolicy::from_settings(&self.settings.assigner);
        let now = self.clock.now().unix_timestamp();
        Box::pin(async move {
            let preview = store
                .blocking(move |s| persist::preview(s, &name, &old, &new, &policy, now))
                .await
                .map_err(RulesError::from);
            // A walk of the whole inventory: give the memory back once quiet.
            crate::daemon::heap::cycle_finished();
            preview
        })
    }
}

/// Why a managed profile was not defined or removed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileOpError {
    #[error("Apple refused or failed the profile: {0}")]
    Apple(#[from] crate::dep::DepError),
    #[error("managed profile {0:?} is named by the rules; change them first")]
    InUse(String),
    #[error(
        "at most {} managed profiles per DEP name",
        crate::sync::profiles::MAX_PROFILES
    )]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the actor stopped before the profile was stored")]
    Stopped,
}

/// The managed profiles.
#[derive(Message)]
#[rtype(result = "crate::sync::profiles::Profiles")]
pub struct GetProfiles;

impl Handler<GetProfiles> for DepNameActor {
    type Result = MessageResult<GetProfiles>;
    fn handle(&mut self, _: GetProfiles, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.managed_profiles())
    }
}

/// Define a managed profile (or a new version of it) at Apple and store
/// its UUID; devices whose rules name it move to the new version.
#[derive(Message)]
#[rtype(result = "Result<crate::sync::profiles::ManagedProfile, ProfileOpError>")]
pub struct DefineProfile {
    pub local: String,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

impl Handler<DefineProfile> for DepNameActor {
    type Result =
        ResponseActFuture<Self, Result<crate::sync::profiles::ManagedProfile, ProfileOpError>>;

    fn handle(&mut self, msg: DefineProfile, ctx: &mut Self::Context) -> Self::Result {
        use crate::sync::profiles::{MAX_HISTORY, MAX_PROFILES, ManagedProfile, ProfileVersion};
        let profiles = self.managed_profiles();
        if let Some(existing) = profiles.get(&msg.local)
            && existing.definition == msg.definition
        {
            let same = existing.clone();
            return Box::pin(fut::ready(Ok(same)));
        }
        if !profiles.contains_key(&msg.local) && profiles.len() >= MAX_PROFILES {
            return Box::pin(fut::ready(Err(ProfileOpError::TooMany)));
        }
        // The call to Apple runs with the mailbox open: the client asks
        // this actor for its session.
        let client = self.dep_client(ctx);
        let body = serde_json::Value::Object(msg.definition.clone());
        Box::pin(
            async move { client.define_profile(&body).await }
                .into_actor(self)
                .then(move |answer, act, ctx| {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    match answer {
                        Err(e) => {
                            let _ = tx.send(Err(ProfileOpError::Apple(e)));
                        }
                        Ok(defined) => {
                            let before = act.compiled_rules();
                            let mut profiles = act.managed_profiles();
                            let now = act.clock.now();
                            let entry = profiles.entry(msg.local.clone()).or_insert(ManagedProfile {
                                definition: msg.definition.clone(),
                                profile_uuid: String::new(),
                                history: Vec::new(),
                            });
                            entry.definition = msg.definition;
                            entry.profile_uuid = defined.profile_uuid.clone();
                            entry.history.push(ProfileVersion {
                                profile_uuid: defined.profile_uuid,
                                defined_at: crate::domain::tokens::format_unix(now.unix_timestamp()),
                            });
                            let extra = entry.history.len().saturating_sub(MAX_HISTORY);
                            entry.history.drain(..extra);
                            let reply = entry.clone();
                            tracing::info!(dep_name = %act.state.name(), profile = %msg.local, profile_uuid = %reply.profile_uuid, "managed profile defined at Apple");
                            match serde_json::to_string(&profiles) {
                                Ok(json) => {
                                    let change = act.state.put_profiles(json, now);
                                    ctx.wait(
                                        act.commit_future::<_, ProfileOpError>(change, reply, move |act, ctx| {
                                            let after = act.compiled_rules();
                                            act.on_targets_changed(before, after, ctx);
                                        })
                                        .map(move |res, _, _| {
                                            let _ = tx.send(res);
                                        }),
                                    );
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(ProfileOpError::Store(StoreError::Engine(format!("encoding profiles: {e}")))));
                                }
                            }
                        }
                    }
                    async move { rx.await.unwrap_or(Err(ProfileOpError::Stopped)) }.into_actor(act)
                }),
        )
    }
}

/// Remove a managed profile (refused while the rules name it); `false`
/// when there was none by that name.
#[derive(Message)]
#[rtype(result = "Result<bool, ProfileOpError>")]
pub struct DeleteProfile(pub String);

impl Handler<DeleteProfile> for DepNameActor {
    type Result = AtomicResponse<Self, Result<bool, ProfileOpError>>;
    fn handle(
        &mut self,
        DeleteProfile(local): DeleteProfile,
        _: &mut Self::Context,
    ) -> Self::Result {
        let mut profiles = self.managed_profiles();
        if !profiles.contains_key(&local) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(false))));
        }
        let named = self
            .state
            .data()
            .rules
            .as_ref()
            .and_then(|r| serde_json::from_str::<RuleSet>(&r.json).ok())
            .is_some_and(|set| set.references(&local));
        if named {
            return AtomicResponse::new(Box::pin(fut::ready(Err(ProfileOpError::InUse(local)))));
        }
        profiles.remove(&local);
        let json = match serde_json::to_string(&profiles) {
            Ok(j) => j,
            Err(e) => {
                let e = StoreError::Engine(format!("encoding profiles: {e}"));
                return AtomicResponse::new(Box::pin(fut::ready(Err(e.into()))));
            }
        };
        let change = self.state.put_profiles(json, self.clock.now());
        self.commit_and(change, true, |_, _| {})
    }
}
