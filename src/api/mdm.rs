//! The device-facing MDM endpoints: `/mdm`, `/checkin` and
//! `/authproxy/…`. Devices never get 401 (Apple clients may drop the
//! enrollment): a bad identity or message is 400, a refused binding or a
//! server fault 500, both with NanoMDM's plain-text bodies.

use super::AppState;
use crate::actors::mdm::Mdm;
use crate::mdm::identity;
use crate::mdm::ids::{EnrollmentId, resolve};
use crate::mdm::message::{self, Checkin, CheckinType};
use crate::mdm::service::{Answer, DeviceRequest, ServiceError};
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const CHECKIN_CONTENT_TYPE: &str = "application/x-apple-aspen-mdm-checkin";

/// A plain-text answer to a device, as NanoMDM's (`Bad Request\n`, …).
pub(crate) fn device_error(status: StatusCode) -> HttpResponse {
    let text = status.canonical_reason().unwrap_or("Error");
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(format!("{text}\n"))
}

/// The MDM service, or 404 when it is off (the routes then do not exist
/// either; this is for a service that failed to start).
fn service(state: &AppState) -> Result<Arc<Mdm>, Box<HttpResponse>> {
    state
        .mdm
        .clone()
        .ok_or_else(|| Box::new(device_error(StatusCode::NOT_FOUND)))
}

