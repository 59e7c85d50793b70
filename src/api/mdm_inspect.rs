//! Inspecting the MDM service (depd's extensions; NanoMDM has none):
//! `GET /v1/enrollments`, `GET /v1/enrollments/{id}`,
//! `GET /v1/enrollments/{id}/commands`, `DELETE /v1/enrollments/{id}/queue`.
//! JSON in depd's conventions (errors with `code`, `limit`/`offset`).

use super::AppState;
use super::body;
use super::error::ApiError;
use super::names::{parse_count, reject_unknown_params};
use crate::domain::tokens::format_unix;
use crate::mdm::ids::EnrollType;
use crate::store::StoreError;
use crate::store::mdm::{EnrollmentQuery, StoredEnrollment, StoredInvalidToken, StoredMdmDevice};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn mdm(state: &AppState) -> Result<Arc<crate::actors::mdm::Mdm>, ApiError> {
    state.mdm.clone().ok_or_else(|| {
        ApiError::not_found(
            "mdm-disabled",
            "the MDM service is not enabled ([mdm] enabled)",
        )
    })
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal("reading the MDM store failed", &e)
}

fn time_param(pairs: &[(String, String)], key: &'static str) -> Result<Option<i64>, ApiError> {
    body::single(pairs, key)?
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map(OffsetDateTime::unix_timestamp)
                .map_err(|_| {
                    ApiError::bad_request(
                        "bad-query",
                        format!("{key}: {v:?} is not an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// An enrollment as the API shows it; `invalid`: APNs refused its
/// current push token (no pushes until its next `TokenUpdate`).
fn enrollment_json(
    id: &str,
    e: &StoredEnrollment,
    invalid: Option<&StoredInvalidToken>,
    now: i64,
) -> Value {
    let kind = EnrollType::from_code(e.kind);
    json!({
        "id": id,
        "type": kind.map(EnrollType::as_str),
        "parent_id": kind.filter(|k| k.is_user_channel()).map(|_| e.device_id.as_str()),
        "device_id": e.device_id,
        "user_id": e.user_id,
        "topic": e.topic,
        "enabled": e.enabled,
        "token_update_tally": e.token_update_tally,
        "last_seen": format_unix(e.last_seen_unix),
        "last_seen_secs_ago": (now - e.last_seen_unix).max(0),
        "enrolled_at": e.enrolled_unix.map(format_unix),
        "push_token_present": !e.token_hex.is_empty(),
        "push_token_invalid": invalid.map(|r| json!({
            "reason": r.reason,
            "since": format_unix(r.at_unix),
        })),
    })
}

/// `GET /v1/enrollments[?type=&enabled=&topic=&seen_since=&seen_before=&limit=&offset=]`
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mdm = mdm(&state)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(
        &pairs,
        &[
            "type",
            "enabled",
            "topic",
            "seen_since",
            "seen_before",
            "limit",
            "offset",
        ],
    )?;
    let kind = body::single(&pairs, "type")?
        .map(|t| {
            EnrollType::parse(t).map(EnrollType::code).ok_or_else(|| {
                ApiError::bad_request(
                    "bad-query",
                    format!("type: {t:?} is not one of Device, User, User Enrollment (Device), User Enrollment, Shared iPad"),
                )
            })
        })
        .transpose()?;
    let enabled = match body::single(&pairs, "enabled")? {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(v) => {
            return Err(ApiError::bad_request(
                "bad-query",
                format!("enabled: {v:?} is not true or false"),
            ));
        }
    };
    let q = EnrollmentQuery {
        kind,
        enabled,
        topic: body::single(&pairs, "topic")?.map(str::to_owned),
        seen_since: time_param(&pairs, "seen_since")?,
        seen_before: time_param(&pairs, "seen_before")?,
        offset: parse_count(&pairs, "offset", 0, super::names::MAX_OFFSET)?,
        limit: parse_count(&pairs, "limit", DEFAULT_PAGE, MAX_PAGE)?,
    };
    let now = state.clock.now().unix_timestamp();
    let (total, page) = mdm
        .store()
        .blocking(move |s| {
            let (total, page) = s.mdm_enrollments(&q)?;
            let mut out = Vec::with_capacity(page.len());
            for (id, e) in page {
                let invalid = s.mdm_invalid_token(&id, &e.token_hex)?;
                out.push((id, e, invalid));
            }
            Ok((total, out))
        })
        .await
        .map_err(store_error)?;
    let list: Vec<Value> = page
        .iter()
        .map(|(id, e, invalid)| enrollment_json(id, e, invalid.as_ref(), now))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "total": total, "enrollments": list })))
}

fn identity_json(dev: &StoredMdmDevice) -> Value {
    let Some(cert) = dev
        .identity_pem
        .as_deref()
        .and_then(|p| openssl::x509::X509::from_pem(p.as_bytes()).ok())
    else {
        return Value::Null;
    };
    let subject: Vec<String> = cert
        .subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            Some(format!("{key}={}", e.data().to_string().ok()?))
        })
        .collect();
    let hash = crate::mdm::identity::cert_hash(&cert).unwrap_or_default();
    json!({
        "subject": subject.join(", "),
        "not_after": cert.not_after().to_string(),
        "sha256": hash,
    })
}

