//! Apple's `.p7m` token file: S/MIME headers around base64 CMS
//! EnvelopedData (BER, often with indefinite lengths), encrypted to the
//! token-PKI certificate. Inside: MIME headers, then the token JSON between
//! `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`, possibly wrapped.

use super::KeyPair;
use crate::domain::tokens::{self, TokensError};
use openssl::cms::CmsContentInfo;
use openssl::error::ErrorStack;

const BEGIN_MESSAGE: &str = "-----BEGIN MESSAGE-----";
const END_MESSAGE: &str = "-----END MESSAGE-----";
/// PEM labels OpenSSL and other tools write around CMS/PKCS#7.
const PEM_LABELS: [&str; 2] = ["PKCS7", "CMS"];

/// Exactly which step of reading a token file failed.
#[derive(Debug, thiserror::Error)]
pub enum P7mError {
    #[error("not a token file: {0}")]
    NotTokenFile(&'static str),
    #[error("the token file's base64 is invalid: {0}")]
    BadBase64(String),
    #[error(
        "the token file is truncated: its CMS structure declares {declared} bytes but {found} are present"
    )]
    Truncated { declared: usize, found: usize },
    #[error("the token file is not CMS EnvelopedData (damaged or truncated?): {0}")]
    NotCms(String),
    #[error(
        "the token file was encrypted to a different certificate: none of its recipients matches this certificate's issuer and serial number"
    )]
    DifferentCertificate,
    #[error(
        "the token file was encrypted to a different key: its recipient has this certificate's issuer and serial number, but this private key cannot decrypt it (an older certificate with the same name, or a damaged file)"
    )]
    WrongKey,
    #[error("the token file could not be decrypted: {0}")]
    Decrypt(String),
    #[error("the decrypted token file has no {BEGIN_MESSAGE} ... {END_MESSAGE} block")]
    NoMessage,
    #[error("the decrypted token file holds bad token JSON: {0}")]
    BadTokens(#[from] TokensError),
}

/// Decrypts a token file with a key pair and parses the tokens inside.
/// Tens of milliseconds of CPU (one RSA decryption): async callers use the
/// blocking pool.
pub fn decrypt_token_file(file: &[u8], pair: &KeyPair) -> Result<tokens::Tokens, P7mError> {
    decrypt_token_file_with(file, &[pair]).map(|(_, tokens)| tokens)
}

/// Decrypts a token file with the first of `pairs` it was encrypted to, and
/// answers which one (its index) with the tokens. OpenSSL picks the
/// recipient by the certificate's issuer and serial number, so a pair the
/// file was not addressed to is passed over without an RSA operation.
/// Certificates that share issuer and serial (depd's before random serials)
/// are told apart by trying the keys in order: a wrong key fails the
/// content's padding or leaves bytes that are not text.
pub fn decrypt_token_file_with(
    file: &[u8],
    pairs: &[&KeyPair],
) -> Result<(usize, tokens::Tokens), P7mError> {
    let der = cms_der(file)?;
    check_outer_length(&der)?;
    let cms = CmsContentInfo::from_der(&der).map_err(|e| P7mError::NotCms(reasons(&e)))?;
    let mut refusal = P7mError::DifferentCertificate;
    for (index, pair) in pairs.iter().enumerate() {
        match decrypt_with(&cms, pair) {
            Ok(tokens) => return Ok((index, tokens)),
            Err(P7mError::DifferentCertificate) => {}
            Err(P7mError::WrongKey) => refusal = P7mError::WrongKey,
            Err(other) => return Err(other),
        }
    }
    Err(refusal)
}

fn decrypt_with(cms: &CmsContentInfo, pair: &KeyPair) -> Result<tokens::Tokens, P7mError> {
    let content = cms
        .decrypt(pair.key(), pair.cert())
        .map_err(classify_decrypt_error)?;
    // Apple's inner content is text; random bytes mean a wrong key whose
    // garbage happened to pass the padding check.
    let content = std::str::from_utf8(&content).map_err(|_| P7mError::WrongKey)?;
    let json = message_block(content)?;
    Ok(tokens::parse(json.as_bytes())?)
}

/// The DER/BER bytes of the CMS structure, from any of the forms a token
/// file arrives in: S/MIME (CRLF or LF, headers optional), PEM, bare base64
/// or binary.
fn cms_der(file: &[u8]) -> Result<Vec<u8>, P7mError> {
    // 0x30 is a SEQUENCE: already binary.
    if file.first() == Some(&0x30) {
        return Ok(file.to_vec());
    }
    let text = std::str::from_utf8(file).map_err(|_| {
        P7mError::NotTokenFile("the file is neither text (S/MIME, PEM, base64) nor binary CMS")
    })?;
    let text = text.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Err(P7mError::NotTokenFile("the file is empty"));
    }
    let body = match pem_body(&text)? {
        Some(body) => body,
        None => mime_body(&text)?,
    };
    decode_base64(body)
}

