//! The actor of one DEP name.

use super::grant::Waiter;
use crate::domain::clock::SharedClock;
use crate::domain::session_rules::SessionRules;
use crate::domain::state::{Change, NameState, RuleError};
use crate::domain::tokens::{PkiPem, Tokens};
use crate::settings::Settings;
use crate::store::Store;
use crate::store::{StoreError, StoredAssigner};
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
    /// The current grant, published for the proxy's hot path.
    pub(super) published: super::grant::SharedGrant,
    /// The server UUID from Apple's `/account` (the MAID JWT's `iss`) and
    /// when it was fetched.
    pub(super) server_uuid: Option<(String, time::OffsetDateTime)>,
    /// The sync loop's state: cycle, schedule, assigner and webhook work.
    pub(super) syncer: super::syncer::Syncer,
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
        published: super::grant::SharedGrant,
    ) -> Self {
        let sync_state = state.data().sync.clone().unwrap_or_default();
        DepNameActor {
            state,
            store,
            settings,
            clock,
            session: SessionRules::new(),
            waiters: Vec::new(),
            published,
            server_uuid: None,
            syncer: super::syncer::Syncer::new(sync_state),
        }
    }

    /// New OAuth tokens are in effect: the old session belongs to the old
    /// credentials, so it is dropped (and a `/session` call in flight with
    /// the old credentials becomes stale).
    pub(super) fn on_tokens_replaced(&mut self, ctx: &mut Context<Self>) {
        self.session.reset();
        self.unpublish_grant();
        // A name that could not sync for want of (good) tokens may now.
        self.sync_tick(ctx);
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
        self.commit_and(change, reply, |_, _| {})
    }

    /// [`Self::commit`], then `after` once the new state is adopted (still
    /// before the mailbox moves on).
    pub(super) fn commit_and<T: 'static, E: From<StoreError> + 'static>(
        &mut self,
        change: Change,
        reply: T,
        after: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) -> AtomicResponse<Self, Result<T, E>> {
        AtomicResponse::new(self.commit_future(change, reply, after))
    }

    /// The future of [`Self::commit_and`], for handlers that wait for
    /// something else first (run it with `ctx.wait`, so no other message
    /// is handled between the commit and the adoption of its state).
    pub(super) fn commit_future<T: 'static, E: From<StoreError> + 'static>(
        &mut self,
        change: Change,
        reply: T,
        after: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) -> std::pin::Pin<Box<dyn ActorFuture<Self, Output = Result<T, E>>>> {
        let store = self.store.clone();
        let Change { write, next } = change;
        Box::pin(
            async move { store.blocking(move |s| s.commit(write)).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    res?;
                    act.state.adopt(next);
                    after(act, ctx);
                    Ok(reply)
                }),
        )
    }
}

impl Actor for DepNameActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(dep_name = %self.state.name(), "DEP name actor started");
        self.start_sync_timer(ctx);
    }
}

/// The stored OAuth tokens, if any.
#[derive(Message)]
#[rtype(result = "Option<Tokens>")]
pub struct GetTokens;

impl Handler<GetTokens> for DepNameActor {
    type Result = Option<Tokens>;
    fn handle(&mut self, _: GetTokens, _: &mut Self::Context) -> Self::Result {
        self.state.tokens()
    }
}

/// Store tokens (already parsed and checked for completeness).
#[derive(Message)]
#[rtype(result = "Result<Tokens, NameOpError>")]
pub struct PutTokens {
    pub tokens: Tokens,
    pub force: bool,
}

