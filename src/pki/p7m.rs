//! Apple's `.p7m` token file: S/MIME headers around base64 CMS
//! EnvelopedData (BER, often with indefinite lengths), encrypted to the
//! token-PKI certificate. Inside: MIME headers, then the token JSON between
//! `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`, possibly wrapped.

use super::KeyPair;
use crate::store::StoredTokens;
use crate::tokens::{self, TokensError};
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
pub fn decrypt_token_file(file: &[u8], pair: &KeyPair) -> Result<StoredTokens, P7mError> {
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
) -> Result<(usize, StoredTokens), P7mError> {
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

fn decrypt_with(cms: &CmsContentInfo, pair: &KeyPair) -> Result<StoredTokens, P7mError> {
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
mod tests {
    use super::*;
    use openssl::cms::CMSOptions;
    use openssl::stack::Stack;
    use openssl::symm::Cipher;
    use std::path::Path;
    use std::process::Command;
    use time::macros::datetime;

    const TOKENS: &str = r#"{"consumer_key":"CK_p7m_consumer_key_0123456789","consumer_secret":"CS_p7m_secret_abcdefghijklmnopqrstuvwxyz","access_token":"AT_p7m_token_abcdefghijklmnopqrstuvwxyz","access_secret":"AS_p7m_secret_abcdefghijklmnopqrstuvwxyz","access_token_expiry":"2027-06-01T12:00:00Z"}"#;

    /// The inner message as Apple writes it: MIME headers, then the JSON
    /// wrapped at `width` columns between the markers.
    fn inner_message(json: &str, width: usize, padding: usize) -> String {
        let wrapped: Vec<String> = json
            .as_bytes()
            .chunks(width)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\nX-Padding: {}\r\n\r\n{BEGIN_MESSAGE}\r\n{}\r\n{END_MESSAGE}\r\n",
            "p".repeat(padding),
            wrapped.join("\r\n")
        )
    }

    fn pair() -> KeyPair {
        KeyPair::generate("depserver", 1, datetime!(2026-03-01 12:00 UTC)).expect("keypair")
    }

    /// A pair as depd made them before random serials: self-signed
    /// `CN=depserver` with serial number 1, so every such certificate has
    /// the same issuer and serial.
    fn legacy_pair() -> KeyPair {
        use openssl::asn1::{Asn1Integer, Asn1Time};
        use openssl::bn::BigNum;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::{X509, X509NameBuilder};
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "depserver").expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("version");
        let one = Asn1Integer::from_bn(&BigNum::from_u32(1).expect("bn")).expect("serial");
        b.set_serial_number(&one).expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
            .expect("not before");
        b.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
            .expect("not after");
        b.set_pubkey(&key).expect("pubkey");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        let cert = b.build();
        KeyPair::from_pem(
            &cert.to_pem().expect("pem"),
            &key.private_key_to_pem_pkcs8().expect("pem"),
            None,
        )
        .expect("pair")
    }

    #[test]
    fn chooses_the_pair_the_file_is_addressed_to() {
        let (staging, current) = (pair(), pair());
        let want = tokens::parse(TOKENS.as_bytes()).expect("tokens");
        let to = |p: &KeyPair| encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), p);
        assert_eq!(
            decrypt_token_file_with(&to(&staging), &[&staging, &current]).expect("staging"),
            (0, want.clone())
        );
        assert_eq!(
            decrypt_token_file_with(&to(&current), &[&staging, &current]).expect("current"),
            (1, want.clone())
        );
        assert!(matches!(
            decrypt_token_file_with(&to(&pair()), &[&staging, &current]),
            Err(P7mError::DifferentCertificate)
        ));
        assert!(matches!(
            decrypt_token_file_with(&to(&staging), &[]),
            Err(P7mError::DifferentCertificate)
        ));

        // Certificates from before random serials share issuer and serial:
        // staging is tried first, then current.
        let (old_staging, old_current) = (legacy_pair(), legacy_pair());
        let pairs = [&old_staging, &old_current];
        assert_eq!(
            decrypt_token_file_with(&to(&old_staging), &pairs).expect("legacy staging"),
            (0, want.clone())
        );
        assert_eq!(
            decrypt_token_file_with(&to(&old_current), &pairs).expect("legacy current"),
            (1, want)
        );
        assert!(matches!(
            decrypt_token_file_with(&to(&legacy_pair()), &pairs),
            Err(P7mError::WrongKey)
        ));
    }

    /// Runs the `openssl` command-line tool: a producer we did not write.
    fn openssl_cli(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out_path = dir.join("out.p7m");
        let status = Command::new("openssl")
            .args(args)
            .arg("-in")
            .arg(dir.join("msg.txt"))
            .arg("-out")
            .arg(&out_path)
            .arg(dir.join("cert.pem"))
            .current_dir(dir)
            .status()
            .expect("the openssl command-line tool must be installed for these tests");
        assert!(status.success(), "openssl {args:?}");
        std::fs::read(&out_path).expect("read openssl output")
    }

    fn crlf(bytes: &[u8]) -> Vec<u8> {
        String::from_utf8(bytes.to_vec())
            .expect("text")
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes()
    }

    fn without_headers(bytes: &[u8]) -> Vec<u8> {
        let text = String::from_utf8(bytes.to_vec())
            .expect("text")
            .replace("\r\n", "\n");
        text.split_once("\n\n")
            .expect("headers")
            .1
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn decrypts_what_the_openssl_tool_produces() {
        let pair = pair();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), pair.cert_pem().expect("pem")).expect("write");
        let want = tokens::parse(TOKENS.as_bytes()).expect("tokens");
        let cases: [(&[&str], usize, usize); 10] = [
            (&["smime", "-encrypt", "-aes128"], 64, 0),
            (&["smime", "-encrypt", "-aes256", "-stream"], 76, 0),
            (&["smime", "-encrypt", "-des3"], 1000, 0),
            (&["cms", "-encrypt", "-aes128"], 64, 0),
            (&["cms", "-encrypt", "-aes256", "-stream"], 50, 5000),
            (&["cms", "-encrypt", "-des3", "-stream"], 64, 3000),
            (&["cms", "-encrypt", "-aes256", "-outform", "PEM"], 64, 0),
            (&["cms", "-encrypt", "-aes128", "-outform", "DER"], 64, 0),
            (
                &["cms", "-encrypt", "-aes128", "-outform", "DER", "-stream"],
                64,
                4000,
            ),
            (&["smime", "-encrypt", "-aes128", "-binary"], 33, 0),
        ];
        for (args, width, padding) in cases {
            let msg = inner_message(TOKENS, width, padding);
            std::fs::write(dir.path().join("msg.txt"), &msg).expect("write msg");
            let file = openssl_cli(dir.path(), args);
            let got = decrypt_token_file(&file, &pair)
                .unwrap_or_else(|e| panic!("openssl {args:?}: {e}"));
            assert_eq!(got, want, "{args:?}");
            if !args.contains(&"DER") && !args.contains(&"PEM") {
                for variant in [crlf(&file), without_headers(&file)] {
                    let got = decrypt_token_file(&variant, &pair)
                        .unwrap_or_else(|e| panic!("variant of openssl {args:?}: {e}"));
                    assert_eq!(got, want);
                }
            }
        }
    }

    fn encrypt_with_crate(content: &[u8], pair: &KeyPair) -> Vec<u8> {
        let mut certs = Stack::new().expect("stack");
        certs.push(pair.cert().clone()).expect("push");
        CmsContentInfo::encrypt(&certs, content, Cipher::aes_128_cbc(), CMSOptions::BINARY)
            .expect("encrypt")
            .to_der()
            .expect("der")
    }

    #[test]
    fn names_each_failure() {
        let pair = pair();
        let good = encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), &pair);
        assert!(decrypt_token_file(&good, &pair).is_ok());
        let b64 = openssl::base64::encode_block(&good);

        let other_name =
            KeyPair::generate("other", 1, datetime!(2026-03-01 12:00 UTC)).expect("keypair");
        let same_name = legacy_pair();
        let legacy = legacy_pair();
        let good_legacy = encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), &legacy);
        let cases: Vec<(Vec<u8>, &KeyPair, &str)> = vec![
            (Vec::new(), &pair, "NotTokenFile"),
            (vec![0xff, 0xfe, 0x00], &pair, "NotTokenFile"),
            (TOKENS.as_bytes().to_vec(), &pair, "NotTokenFile"),
            (
                b"Content-Type: text/html\n\nabcd".to_vec(),
                &pair,
                "NotTokenFile",
            ),
            (b"MIME-Version: 1.0\n".to_vec(), &pair, "NotTokenFile"),
            (b"not base64 at all!".to_vec(), &pair, "BadBase64"),
            (b"abcde".to_vec(), &pair, "BadBase64"),
            (
                b64.as_bytes()[..b64.len() / 2 / 4 * 4].to_vec(),
                &pair,
                "Truncated",
            ),
            (good[..good.len() - 10].to_vec(), &pair, "Truncated"),
            (b"MAMCAQE=".to_vec(), &pair, "NotCms"),
            (good.clone(), &other_name, "DifferentCertificate"),
            (good_legacy.clone(), &same_name, "WrongKey"),
            (
                encrypt_with_crate(b"Content-Type: text/plain\r\n\r\nno markers", &pair),
                &pair,
                "NoMessage",
            ),
            (
                encrypt_with_crate(
                    inner_message("{\"consumer_key\":1}", 64, 0).as_bytes(),
                    &pair,
                ),
                &pair,
                "BadTokens",
            ),
        ];
        for (input, key, want) in cases {
            let err = decrypt_token_file(&input, key).expect_err(want);
            let got = format!("{err:?}");
            assert!(got.starts_with(want), "want {want}, got {got}: {err}");
        }
    }
}
