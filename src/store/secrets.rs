//! Secrets at rest: the records that hold OAuth secrets and private keys
//! (`tokens`, `pki.staging`, `pki.current`) are sealed with AES-256-GCM
//! before they reach the engine, so a copy of the data directory or a
//! backup of it does not give them away without the key.
//!
//! A sealed value is `MAGIC | key id (8) | nonce (12) | ciphertext | tag
//! (16)`. The nonce is random per write; the record's storage key is the
//! associated data, so a value copied under another name (or another
//! field) does not open. The key id (a hash of the key) lets depd say
//! "these records were sealed with another key" instead of "corrupt".
//!
//! The key comes from, in order (see [`resolve_key`]):
//! 1. the systemd credential `depd-secrets-key` (`$CREDENTIALS_DIRECTORY`);
//! 2. `secrets_key_file` of the configuration;
//! 3. `secrets.key` in the data directory, created on first start with a
//!    warning: it keeps every start working, and protects nothing against
//!    a copy of the whole directory.
//!
//! A key file holds 32 bytes as 64 hex digits (`openssl rand -hex 32`), or
//! the 32 raw bytes.

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Marks a sealed value. No record starts with it: a record's first byte
/// is its version, a small number.
pub const MAGIC: &[u8; 6] = b"\xE5SEAL1";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;

/// The systemd credential's name.
pub const CREDENTIAL_NAME: &str = "depd-secrets-key";
/// The key file depd creates in the data directory when no other is given.
pub const DATA_DIR_KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets key {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("a stored secret ({key}) is damaged or was not sealed by depd")]
    Malformed { key: String },
    #[error(
        "the stored secrets were sealed with key {stored}, but the key in use ({source_}) is {ours}: \
         start depd with the key they were sealed with; nothing was changed"
    )]
    WrongKey {
        stored: String,
        ours: String,
        source_: String,
    },
    #[error(
        "a stored secret ({key}) does not open with key {ours}: it was altered or copied from another record"
    )]
    Unopened { key: String, ours: String },
    #[error("sealing a secret failed: {0}")]
    Crypto(String),
}

/// The data key. Its bytes never appear in `Debug` or a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey {
    key: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretsKey({})", self.id_hex())
    }
}

