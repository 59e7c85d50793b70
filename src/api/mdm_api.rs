//! NanoMDM's management API: `/v1/enqueue/{ids}`,
//! `/v1/push/{ids}`, `/v1/pushcert` and `/migration`, with its answer
//! shapes (tab-indented JSON, NanoMDM's keys and status codes). Bad input
//! is a 4xx with the same keys where NanoMDM answers 500.

use super::AppState;
use super::mdm::{read_limited, run_checkin, trace_id};
use crate::mdm::message;
use crate::mdm::service::DeviceRequest;
use crate::store::mdm::{MdmWrite, StoredPushCert};
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use std::collections::BTreeMap;

/// NanoMDM's API answer JSON: tab-indented, with a trailing newline.
fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if value.serialize(&mut ser).is_err() {
        out = b"{}".to_vec();
    }
    out.push(b'\n');
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(out)
}

fn error(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    json(status, &serde_json::json!({ "error": text.into() }))
}

fn mdm_or_404(
    state: &AppState,
) -> Result<std::sync::Arc<crate::actors::mdm::Mdm>, Box<HttpResponse>> {
    state.mdm.clone().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "the MDM service is not enabled",
        ))
    })
}

/// Per-ID outcome.
#[derive(Debug, Default, Serialize)]
struct IdResult {
    #[serde(skip_serializing_if = "String::is_empty")]
    push_result: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    push_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    command_error: String,
}

/// The API result (§9.5); every key left out when empty.
#[derive(Debug, Default, Serialize)]
struct ApiResult {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    status: BTreeMap<String, IdResult>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_push: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    push_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    command_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    command_uuid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    request_type: String,
}

impl ApiResult {
    /// 500 on a top-level error; else 200, 207 when some IDs failed, 500
    /// when all did.
    fn status_code(&self, ids: usize) -> StatusCode {
        if !self.push_error.is_empty() || !self.command_error.is_empty() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let failed = self
            .status
            .values()
            .filter(|r| !r.push_error.is_empty() || !r.command_error.is_empty())
            .count();
        match failed {
            0 => StatusCode::OK,
            n if n >= ids && ids > 0 => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::MULTI_STATUS,
        }
    }
}

/// The IDs of `/v1/…/{ids}`: percent-decoded, split on commas.
fn ids_of(raw: &str) -> Result<Vec<String>, Box<HttpResponse>> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "enrollment IDs are not UTF-8",
            ))
        })?;
    let ids: Vec<String> = decoded
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(Box::new(json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "command_error": "getting enrollment ids: empty path" }),
        )));
    }
    Ok(ids)
}

/// Pushes to `ids`. APNs delivery is not built yet: every ID gets NanoMDM's
/// error for its case (no push info, or no push certificate for its
/// topic, or delivery unavailable).
async fn push(state: &AppState, ids: &[String], result: &mut ApiResult) {
    let Some(mdm) = state.mdm.clone() else { return };
    let ids = ids.to_vec();
    let store = mdm.store().clone();
    let errors = store
        .blocking(move |s| {
            let mut out = Vec::new();
            for id in ids {
                let e = match s.mdm_enrollment(&id)? {
                    Some(e) if !e.token_hex.is_empty() => match s.mdm_push_cert(&e.topic)? {
                        None => format!(
                            "retrieving push cert for topic {:?}: no push certificate is stored for this topic",
                            e.topic
                        ),
                        Some(_) => "APNs push delivery is not available in this version of depd".to_owned(),
                    },
                    _ => "push data missing for id".to_owned(),
                };
                out.push((id, e));
            }
            Ok(out)
        })
        .await;
    match errors {
        Ok(errors) => {
            for (id, e) in errors {
                result.status.entry(id).or_default().push_error = e;
            }
        }
        Err(e) => result.push_error = format!("reading push info: {e}"),
    }
}

/// `/v1/push/{ids}` (any method).
pub async fn push_ids(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = mdm_or_404(&state) {
        return *r;
    }
    let ids = match ids_of(&path) {
        Ok(ids) => ids,
        Err(r) => return *r,
    };
    let mut result = ApiResult::default();
    push(&state, &ids, &mut result).await;
    json(result.status_code(ids.len()), &result)
}

/// `/v1/enqueue/{ids}[?nopush=1]` (any method): a raw command plist.
pub async fn enqueue(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let ids = match ids_of(&path) {
        Ok(ids) => ids,
        Err(r) => return *r,
    };
    // NanoMDM: any non-empty value suppresses pushes, even "0".
    let no_push = super::mdm::url_params(req.query_string())
        .get("nopush")
        .is_some_and(|v| !v.is_empty());
    let body = match read_limited(payload, mdm.runtime().settings.body_limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut result = ApiResult {
        no_push,
        ..ApiResult::default()
    };
    if body.is_empty() {
        if no_push {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "no_push": true, "command_error": "must enqueue or push" }),
            );
        }
        // As NanoMDM: an empty body means "push only".
        push(&state, &ids, &mut result).await;
        return json(result.status_code(ids.len()), &result);
    }
    let cmd = match message::parse_command(&body) {
        Ok(c) => c,
        Err(e) => {
            result.command_error = format!("decoding command: {e}");
            return json(StatusCode::BAD_REQUEST, &result);
        }
    };
    result.command_uuid = cmd.uuid.clone();
    result.request_type = cmd.request_type.clone();
    let now = state.clock.now().unix_timestamp();
    match mdm.enqueue(&ids, &cmd, body, now).await {
        Ok(errors) => {
            let all_failed = errors.len() == ids.len();
            for (id, e) in errors {
                result.status.entry(id).or_default().command_error = e.to_string();
            }
            if !no_push && !all_failed {
                let ok: Vec<String> = ids
                    .iter()
                    .filter(|id| !result.status.contains_key(*id))
                    .cloned()
                    .collect();
                push(&state, &ok, &mut result).await;
            }
        }
        Err(crate::actors::mdm::EnqueueFailure::Duplicate(uuid)) => {
            result.command_error =
                format!("enqueuing command: command UUID {uuid:?} was enqueued before");
            return json(StatusCode::CONFLICT, &result);
        }
        Err(e) => {
            result.command_error = format!("enqueuing command: {e}");
        }
    }
    json(result.status_code(ids.len()), &result)
}

