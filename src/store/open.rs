//! Opening the data directory: the one way the daemon and the offline
//! tools (one-shot sync, import, key rotation) get a [`Store`]. It makes
//! the directory private, finds the secrets key, checks it against what
//! is stored (a wrong key stops start-up and writes nothing), finishes a
//! key rotation that was cut off, and seals secret records written before
//! sealing existed.

use super::fsutil;
use super::secrets::{self, KeySource, SecretsError, SecretsKey};
use super::{Store, StoreError};
use std::path::{Path, PathBuf};

/// A store opened on a data directory, with where its key came from.
pub struct Opened {
    pub store: Store,
    pub source: KeySource,
    /// Plain secret records sealed by this start.
    pub sealed_now: usize,
}

/// Where a rotation keeps the new key until the records are sealed with
/// it: beside the key file, `<file>.new`.
pub fn pending_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Opens `data_dir` with the key from the systemd credential (when
/// `$CREDENTIALS_DIRECTORY` holds one), `key_file`, or the data
/// directory's own key file.
pub fn open_data_dir(data_dir: &Path, key_file: Option<&Path>) -> Result<Opened, StoreError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    open_data_dir_with(data_dir, key_file, credentials.as_deref())
}

pub fn open_data_dir_with(
    data_dir: &Path,
    key_file: Option<&Path>,
    credentials_dir: Option<&Path>,
) -> Result<Opened, StoreError> {
    fsutil::ensure_private_dir(data_dir)
        .map_err(|e| StoreError::Engine(format!("creating {}: {e}", data_dir.display())))?;
    fsutil::warn_if_exposed(data_dir, "the data directory");
    let (key, mut source) = secrets::resolve_key(data_dir, key_file, credentials_dir)?;
    let mut store = Store::open_sled(data_dir, key)?;
    let scan = store.secrets_scan()?;
    let ours = store.key_id();
    let foreign = scan.key_ids.iter().find(|id| **id != ours).cloned();
    if let Some(stored) = foreign {
        if let KeySource::DataDirNew(path) = &source {
            return Err(SecretsError::KeyFile {
                path: path.clone(),
                message: format!(
                    "missing, but the data directory holds secrets sealed with key {stored}: \
                     restore the key file, or start with the key they were sealed with \
                     (systemd credential {} or secrets_key_file); nothing was changed",
                    secrets::CREDENTIAL_NAME
                ),
            }
            .into());
        }
        // A rotation cut off after sealing with the new key but before
        // the new key file replaced the old one.
        let pending = pending_key_path(source.path());
        let resumed = (source.writable() && pending.exists())
            .then(|| secrets::read_key(&pending).ok())
            .flatten()
            .filter(|k| scan.key_ids.iter().all(|id| *id == k.id_hex()));
        match resumed {
            Some(next) => {
                let path = source.path().to_path_buf();
                std::fs::rename(&pending, &path)
                    .and_then(|()| fsutil::sync_dir(&path))
                    .map_err(|e| SecretsError::KeyFile {
                        path: path.clone(),
                        message: format!("finishing the interrupted key rotation: {e}"),
                    })?;
                tracing::warn!(key_file = %path.display(), key_id = %next.id_hex(), "finished an interrupted secrets key rotation");
                store = store.rekeyed(next);
            }
            None => {
                return Err(SecretsError::WrongKey {
                    stored,
                    ours,
                    source_: source.to_string(),
                }
                .into());
            }
        }
    }
    if let KeySource::DataDirNew(path) = &source {
        secrets::write_key(path, &store.key)?;
        tracing::warn!(
            key_file = %path.display(),
            key_id = %store.key_id(),
            "no secrets key was given, so depd made one in the data directory: it protects nothing \
             against a copy of the whole directory; give depd a key from outside it (systemd \
             credential depd-secrets-key or secrets_key_file; docs/operations.md, Security)"
        );
        source = KeySource::DataDir(path.clone());
    } else if !matches!(source, KeySource::Credential(_)) {
        fsutil::warn_if_exposed(source.path(), "the secrets key file");
    }
    let sealed_now = store.seal_plain_secrets()?;
    if sealed_now > 0 {
        tracing::info!(records = sealed_now, key_id = %store.key_id(), "sealed secrets stored before sealing existed");
    }
    Ok(Opened {
        store,
        source,
        sealed_now,
    })
}