/// Reads a body up to `limit` bytes; 413 beyond.
pub(crate) async fn read_limited(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, Box<HttpResponse>> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Box::new(device_error(StatusCode::BAD_REQUEST)))?;
        if body.len() + chunk.len() > limit {
            return Err(Box::new(device_error(StatusCode::PAYLOAD_TOO_LARGE)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The query parameters of the device's URL, first value per key.
pub(crate) fn url_params(query: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in super::body::query_pairs(query).unwrap_or_default() {
        out.entry(k).or_insert(v);
    }
    out
}

/// A random 16-hex-digit trace ID (webhook `event_id`, logs).
pub(crate) fn trace_id() -> String {
    let mut b = [0u8; 8];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        return String::new();
    }
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request's identity certificate, checked, and its hash.
pub(crate) fn identity_of(
    req: &HttpRequest,
    body: &[u8],
    mdm: &Mdm,
) -> Result<(String, openssl::x509::X509), Box<HttpResponse>> {
    let rt = mdm.runtime();
    let bad = |why: String| {
        tracing::info!(reason = %why, "MDM request refused: device identity");
        Box::new(device_error(StatusCode::BAD_REQUEST))
    };
    let cert = if rt.settings.cert_header.is_empty() {
        let header = req
            .headers()
            .get("Mdm-Signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad("no Mdm-Signature header".into()))?;
        identity::from_signature(header, body).map_err(|e| bad(e.to_string()))?
    } else {
        req.headers()
            .get(rt.settings.cert_header.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(identity::from_header)
            .ok_or_else(|| {
                bad(format!(
                    "no usable certificate in {}",
                    rt.settings.cert_header
                ))
            })?
    };
    rt.verifier.verify(&cert).map_err(|e| bad(e.to_string()))?;
    let hash = identity::cert_hash(&cert).map_err(|e| bad(e.to_string()))?;
    Ok((hash, cert))
}

/// Which handler a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Checkin,
    Report,
}

/// `/mdm`: reports, and check-ins unless `/checkin` serves them.
pub async fn mdm(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let kind = match state.mdm.as_ref() {
        Some(m) if m.checkin_endpoint => Kind::Report,
        _ => {
            let ct = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ct.starts_with(CHECKIN_CONTENT_TYPE) {
                Kind::Checkin
            } else {
                Kind::Report
            }
        }
    };
    handle(req, payload, state, kind).await
}

/// `/checkin` (with `checkin_endpoint`): check-ins only.
pub async fn checkin(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !state.mdm.as_ref().is_some_and(|m| m.checkin_endpoint) {
        return device_error(StatusCode::NOT_FOUND);
    }
    handle(req, payload, state, Kind::Checkin).await
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    kind: Kind,
) -> HttpResponse {
    let mdm = match service(&state) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let limit = mdm.runtime().settings.body_limit;
    let body = match read_limited(payload, limit).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (hash, cert) = match identity_of(&req, &body, &mdm) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let dreq = DeviceRequest {
        body,
        cert_hash: Some(hash),
        identity: Some(cert),
        url_params: url_params(req.query_string()),
        event_id: trace_id(),
        now: state.clock.now(),
    };
    match kind {
        Kind::Checkin => run_checkin(&state, &mdm, dreq).await,
        Kind::Report => run_report(&mdm, dreq).await,
    }
}

fn bad_message(e: impl std::fmt::Display) -> HttpResponse {
    tracing::info!(reason = %e, "MDM request refused: message");
    device_error(StatusCode::BAD_REQUEST)
}

fn answer(a: Answer) -> HttpResponse {
    match a {
        Answer::Empty | Answer::Forward => HttpResponse::Ok().finish(),
        Answer::Plist(body) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/xml"))
            .body(body),
        Answer::Gone => device_error(StatusCode::GONE),
    }
}

fn failed(e: &ServiceError, id: &EnrollmentId) -> HttpResponse {
    match e {
        ServiceError::BadRequest(m) => bad_message(m),
        ServiceError::Refused(r) => {
            tracing::warn!(enrollment_id = %id.id, reason = %r, "MDM request refused: certificate authorisation");
            device_error(StatusCode::INTERNAL_SERVER_ERROR)
        }
        ServiceError::Store(s) => {
            tracing::error!(enrollment_id = %id.id, error = %s, "MDM request failed: storage");
            device_error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// A check-in through the core service, then DM or `GetToken` when the
/// service says the answer comes from elsewhere. Also `/migration`'s path.
pub(crate) async fn run_checkin(state: &AppState, mdm: &Mdm, dreq: DeviceRequest) -> HttpResponse {
    let m = match message::parse_checkin(&dreq.body) {
        Ok(m) => m,
        Err(e) => return counted("Unknown", bad_message(e)),
    };
    let kind = m.kind();
    let id = match resolve(&m.ident) {
        Ok(id) => id,
        Err(e) => return counted(kind.as_str(), bad_message(e)),
    };
    let resp = match mdm.checkin(dreq, m.clone(), id.clone()).await {
        Ok(Answer::Forward) => match kind {
            CheckinType::DeclarativeManagement => super::mdm_dm::forward(mdm, &m, &id).await,
            CheckinType::GetToken => get_token(state, mdm, &m, &id).await,
            _ => HttpResponse::Ok().finish(),
        },
        Ok(a) => answer(a),
        Err(e) => failed(&e, &id),
    };
    counted(kind.as_str(), resp)
}

async fn run_report(mdm: &Mdm, dreq: DeviceRequest) -> HttpResponse {
    let r = match message::parse_report(&dreq.body) {
        Ok(r) => r,
        Err(e) => return counted("Report", bad_message(e)),
    };
    let id = match resolve(&r.ident) {
        Ok(id) => id,
        Err(e) => return counted("Report", bad_message(e)),
    };
    let resp = match mdm.report(dreq, r, id.clone()).await {
        Ok(a) => answer(a),
        Err(e) => failed(&e, &id),
    };
    counted("Report", resp)
}

fn counted(message: &'static str, resp: HttpResponse) -> HttpResponse {
    crate::metrics::mdm_message(message, resp.status().as_u16());
    resp
}

/// `GetToken`: for `com.apple.maid`, the MAID JWT of the DEP name that
/// synced this device (by serial number), else of the configured default
/// name. Other token services are unknown (400).
async fn get_token(state: &AppState, mdm: &Mdm, m: &Checkin, id: &EnrollmentId) -> HttpResponse {
    if m.token_service_type != "com.apple.maid" {
        return bad_message(format!(
            "GetToken: unknown TokenServiceType {:?}",
            m.token_service_type
        ));
    }
    let d = id.device_channel().to_owned();
    let store = mdm.store().clone();
    let serial = store
        .blocking(move |s| s.mdm_device(&d))
        .await
        .ok()
        .flatten()
        .map(|dev| dev.serial_number)
        .unwrap_or_default();
    let synced = super::mdm_inspect::dep_names_of_serial(state, &serial).await;
    let name = match synced.into_iter().next() {
        Some(n) => Some(n),
        None => {
            let default = mdm.runtime().settings.maid_default_dep_name.clone();
            crate::domain::name::DepName::parse(&default).ok()
        }
    };
    let Some(name) = name else {
        tracing::warn!(enrollment_id = %id.id, "GetToken: no DEP name synced this device's serial and mdm.maid_default_dep_name is not set");
        return device_error(StatusCode::INTERNAL_SERVER_ERROR);
    };
    match super::pki::maid_jwt(state, &name, None).await {
        Ok((token, _, _)) => {
            match message::answer_plist("TokenData", plist::Value::Data(token.into_bytes())) {
                Ok(body) => HttpResponse::Ok()
                    .insert_header((CONTENT_TYPE, "application/xml"))
                    .body(body),
                Err(_) => device_error(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
        Err(e) => {
            tracing::warn!(enrollment_id = %id.id, dep_name = %name, error = %e, "GetToken: no MAID JWT");
            device_error(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}
