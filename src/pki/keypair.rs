//! The token-PKI key pair: RSA-2048 and a self-signed certificate, in PEM.

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::KeyUsage;
use openssl::x509::{X509, X509NameBuilder};
use std::fmt;
use time::OffsetDateTime;

const RSA_BITS: u32 = 2048;
/// Longest accepted common name: X.520's upper bound for CN.
const MAX_CN_CHARS: usize = 64;
/// Longest accepted validity: ten years.
pub const MAX_VALIDITY_DAYS: u32 = 3650;
/// Clock skew allowance: the certificate is valid from a little before now.
const BACKDATE_SECS: i64 = 10 * 60;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("common name must be 1 to {MAX_CN_CHARS} characters without control characters")]
    BadCn,
    #[error("validity must be 1 to {MAX_VALIDITY_DAYS} days, not {0}")]
    BadValidity(u32),
    #[error("the private key is encrypted: a password is needed")]
    PasswordNeeded,
    #[error("the private key could not be read (wrong password or not a PEM private key): {0}")]
    BadKey(ErrorStack),
    #[error("the certificate could not be read (not a PEM certificate): {0}")]
    BadCert(ErrorStack),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("OpenSSL failed: {0}")]
    Crypto(#[from] ErrorStack),
}

/// Checks a certificate common name.
pub fn validate_cn(cn: &str) -> Result<(), KeyError> {
    let chars = cn.chars().count();
    if chars == 0 || chars > MAX_CN_CHARS || cn.chars().any(char::is_control) {
        return Err(KeyError::BadCn);
    }
    Ok(())
}

/// A certificate and its private key.
pub struct KeyPair {
    cert: X509,
    key: PKey<Private>,
}

/// Never prints the key.
impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("subject", self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

/// Bits of a certificate serial number: at most 20 octets are allowed
/// (RFC 5280, 4.1.2.2), and 159 random bits keep the top one clear, so the
/// DER integer is positive without a padding octet.
const SERIAL_BITS: i32 = 159;

/// A random positive serial number. Apple encrypts the token file to the
/// certificate's issuer and serial; with every certificate of a name being
/// self-signed `CN=<cn>`, the serial is what tells the staging certificate
/// from the current one.
fn random_serial() -> Result<Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(SERIAL_BITS, MsbOption::MAYBE_ZERO, false)?;
    if bn.num_bits() == 0 {
        bn = BigNum::from_u32(1)?;
    }
    Asn1Integer::from_bn(&bn)
}

impl KeyPair {
    /// A fresh RSA-2048 key and a self-signed certificate for `CN=<cn>`,
    /// valid from ten minutes before `now` for `days` days. Takes some
    /// hundred milliseconds of CPU: async callers use the blocking pool.
    pub fn generate(cn: &str, days: u32, now: OffsetDateTime) -> Result<KeyPair, KeyError> {
        validate_cn(cn)?;
        if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
            return Err(KeyError::BadValidity(days));
        }
        let key = PKey::from_rsa(Rsa::generate(RSA_BITS)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        let name = name.build();
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = random_serial()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        let start = now.unix_timestamp() - BACKDATE_SECS;
        let end = now.unix_timestamp() + i64::from(days) * 86_400;
        let (not_before, not_after) = (Asn1Time::from_unix(start)?, Asn1Time::from_unix(end)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.set_pubkey(&key)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .key_encipherment()
                .digital_signature()
                .build()?,
        )?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(KeyPair {
            cert: builder.build(),
            key,
        })
    }

    /// Loads a certificate and its key (PKCS#1 or PKCS#8 PEM, encrypted
    /// when `password` is given) and checks that they belong together.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        password: Option<&[u8]>,
    ) -> Result<KeyPair, KeyError> {
        let cert = X509::from_pem(cert_pem).map_err(KeyError::BadCert)?;
        let key = match password {
            Some(pw) => PKey::private_key_from_pem_passphrase(key_pem, pw),
            None if is_encrypted(key_pem) => return Err(KeyError::PasswordNeeded),
            // The callback answers "no password" so OpenSSL never prompts
            // on a terminal.
            None => PKey::private_key_from_pem_callback(key_pem, |_| Ok(0)),
        }
        .map_err(KeyError::BadKey)?;
        let public = cert.public_key()?;
        if !key.public_eq(&public) {
            return Err(KeyError::Mismatch);
        }
        Ok(KeyPair { cert, key })
    }

    pub fn cert(&self) -> &X509 {
        &self.cert
    }

    pub fn key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    pub fn cert_pem(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.cert.to_pem()?)
    }

    /// The key as PKCS#8 PEM; with a password, encrypted with AES-256-CBC.
    pub fn key_pem(&self, password: Option<&[u8]>) -> Result<Vec<u8>, KeyError> {
        Ok(match password {
            Some(pw) => self
                .key
                .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pw)?,
            None => self.key.private_key_to_pem_pkcs8()?,
        })
    }
}

