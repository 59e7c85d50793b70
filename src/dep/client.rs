//! The typed client of Apple's DEP API. Every endpoint depd uses is a
//! method; errors are [`DepError`]s a caller can match.
//!
//! Session tokens come from a [`SessionSource`] (in the daemon, the DEP
//! name's actor, which runs `/session` single-flight): when Apple rejects a
//! session, the client asks for a new one and replays the request once; a
//! new `X-ADM-Auth-Session` in any answer is reported back to the source.

use super::allowlist::{Allowlist, CheckedResolver, Refusal, Refused};
use super::error::{DepError, classify, classify_session};
use super::oauth1::{self, Credentials};
use super::retry_after;
use super::wire::*;
use crate::domain::clock::SharedClock;
use actix_web::http::{Method, StatusCode, header};
use actix_web::web::Bytes;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

mod retry;
mod sessions;
mod transport;
pub use retry::*;
pub use sessions::*;
pub use transport::*;

/// The header carrying the session token, both ways.
pub const SESSION_HEADER: &str = "X-ADM-Auth-Session";
pub const PROTOCOL_HEADER: &str = "X-Server-Protocol-Version";
/// The content type Apple requires, exactly as its documentation spells it.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF8";
/// Largest answer body read from Apple into memory (a page of 1000 devices
/// is about 1 MB).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// Where and how to call Apple for one DEP name.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub base_url: String,
    pub protocol_version: u32,
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The hosts and addresses this call may go to.
    pub allow: Arc<Allowlist>,
}

/// `base` (which may have a path prefix, kept) joined with an absolute path.
pub fn join_url(base: &str, path_and_query: &str) -> String {
    let base = base.trim_end_matches('/');
    if path_and_query.starts_with('/') {
        format!("{base}{path_and_query}")
    } else {
        format!("{base}/{path_and_query}")
    }
}

/// Calls depd makes to Apple at once (sessions and the typed client, for
/// every name together; the proxy's requests are its callers' and are not
/// counted). With thousands of names starting a cycle together, each call
/// in flight holds a connection and its buffers: the bound keeps memory
/// flat and is kinder to Apple, and the one simulator showed no slower
/// cycle for it.
pub const APPLE_CALLS_AT_ONCE: usize = 64;
static APPLE_CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(APPLE_CALLS_AT_ONCE);

/// Opens a session: `GET {base}/session` signed with OAuth1.
pub async fn open_session(
    target: &Target,
    creds: &Credentials,
    clock: &SharedClock,
) -> Result<String, DepError> {
    let _slot = APPLE_CALLS.acquire().await.ok();
    let url = join_url(&target.base_url, "/session");
    check_allowed(target, &url)?;
    let auth = oauth1::authorization_header(
        "GET",
        &url,
        creds,
        clock.now().unix_timestamp(),
        &oauth1::nonce(),
    );
    let req = http_client(target.connect_timeout, Some(&target.allow))
        .get(&url)
        .timeout(target.request_timeout)
        .insert_header((header::AUTHORIZATION, auth))
        .insert_header((header::CONTENT_TYPE, JSON_CONTENT_TYPE))
        .insert_header((header::USER_AGENT, target.user_agent.as_str()))
        .insert_header((PROTOCOL_HEADER, target.protocol_version.to_string()));
    let mut resp = req.send().await.map_err(send_error)?;
    let status = resp.status();
    let retry = retry_after_of(resp.headers(), clock);
    let body = read_body(&mut resp).await?;
    if !status.is_success() {
        return Err(classify_session(status.as_u16(), &body, retry));
    }
    let parsed: SessionResponse = serde_json::from_slice(&body)
        .map_err(|e| DepError::Decode(format!("/session answer: {e}")))?;
    if parsed.auth_session_token.is_empty() {
        return Err(DepError::Decode(
            "/session answered without auth_session_token".into(),
        ));
    }
    Ok(parsed.auth_session_token)
}

fn retry_after_of(headers: &header::HeaderMap, clock: &SharedClock) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after::parse(v, clock.now()))
}

async fn read_body(resp: &mut awc::ClientResponse) -> Result<Bytes, DepError> {
    let announced = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    collect_body(resp, announced, MAX_ANSWER).await
}

