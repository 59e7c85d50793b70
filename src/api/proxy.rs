//! `ANY /proxy/{name}/{apple path…}`: the transparently authenticating
//! reverse proxy. The name's actor supplies the base URL (read fresh on
//! every request) and the session token; the request goes out from this
//! worker's HTTP client and the answer streams back unbuffered.
//!
//! The request body is buffered (bounded) so the request can be replayed
//! once when Apple rejects the session. Responses are streamed, except a
//! 403 whose body must be read to tell a stale session (`FORBIDDEN`) from a
//! final answer (such as `T_C_NOT_SIGNED`).

use super::AppState;
use super::body;
use super::error::ApiError;
use crate::actors::{Grant, Session, SessionError, SessionRotated};
use crate::dep::DepError;
use crate::dep::client::{self, PROTOCOL_HEADER, SESSION_HEADER};
use crate::domain::name::DepName;
use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::{HttpRequest, HttpResponse, web};
use std::borrow::Cow;

/// Largest 403 body read to look for `FORBIDDEN`.
const FORBIDDEN_PROBE_LIMIT: usize = 64 * 1024;

/// Headers that describe one connection (RFC 9110 §7.6.1) or that the
/// proxy sets itself; never copied between caller and Apple.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a header of the caller's request goes to Apple.
fn forward_request_header(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    !(HOP_BY_HOP.contains(&n)
        || n == "authorization"
        || n == "host"
        || name == SESSION_HEADER
        || listed.iter().any(|l| l == n))
}

/// Whether a header of Apple's answer goes back to the caller. The session
/// token stays with depd: the caller never manages sessions.
fn forward_response_header(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    !(HOP_BY_HOP.contains(&n) || name == SESSION_HEADER || listed.iter().any(|l| l == n))
}

/// The part of the request path after `/proxy/{name}`, still encoded as
/// the caller sent it, with the query. Borrowed from the request, except
/// for `/proxy/{name}` alone with a query.
fn upstream_path(req: &HttpRequest) -> Cow<'_, str> {
    let uri = req.uri();
    let full = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let rest = full.strip_prefix("/proxy/").unwrap_or(full);
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Cow::Borrowed(&rest[i..]),
        Some(i) => Cow::Owned(format!("/{}", &rest[i..])),
        None => Cow::Borrowed("/"),
    }
}

/// Refuses a proxied path that could reach anything but the Apple
/// endpoint it names under the base URL's path prefix: a `.` or `..`
/// segment, plain or percent-encoded (`%2e`, `%2E%2E`), and an encoded
/// slash or backslash inside a segment (`%2F`, `%5C`), which some servers
/// decode into a separator. Nothing like that is sent upstream.
fn check_path(path: &str) -> Result<(), ApiError> {
    let path_only = path.split('?').next().unwrap_or_default();
    for segment in path_only.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).collect::<Vec<u8>>();
        let why = if decoded == b"." || decoded == b".." {
            Some("a '.' or '..' segment")
        } else if decoded.contains(&b'/') || decoded.contains(&b'\\') || segment.contains('\\') {
            Some("a slash or backslash inside a segment")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ApiError::bad_request(
                "invalid-proxy-path",
                format!("the proxied path has {why}; send the path Apple's endpoint has"),
            ));
        }
    }
    Ok(())
}

/// The URL of `path` (absolute, with any query) under the grant's base URL,
/// which may carry a path prefix.
fn upstream_uri(grant: &Grant, path: &str) -> Result<Uri, ApiError> {
    let built = match &grant.headers.base {
        Some((scheme, authority, prefix)) => {
            let mut pq = String::with_capacity(prefix.len() + path.len());
            pq.push_str(prefix);
            pq.push_str(path);
            Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(pq)
                .build()
                .ok()
        }
        None => client::join_url(&grant.target.base_url, path).parse().ok(),
    };
    built.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream-unreachable",
            format!(
                "cannot reach {}: not a valid URL",
                client::join_url(&grant.target.base_url, path)
            ),
        )
    })
}

pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw_name = req.match_info().get("name").unwrap_or_default();
    let name = DepName::parse(raw_name)
        .map_err(|e| ApiError::bad_request("invalid-dep-name", format!("invalid DEP name: {e}")))?;
    let path = upstream_path(&req);
    check_path(&path)?;
    let limit = state.settings().apple.proxy_body_limit;
    let body = body::read(&req, payload, limit).await?;
    // The directory and the published grant spare two mailbox round trips
    // per request. Only when nothing is published (no session, or the
    // first request since the session or the name's settings changed) or
    // Apple rejected the session does the request go through the actor,
    // which publishes a grant, opening a session single-flight if needed.
    let published = state
        .directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&name)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown-dep-name",
                format!("unknown DEP name {:?}", name.as_str()),
            )
        })?;
    let actor = published.addr;
    let mut rejected: Option<String> = None;
    let mut replayed = false;
    loop {
        let ready = match &rejected {
            None => published
                .grant
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            Some(_) => None,
        };
        let grant = match ready {
            Some(grant) => grant,
            None => actor
                .send(Session {
                    rejected: rejected.take(),
                })
                .await
                .map_err(|e| ApiError::internal("the DEP name's actor did not answer", &e))?
                .map_err(|e| session_error(&name, e))?,
        };
        let started = std::time::Instant::now();
        let mut resp = match send(&req, &grant, &path, body.clone()).await {
            Ok(resp) => resp,
            Err(e) => {
                crate::metrics::apple_call(name.as_str(), &path, 0, started.elapsed());
                return Err(e);
            }
        };
        crate::metrics::apple_call(
            name.as_str(),
            &path,
            resp.status().as_u16(),
            started.elapsed(),
        );
        let rotated = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != grant.token)
            .map(str::to_owned);
        if let Some(new) = rotated {
            // Waited for, so the caller's next request already reads the
            // new token from the published grant (Apple rotates rarely).
            let adopted = actor
                .send(SessionRotated {
                    old: grant.token.clone(),
                    new,
                })
                .await;
            if let Err(e) = adopted {
                tracing::warn!(dep_name = %name, error = %e, "the DEP name's actor did not take the rotated session");
            }
        }
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED && !replayed {
            replayed = true;
            rejected = Some(grant.token.clone());
            continue;
        }
        if status == StatusCode::FORBIDDEN {
            let probe = resp
                .body()
                .limit(FORBIDDEN_PROBE_LIMIT)
                .await
                .map_err(|e| upstream_error(&name, &DepError::Network(e.to_string())))?;
            if client::is_session_rejection(status, &probe) && !replayed {
                replayed = true;
                rejected = Some(grant.token.clone());
                continue;
            }
            return Ok(respond_head(&resp).body(probe));
        }
        if status.is_success() {
            note_removals(&actor, &req, &path, &body);
        }
        let length = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut out = respond_head(&resp);
        return Ok(match length {
            Some(len) => out.body(SizedStream::new(len, resp)),
            None => out.streaming(resp),
        });
    }
}

async fn send(
    req: &HttpRequest,
    grant: &Grant,
    path: &str,
    body: web::Bytes,
) -> Result<awc::ClientResponse, ApiError> {
    let target = &grant.target;
    let uri = upstream_uri(grant, path)?;
    if let Err(e) = client::check_allowed(target, &client::join_url(&target.base_url, "/")) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream-not-allowed",
            e.to_string(),
        ));
    }
    let mut out = client::http_client(target.connect_timeout, Some(&target.allow))
        .request(req.method().clone(), uri)
        .timeout(target.request_timeout);
    let listed = connection_listed(req.headers());
    for (name, value) in req.headers() {
        if forward_request_header(name, &listed) {
            out = out.append_header((name.clone(), value.clone()));
        }
    }
    let invalid = |what: &str| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream-unreachable",
            format!(
                "cannot reach {}: the {what} is not a valid header value",
                client::join_url(&target.base_url, path)
            ),
        )
    };
    if !req.headers().contains_key(header::USER_AGENT) {
        let agent = grant.headers.user_agent.clone();
        out = out.insert_header((
            header::USER_AGENT,
            agent.ok_or_else(|| invalid("user agent"))?,
        ));
    }
    if !req.headers().contains_key(PROTOCOL_HEADER) {
        out = out.insert_header((
            PROTOCOL_HEADER,
            grant.headers.proxy_protocol_version.clone(),
        ));
    }
    let token = grant.headers.token.clone();
    out = out.insert_header((
        SESSION_HEADER,
        token.ok_or_else(|| invalid("session token"))?,
    ));
    let sent = if body.is_empty() {
        out.send().await
    } else {
        out.send_body(body).await
    };
    sent.map_err(|e| {
        let name = req.match_info().get("name").unwrap_or_default().to_owned();
        let url = client::join_url(&target.base_url, path);
        let err = client::send_error(e);
        tracing::warn!(dep_name = %name, url = %crate::daemon::redact::url(&url), error = %err, "proxied request failed");
        match err {
            DepError::NotAllowed(why) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream-not-allowed",
                format!("not sent: {why}"),
            ),
            DepError::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                format!("{url} did not answer in time"),
            ),
            other => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unreachable",
                format!("cannot reach {url}: {other}"),
            ),
        }
    })
}

