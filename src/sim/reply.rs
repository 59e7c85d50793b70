//! A simulator answer before it becomes HTTP: Apple's bare-code errors,
//! JSON bodies and headers. Shared by the Apple routes and the admin API.

use super::faults::ResponseFault;
use super::sessions::Reject;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use serde::Serialize;

/// Apple's JSON content type, exactly as its documentation spells it.
pub(super) const JSON: &str = "application/json;charset=UTF8";

/// A response before it becomes HTTP.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) json: bool,
    pub(super) headers: Vec<(String, String)>,
}

impl Reply {
    /// Apple's error form: a bare code as the body.
    pub(in crate::sim) fn code(status: u16, code: &str) -> Self {
        Reply {
            status,
            body: code.as_bytes().to_vec(),
            json: false,
            headers: Vec::new(),
        }
    }

    pub(in crate::sim) fn json<T: Serialize>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::raw_json(body),
            Err(_) => Reply::code(500, "INTERNAL_ERROR"),
        }
    }

    pub(super) fn raw_json(body: Vec<u8>) -> Self {
        Reply {
            status: 200,
            body,
            json: true,
            headers: Vec::new(),
        }
    }

    pub(super) fn text(body: String, content_type: &str) -> Self {
        Reply {
            status: 200,
            body: body.into_bytes(),
            json: false,
            headers: vec![("Content-Type".into(), content_type.into())],
        }
    }

    pub(super) fn reject(r: Reject) -> Self {
        Reply::code(r.status, r.code)
    }

    pub(super) fn fault(f: ResponseFault) -> Self {
        Reply {
            status: f.status,
            body: f.body.into_bytes(),
            json: false,
            headers: f.headers.into_iter().collect(),
        }
    }

    pub(in crate::sim) fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut builder = HttpResponse::build(status);
        builder.insert_header((
            "Content-Type",
            if self.json {
                JSON
            } else {
                "text/plain;charset=UTF-8"
            },
        ));
        for (name, value) in &self.headers {
            // Admin input is validated when a fault is added; skip anything else.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                builder.insert_header((n, v));
            }
        }
        builder.body(self.body)
    }
}