/// Opens the data directory of `settings` off the async threads and reads
/// every name's state: what the daemon and the one-shot sync both start
/// from.
pub async fn open_and_load(
    settings: &crate::settings::Settings,
) -> Result<(Store, Vec<(crate::domain::name::DepName, super::NameData)>), StoreError> {
    let dir = settings.data_dir.clone();
    let key_file = settings.secrets_key_file.clone();
    let store = tokio::task::spawn_blocking(move || open_data_dir(&dir, key_file.as_deref()))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??
        .store;
    let stored = store.blocking(Store::load_all).await?;
    Ok((store, stored))
}

/// What `depd secrets rotate` did.
#[derive(Debug)]
pub struct Rotation {
    pub records: usize,
    pub old_id: String,
    pub new_id: String,
    /// Where the new key is: the key file it replaced, or the file given.
    pub key_file: PathBuf,
    /// Whether depd must be pointed at `key_file` before it starts again.
    pub reconfigure: bool,
}

/// Seals every secret again under a new key: the key in `new_key_file`,
/// or a new random one written over the key file in use (not possible
/// when the key is a systemd credential). Safe against a crash at any
/// point: the next start finds the records sealed with the old key and
/// the old file, or with the new key and its file (`<file>.new`, which it
/// then moves into place).
pub fn rotate(
    data_dir: &Path,
    key_file: Option<&Path>,
    new_key_file: Option<&Path>,
) -> Result<Rotation, StoreError> {
    let opened = open_data_dir(data_dir, key_file)?;
    let old_id = opened.store.key_id();
    let (new, pending) = match new_key_file {
        Some(path) => (secrets::read_key(path)?, None),
        None if opened.source.writable() => {
            let key = SecretsKey::generate()?;
            let pending = pending_key_path(opened.source.path());
            secrets::write_key(&pending, &key)?;
            (key, Some(pending))
        }
        None => {
            return Err(SecretsError::KeyFile {
                path: opened.source.path().to_path_buf(),
                message: "the key is a systemd credential, which depd cannot replace: make a new \
                          key (openssl rand -hex 32), pass it with --new-key-file, then point the \
                          credential at it"
                    .into(),
            }
            .into());
        }
    };
    if new.id_hex() == old_id {
        return Err(SecretsError::KeyFile {
            path: new_key_file.map(Path::to_path_buf).unwrap_or_default(),
            message: "this is the key in use already".into(),
        }
        .into());
    }
    let new_id = new.id_hex();
    let (store, records) = opened.store.reseal(new)?;
    store.flush()?;
    let (key_file, reconfigure) = match pending {
        Some(pending) => {
            let path = opened.source.path().to_path_buf();
            std::fs::rename(&pending, &path)
                .and_then(|()| fsutil::sync_dir(&path))
                .map_err(|e| SecretsError::KeyFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            (path, false)
        }
        None => (
            new_key_file.map(Path::to_path_buf).unwrap_or_default(),
            true,
        ),
    };
    Ok(Rotation {
        records,
        old_id,
        new_id,
        key_file,
        reconfigure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::name::DepName;
    use crate::store::{Field, NameWrite, StoredTokens, Write, field_key, record};

    fn tokens(secret: &str) -> StoredTokens {
        StoredTokens {
            consumer_key: "CK".into(),
            consumer_secret: secret.into(),
            access_token: "AT".into(),
            access_secret: "AS".into(),
            access_token_expiry_unix: 0,
        }
    }

    fn put_tokens(store: &Store, name: &DepName, secret: &str) {
        let mut w = NameWrite::default();
        w.put(name, Field::Tokens, &tokens(secret));
        store.commit(w).expect("commit");
    }

    fn acme() -> DepName {
        DepName::parse("acme").expect("name")
    }

    #[test]
    fn plain_records_from_before_sealing_are_sealed_on_open() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        {
            let opened = open_data_dir_with(&data, None, None).expect("open");
            // As an older depd wrote it: the record itself, unsealed.
            opened
                .store
                .engine
                .commit(vec![Write::Put(
                    field_key(&acme(), Field::Tokens),
                    record::encode(&tokens("OLD_SECRET")),
                )])
                .expect("write");
            assert_eq!(opened.store.secrets_scan().expect("scan").plain, 1);
        }
        let opened = open_data_dir_with(&data, None, None).expect("reopen");
        assert_eq!(opened.sealed_now, 1);
        let scan = opened.store.secrets_scan().expect("scan");
        assert_eq!((scan.plain, scan.sealed), (0, 1));
        let data_of = opened.store.load_name(&acme()).expect("load");
        assert_eq!(
            data_of.tokens.expect("tokens").consumer_secret,
            "OLD_SECRET"
        );
    }

    #[test]
    fn a_wrong_or_missing_key_refuses_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let key_file = dir.path().join("k");
        secrets::write_key(&key_file, &SecretsKey::generate().expect("key")).expect("write");
        {
            let opened = open_data_dir_with(&data, Some(&key_file), None).expect("open");
            put_tokens(&opened.store, &acme(), "S1");
        }
        let wrong = dir.path().join("wrong");
        secrets::write_key(&wrong, &SecretsKey::generate().expect("key")).expect("write");
        let err = open_data_dir_with(&data, Some(&wrong), None)
            .err()
            .expect("wrong key");
        assert!(err.to_string().contains("sealed with key"), "{err}");
        // No key given: depd must not make one over sealed data.
        let err = open_data_dir_with(&data, None, None)
            .err()
            .expect("missing key");
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(!data.join(secrets::DATA_DIR_KEY_FILE).exists());
        let opened = open_data_dir_with(&data, Some(&key_file), None).expect("right key");
        let t = opened.store.load_name(&acme()).expect("load").tokens;
        assert_eq!(t.expect("tokens").consumer_secret, "S1");
    }

    #[test]
    fn rotation_reseals_everything_and_survives_an_interruption() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let old_id = {
            let opened = open_data_dir_with(&data, None, None).expect("open");
            put_tokens(&opened.store, &acme(), "S1");
            opened.store.key_id()
        };
        let key_file = data.join(secrets::DATA_DIR_KEY_FILE);
        // The data directory's own key: a new one replaces it.
        let r = rotate_with(&data, None, None).expect("rotate");
        assert_eq!(
            (r.records, r.old_id.as_str(), r.reconfigure),
            (1, old_id.as_str(), false)
        );
        assert_eq!(
            secrets::read_key(&key_file).expect("key").id_hex(),
            r.new_id
        );
        let opened = open_data_dir_with(&data, None, None).expect("open");
        assert_eq!(
            opened.store.secrets_scan().expect("scan").key_ids,
            vec![r.new_id.clone()]
        );
        drop(opened);

        // Cut off after sealing, before the key file was replaced: the
        // next open finds <file>.new and finishes.
        let next = SecretsKey::generate().expect("key");
        {
            let opened = open_data_dir_with(&data, None, None).expect("open");
            secrets::write_key(&pending_key_path(&key_file), &next).expect("pending");
            opened.store.reseal(next.clone()).expect("reseal");
        }
        let opened = open_data_dir_with(&data, None, None).expect("resumed");
        assert_eq!(opened.store.key_id(), next.id_hex());
        assert!(!pending_key_path(&key_file).exists());
        let t = opened.store.load_name(&acme()).expect("load").tokens;
        assert_eq!(t.expect("tokens").consumer_secret, "S1");
        drop(opened);

        // A given key file: the records move to it, and depd must be told.
        let given = dir.path().join("given");
        secrets::write_key(&given, &SecretsKey::generate().expect("key")).expect("write");
        let r = rotate_with(&data, None, Some(&given)).expect("rotate");
        assert!(r.reconfigure);
        assert!(open_data_dir_with(&data, None, None).is_err());
        assert!(open_data_dir_with(&data, Some(&given), None).is_ok());
        // The same key again is refused.
        assert!(rotate_with(&data, Some(&given), Some(&given)).is_err());
    }

    fn rotate_with(
        data: &Path,
        key_file: Option<&Path>,
        new_key_file: Option<&Path>,
    ) -> Result<Rotation, StoreError> {
        // `rotate` reads $CREDENTIALS_DIRECTORY; the tests run without it.
        assert!(std::env::var_os("CREDENTIALS_DIRECTORY").is_none());
        rotate(data, key_file, new_key_file)
    }
}
