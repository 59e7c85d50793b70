//! NanoMDM's management API: `/v1/enqueue/{ids}` and `/migration`, and
//! the answer shapes shared with push (`mdm_push.rs`): NanoMDM's answer
//! shapes (tab-indented JSON, NanoMDM's keys and status codes). Bad input
//! is a 4xx with the same keys where NanoMDM answers 500.

use super::AppState;
use super::mdm::{read_limited, run_checkin, trace_id};
use crate::mdm::message;
use crate::mdm::service::DeviceRequest;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use std::collections::BTreeMap;

/// NanoMDM's API answer JSON: tab-indented, with a trailing newline.
pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
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

pub(super) fn error(status: StatusCode, text: impl Into<String>) -> HttpResponse {
    json(status, &serde_json::json!({ "error": text.into() }))
}

pub(super) fn mdm_or_404(
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
pub(super) struct IdResult {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) push_result: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) push_error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) command_error: String,
}

/// The API result (§9.5); every key left out when empty. `pending` is
/// depd's: the IDs whose pushes were still in flight at the deadline.
#[derive(Debug, Default, Serialize)]
pub(super) struct ApiResult {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) status: BTreeMap<String, IdResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) pending: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_push: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) push_error: String,
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
    pub(super) fn status_code(&self, ids: usize) -> StatusCode {
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
pub(super) fn ids_of(raw: &str) -> Result<Vec<String>, Box<HttpResponse>> {
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
    if let Err(r) = super::mdm_push::url_within_limit(&req) {
        return *r;
    }
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
        super::mdm_push::push(&mdm, &ids, &mut result).await;
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
                super::mdm_push::push(&mdm, &ok, &mut result).await;
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
