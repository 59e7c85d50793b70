//! `GET/PUT /v1/rules/{name}` and `POST /v1/rules/{name}/preview`: a DEP
//! name's assignment rules (`sync::rules`), through its actor.

use super::AppState;
use super::body;
use super::error::ApiError;
use super::names::{actor, mailbox, parse_name};
use crate::actors::{GetRules, PreviewRules, PutRules, RulesError};
use crate::sync::persist::Preview;
use crate::sync::rules::RuleSet;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// Largest rules body: 50 rules with long serial lists fit.
const RULES_BODY_LIMIT: usize = 4 << 20;

fn rules_error(e: RulesError) -> ApiError {
    match e {
        RulesError::Invalid(e) => ApiError::bad_request("invalid-rules", e.to_string()),
        RulesError::Op(e) => ApiError::internal("storing the rules failed", &e),
        RulesError::Store(e) => ApiError::internal("reading the inventory failed", &e),
    }
}

async fn read_set(req: &HttpRequest, payload: web::Payload) -> Result<RuleSet, ApiError> {
    let bytes = body::read(req, payload, RULES_BODY_LIMIT).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid-rules",
            format!("the body is not a rule set ({{\"rules\": [...], \"pins\": {{...}}, \"exclude\": [...]}}): {e}"),
        )
    })
}

/// `GET /v1/rules/{name}`: the stored rules (empty when none).
pub async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let stored = actor(&state, &name, false)
        .await?
        .send(GetRules)
        .await
        .map_err(mailbox)?;
    let set: RuleSet = match stored {
        Some(s) => serde_json::from_str(&s.json)
            .map_err(|e| ApiError::internal("the stored rules do not read", &e))?,
        None => RuleSet::default(),
    };
    Ok(HttpResponse::Ok().json(set))
}

/// `PUT /v1/rules/{name}`: replaces the list atomically; 400
/// `invalid-rules` naming the rule at fault, with nothing changed.
pub async fn put(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let set = read_set(&req, payload).await?;
    let stored = actor(&state, &name, true)
        .await?
        .send(PutRules(set))
        .await
        .map_err(mailbox)?
        .map_err(rules_error)?;
    Ok(HttpResponse::Ok().json(stored))
}

/// `POST /v1/rules/{name}/preview`: what a candidate list would choose
/// and move, changing nothing.
pub async fn preview(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let set = read_set(&req, payload).await?;
    let p = actor(&state, &name, false)
        .await?
        .send(PreviewRules(set))
        .await
        .map_err(mailbox)?
        .map_err(rules_error)?;
    Ok(HttpResponse::Ok().json(preview_json(&p)))
}

fn preview_json(p: &Preview) -> serde_json::Value {
    json!({
        "rules": p.rules.iter().map(|(name, devices, sample)| json!({
            "name": name, "devices": devices, "sample": sample,
        })).collect::<Vec<_>>(),
        "moves": p.changes.moves.iter().map(|((from, to), n)| json!({
            "from": from, "to": to, "devices": n,
        })).collect::<Vec<_>>(),
        "unmatched": p.unmatched,
        "shadowed": p.shadowed,
        "pinned": p.pinned,
        "excluded": p.excluded,
        "assigner": p.assigner,
        "unchosen": p.unmatched_devices,
        "queued": p.changes.queued,
        "cancelled": p.changes.cancelled,
    })
}
