//! The HTTP client under every call to Apple: one awc client per thread,
//! per connect timeout and allowlist, and transport errors as `DepError`s.

use super::*;

/// A thread's client for one connect timeout and allowlist (`None`: any host).
type CachedClient = (Duration, Option<Arc<Allowlist>>, awc::Client);

thread_local! {
    static HTTP: RefCell<Vec<CachedClient>> = const { RefCell::new(Vec::new()) };
}

/// This thread's HTTP client for Apple (awc clients are per thread). One
/// client, so one connection pool, serves every DEP name on the thread.
/// Redirects are never followed: a proxy passes them on, and depd's own
/// calls treat them as errors.
///
/// With `allow`, host names are resolved through the allowlist's
/// [`CheckedResolver`], so no connection is made to an address the list
/// does not allow; without (webhooks, whose URLs only the configuration
/// file sets), the system resolver is used as is.
pub fn http_client(connect_timeout: Duration, allow: Option<&Arc<Allowlist>>) -> awc::Client {
    HTTP.with(|cell| {
        let mut clients = cell.borrow_mut();
        let same = |a: &Option<Arc<Allowlist>>| match (a, allow) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if let Some((_, _, client)) = clients
            .iter()
            .find(|(t, a, _)| *t == connect_timeout && same(a))
        {
            return client.clone();
        }
        let keep_alive = Duration::from_secs(30);
        let client = match allow {
            Some(allow) => {
                let resolver = actix_tls::connect::Resolver::custom(CheckedResolver {
                    allow: allow.clone(),
                });
                awc::Client::builder()
                    .connector(
                        awc::Connector::new()
                            .connector(actix_tls::connect::Connector::new(resolver).service())
                            .timeout(connect_timeout)
                            .limit(0)
                            .conn_keep_alive(keep_alive),
                    )
                    .disable_redirects()
                    .disable_timeout()
                    .finish()
            }
            None => awc::Client::builder()
                .connector(
                    awc::Connector::new()
                        .timeout(connect_timeout)
                        .limit(0)
                        .conn_keep_alive(keep_alive),
                )
                .disable_redirects()
                .disable_timeout()
                .finish(),
        };
        // A reload makes a new allowlist; clients of replaced lists go.
        clients.retain(|(_, a, _)| a.as_ref().is_none_or(|a| Arc::strong_count(a) > 1));
        clients.push((connect_timeout, allow.cloned(), client.clone()));
        client
    })
}

/// Maps a transport error of awc to a [`DepError`].
pub fn send_error(e: awc::error::SendRequestError) -> DepError {
    use awc::error::{ConnectError, SendRequestError};
    match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            DepError::Timeout
        }
        SendRequestError::Connect(ConnectError::Resolver(cause)) => {
            match cause.downcast_ref::<Refused>() {
                Some(Refused(Refusal::Unresolved(..))) | None => {
                    DepError::Network(format!("resolving the host: {cause}"))
                }
                Some(refused) => DepError::NotAllowed(refused.to_string()),
            }
        }
        other => DepError::Network(other.to_string()),
    }
}

/// Checks a URL against the target's allowlist before anything is sent.
pub fn check_allowed(target: &Target, url: &str) -> Result<(), DepError> {
    target
        .allow
        .check_url(url)
        .map_err(|r| DepError::NotAllowed(r.to_string()))
}
