//! Typed errors of Apple's DEP API, classified from status, body and
//! headers. Apple sends bare codes (`EXHAUSTED_CURSOR`), some simulators
//! quote them or wrap them in JSON, so codes are matched by substring.

use std::time::Duration;

/// What went wrong talking to Apple, in terms a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepError {
    #[error("the cursor was exhausted (everything was fetched before)")]
    CursorExhausted,
    #[error("the cursor expired")]
    CursorExpired,
    #[error("the cursor is invalid")]
    CursorInvalid,
    #[error("a cursor is required")]
    CursorRequired,
    /// The session token is no longer accepted: get a new one.
    #[error("Apple rejected the session (HTTP {status})")]
    SessionRejected { status: u16 },
    /// The organisation must accept new terms in Apple's portal.
    #[error("Apple's terms and conditions have not been accepted (T_C_NOT_SIGNED)")]
    TermsNotSigned,
    /// The OAuth token was refused (`/session` said 401/403, e.g.
    /// `token_rejected`, `signature_invalid`, `token_expired`, `ACCESS_DENIED`).
    #[error("Apple rejected the OAuth token (HTTP {status}: {code})")]
    TokenRejected { status: u16, code: String },
    #[error("not found at Apple ({code})")]
    NotFound { code: String },
    /// 429, or 503 with `Retry-After`.
    #[error("Apple is throttling requests (HTTP {status}){}", wait_words(*retry_after))]
    Throttled {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Apple answered HTTP {status}: {code}")]
    Upstream {
        status: u16,
        code: String,
        retry_after: Option<Duration>,
    },
    #[error("Apple refused the request (HTTP {status}: {code})")]
    Rejected { status: u16, code: String },
    #[error("cannot reach Apple: {0}")]
    Network(String),
    #[error("Apple did not answer in time")]
    Timeout,
    #[error("unexpected answer from Apple: {0}")]
    Decode(String),
    /// No OAuth tokens are stored, so Apple cannot be asked at all.
    #[error("no OAuth tokens are stored for this DEP name")]
    NoCredentials,
    /// depd itself could not make the call (its actor stopped).
    #[error("{0}")]
    Unavailable(String),
    /// Not sent: the base URL's host or address is not in
    /// `apple.allowed_hosts` (src/dep/allowlist.rs).
    #[error("not sent: {0}")]
    NotAllowed(String),
    /// Not sent: Apple's `Retry-After` (or a `/session` hold-off) for this
    /// name runs longer than a request waits.
    #[error("not sent: Apple asked depd to wait {} s more before calling it again", .retry_after.as_secs().max(1))]
    Held { retry_after: Duration },
}

impl DepError {
    /// Whether the request may succeed later without anyone changing
    /// anything (network trouble, throttling, Apple's 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DepError::Network(_)
                | DepError::Timeout
                | DepError::Throttled { .. }
                | DepError::Upstream { .. }
                | DepError::Held { .. }
        )
    }

    /// Apple's error code, when the error came from an answer of Apple's.
    pub fn apple_code(&self) -> Option<&str> {
        match self {
            DepError::CursorExhausted => Some("EXHAUSTED_CURSOR"),
            DepError::CursorExpired => Some("EXPIRED_CURSOR"),
            DepError::CursorInvalid => Some("INVALID_CURSOR"),
            DepError::CursorRequired => Some("CURSOR_REQUIRED"),
            DepError::TermsNotSigned => Some("T_C_NOT_SIGNED"),
            DepError::TokenRejected { code, .. }
            | DepError::NotFound { code }
            | DepError::Upstream { code, .. }
            | DepError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status Apple answered with, when it answered.
    pub fn apple_status(&self) -> Option<u16> {
        match self {
            DepError::CursorExhausted
            | DepError::CursorExpired
            | DepError::CursorInvalid
            | DepError::CursorRequired => Some(400),
            DepError::TermsNotSigned => Some(403),
            DepError::NotFound { .. } => Some(404),
            DepError::SessionRejected { status }
            | DepError::TokenRejected { status, .. }
            | DepError::Throttled { status, .. }
            | DepError::Upstream { status, .. }
            | DepError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The wait Apple asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DepError::Throttled { retry_after, .. } | DepError::Upstream { retry_after, .. } => {
                *retry_after
            }
            DepError::Held { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// The error code in an error body: the text itself (trimmed, quotes
/// removed) or the `code`/`error` member of a JSON object; at most 200 bytes.
pub fn body_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
        for key in ["code", "error", "message"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return truncate(s.trim());
            }
        }
    }
    truncate(text.trim_matches('"'))
}

/// "; it asked to wait 5 s" for an error message, or nothing.
fn wait_words(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) if wait.subsec_millis() == 0 => {
            format!("; it asked to wait {} s", wait.as_secs())
        }
        Some(wait) => format!("; it asked to wait {:.1} s", wait.as_secs_f64()),
        None => String::new(),
    }
}

fn truncate(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Classifies an error answer of any endpoint but `/session`. Codes are
/// compared whole, after [`body_code`] took them out of a bare, quoted or
/// JSON body: a message that merely mentions `FORBIDDEN` is not one.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> DepError {
    let code = body_code(body);
    let has = |c: &str| code == c;
    match status {
        400 if has("EXHAUSTED_CURSOR") => DepError::CursorExhausted,
        400 if has("EXPIRED_CURSOR") => DepError::CursorExpired,
        400 if has("INVALID_CURSOR") => DepError::CursorInvalid,
        400 if has("CURSOR_REQUIRED") => DepError::CursorRequired,
        401 => DepError::SessionRejected { status },
        403 if has("FORBIDDEN") => DepError::SessionRejected { status },
        403 if has("T_C_NOT_SIGNED") => DepError::TermsNotSigned,
        403 if is_token_code(&code) => DepError::TokenRejected { status, code },
        404 => DepError::NotFound { code },
        429 => DepError::Throttled {
            status,
            retry_after,
        },
        503 if retry_after.is_some() => DepError::Throttled {
            status,
            retry_after,
        },
        500..=599 => DepError::Upstream {
            status,
            code,
            retry_after,
        },
        _ => DepError::Rejected { status, code },
    }
}