impl SecretsKey {
    /// A new random key.
    pub fn generate() -> Result<Self, SecretsError> {
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key).map_err(|e| SecretsError::Crypto(e.to_string()))?;
        Ok(Self::from_array(key))
    }

    pub(crate) fn from_array(key: [u8; 32]) -> Self {
        let digest = openssl::sha::sha256(&[b"depd secrets key id\0".as_slice(), &key].concat());
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        SecretsKey { key, id }
    }

    /// Parses a key file's content: 64 hex digits (surrounding whitespace
    /// ignored) or exactly 32 raw bytes.
    pub fn parse(content: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(content).map(str::trim).ok();
        if let Some(hex) = text.filter(|t| t.len() == 64) {
            let mut key = [0u8; 32];
            for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
                let digit = |b: u8| (b as char).to_digit(16);
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(hi), Some(lo)) => key[i] = (hi * 16 + lo) as u8,
                    _ => return Err("64 characters but not hex digits".into()),
                }
            }
            return Ok(Self::from_array(key));
        }
        if content.len() == 32 {
            let mut key = [0u8; 32];
            key.copy_from_slice(content);
            return Ok(Self::from_array(key));
        }
        Err(format!(
            "{} bytes: a key is 64 hex digits (openssl rand -hex 32) or 32 raw bytes",
            content.len()
        ))
    }

    /// The key as 64 hex digits, as key files hold it.
    pub fn to_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key's id, safe to show: a hash, not the key.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// Seals `plain` for the record stored under `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| SecretsError::Crypto(e.to_string()))?;
        let mut tag = [0u8; TAG_LEN];
        let cipher = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            aad,
            plain,
            &mut tag,
        )
        .map_err(|e| SecretsError::Crypto(e.to_string()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + cipher.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&cipher);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a value sealed for the record stored under `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let label = || String::from_utf8_lossy(aad).replace('\0', "/");
        let stored_id =
            sealed_key_id(sealed).ok_or_else(|| SecretsError::Malformed { key: label() })?;
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(SecretsError::Malformed { key: label() });
        }
        if stored_id != self.id {
            return Err(SecretsError::WrongKey {
                stored: hex(&stored_id),
                ours: self.id_hex(),
                source_: "this process".into(),
            });
        }
        let nonce = &sealed[MAGIC.len() + KEY_ID_LEN..HEADER_LEN];
        let (cipher, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(nonce),
            aad,
            cipher,
            tag,
        )
        .map_err(|_| SecretsError::Unopened {
            key: label(),
            ours: self.id_hex(),
        })
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &[u8]) -> bool {
    value.starts_with(MAGIC)
}

/// The id of the key a sealed value was sealed with.
pub fn sealed_key_id(value: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    let rest = value.strip_prefix(MAGIC.as_slice())?;
    rest.get(..KEY_ID_LEN)?.try_into().ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the key in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The systemd credential (file under `$CREDENTIALS_DIRECTORY`).
    Credential(PathBuf),
    /// `secrets_key_file` of the configuration.
    File(PathBuf),
    /// `secrets.key` in the data directory, read.
    DataDir(PathBuf),
    /// `secrets.key` in the data directory, made now: written only once
    /// the store is known to hold no sealed record (see `open`).
    DataDirNew(PathBuf),
}

impl KeySource {
    pub fn path(&self) -> &Path {
        match self {
            KeySource::Credential(p)
            | KeySource::File(p)
            | KeySource::DataDir(p)
            | KeySource::DataDirNew(p) => p,
        }
    }

    /// Whether depd may write the key file (rotation).
    pub fn writable(&self) -> bool {
        !matches!(self, KeySource::Credential(_))
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            KeySource::File(p) => write!(f, "secrets_key_file {}", p.display()),
            KeySource::DataDir(p) | KeySource::DataDirNew(p) => {
                write!(f, "{} in the data directory", p.display())
            }
        }
    }
}

/// Finds the key: the systemd credential, else `key_file`, else the data
/// directory's `secrets.key` (a new key when that file does not exist).
pub fn resolve_key(
    data_dir: &Path,
    key_file: Option<&Path>,
    credentials_dir: Option<&Path>,
) -> Result<(SecretsKey, KeySource), SecretsError> {
    if let Some(dir) = credentials_dir {
        let path = dir.join(CREDENTIAL_NAME);
        if path.exists() {
            return Ok((read_key(&path)?, KeySource::Credential(path)));
        }
    }
    if let Some(path) = key_file {
        return Ok((read_key(path)?, KeySource::File(path.to_path_buf())));
    }
    let path = data_dir.join(DATA_DIR_KEY_FILE);
    if path.exists() {
        return Ok((read_key(&path)?, KeySource::DataDir(path)));
    }
    Ok((SecretsKey::generate()?, KeySource::DataDirNew(path)))
}

pub fn read_key(path: &Path) -> Result<SecretsKey, SecretsError> {
    let err = |message: String| SecretsError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    let content = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    SecretsKey::parse(&content).map_err(err)
}

/// Writes a key file (mode 0600, flushed to disk, then renamed into
/// place, so a crash leaves the old file or the new one).
pub fn write_key(path: &Path, key: &SecretsKey) -> Result<(), SecretsError> {
    let err = |e: std::io::Error| SecretsError::KeyFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tmp = path.with_extension("key.tmp");
    {
        let mut f = super::fsutil::create_private(&tmp).map_err(err)?;
        f.write_all(format!("{}\n", key.to_hex()).as_bytes())
            .map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    super::fsutil::sync_dir(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_record() {
        let key = SecretsKey::generate().expect("key");
        let sealed = key.seal(b"n/acme\0tokens", b"secret bytes").expect("seal");
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open(b"n/acme\0tokens", &sealed).expect("open"),
            b"secret bytes"
        );
        // Copied to another name: refused.
        assert!(matches!(
            key.open(b"n/other\0tokens", &sealed),
            Err(SecretsError::Unopened { .. })
        ));
        // Another key: refused, naming both ids.
        let other = SecretsKey::generate().expect("key");
        let err = other
            .open(b"n/acme\0tokens", &sealed)
            .expect_err("wrong key");
        assert!(err.to_string().contains(&key.id_hex()), "{err}");
        // Flipped bits: refused.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(key.open(b"n/acme\0tokens", &bad).is_err());
        assert!(matches!(
            key.open(b"n/acme\0tokens", &sealed[..HEADER_LEN]),
            Err(SecretsError::Malformed { .. })
        ));
        // Two seals of the same value differ (random nonce).
        assert_ne!(
            key.seal(b"k", b"v").expect("seal"),
            key.seal(b"k", b"v").expect("seal")
        );
    }

    #[test]
    fn key_files_are_hex_or_raw() {
        let key = SecretsKey::generate().expect("key");
        let parsed = SecretsKey::parse(format!("{}\n", key.to_hex()).as_bytes()).expect("hex");
        assert_eq!(parsed, key);
        assert_eq!(SecretsKey::parse(&key.key).expect("raw"), key);
        for bad in [&b""[..], b"abc", &[b'g'; 64]] {
            assert!(SecretsKey::parse(bad).is_err());
        }
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }

    #[test]
    fn the_credential_wins_then_the_file_then_the_data_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).expect("mkdir");
        let data = dir.path().join("data");
        let (_, src) = resolve_key(&data, None, Some(&creds)).expect("new");
        assert!(matches!(src, KeySource::DataDirNew(_)));
        let file = dir.path().join("k");
        let k1 = SecretsKey::generate().expect("key");
        write_key(&file, &k1).expect("write");
        let (got, src) = resolve_key(&data, Some(&file), Some(&creds)).expect("file");
        assert_eq!((got, src), (k1.clone(), KeySource::File(file.clone())));
        let k2 = SecretsKey::generate().expect("key");
        write_key(&creds.join(CREDENTIAL_NAME), &k2).expect("write");
        let (got, src) = resolve_key(&data, Some(&file), Some(&creds)).expect("cred");
        assert_eq!(got, k2);
        assert!(matches!(src, KeySource::Credential(_)));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
