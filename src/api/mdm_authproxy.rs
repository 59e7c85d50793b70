//! `/authproxy/…`: a reverse proxy for Declarative
//! Management asset downloads with "MDM" authentication. The device's
//! identity is checked as for `/mdm`, must be bound to an enrollment, and
//! that enrollment's ID goes upstream as `X-Enrollment-ID`.

use super::AppState;
use super::mdm::{device_error, read_limited, trace_id};
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};
use std::time::Duration;

/// Connection-level headers and those the proxy sets itself.
const DROPPED: &[&str] = &[
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
    "host",
    "mdm-signature",
    "x-enrollment-id",
    "x-trace-id",
    "x-forwarded-for",
];

fn forwarded(name: &HeaderName) -> bool {
    !DROPPED.contains(&name.as_str())
}

/// The upstream URL: the part after `/authproxy/` appended to the target's
/// path, queries merged.
pub fn upstream_url(target: &str, rest: &str, query: &str) -> String {
    let (base, base_query) = match target.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (target, None),
    };
    let mut url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rest.trim_start_matches('/')
    );
    let queries: Vec<&str> = [base_query, Some(query)]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect();
    if !queries.is_empty() {
        url.push('?');
        url.push_str(&queries.join("&"));
    }
    url
}

pub async fn forward(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(mdm) = state.mdm.clone() else {
        return device_error(StatusCode::NOT_FOUND);
    };
    let rt = mdm.runtime();
    if rt.settings.auth_proxy_url.is_empty() {
        return device_error(StatusCode::NOT_FOUND);
    }
    let body = match read_limited(payload, rt.settings.body_limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (hash, _) = match super::mdm::identity_of(&req, &body, &mdm) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let store = mdm.store().clone();
    let enrollment = match store
        .blocking(move |s| s.mdm_enrollment_by_hash(&hash))
        .await
    {
        Ok(Some(id)) => id,
        // As NanoMDM: 400 with `Unauthorized` (never 401 to a device).
        Ok(None) => {
            return HttpResponse::BadRequest()
                .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("Unauthorized\n");
        }
        Err(e) => {
            tracing::error!(error = %e, "auth proxy: reading the certificate binding failed");
            return device_error(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let url = upstream_url(&rt.settings.auth_proxy_url, &path, req.query_string());
    let client = crate::dep::client::http_client(Duration::from_secs(10), None);
    let mut up = client
        .request(req.method().clone(), &url)
        .timeout(Duration::from_secs(rt.settings.dm_timeout_secs));
    for (name, value) in req.headers() {
        if forwarded(name) {
            up = up.append_header((name.clone(), value.clone()));
        }
    }
    up = up
        .insert_header(("X-Enrollment-ID", enrollment.as_str()))
        .insert_header(("X-Trace-ID", trace_id()));
    if let Some(peer) = req.peer_addr() {
        up = up.insert_header(("X-Forwarded-For", peer.ip().to_string()));
    }
    let resp = match up.send_body(body).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(url = %crate::daemon::redact::url(&url), "auth proxy: upstream failed");
            return HttpResponse::BadGateway().finish();
        }
    };
    let mut out = HttpResponse::build(resp.status());
    for (name, value) in resp.headers() {
        if !matches!(
            name.as_str(),
            "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
        ) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(len) => out.body(SizedStream::new(len, resp)),
        None => out.streaming(resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_append_and_queries_merge() {
        assert_eq!(
            upstream_url("http://[::1]:9008", "foo/bar", ""),
            "http://[::1]:9008/foo/bar"
        );
        assert_eq!(
            upstream_url("http://h/base/?k=1", "a", "b=2"),
            "http://h/base/a?k=1&b=2"
        );
        assert_eq!(upstream_url("http://h", "", "x=1"), "http://h/?x=1");
    }
}
