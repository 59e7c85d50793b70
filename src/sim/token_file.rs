//! Apple's `.p7m` token file: S/MIME headers around base64 CMS
//! EnvelopedData (RSA PKCS#1 v1.5 key transport to the given certificate),
//! whose content is MIME headers and the token JSON between
//! `-----BEGIN MESSAGE-----` and `-----END MESSAGE-----`.
//!
//! openssl writes DER (definite lengths); Apple's files are BER with
//! indefinite lengths, so by default the DER is re-encoded that way
//! ([`ber_indefinite`]) and clients meet what Apple sends.

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;

#[derive(Debug, thiserror::Error)]
pub enum P7mError {
    #[error("not a PEM certificate: {0}")]
    Certificate(openssl::error::ErrorStack),
    #[error("CMS encryption failed: {0}")]
    Encrypt(openssl::error::ErrorStack),
    #[error("malformed DER from openssl")]
    Der,
}

/// How to build the file.
#[derive(Clone, Copy)]
pub struct P7mOptions {
    /// AES-128-CBC by default, as Apple.
    pub cipher: Cipher,
    /// Wrap the JSON over lines of this many characters, as some files do.
    pub wrap_json: Option<usize>,
    /// BER with indefinite lengths (Apple) instead of DER.
    pub ber: bool,
}

impl Default for P7mOptions {
    fn default() -> Self {
        P7mOptions {
            cipher: Cipher::aes_128_cbc(),
            wrap_json: None,
            ber: true,
        }
    }
}

/// The `.p7m` text for `tokens_json`, encrypted to `cert_pem`.
pub fn token_file(tokens_json: &str, cert_pem: &[u8], cipher: Cipher) -> Result<String, P7mError> {
    token_file_with(
        tokens_json,
        cert_pem,
        &P7mOptions {
            cipher,
            ..P7mOptions::default()
        },
    )
}

pub fn token_file_with(
    tokens_json: &str,
    cert_pem: &[u8],
    options: &P7mOptions,
) -> Result<String, P7mError> {
    let cert = X509::from_pem(cert_pem).map_err(P7mError::Certificate)?;
    let mut certs = Stack::new().map_err(P7mError::Encrypt)?;
    certs.push(cert).map_err(P7mError::Encrypt)?;
    let content = inner_content(tokens_json, options.wrap_json);
    let cms = CmsContentInfo::encrypt(
        &certs,
        content.as_bytes(),
        options.cipher,
        CMSOptions::BINARY,
    )
    .map_err(P7mError::Encrypt)?;
    let der = cms.to_der().map_err(P7mError::Encrypt)?;
    let bytes = if options.ber {
        ber_indefinite(&der).ok_or(P7mError::Der)?
    } else {
        der
    };
    let b64 = openssl::base64::encode_block(&bytes);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 + 300);
    out.push_str(
        "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"; smime-type=enveloped-data\n",
    );
    out.push_str("Content-Transfer-Encoding: base64\n");
    out.push_str("Content-Disposition: attachment; filename=\"smime.p7m\"\n");
    out.push_str("Content-Description: S/MIME Encrypted Message\n\n");
    for line in b64.as_bytes().chunks(76) {
        // base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    Ok(out)
}

/// Parses a cipher name as `openssl` spells it.
pub fn cipher_by_name(name: &str) -> Option<Cipher> {
    match name.to_ascii_lowercase().as_str() {
        "aes-128-cbc" | "aes128" => Some(Cipher::aes_128_cbc()),
        "aes-192-cbc" | "aes192" => Some(Cipher::aes_192_cbc()),
        "aes-256-cbc" | "aes256" => Some(Cipher::aes_256_cbc()),
        "des-ede3-cbc" | "des3" => Some(Cipher::des_ede3_cbc()),
        _ => None,
    }
}

/// The decrypted content as Apple builds it.
pub fn inner_content(tokens_json: &str, wrap: Option<usize>) -> String {
    let json = match wrap.filter(|w| *w > 0) {
        Some(width) => {
            let chars: Vec<char> = tokens_json.chars().collect();
            chars
                .chunks(width)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("\r\n")
        }
        None => tokens_json.to_owned(),
    };
    format!(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{json}\r\n-----END MESSAGE-----\r\n"
    )
}

/// Re-encodes DER with every constructed value in indefinite-length form
/// (`len 0x80` … `00 00`), as streaming encoders such as Apple's write it.
/// `None` if the input is not well-formed DER.
pub fn ber_indefinite(der: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(der.len() + 64);
    let mut rest = der;
    while !rest.is_empty() {
        rest = reencode(rest, &mut out)?;
    }
    Some(out)
}

/// Re-encodes one TLV, returning what follows it.
fn reencode<'a>(input: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    let (&tag, after_tag) = input.split_first()?;
    // CMS uses no high tag numbers; refuse rather than misparse.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_len.len() < n {
            return None;
        }
        let (bytes, rest) = after_len.split_at(n);
        after_len = rest;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if after_len.len() < len {
        return None;
    }
    let (value, rest) = after_len.split_at(len);
    if tag & 0x20 != 0 {
        out.extend_from_slice(&[tag, 0x80]);
        let mut inner = value;
        while !inner.is_empty() {
            inner = reencode(inner, out)?;
        }
        out.extend_from_slice(&[0, 0]);
    } else {
        out.extend_from_slice(&input[..input.len() - rest.len()]);
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ber_reencoding() {
        // SEQUENCE { INTEGER 5, SEQUENCE { OCTET STRING "ab" } }
        let der = [
            0x30, 0x09, 0x02, 0x01, 0x05, 0x30, 0x04, 0x04, 0x02, b'a', b'b',
        ];
        let ber = ber_indefinite(&der).expect("ber");
        assert_eq!(
            ber,
            [
                0x30, 0x80, 0x02, 0x01, 0x05, 0x30, 0x80, 0x04, 0x02, b'a', b'b', 0, 0, 0, 0
            ]
        );
        assert_eq!(ber_indefinite(&[0x30, 0x05, 0x02]), None);
    }

    #[test]
    fn inner_content_wraps() {
        let c = inner_content("{\"a\":\"bcdef\"}", Some(5));
        assert!(c.contains(
            "-----BEGIN MESSAGE-----\r\n{\"a\":\r\n\"bcde\r\nf\"}\r\n-----END MESSAGE-----\r\n"
        ));
        assert!(c.starts_with("Content-Type: text/plain;charset=UTF-8\r\n"));
    }
}