/// The answer of both pushcert endpoints.
#[derive(Serialize)]
struct PushCertAnswer {
    not_after: String,
    topic: String,
}

/// The topic of an MDM push certificate: its subject's UID.
fn topic_of(cert: &X509) -> Result<String, String> {
    let uid = cert
        .subject_name()
        .entries_by_nid(Nid::USERID)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .ok_or_else(|| "the certificate's subject has no UID (topic)".to_owned())?;
    if !uid.starts_with("com.apple.mgmt") {
        return Err(format!(
            "topic {uid:?} is not an MDM push topic (com.apple.mgmt…)"
        ));
    }
    Ok(uid)
}

fn unix_of(t: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

fn rfc3339(unix: i64) -> String {
    crate::domain::tokens::format_unix(unix)
}

/// Splits PEM text into (label, block) pairs; blocks may be glued
/// without a newline.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_owned();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let stop = start + end + end_marker.len();
        out.push((label, rest[start..stop].to_owned()));
        rest = &rest[stop..];
    }
    out
}

/// Parses the body of `PUT /v1/pushcert`: the last certificate and the
/// last key win; other block types are refused.
/// A checked push certificate and key, with their PEM as uploaded.
struct PushPair {
    cert: X509,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn parse_push_pair(body: &[u8]) -> Result<PushPair, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not PEM text".to_owned())?;
    let mut cert = None;
    let mut key = None;
    for (label, block) in pem_blocks(text) {
        match label.as_str() {
            "CERTIFICATE" => cert = Some(block),
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
                if block.contains("ENCRYPTED") {
                    return Err("the private key is encrypted; upload it unencrypted".into());
                }
                key = Some(block);
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the private key is encrypted; upload it unencrypted".into());
            }
            other => return Err(format!("unrecognized PEM type: {other:?}")),
        }
    }
    let cert_pem = cert.ok_or("no CERTIFICATE block")?;
    let key_pem = key.ok_or("no private key block")?;
    let cert = X509::from_pem(cert_pem.as_bytes())
        .map_err(|_| "the certificate does not parse".to_owned())?;
    let key: PKey<Private> = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|_| "the private key does not parse".to_owned())?;
    let matches = cert
        .public_key()
        .map(|p| p.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err("the certificate and the private key are not a pair".into());
    }
    Ok(PushPair {
        cert,
        cert_pem: cert_pem.into_bytes(),
        key_pem: key_pem.into_bytes(),
    })
}

/// `PUT /v1/pushcert`: a PEM certificate and its key; answers the topic.
pub async fn put_pushcert(payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let body = match read_limited(payload, 1024 * 1024).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let PushPair {
        cert,
        cert_pem,
        key_pem,
    } = match parse_push_pair(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let topic = match topic_of(&cert) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(not_after) = unix_of(cert.not_after()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the certificate's notAfter is unreadable",
        );
    };
    let t = topic.clone();
    let stored = mdm
        .store()
        .blocking(move |s| {
            let stale_token = s.mdm_push_cert(&t)?.map_or(1, |old| old.stale_token + 1);
            let mut w = MdmWrite::default();
            w.put_push_cert(
                &t,
                &StoredPushCert {
                    cert_pem,
                    key_pem,
                    not_after_unix: not_after,
                    stale_token,
                },
            );
            s.mdm_commit(w)
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "storing a push certificate failed");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the push certificate: {e}"),
        );
    }
    tracing::info!(topic = %topic, not_after = %rfc3339(not_after), "push certificate stored");
    json(
        StatusCode::OK,
        &PushCertAnswer {
            not_after: rfc3339(not_after),
            topic,
        },
    )
}

/// `GET /v1/pushcert?topic=T`.
pub async fn get_pushcert(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(topic) = super::mdm::url_params(req.query_string())
        .remove("topic")
        .filter(|t| !t.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing required query parameter: topic",
        );
    };
    let t = topic.clone();
    match mdm.store().blocking(move |s| s.mdm_push_cert(&t)).await {
        Ok(Some(c)) => json(
            StatusCode::OK,
            &PushCertAnswer {
                not_after: rfc3339(c.not_after_unix),
                topic,
            },
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no push certificate is stored for topic {topic:?}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the push certificate: {e}"),
        ),
    }
}

/// `/migration` (any method; with `[mdm] migration`): a raw check-in
/// plist fed to the core service without identity, certificate binding
/// or webhook, as NanoMDM's `nano2nano` sends them.
pub async fn migration(payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if !mdm.runtime().settings.migration {
        return error(
            StatusCode::NOT_FOUND,
            "migration is not enabled ([mdm] migration)",
        );
    }
    let body = match read_limited(payload, mdm.runtime().settings.body_limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let dreq = DeviceRequest {
        body,
        cert_hash: None,
        identity: None,
        url_params: BTreeMap::new(),
        event_id: trace_id(),
        now: state.clock.now(),
    };
    run_checkin(&state, &mdm, dreq).await
}