/// `GET /v1/enrollments/{id}`: the enrollment, its device's record
/// (identity, serial, tokens present), its queue length and the DEP names
/// whose inventory holds its serial number.
pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mdm = mdm(&state)?;
    let id = path.into_inner();
    let d = crate::mdm::ids::device_channel_of(&id).to_owned();
    let (i, dd) = (id.clone(), d.clone());
    let (enrollment, invalid, device, user, queue) = mdm
        .store()
        .blocking(move |s| {
            let e = s.mdm_enrollment(&i)?;
            let invalid = match &e {
                Some(e) => s.mdm_invalid_token(&i, &e.token_hex)?,
                None => None,
            };
            Ok((
                e,
                invalid,
                s.mdm_device(&dd)?,
                s.mdm_user(&i)?,
                s.mdm_queue(&i)?.len(),
            ))
        })
        .await
        .map_err(store_error)?;
    if enrollment.is_none() && device.is_none() {
        return Err(ApiError::not_found(
            "unknown-enrollment",
            format!("no enrollment or device channel {id:?}"),
        ));
    }
    let now = state.clock.now().unix_timestamp();
    let mut out = match &enrollment {
        Some(e) => enrollment_json(&id, e, invalid.as_ref(), now),
        None => json!({ "id": id, "enabled": false, "enrolled_at": null }),
    };
    let serial = device
        .as_ref()
        .map(|dev| dev.serial_number.clone())
        .unwrap_or_default();
    if let (Value::Object(map), Some(dev)) = (&mut out, &device) {
        map.insert(
            "device".into(),
            json!({
                "serial_number": dev.serial_number,
                "identity": identity_json(dev),
                "authenticated_at": format_unix(dev.authenticate_unix),
                "token_updated_at": dev.token_update_unix.map(format_unix),
                "bootstrap_token_present": dev.bootstrap_token.is_some(),
                "unlock_token_present": dev.unlock_token.is_some(),
            }),
        );
    }
    if let (Value::Object(map), Some(u)) = (&mut out, &user) {
        map.insert(
            "user".into(),
            json!({ "short_name": u.user_short_name, "long_name": u.user_long_name }),
        );
    }
    let dep = dep_names_of_serial(&state, &serial).await;
    if let Value::Object(map) = &mut out {
        map.insert("queue_length".into(), json!(queue));
        map.insert(
            "dep".into(),
            json!(
                dep.iter()
                    .map(|n| json!({ "dep_name": n.as_str(), "serial_number": serial }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    Ok(HttpResponse::Ok().json(out))
}

/// The DEP names whose inventory holds `serial`.
pub(crate) async fn dep_names_of_serial(
    state: &AppState,
    serial: &str,
) -> Vec<crate::domain::name::DepName> {
    if serial.is_empty() {
        return Vec::new();
    }
    let Ok(names) = state.registry.send(crate::actors::ListNames).await else {
        return Vec::new();
    };
    let Some(store) = state.mdm.as_ref().map(|m| m.store().clone()) else {
        return Vec::new();
    };
    let serial = serial.to_owned();
    store
        .blocking(move |s| {
            let mut out = Vec::new();
            for name in names {
                if s.device(&name, &serial)?.is_some_and(|d| !d.deleted) {
                    out.push(name);
                }
            }
            Ok(out)
        })
        .await
        .unwrap_or_default()
}

/// `GET /v1/enrollments/{id}/commands[?raw=1]`: the outstanding queue, in
/// order, and the latest result of every command the channel reported.
pub async fn commands(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mdm = mdm(&state)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["raw"])?;
    let raw = body::flag(&pairs, "raw")?;
    let id = path.into_inner();
    let i = id.clone();
    let (known, queue, results) = mdm
        .store()
        .blocking(move |s| {
            let queue = s.mdm_queue(&i)?;
            let mut rows = Vec::with_capacity(queue.len());
            for (seq, entry) in queue {
                let cmd = s.mdm_command(&entry.command_uuid)?;
                let result = s.mdm_result(&i, &entry.command_uuid)?;
                rows.push((seq, entry, cmd, result));
            }
            let mut results = Vec::new();
            for (uuid, r) in s.mdm_results(&i)? {
                let cmd = s.mdm_command(&uuid)?;
                results.push((uuid, r, cmd));
            }
            let known = s.mdm_enrollment(&i)?.is_some()
                || s.mdm_device(crate::mdm::ids::device_channel_of(&i))?
                    .is_some();
            Ok((known, rows, results))
        })
        .await
        .map_err(store_error)?;
    if !known {
        return Err(ApiError::not_found(
            "unknown-enrollment",
            format!("no enrollment {id:?}"),
        ));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let queue: Vec<Value> = queue
        .iter()
        .map(|(seq, entry, cmd, result)| {
            let mut v = json!({
                "command_uuid": entry.command_uuid,
                "request_type": cmd.as_ref().map(|c| c.request_type.as_str()),
                "queued_at": format_unix(entry.created_unix),
                "position": seq,
                "status": result.as_ref().map_or("queued", |r| r.status.as_str()),
            });
            if raw && let (Value::Object(m), Some(c)) = (&mut v, cmd) {
                m.insert("command".into(), json!(text(&c.raw)));
            }
            v
        })
        .collect();
    let results: Vec<Value> = results
        .iter()
        .map(|(uuid, r, cmd)| {
            let mut v = json!({
                "command_uuid": uuid,
                "request_type": cmd.as_ref().map(|c| c.request_type.as_str()),
                "status": r.status,
                "updated_at": format_unix(r.updated_unix),
                "not_now_count": r.not_now_count,
            });
            if raw && let Value::Object(m) = &mut v {
                m.insert("result".into(), json!(text(&r.raw)));
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "id": id, "queue": queue, "results": results })))
}

/// `DELETE /v1/enrollments/{id}/queue`: drops the outstanding commands
/// (results stay), through the channel's owner.
pub async fn clear_queue(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mdm = mdm(&state)?;
    let id = path.into_inner();
    match mdm.clear_queue(&id).await {
        Ok(Some(n)) => Ok(HttpResponse::Ok().json(json!({ "id": id, "removed": n }))),
        Ok(None) => Err(ApiError::not_found(
            "unknown-enrollment",
            format!("no enrollment {id:?}"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}
