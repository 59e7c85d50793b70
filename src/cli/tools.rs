//! The offline tools of the command line (like NanoDEP's `deptokens` and
//! `bypasscode`): key pair files, token file decryption and bypass codes,
//! with no daemon involved.

use crate::domain::tokens;
use crate::pki::bypass::{BypassCode, BypassError};
use crate::pki::{self, KeyError, KeyPair, P7mError};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; use --force to overwrite it")]
    Exists(PathBuf),
    #[error("--cert and --key must be different files")]
    SamePath,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    P7m(#[from] P7mError),
    #[error(transparent)]
    Bypass(#[from] BypassError),
    #[error("give either --raw or --code, not both")]
    RawAndCode,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ToolError + '_ {
    move |source| ToolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `depd tokens keypair` writes.
pub struct KeypairFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub cn: &'a str,
    pub days: u32,
    pub password: Option<&'a str>,
    pub force: bool,
}

/// Generates a key pair and writes the certificate and the key (mode
/// 0600, PKCS#8, encrypted when a password is given). Without `force`,
/// existing files are refused before anything is written.
pub fn tokens_keypair(files: &KeypairFiles<'_>, now: OffsetDateTime) -> Result<(), ToolError> {
    if files.cert == files.key {
        return Err(ToolError::SamePath);
    }
    if !files.force {
        for path in [files.cert, files.key] {
            if path.exists() {
                return Err(ToolError::Exists(path.to_owned()));
            }
        }
    }
    let pair = KeyPair::generate(files.cn, files.days, now)?;
    let key_pem = pair.key_pem(files.password.map(str::as_bytes))?;
    write_file(files.key, &key_pem, 0o600, files.force)?;
    write_file(files.cert, &pair.cert_pem()?, 0o644, files.force)
}

fn write_file(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), ToolError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        // create_new: a file appearing since the check is still not clobbered.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => ToolError::Exists(path.to_owned()),
        _ => io(path)(e),
    })?;
    // `mode` applies only to new files; an overwritten key must not stay
    // readable by others.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(path))?;
    file.write_all(data).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Decrypts a `.p7m` token file with a certificate and key from files;
/// returns the token JSON, pretty-printed.
pub fn tokens_decrypt(
    token: &Path,
    cert: &Path,
    key: &Path,
    password: Option<&str>,
) -> Result<String, ToolError> {
    let cert_pem = std::fs::read(cert).map_err(io(cert))?;
    let key_pem = std::fs::read(key).map_err(io(key))?;
    let file = std::fs::read(token).map_err(io(token))?;
    let pair = KeyPair::from_pem(&cert_pem, &key_pem, password.map(str::as_bytes))?;
    let tokens = pki::decrypt_token_file(&file, &pair)?;
    let json =
        serde_json::to_string_pretty(&tokens::to_json(&tokens)).map_err(|e| ToolError::Io {
            path: token.to_owned(),
            source: std::io::Error::other(e),
        })?;
    Ok(json)
}

/// The three forms of a bypass code (random when neither is given), one
/// `form: value` line each.
pub fn bypasscode(raw: Option<&str>, code: Option<&str>) -> Result<String, ToolError> {
    let code = match (raw, code) {
        (Some(_), Some(_)) => return Err(ToolError::RawAndCode),
        (Some(raw), None) => BypassCode::from_hex(raw.trim())?,
        (None, Some(code)) => BypassCode::from_code(code.trim())?,
        (None, None) => BypassCode::random()?,
    };
    Ok(format!(
        "raw: {}\ncode: {}\nhash: {}",
        code.to_hex(),
        code.to_code(),
        code.escrow_hash()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[test]
    fn keypair_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        let files = KeypairFiles {
            cert: &cert,
            key: &key,
            cn: "depserver",
            days: 1,
            password: Some("pw"),
            force: false,
        };
        tokens_keypair(&files, NOW).expect("first");
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let before = std::fs::read(&key).expect("key");
        assert!(matches!(
            tokens_keypair(&files, NOW),
            Err(ToolError::Exists(p)) if p == cert
        ));
        assert_eq!(std::fs::read(&key).expect("key"), before);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        tokens_keypair(
            &KeypairFiles {
                force: true,
                ..files
            },
            NOW,
        )
        .expect("forced");
        assert_ne!(std::fs::read(&key).expect("key"), before);
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let same = KeypairFiles {
            key: &cert,
            ..files
        };
        assert!(matches!(
            tokens_keypair(&same, NOW),
            Err(ToolError::SamePath)
        ));
    }

    #[test]
    fn bypasscode_prints_three_forms_and_refuses_both_inputs() {
        let out = bypasscode(Some("00000000000000000000000000000000"), None).expect("raw");
        assert_eq!(
            out,
            "raw: 00000000000000000000000000000000\ncode: 00000-00000-0000-0000-0000-0000\nhash: deab860d28deb5b7121d6d8fcf0f78e1471756d1b2c566c03277c23ea8930b4f"
        );
        assert!(matches!(
            bypasscode(Some("00"), Some("00")),
            Err(ToolError::RawAndCode)
        ));
        assert_eq!(bypasscode(None, None).expect("random").lines().count(), 3);
    }
}
