//! `depd import-nanodep`: carries a NanoDEP `filekv` storage directory over
//! into a stopped daemon's store. Every value goes through the same rules
//! as the API (`NameState` changes, committed with `Store::commit`), and
//! the report names everything imported, unchanged or skipped, with why;
//! nothing is dropped silently. Importing again changes nothing.

use crate::domain::name::DepName;
use crate::domain::state::{Change, NameState, RuleError};
use crate::domain::tokens;
use crate::domain::tokens::PkiPem;
use crate::pki::KeyPair;
use crate::settings::{self, FlagOverrides};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The file name prefixes of NanoDEP's filekv storage (`dep_names/<prefix><name>`).
const PREFIXES: [&str; 13] = [
    "consumer_key.",
    "consumer_secret.",
    "access_token.",
    "access_secret.",
    "access_token_expiry.",
    "config.",
    "cursor.",
    "assigner_profile.",
    "assigner_profile_mod_time.",
    "cert.",
    "key.",
    "cert_staging.",
    "key_staging.",
];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} is in use by a running depd (sled holds a lock on it); stop depd first, then import"
    )]
    Locked(PathBuf),
    #[error("storage in {dir}: {source}")]
    Store {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("finding data_dir: {0}")]
    Settings(#[from] settings::SettingsError),
}

/// What happened to one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (or, in a dry run, would be), with what.
    Imported(String),
    /// depd already holds exactly this.
    Unchanged,
    /// Not imported, and why.
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub what: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameReport {
    pub name: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub names: Vec<NameReport>,
    /// Files that belong to no name, and why.
    pub ignored: Ignored,
}

impl Report {
    /// Whether anything was (or would be) written.
    pub fn changed(&self) -> bool {
        self.names
            .iter()
            .flat_map(|n| &n.items)
            .any(|i| matches!(i.outcome, Outcome::Imported(_)))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let imported = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        for name in &self.names {
            writeln!(f, "{}:", name.name)?;
            for item in &name.items {
                match &item.outcome {
                    Outcome::Imported(what) => writeln!(f, "  {}: {imported} ({what})", item.what)?,
                    Outcome::Unchanged => writeln!(f, "  {}: unchanged", item.what)?,
                    Outcome::Skipped(why) => writeln!(f, "  {}: skipped: {why}", item.what)?,
                }
            }
        }
        for (file, why) in &self.ignored {
            writeln!(f, "ignored {file}: {why}")?;
        }
        if self.names.is_empty() && self.ignored.is_empty() {
            writeln!(f, "no DEP names found")?;
        }
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        Ok(())
    }
}

/// The data directory of the configuration file (`--config`, else
/// `/etc/depd/depd.toml` when it exists, else the default).
/// The data directory and the secrets key file of the configuration.
pub fn data_dir_from_config(
    config: Option<&Path>,
) -> Result<(PathBuf, Option<PathBuf>), ImportError> {
    let path = settings::resolve_config_path(config);
    let settings =
        settings::load_offline(path.as_deref(), std::env::vars(), &FlagOverrides::default())?;
    Ok((settings.data_dir, settings.secrets_key_file))
}

/// Imports every name of the filekv directory `filekv` into the store in
/// `data_dir`. With `dry_run`, reports what would happen and writes
/// nothing (a missing data directory is not created).
pub fn import_nanodep(
    filekv: &Path,
    data_dir: &Path,
    key_file: Option<&Path>,
    dry_run: bool,
    now: OffsetDateTime,
) -> Result<Report, ImportError> {
    let (names, ignored) = read_filekv(filekv)?;
    let store = if dry_run && !data_dir.exists() {
        Store::memory()
    } else {
        open_store(data_dir, key_file)?
    };
    let store_err = |source| ImportError::Store {
        dir: data_dir.to_owned(),
        source,
    };
    let mut report = Report {
        dry_run,
        names: Vec::new(),
        ignored,
    };
    for (name, files) in names {
        let data = store.load_name(&name).map_err(store_err)?;
        let mut importer = NameImport {
            state: NameState::new(name.clone(), data),
            store: &store,
            dry_run,
            now,
        };
        let items = importer.run(&files).map_err(store_err)?;
        report.names.push(NameReport {
            name: name.as_str().to_owned(),
            items,
        });
    }
    if !dry_run {
        store.flush().map_err(store_err)?;
    }
    Ok(report)
}

