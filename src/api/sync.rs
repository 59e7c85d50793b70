//! The sync extensions: start a cycle (`POST /v1/sync[/{name}]`), forget
//! the cursor (`POST /v1/resync/{name}`), and read the inventory
//! (`GET /v1/devices/{name}`) and the assignment records
//! (`GET /v1/assignments/{name}`).

use super::AppState;
use super::body;
use super::error::ApiError;
use super::names::{actor, mailbox, parse_count, parse_name, reject_unknown_params};
use crate::actors::{
    CycleReport, ListAssignments, ListNames, QueryDevices, Resolve, SyncNow, SyncRefused,
};
use crate::domain::tokens::format_unix;
use crate::store::{DeviceQuery, StoreError, StoredAssignment, StoredDevice};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::join_all;
use serde_json::{Value, json};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn refused(name: &str, e: SyncRefused) -> ApiError {
    match e {
        SyncRefused::NoTokens => ApiError::new(
            StatusCode::CONFLICT,
            "no-tokens",
            format!("DEP name {name:?} has no OAuth tokens, so it cannot sync"),
        ),
        SyncRefused::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the DEP name's actor stopped; retry",
        ),
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal("reading the inventory failed", &e)
}

fn wait_flag(req: &HttpRequest) -> Result<bool, ApiError> {
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["wait"])?;
    body::flag(&pairs, "wait")
}

fn report_json(report: Option<CycleReport>) -> HttpResponse {
    match report {
        Some(r) => HttpResponse::Ok().json(r),
        None => HttpResponse::Accepted().json(json!({ "started": true })),
    }
}

/// `POST /v1/sync/{name}[?wait=1]`
pub async fn sync_one(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    start(req, path, state, false).await
}

/// `POST /v1/resync/{name}[?wait=1]`: forget the cursor, fetch everything.
pub async fn resync(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    start(req, path, state, true).await
}

async fn start(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    resync: bool,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let wait = wait_flag(&req)?;
    let report = actor(&state, &name, false)
        .await?
        .send(SyncNow { resync, wait })
        .await
        .map_err(mailbox)?
        .map_err(|e| refused(name.as_str(), e))?;
    Ok(report_json(report))
}

/// `POST /v1/sync[?wait=1]`: every name with tokens. Names without tokens
/// are listed as skipped.
pub async fn sync_all(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let wait = wait_flag(&req)?;
    let names = state.registry.send(ListNames).await.map_err(mailbox)?;
    let runs = names.into_iter().map(|name| {
        let registry = state.registry.clone();
        async move {
            let outcome = match registry
                .send(Resolve {
                    name: name.clone(),
                    create: false,
                })
                .await
            {
                Ok(Some(addr)) => addr
                    .send(SyncNow {
                        resync: false,
                        wait,
                    })
                    .await
                    .ok(),
                _ => None,
            };
            (name, outcome)
        }
    });
    let mut started = Vec::new();
    let mut skipped = Vec::new();
    let mut reports = Vec::new();
    for (name, outcome) in join_all(runs).await {
        match outcome {
            Some(Ok(Some(report))) => reports.push(report),
            Some(Ok(None)) => started.push(name.as_str().to_owned()),
            _ => skipped.push(name.as_str().to_owned()),
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "started": started,
        "reports": reports,
        "skipped": skipped,
    })))
}

fn assignment_json(serial: &str, a: &StoredAssignment) -> Value {
    json!({
        "serial_number": serial,
        "profile_uuid": a.profile_uuid,
        "result": a.result.as_str(),
        "attempts": a.attempts,
        "failures": a.failures,
        "last_attempt": a.last_attempt_unix.map(format_unix),
        "next_retry": a.next_retry_unix.map(format_unix),
        "gave_up": a.gave_up,
        "rule": a.rule,
    })
}