impl Handler<PutTokens> for DepNameActor {
    type Result = AtomicResponse<Self, Result<Tokens, NameOpError>>;
    fn handle(&mut self, msg: PutTokens, _: &mut Self::Context) -> Self::Result {
        let reply = msg.tokens.clone();
        match self
            .state
            .put_tokens(&msg.tokens, msg.force, self.clock.now())
        {
            Ok(change) => {
                tracing::info!(dep_name = %self.state.name(), forced = msg.force, "storing OAuth tokens");
                self.commit_and(change, reply, |act, ctx| act.on_tokens_replaced(ctx))
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
        let before = self.state.base_url(&self.settings).to_owned();
        let change = self.state.put_base_url(msg.base_url, self.clock.now());
        let reply = match &change.next.config {
            Some(config) => config.base_url.clone(),
            None => self.settings.default_base_url(self.state.name()).to_owned(),
        };
        // A session belongs to the service that issued it: a new base URL
        // would only get it refused.
        let moved = before != reply;
        self.commit_and(change, reply, move |act, _| {
            if moved {
                act.session.reset();
            }
            act.unpublish_grant();
        })
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
        let old = self.state.data().assigner.clone().map(|a| a.profile_uuid);
        let before = self.compiled_rules();
        let change = self.state.put_assigner(msg.profile_uuid, self.clock.now());
        let reply = change.next.assigner.clone();
        let new = reply.clone().map(|a| a.profile_uuid);
        self.commit_and(change, reply, move |act, ctx| {
            if let Some(new) = new
                && old.as_ref() != Some(&new)
            {
                let after = act.compiled_rules();
                act.on_targets_changed(before, after, ctx);
            }
        })
    }
}

/// New settings after a reload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateSettings(pub Arc<Settings>);

impl Handler<UpdateSettings> for DepNameActor {
    type Result = ();
    fn handle(&mut self, msg: UpdateSettings, ctx: &mut Self::Context) {
        self.settings = msg.0;
        self.unpublish_grant();
        self.on_settings_changed(ctx);
    }
}

/// Which token-PKI key pair: the one waiting for a token file, or the one
/// in use (MAID JWT signing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiSlot {
    Staging,
    Current,
}

/// A token-PKI pair, if one is stored in that slot.
#[derive(Message)]
#[rtype(result = "Option<PkiPem>")]
pub struct GetPki(pub PkiSlot);

impl Handler<GetPki> for DepNameActor {
    type Result = Option<PkiPem>;
    fn handle(&mut self, msg: GetPki, _: &mut Self::Context) -> Self::Result {
        match msg.0 {
            PkiSlot::Staging => self.state.pki_staging(),
            PkiSlot::Current => self.state.pki_current(),
        }
    }
}

/// Store a freshly generated pair as the staging pair.
#[derive(Message)]
#[rtype(result = "Result<(), NameOpError>")]
pub struct PutStagingPki(pub PkiPem);

impl Handler<PutStagingPki> for DepNameActor {
    type Result = AtomicResponse<Self, Result<(), NameOpError>>;
    fn handle(&mut self, msg: PutStagingPki, _: &mut Self::Context) -> Self::Result {
        let change = self.state.put_pki_staging(&msg.0, self.clock.now());
        tracing::info!(dep_name = %self.state.name(), "storing a new staging token-PKI certificate");
        self.commit(change, ())
    }
}

/// Why a token upload was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiOpError {
    #[error(transparent)]
    Rule(#[from] crate::domain::state::PkiRuleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Store tokens from a token file decrypted with the pair in `slot`, whose
/// certificate is `cert_pem`: from the staging pair, the tokens are stored
/// and the pair promoted to current; from the current pair (a renewal,
/// which Apple encrypts to the certificate already registered), only the
/// tokens are stored. One commit, after the consumer-key check. The handler
/// decrypts before sending this, so the mailbox never waits for RSA; the
/// certificate it carries makes the commit refuse if that pair was replaced
/// in the meantime.
#[derive(Message)]
#[rtype(result = "Result<Tokens, PkiOpError>")]
pub struct AcceptTokenFile {
    pub tokens: Tokens,
    pub slot: PkiSlot,
    pub cert_pem: Vec<u8>,
    pub force: bool,
}

impl Handler<AcceptTokenFile> for DepNameActor {
    type Result = AtomicResponse<Self, Result<Tokens, PkiOpError>>;
    fn handle(&mut self, msg: AcceptTokenFile, _: &mut Self::Context) -> Self::Result {
        let reply = msg.tokens.clone();
        let now = self.clock.now();
        let change = match msg.slot {
            PkiSlot::Staging => {
                self.state
                    .promote_pki_staging(&msg.tokens, &msg.cert_pem, msg.force, now)
            }
            PkiSlot::Current => {
                self.state
                    .renew_with_current_pki(&msg.tokens, &msg.cert_pem, msg.force, now)
            }
        };
        match change {
            Ok(change) => {
                match msg.slot {
                    PkiSlot::Staging => {
                        tracing::info!(dep_name = %self.state.name(), forced = msg.force, "token file accepted; staging token PKI becomes current")
                    }
                    PkiSlot::Current => {
                        tracing::info!(dep_name = %self.state.name(), forced = msg.force, "renewed token file accepted with the current token PKI")
                    }
                }
                self.commit_and(change, reply, |act, ctx| act.on_tokens_replaced(ctx))
            }
            Err(e) => AtomicResponse::new(Box::pin(fut::ready(Err(e.into())))),
        }
    }
}

/// The actor's clock, so handlers that compute with time (certificate
/// validity, JWT `iat`) follow the same injected time as the name's state.
#[derive(Message)]
#[rtype(result = "time::OffsetDateTime")]
pub struct Now;

impl Handler<Now> for DepNameActor {
    type Result = MessageResult<Now>;
    fn handle(&mut self, _: Now, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.clock.now())
    }
}
