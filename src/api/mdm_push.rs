//! Push: `/v1/push/{ids}`, `POST /v1/push` with the IDs in a JSON body,
//! the push part of `/v1/enqueue`, and the push certificates
//! (`/v1/pushcert`). Answers keep NanoMDM's shape, with depd's `pending`.

use super::AppState;
use super::mdm::read_limited;
use super::mdm_api::{ApiResult, error, ids_of, json, mdm_or_404};
use crate::actors::mdm::Mdm;
use crate::actors::push::IdOutcome;
use crate::apns::wire::Environment;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
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
        Ok(b) if b.ids.iter().any(String::is_empty) => {
            return error(StatusCode::BAD_REQUEST, "an enrollment ID is empty");
        }
        Ok(b) => b.ids,
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

fn rfc3339(unix: i64) -> String {
    crate::domain::tokens::format_unix(unix)
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
    let pair = match crate::apns::cert::parse_pair(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (topic, not_after) = (pair.topic.clone(), pair.not_after_unix);
    if let Err(e) = mdm.pushes().store_cert(pair, environment).await {
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