/// A profile removal made through the proxy (`DELETE /profile/devices`)
/// is remembered, so the assigner does not assign the profile again when
/// Apple reports those devices `removed`.
fn note_removals(
    actor: &actix::Addr<crate::actors::DepNameActor>,
    req: &HttpRequest,
    path: &str,
    body: &[u8],
) {
    if req.method() != Method::DELETE || path.split('?').next() != Some("/profile/devices") {
        return;
    }
    #[derive(serde::Deserialize)]
    struct Removal {
        #[serde(default)]
        devices: Vec<String>,
    }
    if let Ok(r) = serde_json::from_slice::<Removal>(body)
        && !r.devices.is_empty()
    {
        actor.do_send(crate::actors::RecordRemovals(r.devices));
    }
}

fn respond_head(resp: &awc::ClientResponse) -> actix_web::HttpResponseBuilder {
    let mut out = HttpResponse::build(resp.status());
    let listed = connection_listed(resp.headers());
    for (name, value) in resp.headers() {
        if forward_response_header(name, &listed) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out
}

fn session_error(name: &DepName, e: SessionError) -> ApiError {
    match e {
        SessionError::NoTokens => ApiError::new(
            StatusCode::CONFLICT,
            "no-tokens",
            format!(
                "DEP name {:?} has no OAuth tokens yet: upload them with PUT /v1/tokens/{{name}} \
                 or PUT /v1/tokenpki/{{name}}",
                name.as_str()
            ),
        ),
        SessionError::Failed(f) => {
            let retry = f
                .retry_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let mut err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "session-failed",
                format!(
                    "Apple refused a session for DEP name {:?}: {} (next attempt not before {retry})",
                    name.as_str(),
                    f.error
                ),
            );
            if let Some(status) = f.error.apple_status() {
                err = err.with("apple_status", status.into());
            }
            if let Some(code) = f.error.apple_code() {
                err = err.with("apple_body", code.into());
            }
            err
        }
        SessionError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the DEP name's actor stopped; retry",
        ),
    }
}

fn upstream_error(name: &DepName, e: &DepError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream-failed",
        format!(
            "reading Apple's answer for DEP name {:?} failed: {e}",
            name.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn paths_keep_encoding_and_query() {
        let req = TestRequest::with_uri("/proxy/acme/profile?profile_uuid=A%2FB").to_http_request();
        assert_eq!(upstream_path(&req), "/profile?profile_uuid=A%2FB");
        let req = TestRequest::with_uri("/proxy/Acme%20Corp/a/b%20c").to_http_request();
        assert_eq!(upstream_path(&req), "/a/b%20c");
        let req = TestRequest::with_uri("/proxy/acme/").to_http_request();
        assert_eq!(upstream_path(&req), "/");
        let req = TestRequest::with_uri("/proxy/acme").to_http_request();
        assert_eq!(upstream_path(&req), "/");
        let req = TestRequest::with_uri("/proxy/acme?x=/y").to_http_request();
        assert_eq!(upstream_path(&req), "/?x=/y");
        let req = TestRequest::with_uri("/proxy/acme/a?x=/y").to_http_request();
        assert_eq!(upstream_path(&req), "/a?x=/y");
    }

    #[test]
    fn upstream_urls_keep_the_base_prefix() {
        let target = |base: &str| client::Target {
            base_url: base.into(),
            protocol_version: 7,
            user_agent: "depd/test".into(),
            connect_timeout: std::time::Duration::from_secs(1),
            request_timeout: std::time::Duration::from_secs(1),
            allow: Default::default(),
        };
        for (base, path, url) in [
            (
                "http://127.0.0.1:5000",
                "/account",
                "http://127.0.0.1:5000/account",
            ),
            (
                "https://mdmenrollment.apple.com/",
                "/a?b=/c",
                "https://mdmenrollment.apple.com/a?b=/c",
            ),
            (
                "http://h:1/prefix/",
                "/devices/sync",
                "http://h:1/prefix/devices/sync",
            ),
            ("http://h:1/prefix", "/", "http://h:1/prefix/"),
        ] {
            let grant = Grant::new(target(base), 7, "t".into());
            let uri = upstream_uri(&grant, path).expect("url");
            assert_eq!(uri.to_string(), url, "{base} {path}");
            assert_eq!(
                uri.to_string(),
                client::join_url(base, path),
                "{base} {path}"
            );
        }
    }

    #[test]
    fn header_rules() {
        let listed = vec!["x-private".to_owned()];
        for (name, forwarded) in [
            ("authorization", false),
            ("host", false),
            ("connection", false),
            ("transfer-encoding", false),
            ("content-length", false),
            ("x-adm-auth-session", false),
            ("x-private", false),
            ("user-agent", true),
            ("content-type", true),
            ("x-server-protocol-version", true),
            ("accept", true),
        ] {
            let h = HeaderName::from_static(name);
            assert_eq!(forward_request_header(&h, &listed), forwarded, "{name}");
        }
        assert!(!forward_response_header(
            &HeaderName::from_static("x-adm-auth-session"),
            &[]
        ));
        assert!(forward_response_header(
            &HeaderName::from_static("retry-after"),
            &[]
        ));
    }
}
