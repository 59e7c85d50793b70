//! The DEP-name actor's Apple session: it hands out the current token,
//! runs `/session` single-flight when there is none (every waiter gets the
//! outcome of the one call), adopts rotated tokens, and records failures.
//! The rules are `crate::domain::session_rules::SessionRules`; this file wires them to
//! the mailbox and the HTTP client.

use super::dep_name::DepNameActor;
use super::grant::{Grant, SessionError};
use crate::dep::client::{self, Target};
use crate::dep::oauth1::Credentials;
use crate::domain::session_rules::{Decision, Outcome};
use actix::prelude::*;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A session token for this name; `rejected` is a token Apple refused.
#[derive(Message)]
#[rtype(result = "Result<Arc<Grant>, SessionError>")]
pub struct Session {
    pub rejected: Option<String>,
}

/// Apple answered a request made with `old` with a new session token.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionRotated {
    pub old: String,
    pub new: String,
}

impl DepNameActor {
    /// Where and how this name calls Apple, read fresh from the stored
    /// base URL and the settings in effect.
    pub(super) fn target(&self) -> Target {
        let profile = self.settings.apple_profile(self.state.name());
        Target {
            base_url: self.state.base_url(&self.settings).to_owned(),
            protocol_version: profile.protocol_version,
            user_agent: profile.user_agent,
            connect_timeout: profile.connect_timeout,
            request_timeout: profile.request_timeout,
            allow: profile.allow,
        }
    }

    /// Withdraws the published grant after any change to the session, the
    /// base URL or the settings: the proxy's next request asks the actor,
    /// which publishes a grant built from what is in effect then. Grants
    /// are built only for names the proxy is used with: depd's own calls
    /// need only the token, and ten thousand syncing names would otherwise
    /// keep ten thousand grants (measured: 4.6 MB, in small allocations
    /// scattered over the heap).
    pub(super) fn unpublish_grant(&self) {
        *self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The grant for `token`: the published one if it is for this token,
    /// else a new one, published if the token is still the session's.
    fn grant(&self, token: String) -> Arc<Grant> {
        let mut published = self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(g) = published.as_ref().filter(|g| g.token == token) {
            return g.clone();
        }
        let current = self.session.token() == Some(token.as_str());
        let grant = Arc::new(Grant::new(
            self.target(),
            self.settings
                .apple_profile(self.state.name())
                .proxy_protocol_version,
            token,
        ));
        if current {
            *published = Some(grant.clone());
        }
        grant
    }

    fn open_session(&mut self, generation: u64, ctx: &mut Context<Self>) {
        let Some(tokens) = self.state.tokens() else {
            self.session.abandon();
            for w in self.waiters.drain(..) {
                let _ = w.send(Err(SessionError::NoTokens));
            }
            return;
        };
        let creds = Credentials::from(&tokens);
        let target = self.target();
        let clock = self.clock.clone();
        tracing::debug!(dep_name = %self.state.name(), base_url = %target.base_url, "opening an Apple session");
        ctx.spawn(
            async move { client::open_session(&target, &creds, &clock).await }
                .into_actor(self)
                .map(move |result, act, ctx| act.session_opened(generation, result, ctx)),
        );
    }

    fn session_opened(
        &mut self,
        generation: u64,
        result: Result<String, crate::dep::DepError>,
        ctx: &mut Context<Self>,
    ) {
        let name = self.state.name().clone();
        match self.session.opened(generation, result, self.clock.now()) {
            Outcome::Done(Ok(token)) => {
                self.unpublish_grant();
                crate::metrics::session_opened(name.as_str(), true);
                tracing::info!(dep_name = %name, "Apple session opened");
                for w in self.waiters.drain(..) {
                    let _ = w.send(Ok(token.clone()));
                }
            }
            Outcome::Done(Err(failure)) => {
                crate::metrics::session_opened(name.as_str(), false);
                tracing::warn!(
                    dep_name = %name,
                    error = %failure.error,
                    failures = failure.failures,
                    retry_at = %failure.retry_at,
                    "opening an Apple session failed"
                );
                for w in self.waiters.drain(..) {
                    let _ = w.send(Err(SessionError::Failed(failure.clone())));
                }
            }
            Outcome::Stale => {
                if !self.waiters.is_empty() {
                    let generation = self.session.reopen();
                    self.open_session(generation, ctx);
                }
            }
        }
    }
}

/// The current session token for this name, for depd's own calls
/// (`rejected`: a token Apple refused). Like [`Session`], without a grant.
#[derive(Message)]
#[rtype(result = "Result<String, SessionError>")]
pub struct SessionToken {
    pub rejected: Option<String>,
}

impl Handler<Session> for DepNameActor {
    type Result = ResponseActFuture<Self, Result<Arc<Grant>, SessionError>>;

    fn handle(&mut self, msg: Session, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.session_token(msg.rejected, ctx)
                .map(|res, act, _| res.map(|token| act.grant(token))),
        )
    }
}

impl Handler<SessionToken> for DepNameActor {
    type Result = ResponseActFuture<Self, Result<String, SessionError>>;

    fn handle(&mut self, msg: SessionToken, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.session_token(msg.rejected, ctx))
    }
}