/// Classifies an error answer of `/session`: there a 401 or 403 is about
/// the OAuth token (or the terms), not about a session.
pub fn classify_session(status: u16, body: &[u8], retry_after: Option<Duration>) -> DepError {
    let code = body_code(body);
    match status {
        403 if code == "T_C_NOT_SIGNED" => DepError::TermsNotSigned,
        401 | 403 => DepError::TokenRejected { status, code },
        _ => classify(status, body, retry_after),
    }
}

fn is_token_code(code: &str) -> bool {
    [
        "token_rejected",
        "signature_invalid",
        "token_expired",
        "access_denied",
    ]
    .iter()
    .any(|c| code.eq_ignore_ascii_case(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_compared_whole() {
        assert_eq!(
            classify(403, b"FORBIDDEN\n", None),
            DepError::SessionRejected { status: 403 }
        );
        assert_eq!(
            classify(403, br#"{"code":"FORBIDDEN"}"#, None),
            DepError::SessionRejected { status: 403 }
        );
        // A message that only mentions a code is not that code.
        assert!(matches!(
            classify(403, b"NOT_FORBIDDEN_BUT_DENIED", None),
            DepError::Rejected { .. }
        ));
        assert!(matches!(
            classify(400, b"the cursor is not an EXPIRED_CURSOR", None),
            DepError::Rejected { .. }
        ));
        assert!(matches!(
            classify_session(403, b"TOKEN_REJECTED", None),
            DepError::TokenRejected { .. }
        ));
    }

    #[test]
    fn codes_are_found_bare_quoted_or_in_json() {
        assert_eq!(body_code(b"EXHAUSTED_CURSOR"), "EXHAUSTED_CURSOR");
        assert_eq!(body_code(b"\"EXHAUSTED_CURSOR\"\n"), "EXHAUSTED_CURSOR");
        assert_eq!(
            body_code(br#"{"code":"INVALID_CURSOR","message":"x"}"#),
            "INVALID_CURSOR"
        );
        assert_eq!(
            body_code(br#"{"error":"T_C_NOT_SIGNED"}"#),
            "T_C_NOT_SIGNED"
        );
        assert!(body_code(&[0xff; 300]).len() <= 200);
    }

    #[test]
    fn classification_table() {
        let wait = Some(Duration::from_secs(30));
        let cases: Vec<(u16, &[u8], Option<Duration>, DepError)> = vec![
            (400, b"EXHAUSTED_CURSOR", None, DepError::CursorExhausted),
            (400, b"\"EXPIRED_CURSOR\"", None, DepError::CursorExpired),
            (
                400,
                br#"{"code":"INVALID_CURSOR"}"#,
                None,
                DepError::CursorInvalid,
            ),
            (400, b"CURSOR_REQUIRED", None, DepError::CursorRequired),
            (
                401,
                b"UNAUTHORIZED",
                None,
                DepError::SessionRejected { status: 401 },
            ),
            (
                403,
                b"FORBIDDEN",
                None,
                DepError::SessionRejected { status: 403 },
            ),
            (403, b"T_C_NOT_SIGNED", None, DepError::TermsNotSigned),
            (
                403,
                b"ACCESS_DENIED",
                None,
                DepError::TokenRejected {
                    status: 403,
                    code: "ACCESS_DENIED".into(),
                },
            ),
            (
                404,
                b"NOT_FOUND",
                None,
                DepError::NotFound {
                    code: "NOT_FOUND".into(),
                },
            ),
            (
                429,
                b"",
                wait,
                DepError::Throttled {
                    status: 429,
                    retry_after: wait,
                },
            ),
            (
                503,
                b"",
                wait,
                DepError::Throttled {
                    status: 503,
                    retry_after: wait,
                },
            ),
            (
                503,
                b"busy",
                None,
                DepError::Upstream {
                    status: 503,
                    code: "busy".into(),
                    retry_after: None,
                },
            ),
            (
                500,
                b"oops",
                None,
                DepError::Upstream {
                    status: 500,
                    code: "oops".into(),
                    retry_after: None,
                },
            ),
            (
                400,
                b"CONFIG_NAME_REQUIRED",
                None,
                DepError::Rejected {
                    status: 400,
                    code: "CONFIG_NAME_REQUIRED".into(),
                },
            ),
        ];
        for (status, body, retry, want) in cases {
            assert_eq!(
                classify(status, body, retry),
                want,
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn session_endpoint_blames_the_token() {
        assert_eq!(
            classify_session(401, b"UNAUTHORIZED", None),
            DepError::TokenRejected {
                status: 401,
                code: "UNAUTHORIZED".into()
            }
        );
        assert_eq!(
            classify_session(403, b"T_C_NOT_SIGNED", None),
            DepError::TermsNotSigned
        );
        assert_eq!(
            classify_session(403, br#"{"error":"token_expired"}"#, None),
            DepError::TokenRejected {
                status: 403,
                code: "token_expired".into()
            }
        );
        assert!(classify_session(500, b"x", None).is_transient());
    }
}
