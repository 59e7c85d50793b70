//! The NanoDEP-compatible configuration API: DEP names, OAuth tokens, base
//! URL and assigner profile.

use super::AppState;
use super::body::{self, JSON_BODY_LIMIT};
use super::error::ApiError;
use crate::actors::{
    DepNameActor, GetAssigner, GetConfig, GetTokens, ListNames, NameOpError, PutAssigner,
    PutConfig, PutTokens, Resolve,
};
use crate::domain::name::DepName;
use crate::domain::state::RuleError;
use crate::domain::tokens;
use crate::settings::validate_base_url;
use crate::store::StoredAssigner;
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

/// Largest `limit` accepted by `GET /v1/dep_names`.
const MAX_LIST_LIMIT: usize = 1000;
const DEFAULT_LIST_LIMIT: usize = 100;

pub(super) fn parse_name(raw: &str) -> Result<DepName, ApiError> {
    DepName::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid-dep-name", format!("invalid DEP name: {e}")))
}

pub(super) fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::internal("an actor did not answer", &e)
}

fn name_op(e: NameOpError) -> ApiError {
    match e {
        NameOpError::Rule(rule @ RuleError::ConsumerKeyMismatch { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "consumer-key-mismatch",
            rule.to_string(),
        ),
        NameOpError::Store(e) => ApiError::internal("storing the change failed", &e),
    }
}

/// The actor of a name; `create` starts one for a name not seen before
/// (used by writes, after their input has been validated).
pub(super) async fn actor(
    state: &AppState,
    name: &DepName,
    create: bool,
) -> Result<Addr<DepNameActor>, ApiError> {
    if create {
        return state
            .registry
            .send(crate::actors::Create(name.clone()))
            .await
            .map_err(mailbox)?
            .map_err(|full| {
                ApiError::new(
                    actix_web::http::StatusCode::CONFLICT,
                    "too-many-dep-names",
                    format!(
                        "depd holds {} DEP names, its max_dep_names: remove one or raise the limit",
                        full.max
                    ),
                )
            });
    }
    state
        .registry
        .send(Resolve {
            name: name.clone(),
            create,
        })
        .await
        .map_err(mailbox)?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown-dep-name",
                format!("unknown DEP name {:?}", name.as_str()),
            )
        })
}

pub(super) fn reject_unknown_params(
    pairs: &[(String, String)],
    known: &[&str],
) -> Result<(), ApiError> {
    match pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(ApiError::bad_request(
            "bad-query",
            format!(
                "unknown query parameter {k:?} (accepted: {})",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The largest `offset`: the largest integer every JSON client holds
/// exactly (2^53 - 1), as the API document states.
pub(super) const MAX_OFFSET: usize = 9_007_199_254_740_991;

pub(super) fn parse_count(
    pairs: &[(String, String)],
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match body::single(pairs, key)? {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::bad_request(
                "bad-query",
                format!("{key}={text:?} must be a whole number from 0 to {max}"),
            )),
        },
    }
}

/// `GET /v1/dep_names?dep_name=..&limit=..&offset=..`: every known name,
/// sorted, optionally only the given ones; stable pagination over the
/// sorted list.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["dep_name", "limit", "offset"])?;
    let limit = parse_count(&pairs, "limit", DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let offset = parse_count(&pairs, "offset", 0, MAX_OFFSET)?;
    let wanted = pairs
        .iter()
        .filter(|(k, _)| k == "dep_name")
        .map(|(_, v)| parse_name(v))
        .collect::<Result<Vec<_>, _>>()?;
    let names = state.registry.send(ListNames).await.map_err(mailbox)?;
    let page: Vec<&str> = names
        .iter()
        .filter(|n| wanted.is_empty() || wanted.contains(n))
        .skip(offset)
        .take(limit)
        .map(DepName::as_str)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "dep_names": page })))
}

pub async fn get_tokens(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let tokens = actor(&state, &name, false)
        .await?
        .send(GetTokens)
        .await
        .map_err(mailbox)?
        .ok_or_else(|| {
            ApiError::not_found(
                "no-tokens",
                format!(
                    "no OAuth tokens are stored for DEP name {:?}",
                    name.as_str()
                ),
            )
        })?;
    Ok(HttpResponse::Ok().json(tokens::to_json(&tokens)))
}

