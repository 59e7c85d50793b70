//! The APNs request for an MDM wake-up and what its answers mean.
//!
//! NanoMDM sends the body alone; depd also sends `apns-topic`,
//! `apns-push-type: mdm` and `apns-priority: 10`, which Apple documents
//! for MDM pushes, and `apns-expiration` when configured, so APNs keeps
//! the wake-up for a device that is offline.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which APNs service a push certificate talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Production,
    Sandbox,
}

impl Environment {
    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "production" => Some(Environment::Production),
            "sandbox" => Some(Environment::Sandbox),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    /// Apple's base URL for this environment.
    pub fn base_url(self) -> &'static str {
        match self {
            Environment::Production => "https://api.push.apple.com",
            Environment::Sandbox => "https://api.sandbox.push.apple.com",
        }
    }
}

/// The headers every push of one topic carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushHeaders {
    pub topic: String,
    /// `apns-expiration` (UNIX seconds), when configured.
    pub expiration_unix: Option<i64>,
}

/// Why a push could not even be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the push token {0:?} is not hexadecimal")]
    Token(String),
    #[error("building the push request: {0}")]
    Build(String),
}

/// The path of a push to `token_hex` (lowercase hex, as stored).
pub fn path(token_hex: &str) -> Result<String, RequestError> {
    if token_hex.is_empty() || !token_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RequestError::Token(token_hex.to_owned()));
    }
    Ok(format!("/3/device/{}", token_hex.to_ascii_lowercase()))
}

/// The body: exactly `{"mdm":"<PushMagic>"}` (JSON-escaped).
pub fn body(magic: &str) -> Bytes {
    let mut out = Vec::with_capacity(magic.len() + 10);
    out.extend_from_slice(b"{\"mdm\":");
    // A string always serialises.
    let _ = serde_json::to_writer(&mut out, magic);
    out.push(b'}');
    Bytes::from(out)
}

/// The request head of one push. `base` is the service's base URL
/// (`https://host[:port]`, no path).
pub fn request(
    base: &str,
    token_hex: &str,
    headers: &PushHeaders,
) -> Result<http::Request<()>, RequestError> {
    let uri = format!("{}{}", base.trim_end_matches('/'), path(token_hex)?);
    let mut b = http::Request::post(uri)
        .header("content-type", "application/json")
        .header("apns-topic", headers.topic.as_str())
        .header("apns-push-type", "mdm")
        .header("apns-priority", "10");
    if let Some(at) = headers.expiration_unix {
        b = b.header("apns-expiration", at.to_string());
    }
    b.body(()).map_err(|e| RequestError::Build(e.to_string()))
}

/// APNs's answer to one push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: u16,
    /// The `apns-id` header: NanoMDM's `push_result`.
    pub apns_id: Option<String>,
    /// `Retry-After`, when APNs (or a proxy before it) sent one.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: String,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// What an answer means for the push, the token and the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// The token is dead (400 `BadDeviceToken`, 410 `Unregistered` or
    /// `ExpiredToken`): no more pushes until the device sends a new one.
    TokenInvalid,
    /// A certificate problem (403): every push of the topic fails alike.
    Certificate,
    /// Throttled or a server fault (429, 5xx): worth another try.
    Retry,
    /// Anything else: reported, not retried.
    Failed,
}

impl Answer {
    fn error_body(&self) -> Result<ErrorBody, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// APNs's `reason`, when the body carries one.
    pub fn reason(&self) -> Option<String> {
        if self.status == 200 {
            return None;
        }
        self.error_body().ok().map(|b| b.reason)
    }

    pub fn verdict(&self) -> Verdict {
        let reason = self.reason();
        match (self.status, reason.as_deref()) {
            (200, _) => Verdict::Delivered,
            (400, Some("BadDeviceToken")) | (410, _) => Verdict::TokenInvalid,
            (403, _) => Verdict::Certificate,
            (429, _) | (500..=599, _) => Verdict::Retry,
            _ => Verdict::Failed,
        }
    }

    /// NanoMDM's text for a failed push (`None` for a delivered one):
    /// `push HTTP status: 410: APNs push error: Unregistered: timestamp …`.
    pub fn error_text(&self) -> Option<String> {
        if self.status == 200 {
            return None;
        }
        Some(match self.error_body() {
            Ok(b) => match b.timestamp {
                Some(ts) => format!(
                    "push HTTP status: {}: APNs push error: {}: timestamp {ts}",
                    self.status, b.reason
                ),
                None => format!(
                    "push HTTP status: {}: APNs push error: {}",
                    self.status, b.reason
                ),
            },
            Err(e) => format!(
                "push HTTP status: {}: decoding JSON push error: {e}",
                self.status
            ),
        })
    }

