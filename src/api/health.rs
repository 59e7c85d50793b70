//! Unauthenticated endpoints: version, liveness, readiness.

use super::AppState;
use actix_web::{HttpResponse, web};

pub async fn version() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Alive: the HTTP server answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready: storage is open and the actors run; not while shutting down.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_ready() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "not-ready",
            "error": "depd is starting or shutting down",
            "code": "not-ready",
        }))
    }
}
