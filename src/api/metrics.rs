//! `GET /metrics` and the middleware that counts every request by route
//! pattern, method and status.
//!
//! `/metrics` needs no auth, like `/healthz`: Prometheus scrapers rarely
//! carry credentials, and the text holds counts, DEP names, Apple endpoint
//! paths and token expiry in days, never a secret, a serial number or a
//! header. Operators who want it private firewall the port or the path.

use crate::metrics;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

/// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts the request under its matched route pattern, never the raw path:
/// paths carry DEP names and Apple paths, an unbounded set of series.
///
/// The pattern is looked up on the answered request: once routed, actix
/// finds it from the matched resource's position, where before routing it
/// would match the path against the patterns again (regular expressions).
/// Handlers and depd's middlewares answer errors as responses; an `Err`
/// reaching this far has no request left and counts as `unmatched`.
pub async fn request_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let result = next.call(req).await;
    let (route, status) = match &result {
        Ok(res) => (res.request().match_pattern(), res.status()),
        Err(e) => (None, e.as_response_error().status_code()),
    };
    let route = route.as_deref().unwrap_or("unmatched");
    metrics::http_answered(route, method.as_str(), status.as_u16(), started.elapsed());
    result
}

pub async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics::render())
}