/// `PUT /v1/tokens/{name}[?force=1]` with the token JSON.
pub async fn put_tokens(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["force"])?;
    let force = body::flag(&pairs, "force")?;
    let body = body::read(&req, payload, JSON_BODY_LIMIT).await?;
    let parsed =
        tokens::parse(&body).map_err(|e| ApiError::bad_request("invalid-tokens", e.to_string()))?;
    let stored = actor(&state, &name, true)
        .await?
        .send(PutTokens {
            tokens: parsed,
            force,
        })
        .await
        .map_err(mailbox)?
        .map_err(name_op)?;
    Ok(HttpResponse::Ok().json(tokens::to_json(&stored)))
}

pub async fn get_config(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let base_url = actor(&state, &name, false)
        .await?
        .send(GetConfig)
        .await
        .map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "base_url": base_url })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    #[serde(default)]
    base_url: String,
}

/// `PUT /v1/config/{name}` with `{"base_url": "..."}`; an empty URL goes
/// back to the configured default.
pub async fn put_config(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let body = body::read(&req, payload, JSON_BODY_LIMIT).await?;
    // serde would also take the fields as an array, in order.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid-json",
            "invalid config JSON: expected an object",
        ));
    }
    let config: ConfigBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid-json", format!("invalid config JSON: {e}")))?;
    let base_url = config.base_url.trim().to_owned();
    if !base_url.is_empty() {
        validate_base_url(&base_url)
            .map_err(|m| ApiError::bad_request("invalid-base-url", format!("base_url: {m}")))?;
        // The host must be listed, and so must every internal address it
        // resolves to: a name pointing at a metadata service or a private
        // network is refused here, before anything is stored.
        let allow = state.settings().apple.allow.clone();
        allow
            .check_resolved(&base_url)
            .await
            .map_err(|r| ApiError::bad_request("upstream-not-allowed", format!("base_url: {r}")))?;
    }
    let effective = actor(&state, &name, true)
        .await?
        .send(PutConfig { base_url })
        .await
        .map_err(mailbox)?
        .map_err(name_op)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "base_url": effective })))
}

fn assigner_json(a: &StoredAssigner) -> serde_json::Value {
    serde_json::json!({
        "profile_uuid": a.profile_uuid,
        "modified_at": tokens::format_unix(a.modified_unix),
    })
}

pub async fn get_assigner(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let assigner = actor(&state, &name, false)
        .await?
        .send(GetAssigner)
        .await
        .map_err(mailbox)?
        .ok_or_else(|| {
            ApiError::not_found(
                "no-assigner",
                format!(
                    "no assigner profile is set for DEP name {:?}",
                    name.as_str()
                ),
            )
        })?;
    Ok(HttpResponse::Ok().json(assigner_json(&assigner)))
}

/// Checks a profile UUID's shape: Apple's are 32 hex digits, some tools
/// write them with dashes; anything else is refused before it is stored.
fn validate_profile_uuid(raw: &str) -> Result<(), ApiError> {
    let ok =
        (1..=64).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid-profile-uuid",
            format!("profile_uuid {raw:?} must be 1 to 64 letters, digits or dashes"),
        ))
    }
}

/// `PUT /v1/assigner/{name}?profile_uuid=...`
pub async fn put_assigner(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["profile_uuid"])?;
    let uuid = body::single(&pairs, "profile_uuid")?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing-profile-uuid",
                "query parameter profile_uuid is required",
            )
        })?
        .to_owned();
    validate_profile_uuid(&uuid)?;
    let assigner = actor(&state, &name, true)
        .await?
        .send(PutAssigner { profile_uuid: uuid })
        .await
        .map_err(mailbox)?
        .map_err(name_op)?;
    match assigner {
        Some(a) => Ok(HttpResponse::Ok().json(assigner_json(&a))),
        None => Err(ApiError::internal(
            "the assigner profile was not recorded",
            &std::io::Error::other("no assigner after a successful write"),
        )),
    }
}
