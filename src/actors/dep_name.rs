//! The actor of one DEP name.

use super::session::Waiter;
use crate::clock::SharedClock;
use crate::session::SessionRules;
use crate::settings::Settings;
use crate::state::{Change, NameState, RuleError};
use crate::store::Store;
use crate::store::{StoreError, StoredAssigner, StoredTokens};
use actix::prelude::*;
use std::sync::Arc;

pub struct DepNameActor {
    pub(super) state: NameState,
    pub(super) store: Store,
    pub(super) settings: Arc<Settings>,
    pub(super) clock: SharedClock,
    /// The Apple session: only this actor opens, drops or replaces it.
    pub(super) session: SessionRules,
    /// Requests waiting for the `/session` call in flight.
    pub(super) waiters: Vec<Waiter>,
}

/// Why an operation on a name failed.
#[derive(Debug, thiserror::Error)]
pub enum NameOpError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DepNameActor {
    pub fn new(
        state: NameState,
        store: Store,
        settings: Arc<Settings>,
        clock: SharedClock,
    ) -> Self {
        DepNameActor {
            state,
            store,
            settings,
            clock,
            session: SessionRules::new(),
            waiters: Vec::new(),
        }
    }

    /// New OAuth tokens are in effect: the old session belongs to the old
    /// credentials, so it is dropped (and a `/session` call in flight with
    /// the old credentials becomes stale).
    pub(super) fn on_tokens_replaced(&mut self) {
        self.session.reset();
        tracing::info!(dep_name = %self.state.name(), "OAuth tokens replaced; the Apple session will be reopened");
    }

    /// Commits a change on the blocking pool, then adopts it. The mailbox
    /// waits for the commit (`AtomicResponse`), so the next message sees the
    /// new state and writes never interleave.
    fn commit<T: 'static>(
        &mut self,
        change: Change,
        reply: T,
    ) -> AtomicResponse<Self, Result<T, NameOpError>> {
        self.commit_and(change, reply, |_| {})
    }

    /// [`Self::commit`], then `after` once the new state is adopted (still
    /// before the mailbox moves on).
    fn commit_and<T: 'static>(
        &mut self,
        change: Change,
        reply: T,
        after: impl FnOnce(&mut Self) + 'static,
    ) -> AtomicResponse<Self, Result<T, NameOpError>> {
        let store = self.store.clone();
        let Change { write, next } = change;
        AtomicResponse::new(Box::pin(
            async move { store.blocking(move |s| s.commit(write)).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.state.adopt(next);
                    after(act);
                    Ok(reply)
                }),
        ))
    }
}

impl Actor for DepNameActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(dep_name = %self.state.name(), "DEP name actor started");
    }
}

/// The stored OAuth tokens, if any.
#[derive(Message)]
#[rtype(result = "Option<StoredTokens>")]
pub struct GetTokens;

impl Handler<GetTokens> for DepNameActor {
    type Result = Option<StoredTokens>;
    fn handle(&mut self, _: GetTokens, _: &mut Self::Context) -> Self::Result {
        self.state.data().tokens.clone()
    }
}

/// Store tokens (already parsed and checked for completeness).
#[derive(Message)]
#[rtype(result = "Result<StoredTokens, NameOpError>")]
pub struct PutTokens {
    pub tokens: StoredTokens,
    pub force: bool,
}

impl Handler<PutTokens> for DepNameActor {
    type Result = AtomicResponse<Self, Result<StoredTokens, NameOpError>>;
    fn handle(&mut self, msg: PutTokens, _: &mut Self::Context) -> Self::Result {
        let reply = msg.tokens.clone();
        match self
            .state
            .put_tokens(msg.tokens, msg.force, self.clock.now())
        {
            Ok(change) => {
                tracing::info!(dep_name = %self.state.name(), forced = msg.force, "storing OAuth tokens");
                self.commit_and(change, reply, Self::on_tokens_replaced)
            }
            Err(e) => AtomicResponse::new(Box::pin(fut::ready(Err(e.into())))),
        }
    }
}

/// The base URL in effect and whether it is stored or the default.
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetConfig;

impl Handler<GetConfig> for DepNameActor {
    type Result = String;
    fn handle(&mut self, _: GetConfig, _: &mut Self::Context) -> Self::Result {
        self.state.base_url(&self.settings).to_owned()
    }
}

/// Store a base URL (validated by the caller); empty resets to the default.
#[derive(Message)]
#[rtype(result = "Result<String, NameOpError>")]
pub struct PutConfig {
    pub base_url: String,
}

impl Handler<PutConfig> for DepNameActor {
    type Result = AtomicResponse<Self, Result<String, NameOpError>>;
    fn handle(&mut self, msg: PutConfig, _: &mut Self::Context) -> Self::Result {
        let change = self.state.put_base_url(msg.base_url, self.clock.now());
        let reply = match &change.next.config {
            Some(config) => config.base_url.clone(),
            None => self.settings.default_base_url(self.state.name()).to_owned(),
        };
        self.commit(change, reply)
    }
}

#[derive(Message)]
#[rtype(result = "Option<StoredAssigner>")]
pub struct GetAssigner;

impl Handler<GetAssigner> for DepNameActor {
    type Result = Option<StoredAssigner>;
    fn handle(&mut self, _: GetAssigner, _: &mut Self::Context) -> Self::Result {
        self.state.data().assigner.clone()
    }
}

/// Set the assigner profile UUID (validated by the caller).
#[derive(Message)]
#[rtype(result = "Result<Option<StoredAssigner>, NameOpError>")]
pub struct PutAssigner {
    pub profile_uuid: String,
}

impl Handler<PutAssigner> for DepNameActor {
    type Result = AtomicResponse<Self, Result<Option<StoredAssigner>, NameOpError>>;
    fn handle(&mut self, msg: PutAssigner, _: &mut Self::Context) -> Self::Result {
        let change = self.state.put_assigner(msg.profile_uuid, self.clock.now());
        let reply = change.next.assigner.clone();
        self.commit(change, reply)
    }
}

/// New settings after a reload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSettings(pub Arc<Settings>);

impl Handler<UpdateSettings> for DepNameActor {
    type Result = ();
    fn handle(&mut self, msg: UpdateSettings, _: &mut Self::Context) {
        self.settings = msg.0;
    }
}
