//! An uploaded push certificate and its key: split, checked and read
//! (topic, expiry) before anything is stored.

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// The topic of an MDM push certificate: its subject's UID.
fn topic_of(cert: &X509) -> Result<String, String> {
    let uid = cert
        .subject_name()
        .entries_by_nid(Nid::USERID)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .ok_or_else(|| "the certificate's subject has no UID (topic)".to_owned())?;
    if !uid.starts_with("com.apple.mgmt") {
        return Err(format!(
            "topic {uid:?} is not an MDM push topic (com.apple.mgmt…)"
        ));
    }
    Ok(uid)
}

fn unix_of(t: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// Splits PEM text into (label, block) pairs; blocks may be glued
/// without a newline.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_owned();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let stop = start + end + end_marker.len();
        out.push((label, rest[start..stop].to_owned()));
        rest = &rest[stop..];
    }
    out
}

/// A checked push certificate and key, with their PEM as uploaded.
#[derive(Clone)]
pub struct PushPair {
    /// The certificate subject's UID.
    pub topic: String,
    pub not_after_unix: i64,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for PushPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushPair")
            .field("topic", &self.topic)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

/// Parses `PUT /v1/pushcert`'s body (NanoMDM's rules): PEM blocks, glued
/// or not; the last certificate and the last key win; other block types
/// and encrypted keys are refused; the pair must match and the topic be
/// an MDM one.
pub fn parse_pair(body: &[u8]) -> Result<PushPair, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not PEM text".to_owned())?;
    let mut cert = None;
    let mut key = None;
    for (label, block) in pem_blocks(text) {
        match label.as_str() {
            "CERTIFICATE" => cert = Some(block),
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "PRIVATE KEY" => {
                if block.contains("ENCRYPTED") {
                    return Err("the private key is encrypted; upload it unencrypted".into());
                }
                key = Some(block);
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the private key is encrypted; upload it unencrypted".into());
            }
            other => return Err(format!("unrecognized PEM type: {other:?}")),
        }
    }
    let cert_pem = cert.ok_or("no CERTIFICATE block")?;
    let key_pem = key.ok_or("no private key block")?;
    let cert = X509::from_pem(cert_pem.as_bytes())
        .map_err(|_| "the certificate does not parse".to_owned())?;
    let key: PKey<Private> = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|_| "the private key does not parse".to_owned())?;
    let matches = cert
        .public_key()
        .map(|p| p.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err("the certificate and the private key are not a pair".into());
    }
    let topic = topic_of(&cert)?;
    let not_after_unix =
        unix_of(cert.not_after()).ok_or("the certificate's notAfter is unreadable")?;
    Ok(PushPair {
        topic,
        not_after_unix,
        cert_pem: cert_pem.into_bytes(),
        key_pem: key_pem.into_bytes(),
    })
}