impl DepNameActor {
    /// The session token, at once or once the single `/session` call in
    /// flight (started here if needed) has answered.
    fn session_token(
        &mut self,
        rejected: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Pin<Box<dyn ActorFuture<Self, Output = Result<String, SessionError>>>> {
        if !self.state.has_tokens() {
            return Box::pin(fut::ready(Err(SessionError::NoTokens)));
        }
        let waiting = match self.session.request(rejected.as_deref(), self.clock.now()) {
            Decision::Ready(token) => return Box::pin(fut::ready(Ok(token))),
            Decision::Refuse(failure) => {
                return Box::pin(fut::ready(Err(SessionError::Failed(failure))));
            }
            Decision::Wait => self.wait(),
            Decision::Open(generation) => {
                let rx = self.wait();
                self.open_session(generation, ctx);
                rx
            }
        };
        Box::pin(
            async move { waiting.await.unwrap_or(Err(SessionError::Stopped)) }.into_actor(self),
        )
    }
}

impl DepNameActor {
    fn wait(&mut self) -> oneshot::Receiver<Result<String, SessionError>> {
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        rx
    }
}

impl Handler<SessionRotated> for DepNameActor {
    type Result = ();

    fn handle(&mut self, msg: SessionRotated, _: &mut Self::Context) {
        if self.session.rotated(&msg.old, msg.new, self.clock.now()) {
            self.unpublish_grant();
            tracing::debug!(dep_name = %self.state.name(), "Apple rotated the session token");
        }
    }
}

/// A [`client::SessionSource`] backed by a name's actor, so the typed
/// client shares the actor's single-flight session.
pub struct ActorSession {
    addr: Addr<DepNameActor>,
    /// Raised to the end of a `/session` hold-off, so the client's retries
    /// wait for it instead of spending attempts on refusals.
    hold: Option<std::sync::Arc<client::Hold>>,
}

impl ActorSession {
    pub fn new(addr: Addr<DepNameActor>) -> Self {
        ActorSession { addr, hold: None }
    }

    pub fn holding(mut self, hold: std::sync::Arc<client::Hold>) -> Self {
        self.hold = Some(hold);
        self
    }
}

impl client::SessionSource for ActorSession {
    fn token(
        &self,
        rejected: Option<String>,
    ) -> futures_util::future::LocalBoxFuture<'static, Result<String, crate::dep::DepError>> {
        let addr = self.addr.clone();
        let hold = self.hold.clone();
        Box::pin(async move {
            match addr.send(SessionToken { rejected }).await {
                Ok(Ok(token)) => Ok(token),
                Ok(Err(SessionError::Failed(f))) => {
                    // Only a hold-off that waiting ends: one that needs a
                    // person must not hold the name's later calls.
                    let transient = crate::sync::backoff::RequestRetry::retryable(&f.error);
                    if let (true, Some(hold)) = (transient, hold) {
                        hold.raise(f.retry_at);
                    }
                    Err(f.error)
                }
                Ok(Err(SessionError::NoTokens)) => Err(crate::dep::DepError::NoCredentials),
                Ok(Err(SessionError::Stopped)) | Err(_) => Err(crate::dep::DepError::Unavailable(
                    "the DEP name's actor stopped".into(),
                )),
            }
        })
    }

    fn rotated(&self, old: &str, new: String) {
        self.addr.do_send(SessionRotated {
            old: old.to_owned(),
            new,
        });
    }
}

/// The server UUID of the name's MDM server at Apple (`/account`), the
/// MAID JWT's issuer; fetched through the name's session, kept an hour.
/// Why the server UUID is not available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerUuidError {
    #[error("{0}")]
    Unavailable(String),
    /// Asking Apple's `/account` failed and no earlier answer is known.
    #[error("Apple's /account could not be read: {0}")]
    Apple(#[from] crate::dep::DepError),
}

/// How long a server UUID from `/account` is used before it is asked again.
const SERVER_UUID_TTL: time::Duration = time::Duration::hours(1);

/// The name's server UUID as Apple's `/account` reports it, for the MAID
/// JWT. Cached for an hour so repeated calls do not reach Apple; when a
/// refresh fails, the previous answer is used.
#[derive(Message)]
#[rtype(result = "Result<String, ServerUuidError>")]
pub struct ServerUuid;

impl Handler<ServerUuid> for DepNameActor {
    type Result = ResponseActFuture<Self, Result<String, ServerUuidError>>;
    fn handle(&mut self, _: ServerUuid, ctx: &mut Self::Context) -> Self::Result {
        let now = self.clock.now();
        if let Some((uuid, at)) = &self.server_uuid
            && now - *at < SERVER_UUID_TTL
        {
            return Box::pin(fut::ready(Ok(uuid.clone())));
        }
        let client = crate::dep::client::DepClient::new(
            self.target(),
            ActorSession::new(ctx.address()),
            self.clock.clone(),
        )
        .named(self.state.name().as_str());
        Box::pin(async move { client.account().await }.into_actor(self).map(
            move |answer, act, _| match answer {
                Ok(account) if !account.server_uuid.is_empty() => {
                    act.server_uuid = Some((account.server_uuid.clone(), now));
                    Ok(account.server_uuid)
                }
                Ok(_) => Err(ServerUuidError::Unavailable(
                    "Apple's /account answered without a server_uuid; pass server_uuid=".into(),
                )),
                Err(e) => match &act.server_uuid {
                    Some((uuid, _)) => {
                        tracing::warn!(dep_name = %act.state.name(), error = %e, "refreshing the server UUID failed; using the previous one");
                        Ok(uuid.clone())
                    }
                    None => Err(ServerUuidError::Apple(e)),
                },
            },
        ))
    }
}