    /// A short label for metrics: `delivered`, APNs's reason, or
    /// `http_<status>` when there is none.
    pub fn label(&self) -> String {
        if self.status == 200 {
            return "delivered".to_owned();
        }
        match self.reason() {
            Some(r) if r.len() <= 40 && r.bytes().all(|b| b.is_ascii_alphanumeric()) => r,
            _ => format!("http_{}", self.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // NanoMDM's known answer (push/nanopush/provider_test.go).
    const TOKEN: &str = "c2732227a1d8021cfaf781d71fb2f908c61f5861079a00954a5453f1d0281433";
    const MAGIC: &str = "47250C9C-1B37-4381-98A9-0B8315A441C7";

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            apns_id: Some("922D9F1F-B82E-B337-EDC9-DB4FC8527676".into()),
            retry_after: None,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn the_request_matches_nanomdms_known_answer_and_adds_apples_headers() {
        assert_eq!(
            body(MAGIC),
            Bytes::from_static(b"{\"mdm\":\"47250C9C-1B37-4381-98A9-0B8315A441C7\"}")
        );
        let h = PushHeaders {
            topic: "com.apple.mgmt.External.x".into(),
            expiration_unix: None,
        };
        let r = request("https://api.push.apple.com/", TOKEN, &h).expect("request");
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(
            r.uri().to_string(),
            format!("https://api.push.apple.com/3/device/{TOKEN}")
        );
        assert_eq!(r.headers()["apns-topic"], "com.apple.mgmt.External.x");
        assert_eq!(r.headers()["apns-push-type"], "mdm");
        assert_eq!(r.headers()["apns-priority"], "10");
        assert!(r.headers().get("apns-expiration").is_none());
        let h = PushHeaders {
            expiration_unix: Some(1_700_000_000),
            ..h
        };
        let r = request("https://x", TOKEN, &h).expect("request");
        assert_eq!(r.headers()["apns-expiration"], "1700000000");
    }

    #[test]
    fn magic_is_escaped_and_tokens_must_be_hex() {
        assert_eq!(body("a\"b"), Bytes::from_static(b"{\"mdm\":\"a\\\"b\"}"));
        let h = PushHeaders {
            topic: "t".into(),
            expiration_unix: None,
        };
        for bad in ["", "zz", "ab/../x", "ab cd"] {
            assert_eq!(
                request("https://x", bad, &h).err(),
                Some(RequestError::Token(bad.into()))
            );
        }
        assert_eq!(path("ABCD").expect("hex"), "/3/device/abcd");
    }

    #[test]
    fn answers_are_classified_and_worded_as_nanomdm_words_them() {
        let ok = answer(200, "");
        assert_eq!(ok.verdict(), Verdict::Delivered);
        assert_eq!(ok.error_text(), None);
        assert_eq!(ok.label(), "delivered");

        let gone = answer(
            410,
            r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
        );
        assert_eq!(gone.verdict(), Verdict::TokenInvalid);
        assert_eq!(
            gone.error_text().as_deref(),
            Some("push HTTP status: 410: APNs push error: Unregistered: timestamp 1700000000000")
        );
        assert_eq!(gone.label(), "Unregistered");

        let bad = answer(400, r#"{"reason":"BadDeviceToken"}"#);
        assert_eq!(bad.verdict(), Verdict::TokenInvalid);
        assert_eq!(
            bad.error_text().as_deref(),
            Some("push HTTP status: 400: APNs push error: BadDeviceToken")
        );
        assert_eq!(
            answer(400, r#"{"reason":"TopicDisallowed"}"#).verdict(),
            Verdict::Failed
        );
        assert_eq!(
            answer(403, r#"{"reason":"BadCertificate"}"#).verdict(),
            Verdict::Certificate
        );
        assert_eq!(
            answer(429, r#"{"reason":"TooManyRequests"}"#).verdict(),
            Verdict::Retry
        );
        assert_eq!(answer(503, "").verdict(), Verdict::Retry);
        let garbled = answer(500, "<html>");
        assert!(
            garbled
                .error_text()
                .is_some_and(|t| t.starts_with("push HTTP status: 500: decoding JSON push error: "))
        );
        assert_eq!(garbled.label(), "http_500");
        assert_eq!(
            answer(400, r#"{"reason":"a b c"}"#).label(),
            "http_400",
            "a reason that is not a plain word is not a metric label"
        );
    }
}
