//! OAuth 1.0a request signing (RFC 5849) with HMAC-SHA1, as Apple's
//! `/session` requires. Small enough to write on openssl; the known-answer
//! vector in `integration/testdata/vectors/oauth1.json` pins it.
//!
//! The signer gets its timestamp and nonce from the caller, so tests are
//! deterministic; [`nonce`] makes a fresh one from openssl's CSPRNG.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use std::fmt;

/// The four OAuth1 secrets of a DEP name.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub access_token: String,
    pub access_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .finish_non_exhaustive()
    }
}

impl From<&crate::domain::tokens::Tokens> for Credentials {
    fn from(t: &crate::domain::tokens::Tokens) -> Self {
        Credentials {
            consumer_key: t.consumer_key.clone(),
            consumer_secret: t.consumer_secret.clone(),
            access_token: t.access_token.clone(),
            access_secret: t.access_secret.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("the Authorization header does not use the OAuth scheme")]
    NotOAuth,
    #[error("malformed OAuth parameter {0:?}")]
    Malformed(String),
    #[error("invalid percent-encoding in {0:?}")]
    Encoding(String),
}

/// RFC 3986 percent-encoding as OAuth requires: everything but
/// `ALPHA / DIGIT / - . _ ~` is encoded, with upper-case hex.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

/// Decodes `%XX` escapes (and, as in form encoding, `+` as a space when
/// `plus_is_space`). Invalid escapes or non-UTF-8 results are errors.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, OAuthError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| OAuthError::Encoding(s.to_owned()))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| OAuthError::Encoding(s.to_owned()))
}

/// The signature base string: `METHOD&enc(base URL)&enc(sorted params)`.
/// `url` may carry a query; its parameters are signed with `oauth_params`
/// (any `oauth_signature` among them is left out). The base URL has its
/// scheme and host in lower case and no default port.
pub fn base_string(method: &str, url: &str, oauth_params: &[(String, String)]) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut params: Vec<(String, String)> = oauth_params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Query text that is not valid percent-encoding is signed as sent.
        let k = percent_decode(k, true).unwrap_or_else(|_| k.to_owned());
        let v = percent_decode(v, true).unwrap_or_else(|_| v.to_owned());
        params.push((percent_encode(&k), percent_encode(&v)));
    }
    params.sort();
    let joined = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(&normalize_base_url(base)),
        percent_encode(&joined)
    )
}

/// Lower-cases scheme and host and drops a default port (RFC 5849 §3.4.1.2).
fn normalize_base_url(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host.to_owned(),
        _ => authority,
    };
    format!("{scheme}://{authority}{path}")
}

/// Base64 HMAC-SHA1 of the base string with key `enc(cs)&enc(ts)`.
pub fn hmac_sha1_signature(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    // HMAC over in-memory buffers cannot fail short of allocation failure;
    // an empty signature then simply fails verification upstream.
    let mac = PKey::hmac(key.as_bytes())
        .and_then(|pkey| {
            let mut signer = Signer::new(MessageDigest::sha1(), &pkey)?;
            signer.update(base.as_bytes())?;
            signer.sign_to_vec()
        })
        .unwrap_or_default();
    openssl::base64::encode_block(&mac)
}

