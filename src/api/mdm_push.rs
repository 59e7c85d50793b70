//! Push: `/v1/push/{ids}`, `POST /v1/push` with the IDs in a JSON body,
//! the push part of `/v1/enqueue`, and the push certificates
//! (`/v1/pushcert`). Answers keep NanoMDM's shape, with depd's `pending`.

use super::AppState;
use super::mdm::read_limited;
use super::mdm_api::{ApiResult, error, ids_of, json, mdm_or_404};
use crate::actors::mdm::Mdm;
use crate::actors::push::IdOutcome;
use crate::apns::wire::Environment;
use crate::store::mdm::{MdmWrite, StoredPushCert};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::{Deserialize, Serialize};

/// The longest `/v1/push/{ids}` or `/v1/enqueue/{ids}` path: 48 KiB,
/// about 1,300 UDID-shaped IDs, below the 64 KiB that common HTTP
/// clients cap URLs at. Longer lists go in `POST /v1/push`'s body.
pub const MAX_ID_PATH: usize = 48 * 1024;

/// 414 for a path past [`MAX_ID_PATH`].
pub(super) fn url_within_limit(req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    if req.path().len() > MAX_ID_PATH {
        return Err(Box::new(error(
            StatusCode::URI_TOO_LONG,
            format!(
                "the ID list is longer than {MAX_ID_PATH} bytes; send it as {{\"ids\": [...]}} to POST /v1/push"
            ),
        )));
    }
    Ok(())
}

/// Pushes to `ids` (each once) and fills the answer: per ID, the
/// `apns-id` or the error; `pending` for pushes still in flight at the
/// deadline.
pub(super) async fn push(mdm: &Mdm, ids: &[String], result: &mut ApiResult) {
    match mdm.pushes().push(ids).await {
        Ok(answer) => {
            for (id, outcome) in answer.outcomes {
                let r = result.status.entry(id).or_default();
                match outcome {
                    IdOutcome::Delivered { apns_id } => r.push_result = apns_id,
                    IdOutcome::Failed { apns_id, error } => {
                        r.push_result = apns_id.unwrap_or_default();
                        r.push_error = error;
                    }
                }
            }
            result.pending = answer.pending;
        }
        Err(e) => result.push_error = format!("reading push info: {e}"),
    }
}

/// `/v1/push/{ids}` (any method).
pub async fn push_ids(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if let Err(r) = url_within_limit(&req) {
        return *r;
    }
    let ids = match ids_of(&path) {
        Ok(ids) => ids,
        Err(r) => return *r,
    };
    let mut result = ApiResult::default();
    push(&mdm, &ids, &mut result).await;
    json(result.status_code(ids.len()), &result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    ids: Vec<String>,
}

/// `POST /v1/push` with `{"ids": [...]}`: no URL length limit.
pub async fn push_body(payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let body = match read_limited(payload, mdm.runtime().settings.body_limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let ids: Vec<String> = match serde_json::from_slice::<IdsBody>(&body) {
        Ok(b) => b.ids.into_iter().filter(|s| !s.is_empty()).collect(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"ids\": [\"<enrollment ID>\", ...]}}: {e}"),
            );
        }
    };
    if ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no enrollment IDs to push to");
    }
    let mut result = ApiResult::default();
    push(&mdm, &ids, &mut result).await;
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

/// `PUT /v1/pushcert[?environment=production|sandbox]`: a PEM
/// certificate and its key; answers the topic. The topic's actor takes
/// the new pair at once; pushes in flight finish on the old connection.
pub async fn put_pushcert(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mdm = match mdm_or_404(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let environment = match super::mdm::url_params(req.query_string())
        .remove("environment")
        .filter(|e| !e.is_empty())
    {
        None => None,
        Some(e) => match Environment::parse(&e) {
            Some(env) => Some(env.as_str().to_owned()),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("environment {e:?} is not production or sandbox"),
                );
            }
        },
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
            let record = StoredPushCert {
                cert_pem,
                key_pem,
                not_after_unix: not_after,
                stale_token,
                environment,
            };
            let mut w = MdmWrite::default();
            w.put_push_cert(&t, &record);
            s.mdm_commit(w)?;
            Ok(record)
        })
        .await;
    match stored {
        Ok(record) => mdm.pushes().cert_stored(&topic, record),
        Err(e) => {
            tracing::error!(error = %e, "storing a push certificate failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the push certificate: {e}"),
            );
        }
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
