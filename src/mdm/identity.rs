//! The device identity certificate of an MDM request: from
//! the `Mdm-Signature` header (a detached CMS signature over the body) or
//! from a header a TLS-terminating proxy fills in, then checked against
//! the configured CAs. Written on openssl.

use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509PurposeId;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509, X509StoreContext};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("Mdm-Signature is not base64")]
    SignatureEncoding,
    #[error("Mdm-Signature is not a CMS SignedData: {0}")]
    SignatureFormat(String),
    #[error("Mdm-Signature does not verify over the body: {0}")]
    SignatureInvalid(String),
    #[error("Mdm-Signature must have exactly one signer, with its certificate; it has {0}")]
    Signers(usize),
    #[error("the device identity certificate does not chain to a configured CA: {0}")]
    Untrusted(String),
    #[error("reading the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// The identity certificate a `Mdm-Signature` header vouches for: the
/// signature must verify over `body` with the certificate embedded in it
/// (trust is checked separately, by [`Verifier`]).
pub fn from_signature(header: &str, body: &[u8]) -> Result<X509, IdentityError> {
    let der = openssl::base64::decode_block(header.trim())
        .map_err(|_| IdentityError::SignatureEncoding)?;
    let p7 = Pkcs7::from_der(&der).map_err(|e| IdentityError::SignatureFormat(reason(&e)))?;
    let none = Stack::new().map_err(|e| IdentityError::SignatureFormat(reason(&e)))?;
    let store = X509StoreBuilder::new()
        .map_err(|e| IdentityError::SignatureFormat(reason(&e)))?
        .build();
    let flags = Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    p7.verify(&none, &store, Some(body), None, flags)
        .map_err(|e| IdentityError::SignatureInvalid(reason(&e)))?;
    let signers = p7
        .signers(&none, flags)
        .map_err(|e| IdentityError::SignatureInvalid(reason(&e)))?;
    if signers.len() != 1 {
        return Err(IdentityError::Signers(signers.len()));
    }
    signers.into_iter().next().ok_or(IdentityError::Signers(0))
}

/// The identity certificate of a proxy's header: `:base64 DER:` (RFC 9440)
/// or a URL-query-escaped PEM (nginx's `$ssl_client_escaped_cert`), whose
/// first PEM block must be a certificate. `None` for anything else, which
/// the request then lacks.
pub fn from_header(value: &str) -> Option<X509> {
    if let Some(rest) = value.strip_prefix(':') {
        let b64 = rest.strip_suffix(':')?;
        if b64.is_empty() {
            return None;
        }
        let der = openssl::base64::decode_block(b64).ok()?;
        return X509::from_der(&der).ok();
    }
    let pem = unescape_query(value)?;
    let begin = pem.find("-----BEGIN ")?;
    if !pem[begin..].starts_with("-----BEGIN CERTIFICATE-----") {
        return None;
    }
    X509::from_pem(&pem.as_bytes()[begin..]).ok()
}

/// Form-style unescaping: `+` is a space, `%XX` a byte; a bad escape fails.
fn unescape_query(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `hash`: lowercase hex of the SHA-256 of the certificate's DER, the key
/// of certificate associations (§4.4).
pub fn cert_hash(cert: &X509) -> Result<String, IdentityError> {
    let digest = cert
        .digest(MessageDigest::sha256())
        .map_err(|e| IdentityError::SignatureFormat(reason(&e)))?;
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks identities against the configured roots and intermediates: a
/// chain to a root, inside its validity now, usable for client
/// authentication (a leaf without extended key usage passes).
pub struct Verifier {
    store: X509Store,
    intermediates: Vec<X509>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// From PEM bundles: `roots` (one certificate or more) and optional
    /// `intermediates`.
    pub fn new(roots: &[X509], intermediates: Vec<X509>) -> Result<Self, IdentityError> {
        let ca = |e: openssl::error::ErrorStack| IdentityError::CaFile {
            path: String::new(),
            reason: reason(&e),
        };
        let mut builder = X509StoreBuilder::new().map_err(ca)?;
        for root in roots {
            builder.add_cert(root.clone()).map_err(ca)?;
        }
        builder.set_purpose(X509PurposeId::SSL_CLIENT).map_err(ca)?;
        Ok(Verifier {
            store: builder.build(),
            intermediates,
        })
    }

    /// Reads the CA file and the optional intermediates file.
    pub fn from_files(
        ca_file: &str,
        intermediate_file: Option<&str>,
    ) -> Result<Self, IdentityError> {
        let read = |path: &str| -> Result<Vec<X509>, IdentityError> {
            let fail = |reason: String| IdentityError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let certs = X509::stack_from_pem(&pem).map_err(|e| fail(reason(&e)))?;
            if certs.is_empty() {
                return Err(fail("no certificate in the file".into()));
            }
            Ok(certs)
        };
        let roots = read(ca_file)?;
        let intermediates = match intermediate_file {
            Some(path) if !path.is_empty() => read(path)?,
            _ => Vec::new(),
        };
        Self::new(&roots, intermediates).map_err(|e| match e {
            IdentityError::CaFile { reason, .. } => IdentityError::CaFile {
                path: ca_file.to_owned(),
                reason,
            },
            other => other,
        })
    }

    pub fn verify(&self, cert: &X509) -> Result<(), IdentityError> {
        let untrusted = |e: openssl::error::ErrorStack| IdentityError::Untrusted(reason(&e));
        let mut chain = Stack::new().map_err(untrusted)?;
        for c in &self.intermediates {
            chain.push(c.clone()).map_err(untrusted)?;
        }
        let mut ctx = X509StoreContext::new().map_err(untrusted)?;
        let verdict = ctx
            .init(&self.store, cert, &chain, |c| {
                Ok(if c.verify_cert()? {
                    Ok(())
                } else {
                    Err(c.error().error_string().to_owned())
                })
            })
            .map_err(untrusted)?;
        verdict.map_err(IdentityError::Untrusted)
    }
}

/// openssl's first reason, without the library's internal codes.
fn reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason())
        .unwrap_or("unknown openssl error")
        .to_owned()
}

#[cfg(test)]
mod tests;
