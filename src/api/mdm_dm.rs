//! Declarative Management forwarding: a device's
//! `DeclarativeManagement` check-in goes to `[mdm] dm_url` with its
//! enrollment's headers and an optional HMAC, and the answer comes back
//! verbatim when it is a 200 (and signed, when a receive key is set).

use super::mdm::device_error;
use crate::actors::mdm::Mdm;
use crate::mdm::ids::EnrollmentId;
use crate::mdm::message::Checkin;
use crate::mdm::webhook::signature;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use std::time::Duration;

/// The URL a DM `Endpoint` goes to: relative to `base`'s directory (RFC
/// 3986 resolution of a relative path). Endpoints that could leave the
/// DM service (a scheme, `//`, a leading `/`, `..`) are refused.
pub fn target(base: &str, endpoint: &str) -> Result<String, String> {
    if endpoint.is_empty()
        || endpoint.contains("://")
        || endpoint.starts_with('/')
        || endpoint.contains("//")
        || endpoint.split('/').any(|s| s == "..")
        || endpoint.contains(':') && endpoint.split('/').next().is_some_and(|s| s.contains(':'))
    {
        return Err(format!("DM Endpoint {endpoint:?} is not a relative path"));
    }
    let (scheme_host, path) = match base.find("://").map(|i| i + 3) {
        Some(start) => match base[start..].find('/') {
            Some(slash) => base.split_at(start + slash),
            None => (base, ""),
        },
        None => return Err("dm_url is not absolute".into()),
    };
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    Ok(format!("{scheme_host}{dir}{endpoint}"))
}

pub async fn forward(mdm: &Mdm, m: &Checkin, id: &EnrollmentId) -> HttpResponse {
    let rt = mdm.runtime();
    let s = &rt.settings;
    if s.dm_url.is_empty() {
        tracing::warn!(enrollment_id = %id.id, "DeclarativeManagement check-in but mdm.dm_url is not set");
        return device_error(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let url = match target(&s.dm_url, &m.endpoint) {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(enrollment_id = %id.id, reason = %e, "DeclarativeManagement refused");
            return device_error(StatusCode::BAD_REQUEST);
        }
    };
    let body = m.data.clone().unwrap_or_default();
    let client = crate::dep::client::http_client(Duration::from_secs(10), None);
    let timeout = Duration::from_secs(s.dm_timeout_secs);
    let mut req = if body.is_empty() {
        client.get(&url)
    } else {
        client
            .put(&url)
            .insert_header((CONTENT_TYPE, "application/json"))
    }
    .timeout(timeout)
    .insert_header(("X-Enrollment-ID", id.id.as_str()))
    .insert_header(("X-Enrollment-Type", id.kind.as_str()));
    if let Some(parent) = &id.parent {
        req = req.insert_header(("X-Enrollment-ParentID", parent.as_str()));
    }
    if let Some(key) = &s.dm_send_hmac_key {
        match signature(key.expose().as_bytes(), &body) {
            Ok(sig) => req = req.insert_header(("X-Hmac-Signature", sig)),
            Err(_) => return device_error(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
    let mut resp = match if body.is_empty() {
        req.send().await
    } else {
        req.send_body(body).await
    } {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(enrollment_id = %id.id, url = %crate::daemon::redact::url(&url), "DeclarativeManagement service did not answer");
            return device_error(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let status = resp.status();
    let sig = resp
        .headers()
        .get("X-Hmac-Signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(answer) = resp.body().limit(s.body_limit).await else {
        return device_error(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if status != StatusCode::OK {
        tracing::warn!(enrollment_id = %id.id, status = status.as_u16(), "DeclarativeManagement service refused");
        // As NanoMDM: the upstream body follows the status text.
        let mut body = b"Internal Server Error\n".to_vec();
        body.extend_from_slice(&answer);
        return HttpResponse::InternalServerError()
            .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(body);
    }
    if let Some(key) = &s.dm_recv_hmac_key {
        let want = signature(key.expose().as_bytes(), &answer).ok();
        let ok = match (&sig, &want) {
            (Some(got), Some(want)) => {
                openssl::memcmp::eq(got.as_bytes(), want.as_bytes()) && got.len() == want.len()
            }
            _ => false,
        };
        if !ok {
            tracing::warn!(enrollment_id = %id.id, "DeclarativeManagement answer's X-Hmac-Signature does not match");
            return device_error(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_base_directory() {
        assert_eq!(
            target("https://dm.example/api/", "declaration-items").as_deref(),
            Ok("https://dm.example/api/declaration-items")
        );
        assert_eq!(
            target("https://dm.example/api", "declaration-items").as_deref(),
            Ok("https://dm.example/declaration-items")
        );
        assert_eq!(
            target("http://[::1]:9008", "foo").as_deref(),
            Ok("http://[::1]:9008/foo")
        );
        assert_eq!(
            target("https://dm.example/api/", "declaration/configuration/x.y").as_deref(),
            Ok("https://dm.example/api/declaration/configuration/x.y")
        );
        for bad in [
            "",
            "/abs",
            "https://evil/",
            "//evil/x",
            "a/../../x",
            "javascript:x",
        ] {
            assert!(target("https://dm.example/api/", bad).is_err(), "{bad}");
        }
    }
}