/// Opens the store as the daemon does: records are written sealed with
/// the daemon's secrets key.
fn open_store(dir: &Path, key_file: Option<&Path>) -> Result<Store, ImportError> {
    crate::store::open_data_dir(dir, key_file)
        .map(|o| o.store)
        .map_err(|source| {
            // sled reports the lock a running daemon holds as an I/O error
            // saying it "could not acquire lock".
            if matches!(source, StoreError::Locked(_)) {
                ImportError::Locked(dir.to_owned())
            } else {
                ImportError::Store {
                    dir: dir.to_owned(),
                    source,
                }
            }
        })
}

/// One name's values by file name prefix.
type Files = BTreeMap<&'static str, Vec<u8>>;
/// Files that belong to no name, with why.
type Ignored = Vec<(String, String)>;

/// The values of each name, and the files that fit no name.
fn read_filekv(dir: &Path) -> Result<(BTreeMap<DepName, Files>, Ignored), ImportError> {
    let names_dir = dir.join("dep_names");
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::Read { path, source }
    };
    let mut names: BTreeMap<DepName, Files> = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&names_dir)
        .map_err(read_err(&names_dir))?
        .collect::<Result<_, _>>()
        .map_err(read_err(&names_dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let shown = format!("dep_names/{}", entry.file_name().to_string_lossy());
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            ignored.push((shown, "the file name is not UTF-8".into()));
            continue;
        };
        if !path.is_file() {
            ignored.push((shown, "not a regular file".into()));
            continue;
        }
        let Some((prefix, raw)) = PREFIXES
            .iter()
            .find_map(|p| file_name.strip_prefix(p).map(|rest| (*p, rest)))
        else {
            ignored.push((shown, "not a NanoDEP DEP-name value".into()));
            continue;
        };
        let name = match DepName::parse(raw) {
            Ok(name) => name,
            Err(e) => {
                ignored.push((shown, format!("invalid DEP name: {e}")));
                continue;
            }
        };
        let value = std::fs::read(&path).map_err(read_err(&path))?;
        names.entry(name).or_default().insert(prefix, value);
    }
    Ok((names, ignored))
}

/// One name's import: each step checks, then commits (or, in a dry run,
/// only adopts) its change, so later steps see the earlier ones.
struct NameImport<'a> {
    state: NameState,
    store: &'a Store,
    dry_run: bool,
    now: OffsetDateTime,
}

