//! `/session`: OAuth 1.0a verification (signature, nonce, timestamp) and the
//! lifecycle of session tokens (idle expiry, rotation with a grace period,
//! `FORBIDDEN` for tokens never issued). Plain rules; the caller supplies
//! the time and fresh token strings.

use crate::dep::oauth1;
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

/// One OAuth credential set, serialized exactly as the token JSON that
/// `PUT /v1/tokens/{name}` accepts (and Apple's `.p7m` carries).
#[derive(Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenSet {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
    pub access_token_expiry: String,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("consumer_key", &self.consumer_key)
            .field("access_token_expiry", &self.access_token_expiry)
            .finish_non_exhaustive()
    }
}

/// A refusal: the HTTP status and the bare code of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub code: &'static str,
}

const fn reject(status: u16, code: &'static str) -> Reject {
    Reject { status, code }
}

/// Apple: 400 for malformed OAuth, 401 for bad keys, tokens, signatures and
/// nonces. Codes are the OAuth problem names.
pub const PARAMETER_ABSENT: Reject = reject(400, "parameter_absent");
pub const PARAMETER_REJECTED: Reject = reject(400, "parameter_rejected");
pub const METHOD_REJECTED: Reject = reject(400, "signature_method_rejected");
pub const VERSION_REJECTED: Reject = reject(400, "version_rejected");
pub const CONSUMER_KEY_UNKNOWN: Reject = reject(401, "consumer_key_unknown");
pub const TOKEN_REJECTED: Reject = reject(401, "token_rejected");
pub const TOKEN_EXPIRED: Reject = reject(401, "token_expired");
pub const SIGNATURE_INVALID: Reject = reject(401, "signature_invalid");
pub const NONCE_USED: Reject = reject(401, "nonce_used");
pub const TIMESTAMP_REFUSED: Reject = reject(401, "timestamp_refused");
pub const UNAUTHORIZED: Reject = reject(401, "UNAUTHORIZED");
pub const FORBIDDEN: Reject = reject(403, "FORBIDDEN");

/// The request as `/session` needs it for verification.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// `scheme://host[:port]/path[?query]` as the client addressed it.
    pub url: &'a str,
    pub authorization: Option<&'a str>,
}

#[derive(Debug)]
struct Live {
    last_used: i64,
    /// Set when a rotation replaced the token: valid until then.
    retire_at: Option<i64>,
}

/// Timing policy of sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    /// Accepted distance between `oauth_timestamp` and the clock.
    pub timestamp_window_secs: Option<i64>,
    pub rotation_grace_secs: i64,
}

const NONCE_MEMORY: usize = 100_000;

pub struct Sessions {
    creds: Vec<(TokenSet, i64)>,
    policy: SessionPolicy,
    nonces: HashSet<(String, String)>,
    nonce_order: VecDeque<(i64, (String, String))>,
    live: HashMap<String, Live>,
    /// Issued and since expired: `UNAUTHORIZED`, not `FORBIDDEN`.
    dead: HashSet<String>,
}

impl Sessions {
    /// `creds` pairs each token set with its expiry in Unix seconds.
    pub fn new(creds: Vec<(TokenSet, i64)>, policy: SessionPolicy) -> Self {
        Sessions {
            creds,
            policy,
            nonces: HashSet::new(),
            nonce_order: VecDeque::new(),
            live: HashMap::new(),
            dead: HashSet::new(),
        }
    }

    pub fn credentials(&self) -> impl Iterator<Item = &TokenSet> {
        self.creds.iter().map(|(t, _)| t)
    }