/// A fresh nonce: 16 random bytes as hex.
pub fn nonce() -> String {
    let mut buf = [0u8; 16];
    // The CSPRNG failing is not recoverable in any useful way; a fixed
    // fallback would repeat nonces, so fall back to the time instead.
    if openssl::rand::rand_bytes(&mut buf).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        buf.copy_from_slice(&t.to_be_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OAuth protocol parameters of a signed request, signature included.
pub fn signed_params(
    method: &str,
    url: &str,
    creds: &Credentials,
    timestamp: i64,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut params = vec![
        ("oauth_consumer_key".to_owned(), creds.consumer_key.clone()),
        ("oauth_token".to_owned(), creds.access_token.clone()),
        ("oauth_signature_method".to_owned(), "HMAC-SHA1".to_owned()),
        ("oauth_timestamp".to_owned(), timestamp.to_string()),
        ("oauth_nonce".to_owned(), nonce.to_owned()),
        ("oauth_version".to_owned(), "1.0".to_owned()),
    ];
    let base = base_string(method, url, &params);
    let signature = hmac_sha1_signature(&base, &creds.consumer_secret, &creds.access_secret);
    params.push(("oauth_signature".to_owned(), signature));
    params
}

/// The `Authorization: OAuth …` header value of a signed request.
pub fn authorization_header(
    method: &str,
    url: &str,
    creds: &Credentials,
    timestamp: i64,
    nonce: &str,
) -> String {
    let params = signed_params(method, url, creds, timestamp, nonce);
    let fields = params
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("OAuth {fields}")
}

/// Parses an `Authorization: OAuth k="v", …` header into decoded pairs
/// (the `realm` parameter, which is not signed, is dropped).
pub fn parse_authorization(header: &str) -> Result<Vec<(String, String)>, OAuthError> {
    let header = header.trim();
    let rest = header
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("oauth "))
        .map(|_| &header[6..])
        .ok_or(OAuthError::NotOAuth)?;
    let mut out = Vec::new();
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| OAuthError::Malformed(part.to_owned()))?;
        let v = v
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| OAuthError::Malformed(part.to_owned()))?;
        let k = percent_decode(k.trim(), false)?;
        if k == "realm" {
            continue;
        }
        out.push((k, percent_decode(v, false)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        method: String,
        url: String,
        consumer_key: String,
        consumer_secret: String,
        token: String,
        token_secret: String,
        timestamp: String,
        nonce: String,
        signature: String,
    }

    fn vector() -> Vector {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/integration/testdata/vectors/oauth1.json"
        );
        let text = std::fs::read_to_string(path).expect("integration/testdata/vectors/oauth1.json");
        serde_json::from_str(&text).expect("vector JSON")
    }

    #[test]
    fn reproduces_the_oauth_core_vector() {
        let v = vector();
        let creds = Credentials {
            consumer_key: v.consumer_key,
            consumer_secret: v.consumer_secret,
            access_token: v.token,
            access_secret: v.token_secret,
        };
        let ts: i64 = v.timestamp.parse().expect("timestamp");
        let params = signed_params(&v.method, &v.url, &creds, ts, &v.nonce);
        let sig = params
            .iter()
            .find(|(k, _)| k == "oauth_signature")
            .map(|(_, s)| s.clone());
        assert_eq!(sig.as_deref(), Some(v.signature.as_str()));
        let header = authorization_header(&v.method, &v.url, &creds, ts, &v.nonce);
        let parsed = parse_authorization(&header).expect("parse own header");
        assert_eq!(parsed, params);
    }

    #[test]
    fn base_string_normalizes_url_and_sorts() {
        let params = vec![
            ("b".to_owned(), "2 3".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            base_string("get", "HTTPS://Example.COM:443/p?z=%7E&c=x+y", &params),
            "GET&https%3A%2F%2Fexample.com%2Fp&a%3D1%26b%3D2%25203%26c%3Dx%2520y%26z%3D~"
        );
        assert_eq!(
            base_string("GET", "http://127.0.0.1:8080/session", &[]),
            "GET&http%3A%2F%2F127.0.0.1%3A8080%2Fsession&"
        );
    }

    #[test]
    fn parse_rejects_malformed_headers() {
        assert_eq!(parse_authorization("Basic abc"), Err(OAuthError::NotOAuth));
        assert!(matches!(
            parse_authorization("OAuth a=b"),
            Err(OAuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization("OAuth a=\"%zz\""),
            Err(OAuthError::Encoding(_))
        ));
        assert_eq!(
            parse_authorization("oauth realm=\"x\", a=\"b%20c\"").expect("ok"),
            vec![("a".to_owned(), "b c".to_owned())]
        );
    }

    /// A tiny deterministic generator for the property tests (no extra crate).
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_string(state: &mut u64) -> String {
        let len = (next(state) % 24) as usize;
        (0..len)
            .filter_map(|_| {
                // Mostly ASCII (all of it, controls included), sometimes
                // multi-byte characters.
                let r = next(state);
                if r.is_multiple_of(5) {
                    char::from_u32(0xA0 + (r >> 8) as u32 % 0x2000)
                } else {
                    char::from_u32((r >> 8) as u32 % 128)
                }
            })
            .collect()
    }

    #[test]
    fn encoding_round_trips_and_uses_only_the_unreserved_set() {
        let mut state = 42;
        for _ in 0..5000 {
            let s = random_string(&mut state);
            let enc = percent_encode(&s);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{enc}"
            );
            assert!(!enc.contains("%2D") && !enc.contains("%7E"), "{enc}");
            assert_eq!(percent_decode(&enc, false).expect("decode"), s);
            assert_eq!(percent_encode(&enc.clone()), percent_encode(&enc));
        }
    }

    #[test]
    fn signatures_differ_by_secret_and_survive_header_round_trip() {
        let mut state = 7;
        for _ in 0..200 {
            let creds = Credentials {
                consumer_key: random_string(&mut state),
                consumer_secret: random_string(&mut state),
                access_token: random_string(&mut state),
                access_secret: random_string(&mut state),
            };
            let url = "http://127.0.0.1:1/prefix/session";
            let header = authorization_header("GET", url, &creds, 1_700_000_000, "n1");
            let params = parse_authorization(&header).expect("parse");
            let sig = &params
                .iter()
                .find(|(k, _)| k == "oauth_signature")
                .expect("sig")
                .1;
            let base = base_string("GET", url, &params);
            assert_eq!(
                &hmac_sha1_signature(&base, &creds.consumer_secret, &creds.access_secret),
                sig
            );
            let wrong = format!("{}x", creds.consumer_secret);
            assert_ne!(
                &hmac_sha1_signature(&base, &wrong, &creds.access_secret),
                sig
            );
        }
    }
}