/// The base64 between PEM markers, if the file is PEM.
fn pem_body(text: &str) -> Result<Option<&str>, P7mError> {
    for label in PEM_LABELS {
        let begin = format!("-----BEGIN {label}-----");
        let Some(start) = text.find(&begin) else {
            continue;
        };
        let rest = &text[start + begin.len()..];
        let end = rest
            .find(&format!("-----END {label}-----"))
            .ok_or(P7mError::NotTokenFile(
                "the PEM END line is missing: the file is truncated",
            ))?;
        return Ok(Some(&rest[..end]));
    }
    Ok(None)
}

/// The body after the S/MIME headers, or the whole text when it has none.
fn mime_body(text: &str) -> Result<&str, P7mError> {
    let text = text.trim_start();
    let first_line = text.lines().next().unwrap_or_default();
    if !is_header_line(first_line) {
        return Ok(text);
    }
    let (headers, body) = text
        .split_once("\n\n")
        .ok_or(P7mError::NotTokenFile("S/MIME headers without a body"))?;
    let content_type = headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    if !content_type.is_empty() && !content_type.contains("pkcs7-mime") {
        return Err(P7mError::NotTokenFile(
            "its Content-Type is not application/pkcs7-mime",
        ));
    }
    Ok(body)
}

fn is_header_line(line: &str) -> bool {
    line.split_once(':').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn decode_base64(body: &str) -> Result<Vec<u8>, P7mError> {
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(P7mError::NotTokenFile(
            "there is no content after the headers",
        ));
    }
    if compact.starts_with('{') {
        return Err(P7mError::NotTokenFile(
            "this is JSON, not an encrypted token file (plain token JSON goes to PUT /v1/tokens)",
        ));
    }
    let trimmed = compact.trim_end_matches('=');
    if let Some(c) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Err(P7mError::BadBase64(format!("unexpected character {c:?}")));
    }
    if !compact.len().is_multiple_of(4) || compact.len() - trimmed.len() > 2 {
        return Err(P7mError::BadBase64(
            "its length is not a multiple of 4 (the file may be truncated)".into(),
        ));
    }
    openssl::base64::decode_block(&compact).map_err(|e| P7mError::BadBase64(reasons(&e)))
}

/// Names truncation when the outer definite length says more bytes than
/// there are (indefinite-length BER is left to the parser).
fn check_outer_length(der: &[u8]) -> Result<(), P7mError> {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return Err(P7mError::NotCms(
            "it does not start with an ASN.1 SEQUENCE".into(),
        ));
    };
    let (header, len) = match first {
        0x80 => return Ok(()),
        n if n < 0x80 => (2, usize::from(n)),
        n => {
            let count = usize::from(n & 0x7f);
            let bytes = der
                .get(2..2 + count)
                .filter(|_| count <= 4)
                .ok_or(P7mError::NotCms("its outer length is malformed".into()))?;
            (
                2 + count,
                bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            )
        }
    };
    if header + len > der.len() {
        return Err(P7mError::Truncated {
            declared: header + len,
            found: der.len(),
        });
    }
    Ok(())
}

fn classify_decrypt_error(e: ErrorStack) -> P7mError {
    let has = |needle: &str| {
        e.errors()
            .iter()
            .any(|err| err.reason().is_some_and(|r| r.contains(needle)))
    };
    // OpenSSL 3.0 fails without raising an error when no recipient matches
    // the certificate; later versions say "no matching recipient".
    if e.errors().is_empty() || has("no matching recipient") {
        P7mError::DifferentCertificate
    } else if has("bad decrypt") || has("decrypt error") {
        P7mError::WrongKey
    } else if has("not enveloped data") || has("content type not") {
        P7mError::NotCms("it is CMS but not EnvelopedData".into())
    } else {
        P7mError::Decrypt(reasons(&e))
    }
}

/// OpenSSL's reasons, without file names and addresses.
fn reasons(e: &ErrorStack) -> String {
    let reasons: Vec<&str> = e.errors().iter().filter_map(|err| err.reason()).collect();
    if reasons.is_empty() {
        "OpenSSL gave no reason".into()
    } else {
        reasons.join("; ")
    }
}

/// The token JSON between the message markers, wrapped lines joined.
fn message_block(content: &str) -> Result<String, P7mError> {
    let start = content.find(BEGIN_MESSAGE).ok_or(P7mError::NoMessage)? + BEGIN_MESSAGE.len();
    let len = content[start..]
        .find(END_MESSAGE)
        .ok_or(P7mError::NoMessage)?;
    Ok(content[start..start + len]
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect())
}

#[cfg(test)]
mod tests;