fn is_encrypted(pem: &[u8]) -> bool {
    pem.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[test]
    fn serial_numbers_are_random_and_positive() {
        let a = KeyPair::generate("depserver", 1, NOW).expect("generate");
        let b = KeyPair::generate("depserver", 1, NOW).expect("generate");
        let (sa, sb) = (
            a.cert().serial_number().to_bn().expect("bn"),
            b.cert().serial_number().to_bn().expect("bn"),
        );
        assert_ne!(
            sa, sb,
            "two certificates with the same CN need different serials"
        );
        for s in [&sa, &sb] {
            assert!(!s.is_negative());
            assert!(s.num_bits() > 64, "serial {s} is too short to be random");
            assert!(s.num_bits() <= SERIAL_BITS);
        }
    }

    #[test]
    fn certificate_has_the_specified_shape() {
        let pair = KeyPair::generate("depserver", 30, NOW).expect("generate");
        let cert = pair.cert();
        let cn = |n: &openssl::x509::X509NameRef| {
            n.entries_by_nid(Nid::COMMONNAME)
                .next()
                .and_then(|e| e.data().to_string().ok())
        };
        assert_eq!(cn(cert.subject_name()).as_deref(), Some("depserver"));
        assert_eq!(cn(cert.issuer_name()).as_deref(), Some("depserver"));
        let start = Asn1Time::from_unix(NOW.unix_timestamp() - 600).expect("t");
        let end = Asn1Time::from_unix(NOW.unix_timestamp() + 30 * 86_400).expect("t");
        assert_eq!(cert.not_before(), start.as_ref());
        assert_eq!(cert.not_after(), end.as_ref());
        assert_eq!(
            cert.signature_algorithm().object().nid(),
            Nid::SHA256WITHRSAENCRYPTION
        );
        assert_eq!(pair.key().bits(), 2048);
        assert!(cert.verify(pair.key()).expect("verify"), "self-signed");
        let text = String::from_utf8(cert.to_text().expect("text")).expect("utf8");
        assert!(
            text.contains("X509v3 Key Usage: critical")
                && text.contains("Digital Signature, Key Encipherment"),
            "{text}"
        );
    }

    #[test]
    fn pem_round_trips_with_and_without_password() {
        let pair = KeyPair::generate("Ünïcode CN", 1, NOW).expect("generate");
        let cert_pem = pair.cert_pem().expect("cert");
        let plain = pair.key_pem(None).expect("key");
        let loaded = KeyPair::from_pem(&cert_pem, &plain, None).expect("load plain");
        assert!(loaded.key().public_eq(pair.key()));

        let encrypted = pair.key_pem(Some(b"s3cret")).expect("encrypted");
        assert!(String::from_utf8_lossy(&encrypted).contains("BEGIN ENCRYPTED PRIVATE KEY"));
        assert!(matches!(
            KeyPair::from_pem(&cert_pem, &encrypted, None),
            Err(KeyError::PasswordNeeded)
        ));
        assert!(matches!(
            KeyPair::from_pem(&cert_pem, &encrypted, Some(b"wrong")),
            Err(KeyError::BadKey(_))
        ));
        let loaded = KeyPair::from_pem(&cert_pem, &encrypted, Some(b"s3cret")).expect("load");
        assert!(loaded.key().public_eq(pair.key()));

        let other = KeyPair::generate("depserver", 1, NOW).expect("generate");
        let other_key = other.key_pem(None).expect("key");
        assert!(matches!(
            KeyPair::from_pem(&cert_pem, &other_key, None),
            Err(KeyError::Mismatch)
        ));
        assert!(matches!(
            KeyPair::from_pem(b"junk", &plain, None),
            Err(KeyError::BadCert(_))
        ));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn refuses_bad_parameters() {
        for cn in ["", "a\nb", "tab\there", &"x".repeat(65)] {
            assert!(
                matches!(KeyPair::generate(cn, 1, NOW), Err(KeyError::BadCn)),
                "{cn:?}"
            );
        }
        assert!(validate_cn(&"x".repeat(64)).is_ok());
        for days in [0, MAX_VALIDITY_DAYS + 1] {
            assert!(matches!(
                KeyPair::generate("depserver", days, NOW),
                Err(KeyError::BadValidity(_))
            ));
        }
    }
}
