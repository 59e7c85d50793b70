//! The MAID JWT: an RS256 JSON Web Token signed with a name's current
//! token-PKI key, which Apple's Managed Apple ID services accept as proof
//! that the caller holds the MDM server's key.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::sign::Signer;
use serde::Serialize;
use time::OffsetDateTime;

/// The `service_type` claim Apple expects.
pub const SERVICE_TYPE: &str = "com.apple.maid";

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("signing the JWT failed: {0}")]
    Sign(#[from] openssl::error::ErrorStack),
    #[error("encoding the JWT failed: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Header {
    alg: &'static str,
    typ: &'static str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
    jti: &'a str,
    service_type: &'static str,
}

/// A random UUID (version 4) in its usual text form, for `jti`.
pub fn random_uuid() -> Result<String, JwtError> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Signs the MAID claims with RS256. The time and the token id are
/// arguments so the output is reproducible in tests.
pub fn maid_jwt(
    key: &PKeyRef<Private>,
    server_uuid: &str,
    jti: &str,
    now: OffsetDateTime,
) -> Result<String, JwtError> {
    let header = serde_json::to_vec(&Header {
        alg: "RS256",
        typ: "JWT",
    })?;
    let claims = serde_json::to_vec(&Claims {
        iss: server_uuid,
        iat: now.unix_timestamp(),
        jti,
        service_type: SERVICE_TYPE,
    })?;
    let signing_input = format!("{}.{}", base64url(&header), base64url(&claims));
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    signer.update(signing_input.as_bytes())?;
    let signature = signer.sign_to_vec()?;
    Ok(format!("{signing_input}.{}", base64url(&signature)))
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url(data: &[u8]) -> String {
    openssl::base64::encode_block(data)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::KeyPair;
    use openssl::sign::Verifier;
    use time::macros::datetime;

    fn unbase64url(s: &str) -> Vec<u8> {
        let mut std: String = s
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        while !std.len().is_multiple_of(4) {
            std.push('=');
        }
        openssl::base64::decode_block(&std).expect("base64url")
    }

    #[test]
    fn verifies_with_the_certificate_public_key() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let pair = KeyPair::generate("depserver", 1, now).expect("keypair");
        let jti = random_uuid().expect("uuid");
        let jwt = maid_jwt(pair.key(), "SERVER-UUID-1", &jti, now).expect("sign");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(!jwt.contains('=') && !jwt.contains('+') && !jwt.contains('/'));

        let header: serde_json::Value =
            serde_json::from_slice(&unbase64url(parts[0])).expect("header");
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&unbase64url(parts[1])).expect("claims");
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "SERVER-UUID-1",
                "iat": now.unix_timestamp(),
                "jti": jti,
                "service_type": "com.apple.maid",
            })
        );

        let public = pair.cert().public_key().expect("public key");
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public).expect("verifier");
        verifier
            .update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .expect("update");
        assert!(verifier.verify(&unbase64url(parts[2])).expect("verify"));

        let other = KeyPair::generate("depserver", 1, now).expect("keypair");
        let other_public = other.cert().public_key().expect("public key");
        let mut verifier = Verifier::new(MessageDigest::sha256(), &other_public).expect("verifier");
        verifier
            .update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .expect("update");
        assert!(!verifier.verify(&unbase64url(parts[2])).unwrap_or(false));
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = random_uuid().expect("uuid");
        let b = random_uuid().expect("uuid");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a.matches('-').count(), 4);
    }
}