    /// Checks an OAuth-signed `/session` request; on success the nonce is
    /// spent.
    pub fn verify(&mut self, req: &SignedRequest<'_>, now: i64) -> Result<(), Reject> {
        let header = req.authorization.ok_or(PARAMETER_ABSENT)?;
        let params = oauth1::parse_authorization(header).map_err(|_| PARAMETER_ABSENT)?;
        let mut seen = HashSet::new();
        if !params.iter().all(|(k, _)| seen.insert(k.as_str())) {
            return Err(PARAMETER_REJECTED);
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let required = [
            "oauth_consumer_key",
            "oauth_token",
            "oauth_signature_method",
            "oauth_signature",
            "oauth_timestamp",
            "oauth_nonce",
        ];
        if required.iter().any(|k| get(k).is_none_or(str::is_empty)) {
            return Err(PARAMETER_ABSENT);
        }
        if get("oauth_signature_method") != Some("HMAC-SHA1") {
            return Err(METHOD_REJECTED);
        }
        if get("oauth_version").is_some_and(|v| v != "1.0") {
            return Err(VERSION_REJECTED);
        }
        let timestamp: i64 = get("oauth_timestamp")
            .and_then(|t| t.parse().ok())
            .ok_or(TIMESTAMP_REFUSED)?;
        if let Some(window) = self.policy.timestamp_window_secs
            && (timestamp - now).abs() > window
        {
            return Err(TIMESTAMP_REFUSED);
        }
        let consumer_key = get("oauth_consumer_key").unwrap_or_default();
        let (creds, expiry) = {
            let mut same_key = self
                .creds
                .iter()
                .filter(|(c, _)| c.consumer_key == consumer_key)
                .peekable();
            if same_key.peek().is_none() {
                return Err(CONSUMER_KEY_UNKNOWN);
            }
            let token = get("oauth_token").unwrap_or_default();
            same_key
                .find(|(c, _)| c.access_token == token)
                .ok_or(TOKEN_REJECTED)?
        };
        let base = oauth1::base_string(req.method, req.url, &params);
        let expected =
            oauth1::hmac_sha1_signature(&base, &creds.consumer_secret, &creds.access_secret);
        let given = get("oauth_signature").unwrap_or_default();
        // memcmp::eq needs equal lengths; the length of a signature is no secret.
        if expected.len() != given.len()
            || !openssl::memcmp::eq(expected.as_bytes(), given.as_bytes())
        {
            return Err(SIGNATURE_INVALID);
        }
        let expiry = *expiry;
        let nonce = (
            consumer_key.to_owned(),
            get("oauth_nonce").unwrap_or_default().to_owned(),
        );
        if self.nonces.contains(&nonce) {
            return Err(NONCE_USED);
        }
        self.remember_nonce(nonce, now);
        if now > expiry {
            return Err(TOKEN_EXPIRED);
        }
        Ok(())
    }

    /// Nonces are kept while their timestamps could still be accepted
    /// (and at most `NONCE_MEMORY` of them when no window is enforced).
    fn remember_nonce(&mut self, nonce: (String, String), now: i64) {
        let keep = self.policy.timestamp_window_secs.map(|w| 2 * w);
        while let Some((at, _)) = self.nonce_order.front() {
            let too_old = keep.is_some_and(|k| now - at > k);
            if !too_old && self.nonce_order.len() < NONCE_MEMORY {
                break;
            }
            if let Some((_, old)) = self.nonce_order.pop_front() {
                self.nonces.remove(&old);
            }
        }
        self.nonces.insert(nonce.clone());
        self.nonce_order.push_back((now, nonce));
    }

    pub fn issue(&mut self, token: String, now: i64) {
        self.live.insert(
            token,
            Live {
                last_used: now,
                retire_at: None,
            },
        );
    }

    /// Checks a session token on use and refreshes its idle timer.
    pub fn check(&mut self, token: &str, now: i64) -> Result<(), Reject> {
        let Some(live) = self.live.get_mut(token) else {
            return Err(if self.dead.contains(token) {
                UNAUTHORIZED
            } else {
                FORBIDDEN
            });
        };
        let idle = now - live.last_used > self.policy.idle_secs;
        let retired = live.retire_at.is_some_and(|at| now > at);
        if idle || retired {
            self.live.remove(token);
            self.dead.insert(token.to_owned());
            return Err(UNAUTHORIZED);
        }
        live.last_used = now;
        Ok(())
    }

    /// Replaces `old` by `new`; `old` stays valid for the grace period so
    /// requests already in flight with it still succeed.
    pub fn rotate(&mut self, old: &str, new: String, now: i64) {
        if let Some(live) = self.live.get_mut(old) {
            let retire = now + self.policy.rotation_grace_secs;
            live.retire_at = Some(live.retire_at.map_or(retire, |at| at.min(retire)));
        }
        self.issue(new, now);
    }

    pub fn expire_all(&mut self) {
        self.dead.extend(self.live.drain().map(|(k, _)| k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dep::oauth1::{Credentials, authorization_header};

    const NOW: i64 = 1_700_000_000;
    const URL: &str = "http://127.0.0.1:9002/session";

    fn set() -> TokenSet {
        TokenSet {
            consumer_key: "CK_1".into(),
            consumer_secret: "CS_1".into(),
            access_token: "AT_1".into(),
            access_secret: "AS_1".into(),
            access_token_expiry: "2030-01-01T00:00:00Z".into(),
        }
    }

    fn sessions() -> Sessions {
        Sessions::new(
            vec![(set(), NOW + 86_400)],
            SessionPolicy {
                idle_secs: 1800,
                timestamp_window_secs: Some(600),
                rotation_grace_secs: 60,
            },
        )
    }

    fn header(secret: &str, ts: i64, nonce: &str) -> String {
        let t = set();
        let creds = Credentials {
            consumer_key: t.consumer_key,
            consumer_secret: secret.into(),
            access_token: t.access_token,
            access_secret: t.access_secret,
        };
        authorization_header("GET", URL, &creds, ts, nonce)
    }

    fn verify(s: &mut Sessions, h: &str, now: i64) -> Result<(), Reject> {
        s.verify(
            &SignedRequest {
                method: "GET",
                url: URL,
                authorization: Some(h),
            },
            now,
        )
    }

    #[test]
    fn signature_nonce_and_timestamp() {
        let mut s = sessions();
        assert_eq!(verify(&mut s, &header("CS_1", NOW, "n1"), NOW), Ok(()));
        assert_eq!(
            verify(&mut s, &header("CS_1", NOW, "n1"), NOW),
            Err(NONCE_USED)
        );
        assert_eq!(
            verify(&mut s, &header("wrong", NOW, "n2"), NOW),
            Err(SIGNATURE_INVALID)
        );
        // A rejected signature does not spend the nonce.
        assert_eq!(verify(&mut s, &header("CS_1", NOW, "n2"), NOW), Ok(()));
        assert_eq!(
            verify(&mut s, &header("CS_1", NOW - 601, "n3"), NOW),
            Err(TIMESTAMP_REFUSED)
        );
        assert_eq!(
            verify(&mut s, &header("CS_1", NOW + 86_401, "n4"), NOW + 86_401),
            Err(TOKEN_EXPIRED)
        );
        assert_eq!(verify(&mut s, "Basic abc", NOW), Err(PARAMETER_ABSENT));
        let h = header("CS_1", NOW, "n5").replace("HMAC-SHA1", "PLAINTEXT");
        assert_eq!(verify(&mut s, &h, NOW), Err(METHOD_REJECTED));
        let h = header("CS_1", NOW, "n6").replace("CK_1", "CK_2");
        assert_eq!(verify(&mut s, &h, NOW), Err(CONSUMER_KEY_UNKNOWN));
        let h = header("CS_1", NOW, "n7").replace("AT_1", "AT_2");
        assert_eq!(verify(&mut s, &h, NOW), Err(TOKEN_REJECTED));
    }

    #[test]
    fn idle_expiry_forbidden_and_rotation() {
        let mut s = sessions();
        s.issue("A".into(), NOW);
        assert_eq!(s.check("A", NOW + 1800), Ok(()));
        assert_eq!(s.check("A", NOW + 3601), Err(UNAUTHORIZED));
        assert_eq!(s.check("A", NOW + 3602), Err(UNAUTHORIZED));
        assert_eq!(s.check("never", NOW), Err(FORBIDDEN));
        s.issue("B".into(), NOW);
        s.rotate("B", "C".into(), NOW);
        assert_eq!(s.check("B", NOW + 60), Ok(()));
        assert_eq!(s.check("C", NOW + 60), Ok(()));
        assert_eq!(s.check("B", NOW + 61), Err(UNAUTHORIZED));
        s.expire_all();
        assert_eq!(s.check("C", NOW + 62), Err(UNAUTHORIZED));
    }
}
