//! A DEP name's credentials as the rest of depd sees them: its OAuth1
//! tokens ([`Tokens`]) and its token-PKI pair ([`PkiPem`]). The JSON that
//! `PUT /v1/tokens` accepts and `GET` returns, which is also the JSON inside
//! Apple's `.p7m` token file, is [`TokensJson`].
//!
//! These are domain values, not records: the store keeps its own
//! versioned records (`store::StoredTokens`, `store::StoredPki`) and
//! converts at its boundary, so the stored form can change without
//! touching the API, the client or the PKI code. This module uses nothing
//! else in the crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A DEP name's OAuth1 tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
    /// When Apple stops accepting the access token (Unix seconds).
    pub access_token_expiry_unix: i64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("consumer_key", &self.consumer_key)
            .field("access_token_expiry_unix", &self.access_token_expiry_unix)
            .finish_non_exhaustive()
    }
}

/// A token-PKI certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PkiPem {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for PkiPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PkiPem")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// The token JSON. Unknown keys are ignored (Apple may add some).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokensJson {
    #[serde(default)]
    pub consumer_key: String,
    #[serde(default)]
    pub consumer_secret: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub access_secret: String,
    #[serde(default)]
    pub access_token_expiry: String,
}

impl fmt::Debug for TokensJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokensJson")
            .field("consumer_key", &self.consumer_key)
            .field("access_token_expiry", &self.access_token_expiry)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("invalid token JSON: {0}")]
    Json(String),
    #[error("token JSON is missing {0}")]
    Missing(&'static str),
    #[error("access_token_expiry {0:?} is not an RFC 3339 time")]
    BadExpiry(String),
}

/// Parses and checks token JSON: every field present and non-empty, the
/// expiry an RFC 3339 time.
pub fn parse(body: &[u8]) -> Result<Tokens, TokensError> {
    // serde would also take the fields as an array, in order.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(TokensError::Json("expected a JSON object".into()));
    }
    let json: TokensJson =
        serde_json::from_slice(body).map_err(|e| TokensError::Json(e.to_string()))?;
    for (field, value) in [
        ("consumer_key", &json.consumer_key),
        ("consumer_secret", &json.consumer_secret),
        ("access_token", &json.access_token),
        ("access_secret", &json.access_secret),
        ("access_token_expiry", &json.access_token_expiry),
    ] {
        if value.trim().is_empty() {
            return Err(TokensError::Missing(field));
        }
    }
    let expiry = OffsetDateTime::parse(json.access_token_expiry.trim(), &Rfc3339)
        .map_err(|_| TokensError::BadExpiry(json.access_token_expiry.clone()))?;
    Ok(Tokens {
        consumer_key: json.consumer_key,
        consumer_secret: json.consumer_secret,
        access_token: json.access_token,
        access_secret: json.access_secret,
        access_token_expiry_unix: expiry.unix_timestamp(),
    })
}

/// The API form of tokens.
pub fn to_json(tokens: &Tokens) -> TokensJson {
    TokensJson {
        consumer_key: tokens.consumer_key.clone(),
        consumer_secret: tokens.consumer_secret.clone(),
        access_token: tokens.access_token.clone(),
        access_secret: tokens.access_secret.clone(),
        access_token_expiry: format_unix(tokens.access_token_expiry_unix),
    }
}

/// RFC 3339 text of a Unix time (UTC).
pub fn format_unix(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"consumer_key":"CK_1","consumer_secret":"CS_1","access_token":"AT_1","access_secret":"AS_1","access_token_expiry":"2027-01-02T03:04:05Z","extra":1}"#;

    #[test]
    fn parses_and_round_trips() {
        let t = parse(FULL.as_bytes()).expect("valid");
        assert_eq!(t.consumer_key, "CK_1");
        let back = to_json(&t);
        assert_eq!(back.access_token_expiry, "2027-01-02T03:04:05Z");
        assert_eq!(back.access_secret, "AS_1");
    }

    #[test]
    fn rejects_incomplete_or_bad() {
        assert!(matches!(parse(b"{"), Err(TokensError::Json(_))));
        assert!(parse(b"[]").is_err());
        assert!(parse(b"").is_err());
        let missing = FULL.replace(r#""access_secret":"AS_1","#, "");
        assert_eq!(
            parse(missing.as_bytes()),
            Err(TokensError::Missing("access_secret"))
        );
        let blank = FULL.replace("CK_1", " ");
        assert_eq!(
            parse(blank.as_bytes()),
            Err(TokensError::Missing("consumer_key"))
        );
        let bad = FULL.replace("2027-01-02T03:04:05Z", "next year");
        assert!(matches!(
            parse(bad.as_bytes()),
            Err(TokensError::BadExpiry(_))
        ));
    }
}
