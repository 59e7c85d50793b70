//! One log line per request: method, path (without the query), status,
//! duration and the DEP name when the route has one. Never headers or
//! bodies, which carry credentials.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::time::Instant;

pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let result = next.call(req).await;
    let micros = start.elapsed().as_micros() as u64;
    match &result {
        Ok(res) => {
            let name = res.request().match_info().get("name");
            tracing::info!(
                target: "depd::http",
                method = %method,
                path = %path,
                status = res.status().as_u16(),
                duration_us = micros,
                dep_name = name,
                "request"
            );
        }
        Err(e) => {
            let status = e.as_response_error().status_code().as_u16();
            tracing::info!(
                target: "depd::http",
                method = %method,
                path = %path,
                status,
                duration_us = micros,
                "request"
            );
        }
    }
    result
}
