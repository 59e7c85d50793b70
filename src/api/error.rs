//! The one HTTP-facing error: a status, a stable kebab-case code and a
//! human message, answered as `{"error": ..., "code": ...}`. Internal
//! causes go to the log with their whole chain; the client gets a message
//! that helps without leaking internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More members of the error body (e.g. Apple's answer for a failed
    /// session).
    extra: Vec<(&'static str, serde_json::Value)>,
    /// Headers the answer carries besides the body (`Allow`, `Retry-After`).
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            headers: Vec::new(),
            message: message.into(),
            extra: Vec::new(),
        }
    }

    /// Adds a member to the JSON error body.
    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra.push((key, value));
        self
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "HTTP Basic authentication with user \"depserver\" and the API key is required",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// A fault of depd itself: logged with its cause chain, answered as 500.
    pub fn internal(context: &str, cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the depd log"),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Basic realm=\"depd\""));
        }
        for (name, value) in &self.headers {
            resp.insert_header((*name, value.as_str()));
        }
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.message.clone().into());
        body.insert("code".into(), self.code.into());
        for (k, v) in &self.extra {
            body.insert((*k).into(), v.clone());
        }
        resp.json(serde_json::Value::Object(body))
    }
}
