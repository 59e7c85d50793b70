//! What a DEP name's session hands out, as plain data: the grant (where,
//! how and with which token to call Apple), the waiters for a `/session`
//! call in flight, and why no token can be given. The actor
//! (`dep_name.rs`) holds these; `apple_session.rs` fills them.

use crate::dep::client::Target;
use crate::domain::session_rules::SessionFailure;
use actix_web::http::Uri;
use actix_web::http::header::HeaderValue;
use actix_web::http::uri::{Authority, Scheme};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A request waiting for the `/session` call in flight.
pub(super) type Waiter = oneshot::Sender<Result<String, SessionError>>;

/// Why no session token can be given out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no OAuth tokens are stored for this DEP name")]
    NoTokens,
    #[error("Apple refused to open a session: {}", .0.error)]
    Failed(SessionFailure),
    #[error("the DEP name's actor stopped")]
    Stopped,
}

/// What a caller needs to call Apple for a name: where, how, and with
/// which session token. Handed out behind an `Arc`: the proxy reads one
/// per request, and a clone of the strings each time would be wasted.
#[derive(Clone)]
pub struct Grant {
    pub target: Target,
    /// Protocol version for proxied requests that name none.
    pub proxy_protocol_version: u32,
    pub token: String,
    /// The same, ready to be sent as headers (built once per grant, not
    /// per proxied request). The token's value is marked sensitive.
    pub headers: GrantHeaders,
}

/// Header values of a [`Grant`] (`None`: not a valid header value), and
/// its base URL taken apart.
#[derive(Clone)]
pub struct GrantHeaders {
    pub token: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub proxy_protocol_version: HeaderValue,
    /// Scheme and authority of the base URL, and its path prefix (without
    /// a trailing `/`); `None` if the base URL is not an absolute URL.
    pub base: Option<(Scheme, Authority, String)>,
}

impl Grant {
    pub fn new(target: Target, proxy_protocol_version: u32, token: String) -> Self {
        let token_header = HeaderValue::from_str(&token).ok().map(|mut v| {
            v.set_sensitive(true);
            v
        });
        let base = target.base_url.parse::<Uri>().ok().and_then(|uri| {
            let parts = uri.into_parts();
            let prefix = parts
                .path_and_query
                .as_ref()
                .map_or("", |p| p.path())
                .trim_end_matches('/')
                .to_owned();
            Some((parts.scheme?, parts.authority?, prefix))
        });
        let headers = GrantHeaders {
            token: token_header,
            user_agent: HeaderValue::from_str(&target.user_agent).ok(),
            proxy_protocol_version: HeaderValue::from(proxy_protocol_version),
            base,
        };
        Grant {
            target,
            proxy_protocol_version,
            token,
            headers,
        }
    }
}

/// Leaves the session token out.
impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("target", &self.target)
            .field("proxy_protocol_version", &self.proxy_protocol_version)
            .finish_non_exhaustive()
    }
}

/// The grant a name's actor publishes for readers that must not wait for
/// its mailbox (the proxy's hot path). Only the actor writes it. It is
/// `None` until the proxy first asks the actor after a change (see
/// `unpublish_grant`), and whenever the actor has no session to give out.
pub type SharedGrant = Arc<std::sync::RwLock<Option<Arc<Grant>>>>;