fn text(files: &Files, prefix: &str) -> Option<String> {
    files
        .get(prefix)
        .map(|v| String::from_utf8_lossy(v).trim().to_owned())
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl NameImport<'_> {
    fn apply(&mut self, change: Change) -> Result<(), StoreError> {
        if !self.dry_run {
            self.store.commit(change.write)?;
        }
        self.state.adopt(change.next);
        Ok(())
    }

    fn run(&mut self, files: &Files) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        if let Some(outcome) = self.tokens(files)? {
            items.push(Item {
                what: "tokens",
                outcome,
            });
        }
        if let Some(outcome) = self.config(files)? {
            items.push(Item {
                what: "base URL",
                outcome,
            });
        }
        if let Some(outcome) = self.assigner(files)? {
            items.push(Item {
                what: "assigner",
                outcome,
            });
        }
        for (what, cert, key, current) in [
            ("current key pair", "cert.", "key.", true),
            ("staging key pair", "cert_staging.", "key_staging.", false),
        ] {
            if let Some(outcome) = self.pki(files, cert, key, current)? {
                items.push(Item { what, outcome });
            }
        }
        if let Some(outcome) = self.cursor(files)? {
            items.push(Item {
                what: "cursor",
                outcome,
            });
        }
        Ok(items)
    }

    fn tokens(&mut self, files: &Files) -> Result<Option<Outcome>, StoreError> {
        let fields = [
            ("consumer_key", "consumer_key."),
            ("consumer_secret", "consumer_secret."),
            ("access_token", "access_token."),
            ("access_secret", "access_secret."),
            ("access_token_expiry", "access_token_expiry."),
        ];
        let values: Vec<(&str, Option<String>)> = fields
            .iter()
            .map(|(field, prefix)| (*field, text(files, prefix).filter(|v| !v.is_empty())))
            .collect();
        if values.iter().all(|(_, v)| v.is_none()) {
            return Ok(None);
        }
        let missing: Vec<&str> = values
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(f, _)| *f)
            .collect();
        if !missing.is_empty() {
            return Ok(Some(Outcome::Skipped(format!(
                "incomplete, missing {}",
                missing.join(", ")
            ))));
        }
        let json: serde_json::Map<String, serde_json::Value> = values
            .into_iter()
            .map(|(f, v)| {
                (
                    f.to_owned(),
                    serde_json::Value::String(v.unwrap_or_default()),
                )
            })
            .collect();
        let parsed = tokens::parse(serde_json::Value::Object(json).to_string().as_bytes());
        let tokens = match parsed {
            Ok(t) => t,
            Err(e) => return Ok(Some(Outcome::Skipped(e.to_string()))),
        };
        if self.state.tokens().as_ref() == Some(&tokens) {
            return Ok(Some(Outcome::Unchanged));
        }
        let what = format!(
            "consumer key {}, access token expires {}",
            tokens.consumer_key,
            rfc3339(tokens.access_token_expiry_unix)
        );
        match self.state.put_tokens(&tokens, false, self.now) {
            Ok(change) => self.apply(change)?,
            Err(RuleError::ConsumerKeyMismatch { stored, given }) => {
                return Ok(Some(Outcome::Skipped(format!(
                    "depd holds tokens of consumer key {stored:?} for this name, NanoDEP {given:?}; \
                     not replaced (upload them with `depd tokens upload --force` if NanoDEP's are right)"
                ))));
            }
        }
        Ok(Some(Outcome::Imported(what)))
    }

    fn config(&mut self, files: &Files) -> Result<Option<Outcome>, StoreError> {
        let Some(raw) = files.get("config.") else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            base_url: String,
        }
        let config: Config = match serde_json::from_slice(raw) {
            Ok(c) => c,
            Err(e) => return Ok(Some(Outcome::Skipped(format!("invalid JSON: {e}")))),
        };
        let base_url = config.base_url.trim().to_owned();
        if base_url.is_empty() {
            return Ok(Some(Outcome::Skipped(
                "no base_url in it; the configured default applies".into(),
            )));
        }
        if let Err(e) = settings::validate_base_url(&base_url) {
            return Ok(Some(Outcome::Skipped(format!("base_url: {e}"))));
        }
        if self
            .state
            .data()
            .config
            .as_ref()
            .map(|c| c.base_url.as_str())
            == Some(&base_url)
        {
            return Ok(Some(Outcome::Unchanged));
        }
        let what = base_url.clone();
        let change = self.state.put_base_url(base_url, self.now);
        self.apply(change)?;
        Ok(Some(Outcome::Imported(what)))
    }

    fn assigner(&mut self, files: &Files) -> Result<Option<Outcome>, StoreError> {
        let Some(profile) = text(files, "assigner_profile.") else {
            if files.contains_key("assigner_profile_mod_time.") {
                return Ok(Some(Outcome::Skipped(
                    "a modification time without a profile".into(),
                )));
            }
            return Ok(None);
        };
        if profile.is_empty() {
            return Ok(Some(Outcome::Skipped("the profile UUID is empty".into())));
        }
        // The API's rule for profile UUIDs (src/api/names.rs).
        if profile.len() > 64
            || !profile
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Ok(Some(Outcome::Skipped(format!(
                "profile_uuid {profile:?} must be 1 to 64 letters, digits or dashes"
            ))));
        }
        let (modified, note) = match text(files, "assigner_profile_mod_time.") {
            Some(t) => match OffsetDateTime::parse(&t, &Rfc3339) {
                Ok(m) => (m, String::new()),
                Err(_) => (
                    self.now,
                    format!("; modification time {t:?} is not RFC 3339, set to now"),
                ),
            },
            None => (self.now, "; no modification time, set to now".into()),
        };
        if let Some(current) = &self.state.data().assigner
            && current.profile_uuid == profile
            && (current.modified_unix == modified.unix_timestamp() || !note.is_empty())
        {
            // Without NanoDEP's time, a repeated import keeps the one stored.
            return Ok(Some(Outcome::Unchanged));
        }
        let what = format!(
            "profile {profile}, modified {}{note}",
            rfc3339(modified.unix_timestamp())
        );
        let change = self.state.import_assigner(profile, modified, self.now);
        self.apply(change)?;
        Ok(Some(Outcome::Imported(what)))
    }

    fn pki(
        &mut self,
        files: &Files,
        cert_prefix: &str,
        key_prefix: &str,
        current: bool,
    ) -> Result<Option<Outcome>, StoreError> {
        let (cert_pem, key_pem) = match (files.get(cert_prefix), files.get(key_prefix)) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (Some(_), None) => {
                return Ok(Some(Outcome::Skipped(format!(
                    "{cert_prefix}<name> without {key_prefix}<name>"
                ))));
            }
            (None, Some(_)) => {
                return Ok(Some(Outcome::Skipped(format!(
                    "{key_prefix}<name> without {cert_prefix}<name>"
                ))));
            }
        };
        let pair = match KeyPair::from_pem(&cert_pem, &key_pem, None) {
            Ok(p) => p,
            Err(e) => return Ok(Some(Outcome::Skipped(e.to_string()))),
        };
        let what = format!("certificate valid until {}", pair.cert().not_after());
        let pki = PkiPem { cert_pem, key_pem };
        let stored = if current {
            self.state.pki_current()
        } else {
            self.state.pki_staging()
        };
        if stored.as_ref() == Some(&pki) {
            return Ok(Some(Outcome::Unchanged));
        }
        let change = if current {
            self.state.import_pki_current(&pki, self.now)
        } else {
            self.state.put_pki_staging(&pki, self.now)
        };
        self.apply(change)?;
        Ok(Some(Outcome::Imported(what)))
    }

    fn cursor(&mut self, files: &Files) -> Result<Option<Outcome>, StoreError> {
        let Some(cursor) = text(files, "cursor.") else {
            return Ok(None);
        };
        if cursor.is_empty() {
            return Ok(Some(Outcome::Skipped(
                "empty: depd fetches every device on its first cycle".into(),
            )));
        }
        match self
            .state
            .data()
            .sync
            .as_ref()
            .and_then(|s| s.cursor.as_ref())
        {
            Some(held) if *held == cursor => return Ok(Some(Outcome::Unchanged)),
            Some(_) => {
                return Ok(Some(Outcome::Skipped(
                    "depd has synced this name and holds a newer cursor of its own".into(),
                )));
            }
            None => {}
        }
        let change = self.state.import_sync_cursor(cursor, self.now);
        self.apply(change)?;
        Ok(Some(Outcome::Imported(
            "depd continues with the changes since it; `depd resync` fetches every device".into(),
        )))
    }
}

#[cfg(test)]
mod tests;
