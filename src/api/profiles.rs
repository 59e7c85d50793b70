//! Managed enrollment profiles: `GET /v1/profiles/{name}` and
//! `GET/PUT/DELETE /v1/profiles/{name}/{profile}`. depd defines each
//! version at Apple through the name's session and keeps the UUIDs.

use super::AppState;
use super::body;
use super::error::ApiError;
use super::names::{actor, mailbox, parse_name};
use crate::actors::{DefineProfile, DeleteProfile, GetProfiles, ProfileOpError};
use crate::sync::profiles::{self, ManagedProfile};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

/// Largest profile definition (Apple's profiles are a few KB).
const PROFILE_BODY_LIMIT: usize = 256 * 1024;

fn profile_json(name: &str, p: &ManagedProfile) -> serde_json::Value {
    json!({
        "name": name,
        "profile_uuid": p.profile_uuid,
        "definition": p.definition,
        "history": p.history,
    })
}

fn op_error(e: ProfileOpError) -> ApiError {
    match e {
        ProfileOpError::Apple(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "apple-error",
            format!("defining the profile at Apple: {e}"),
        ),
        ProfileOpError::InUse(_) => {
            ApiError::new(StatusCode::CONFLICT, "profile-in-use", e.to_string())
        }
        ProfileOpError::TooMany => {
            ApiError::new(StatusCode::CONFLICT, "too-many-profiles", e.to_string())
        }
        ProfileOpError::Store(e) => ApiError::internal("storing the profile failed", &e),
        ProfileOpError::Stopped => ApiError::internal("the name's actor stopped", &e),
    }
}

fn local_name(raw: &str) -> Result<String, ApiError> {
    profiles::check_local_name(raw)
        .map_err(|e| ApiError::bad_request("invalid-profile-name", e.to_string()))?;
    Ok(raw.to_owned())
}

/// The DEP name and the managed profile's local name of a path.
fn names_of(
    path: web::Path<(String, String)>,
) -> Result<(crate::domain::name::DepName, String), ApiError> {
    let (name, profile) = path.into_inner();
    Ok((parse_name(&name)?, local_name(&profile)?))
}

/// `GET /v1/profiles/{name}`: every managed profile, its current UUID
/// and when that version was defined.
pub async fn list(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let all = actor(&state, &name, false)
        .await?
        .send(GetProfiles)
        .await
        .map_err(mailbox)?;
    let list: Vec<_> = all
        .iter()
        .map(|(n, p)| {
            json!({
                "name": n,
                "profile_uuid": p.profile_uuid,
                "defined_at": p.history.last().map(|v| v.defined_at.clone()),
                "versions": p.history.len(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "profiles": list })))
}

/// `GET /v1/profiles/{name}/{profile}`.
pub async fn get(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, profile) = names_of(path)?;
    let all = actor(&state, &name, false)
        .await?
        .send(GetProfiles)
        .await
        .map_err(mailbox)?;
    let p = all.get(&profile).ok_or_else(|| {
        ApiError::not_found("unknown-profile", format!("no managed profile {profile:?}"))
    })?;
    Ok(HttpResponse::Ok().json(profile_json(&profile, p)))
}

/// `PUT /v1/profiles/{name}/{profile}`: Apple's profile JSON; answers once
/// Apple defined it. An unchanged definition is not defined again.
pub async fn put(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, profile) = names_of(path)?;
    let bytes = body::read(&req, payload, PROFILE_BODY_LIMIT).await?;
    let definition = profiles::check_definition(&bytes)
        .map_err(|e| ApiError::bad_request("invalid-profile", e.to_string()))?;
    let p = actor(&state, &name, false)
        .await?
        .send(DefineProfile {
            local: profile.clone(),
            definition,
        })
        .await
        .map_err(mailbox)?
        .map_err(op_error)?;
    Ok(HttpResponse::Ok().json(profile_json(&profile, &p)))
}

/// `DELETE /v1/profiles/{name}/{profile}`: forgets it (Apple keeps its
/// profiles); 409 `profile-in-use` while a rule or pin names it.
pub async fn delete(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, profile) = names_of(path)?;
    let existed = actor(&state, &name, false)
        .await?
        .send(DeleteProfile(profile.clone()))
        .await
        .map_err(mailbox)?
        .map_err(op_error)?;
    if !existed {
        return Err(ApiError::not_found(
            "unknown-profile",
            format!("no managed profile {profile:?}"),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({ "name": profile, "deleted": true })))
}