/// `GET /v1/devices/{name}?serial=&op_type=&profile_status=&profile_uuid=&limit=&offset=`
pub async fn devices(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(
        &pairs,
        &[
            "serial",
            "op_type",
            "profile_status",
            "profile_uuid",
            "limit",
            "offset",
        ],
    )?;
    let text = |key| -> Result<Option<String>, ApiError> {
        Ok(body::single(&pairs, key)?.map(str::to_owned))
    };
    let query = DeviceQuery {
        serial: text("serial")?,
        op_type: text("op_type")?,
        profile_status: text("profile_status")?,
        profile_uuid: text("profile_uuid")?,
        offset: parse_count(&pairs, "offset", 0, super::names::MAX_OFFSET)?,
        limit: parse_count(&pairs, "limit", DEFAULT_PAGE, MAX_PAGE)?,
    };
    let (list, assignments) = actor(&state, &name, false)
        .await?
        .send(QueryDevices(query))
        .await
        .map_err(mailbox)?
        .map_err(store_error)?;
    // The MDM side of each device: the channels that enrolled with its
    // serial number.
    let enrolled = match &state.mdm {
        Some(mdm) => {
            let serials: Vec<String> = list.devices.iter().map(|d| d.serial.clone()).collect();
            mdm.store()
                .blocking(move |s| {
                    serials
                        .into_iter()
                        .map(|serial| Ok((serial.clone(), s.mdm_channels_of_serial(&serial)?)))
                        .collect::<Result<std::collections::HashMap<_, _>, StoreError>>()
                })
                .await
                .map_err(store_error)?
        }
        None => Default::default(),
    };
    let devices: Vec<Value> = list
        .devices
        .iter()
        .map(|d| {
            let mut v = device_json(d, assignments.get(&d.serial));
            if let Some(ids) = enrolled.get(&d.serial).filter(|ids| !ids.is_empty())
                && let Some(depd) = v.get_mut("depd").and_then(Value::as_object_mut)
            {
                depd.insert("mdm".into(), json!({ "enrollment_ids": ids }));
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "total": list.total, "devices": devices })))
}

/// A stored device as the inventory answers it: Apple's object plus depd's
/// fields under `depd`. Apple's text is stored as sent; when it holds a
/// value serde_json cannot represent (a number out of range, a lone
/// surrogate), the text itself is given as `raw`, so nothing is dropped.
fn device_json(d: &StoredDevice, assignment: Option<&StoredAssignment>) -> Value {
    let mut device = match serde_json::from_str::<Value>(&d.json) {
        Ok(Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            map.insert("serial_number".into(), d.serial.clone().into());
            map.insert("raw".into(), d.json.clone().into());
            map
        }
    };
    device.insert(
        "depd".into(),
        json!({
            "first_seen": format_unix(d.first_seen_unix),
            "last_event": format_unix(d.last_event_unix),
            "op_date": d.op_date_unix.map(format_unix),
            "deleted": d.deleted,
            "assignment": assignment.map(|a| assignment_json(&d.serial, a)),
        }),
    );
    Value::Object(device)
}

/// `GET /v1/assignments/{name}?after=SERIAL&limit=N`: assignment records in
/// serial order; `next` is the `after` of the following page.
pub async fn assignments(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["after", "limit"])?;
    let after = body::single(&pairs, "after")?.map(str::to_owned);
    if let Some(serial) = &after {
        let ok = (1..=64).contains(&serial.len())
            && serial
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(ApiError::bad_request(
                "bad-query",
                format!(
                    "after={serial:?} must be a serial number: 1 to 64 letters, digits, '.', '_' or '-'"
                ),
            ));
        }
    }
    let limit = parse_count(&pairs, "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let records = actor(&state, &name, false)
        .await?
        .send(ListAssignments { after, limit })
        .await
        .map_err(mailbox)?
        .map_err(store_error)?;
    let next = (records.len() == limit && limit > 0)
        .then(|| records.last().map(|(s, _)| s.clone()))
        .flatten();
    let items: Vec<Value> = records.iter().map(|(s, a)| assignment_json(s, a)).collect();
    Ok(HttpResponse::Ok().json(json!({ "assignments": items, "next": next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(json: &str) -> StoredDevice {
        StoredDevice {
            serial: "C02X".into(),
            json: json.into(),
            op_type: "added".into(),
            op_date_unix: None,
            profile_status: "empty".into(),
            profile_uuid: String::new(),
            first_seen_unix: 1_700_000_000,
            last_event_unix: 1_700_000_000,
            deleted: false,
        }
    }

    #[test]
    fn devices_answer_with_apples_keys_and_depds_fields() {
        let v = device_json(
            &stored(r#"{"serial_number":"C02X","future":{"a":[1]}}"#),
            None,
        );
        assert_eq!(v["serial_number"], "C02X");
        assert_eq!(v["future"]["a"][0], 1);
        assert_eq!(v["depd"]["first_seen"], "2023-11-14T22:13:20Z");
        assert!(v.get("raw").is_none());
    }

    #[test]
    fn text_serde_json_cannot_hold_is_given_as_sent() {
        for text in [
            r#"{"serial_number":"C02X","big":1e400}"#,
            r#"{"serial_number":"C02X","s":"\ud800"}"#,
        ] {
            let v = device_json(&stored(text), None);
            assert_eq!(v["serial_number"], "C02X");
            assert_eq!(v["raw"], text, "{text}");
            assert!(v["depd"].is_object());
        }
    }
}