/// At most this much is reserved up front from an answer's `Content-Length`
/// (a page of 1000 devices is under 1 MB); a larger answer grows as it
/// arrives.
const RESERVE_MAX: usize = 4 * 1024 * 1024;

/// Reads a body of at most `limit` bytes into one buffer sized from the
/// announced length. (awc's own reader starts empty and doubles, copying a
/// page of 1000 devices about twice over before it is parsed; that copying
/// sat between one page and the request for the next.)
async fn collect_body<S>(
    mut body: S,
    announced: Option<usize>,
    limit: usize,
) -> Result<Bytes, DepError>
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    use futures_util::StreamExt as _;
    let too_large = || DepError::Decode(format!("answer larger than {limit} bytes"));
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = actix_web::web::BytesMut::with_capacity(announced.unwrap_or(0).min(RESERVE_MAX));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| DepError::Network(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The typed DEP client of one name.
pub struct DepClient<S> {
    target: Target,
    session: S,
    clock: SharedClock,
    /// The DEP name its calls are counted under in the metrics.
    metrics_name: Option<String>,
    /// Without: every failure goes straight back to the caller.
    retries: Option<Retries>,
}

impl<S: SessionSource> DepClient<S> {
    pub fn new(target: Target, session: S, clock: SharedClock) -> Self {
        DepClient {
            target,
            session,
            clock,
            metrics_name: None,
            retries: None,
        }
    }

    /// Sends a request that failed transiently again, within the call, as
    /// `retries` decides; every call first waits for the name's hold.
    pub fn with_retries(mut self, retries: Retries) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Counts this client's Apple calls under `name` in the metrics.
    pub fn named(mut self, name: &str) -> Self {
        self.metrics_name = Some(name.to_owned());
        self
    }

    fn count(&self, path_and_query: &str, status: u16, started: std::time::Instant) {
        if let Some(name) = &self.metrics_name {
            crate::metrics::apple_call(name, path_and_query, status, started.elapsed());
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// One call with session handling: a rejected session is renewed and
    /// the request replayed once.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, DepError> {
        self.call_raw(method, path_and_query, body)
            .await
            .map(|(value, _)| value)
    }

    /// [`Self::call`], also returning the answer's body as Apple sent it.
    async fn call_raw<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<(T, Bytes), DepError> {
        self.call_parsed(method, path_and_query, body, |text| {
            serde_json::from_str(text)
        })
        .await
    }

    /// [`Self::call_raw`] with the answer's text read by `parse`; a
    /// transient failure is retried in place when the client has
    /// [`Retries`].
    async fn call_parsed<B: Serialize, T>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        parse: impl Fn(&str) -> Result<T, serde_json::Error>,
    ) -> Result<(T, Bytes), DepError> {
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| DepError::Decode(format!("encoding the request: {e}")))?,
            ),
            None => None,
        };
        let Some(retries) = &self.retries else {
            return self
                .attempt(&method, path_and_query, body.as_deref(), &parse)
                .await;
        };
        let endpoint = path_and_query.split('?').next().unwrap_or(path_and_query);
        let mut failures = 0u32;
        loop {
            if let Some(wait) = retries.hold.remaining(self.clock.now()) {
                if wait > retries.max_wait {
                    return Err(DepError::Held { retry_after: wait });
                }
                retries.log.add_wait(endpoint, wait);
                tokio::time::sleep(wait).await;
            }
            let error = match self
                .attempt(&method, path_and_query, body.as_deref(), &parse)
                .await
            {
                Ok(answer) => {
                    if failures > 0 {
                        retries.log.recovered();
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            failures = failures.saturating_add(1);
            let now = self.clock.now();
            if let Some(asked) = error.retry_after() {
                retries.hold.raise(now + asked);
            }
            let wait = (retries.decide)(failures, &error).filter(|w| *w <= retries.max_wait);
            retries.log.record(FailedRequest {
                at: now,
                endpoint: endpoint.to_owned(),
                error: error.to_string(),
                failures,
                next_attempt_at: wait.map(|w| now + w),
            });
            let Some(wait) = wait else {
                return Err(error);
            };
            let name = self.metrics_name.as_deref().unwrap_or_default();
            crate::metrics::apple_retry(name, endpoint);
            tracing::warn!(
                dep_name = %name,
                endpoint = %endpoint,
                error = %error,
                failures,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "a request to Apple failed; sending it again"
            );
            retries.log.add_wait(endpoint, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: a session token, the request, and one replay with a
    /// new session when Apple rejects the token.
    async fn attempt<T>(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        parse: &impl Fn(&str) -> Result<T, serde_json::Error>,
    ) -> Result<(T, Bytes), DepError> {
        let method = method.clone();
        let mut token = self.session.token(None).await?;
        let mut replayed = false;
        loop {
            match self.call_once(&method, path_and_query, body, &token).await {
                Err(DepError::SessionRejected { .. }) if !replayed => {
                    replayed = true;
                    token = self.session.token(Some(token)).await?;
                }
                Err(e) => return Err(e),
                Ok(bytes) => {
                    // One UTF-8 check of the whole answer, instead of one
                    // per string as `from_slice` does.
                    let value = std::str::from_utf8(&bytes)
                        .map_err(|e| e.to_string())
                        .and_then(|text| parse(text).map_err(|e| e.to_string()))
                        .map_err(|e| {
                            DepError::Decode(format!("{method} {path_and_query} answer: {e}"))
                        })?;
                    return Ok((value, bytes));
                }
            }
        }
    }

    async fn call_once(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        token: &str,
    ) -> Result<actix_web::web::Bytes, DepError> {
        let _slot = APPLE_CALLS.acquire().await.ok();
        let url = join_url(&self.target.base_url, path_and_query);
        check_allowed(&self.target, &url)?;
        let mut req = http_client(self.target.connect_timeout, Some(&self.target.allow))
            .request(method.clone(), &url)
            .timeout(self.target.request_timeout)
            .insert_header((SESSION_HEADER, token))
            .insert_header((header::USER_AGENT, self.target.user_agent.as_str()))
            .insert_header((PROTOCOL_HEADER, self.target.protocol_version.to_string()));
        let started = std::time::Instant::now();
        let sent = match body {
            Some(b) => {
                req = req.insert_header((header::CONTENT_TYPE, JSON_CONTENT_TYPE));
                req.send_body(b.to_vec()).await
            }
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| {
            self.count(path_and_query, 0, started);
            send_error(e)
        })?;
        self.count(path_and_query, resp.status().as_u16(), started);
        if let Some(new) = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != token)
        {
            self.session.rotated(token, new.to_owned());
        }
        let status = resp.status();
        let retry = retry_after_of(resp.headers(), &self.clock);
        let bytes = read_body(&mut resp).await?;
        if status.is_success() {
            Ok(bytes)
        } else if status.is_redirection() {
            Err(DepError::Rejected {
                status: status.as_u16(),
                code: format!("unexpected redirect from {url}"),
            })
        } else {
            Err(classify(status.as_u16(), &bytes, retry))
        }
    }

    pub async fn account(&self) -> Result<Account, DepError> {
        self.call::<(), _>(Method::GET, "/account", None).await
    }

    /// `POST /server/devices`: one page of the full fetch.
    pub async fn fetch_devices(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<DevicePage, DepError> {
        self.page("/server/devices", cursor, limit, |t| {
            serde_json::from_str(t)
        })
        .await
        .map(|(p, _)| p)
    }

    /// [`Self::fetch_devices`] for depd's sync: with the page's JSON as
    /// Apple sent it (for the webhook, which passes pages on unchanged),
    /// and only the fields sync reads parsed ([`SyncPage`]).
    pub async fn fetch_devices_raw(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(SyncPage, Bytes), DepError> {
        self.page("/server/devices", cursor, limit, SyncPage::parse)
            .await
    }

    /// `POST /devices/sync`: the changes since `cursor`.
    pub async fn sync_devices(
        &self,
        cursor: &str,
        limit: Option<u32>,
    ) -> Result<DevicePage, DepError> {
        self.page("/devices/sync", Some(cursor), limit, |t| {
            serde_json::from_str(t)
        })
        .await
        .map(|(p, _)| p)
    }

    /// [`Self::sync_devices`] for depd's sync, as [`Self::fetch_devices_raw`].
    pub async fn sync_devices_raw(
        &self,
        cursor: &str,
        limit: Option<u32>,
    ) -> Result<(SyncPage, Bytes), DepError> {
        self.page("/devices/sync", Some(cursor), limit, SyncPage::parse)
            .await
    }

    /// One page of `path` (fetch or sync), read by `parse`, with its text.
    async fn page<T>(
        &self,
        path: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
        parse: impl Fn(&str) -> Result<T, serde_json::Error>,
    ) -> Result<(T, Bytes), DepError> {
        let req = CursorRequest {
            cursor: cursor.map(str::to_owned),
            limit,
        };
        self.call_parsed(Method::POST, path, Some(&req), parse)
            .await
    }

    pub async fn device_details(&self, serials: &[String]) -> Result<DeviceDetails, DepError> {
        let req = SerialsRequest {
            devices: serials.to_vec(),
        };
        self.call(Method::POST, "/devices", Some(&req)).await
    }

    pub async fn disown(&self, serials: &[String]) -> Result<DeviceStatuses, DepError> {
        let req = SerialsRequest {
            devices: serials.to_vec(),
        };
        self.call(Method::POST, "/devices/disown", Some(&req)).await
    }

    pub async fn activation_lock(
        &self,
        req: &ActivationLockRequest,
    ) -> Result<ActivationLockResponse, DepError> {
        self.call(Method::POST, "/device/activationlock", Some(req))
            .await
    }

    /// `POST /profile` with the profile JSON as given (Apple's profile has
    /// dozens of optional keys; depd passes them through untouched).
    pub async fn define_profile(
        &self,
        profile: &serde_json::Value,
    ) -> Result<DefineProfileResponse, DepError> {
        self.call(Method::POST, "/profile", Some(profile)).await
    }

    pub async fn get_profile(&self, profile_uuid: &str) -> Result<serde_json::Value, DepError> {
        let path = format!(
            "/profile?profile_uuid={}",
            oauth1::percent_encode(profile_uuid)
        );
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `POST /profile/devices`: assign a profile to at most 1000 serials.
    pub async fn assign_profile(
        &self,
        profile_uuid: &str,
        serials: &[String],
    ) -> Result<AssignResponse, DepError> {
        let req = AssignRequest {
            profile_uuid: profile_uuid.to_owned(),
            devices: serials.to_vec(),
        };
        self.call(Method::POST, "/profile/devices", Some(&req))
            .await
    }

    /// `DELETE /profile/devices`: remove the profile from serials.
    pub async fn remove_profile(&self, serials: &[String]) -> Result<DeviceStatuses, DepError> {
        let req = SerialsRequest {
            devices: serials.to_vec(),
        };
        self.call(Method::DELETE, "/profile/devices", Some(&req))
            .await
    }

    pub async fn os_beta_tokens(&self) -> Result<serde_json::Value, DepError> {
        self.call::<(), _>(Method::GET, "/os-beta-enrollment/tokens", None)
            .await
    }

    pub async fn get_ade_profile(&self) -> Result<serde_json::Value, DepError> {
        self.call::<(), _>(Method::GET, "/account-driven-enrollment/profile", None)
            .await
    }

    /// Sets the account-driven enrollment service discovery URL.
    pub async fn set_ade_profile(
        &self,
        mdm_service_discovery_url: &str,
    ) -> Result<serde_json::Value, DepError> {
        let body = serde_json::json!({ "mdm_service_discovery_url": mdm_service_discovery_url });
        self.call(
            Method::POST,
            "/account-driven-enrollment/profile",
            Some(&body),
        )
        .await
    }

    pub async fn delete_ade_profile(&self) -> Result<serde_json::Value, DepError> {
        self.call::<(), _>(Method::DELETE, "/account-driven-enrollment/profile", None)
            .await
    }
}

/// Whether an answer means the session was rejected and a new one may
/// help: 401, or 403 whose body says `FORBIDDEN`.
pub fn is_session_rejection(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::UNAUTHORIZED
        || (status == StatusCode::FORBIDDEN && super::error::body_code(body) == "FORBIDDEN")
}

#[cfg(test)]
mod tests;
