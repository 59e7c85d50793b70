//! Daemon configuration: built-in defaults (the `Default` impls below are
//! the only place defaults live), then the TOML file, then `DEPD_…`
//! environment variables, then command-line flags. The result is validated
//! as a whole; an unknown key anywhere is an error that names it.
//!
//! Settings hold policy. State that the API writes (tokens, base URLs set
//! with `PUT /v1/config`, assigner profiles) lives in the store.

use crate::dep::allowlist::{Allowlist, DEFAULT_ALLOWED_HOSTS};
use crate::domain::name::DepName;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod env;
mod mdm;
mod validate;

use env::*;
pub use mdm::{MdmSettings, read_pem_roots};
pub use validate::validate_base_url;
use validate::*;

/// Apple's production DEP endpoint.
pub const APPLE_BASE_URL: &str = "https://mdmenrollment.apple.com";
/// Where `depd serve` looks for a configuration file when given none.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/depd/depd.toml";
/// Environment variables with the `DEPD_` prefix that are not settings of
/// the daemon (the client's URL, the config path, the key password of the
/// offline tools) and so are not read as configuration.
const NON_SETTING_ENV: &[&str] = &["DEPD_CONFIG", "DEPD_URL", "DEPD_KEY_PASSWORD", "DEPD_LOG"];

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable; colours only when standard error is a terminal.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The configuration file's shape. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileSettings {
    listen: String,
    data_dir: PathBuf,
    api_key: Option<Secret>,
    api_key_file: Option<PathBuf>,
    secrets_key_file: Option<PathBuf>,
    max_dep_names: usize,
    auth_failure_limit: u32,
    log_format: LogFormat,
    log_level: String,
    apple: AppleSettings,
    sync: SyncSettings,
    assigner: AssignerSettings,
    webhook: WebhookSettings,
    names: BTreeMap<String, NameSettings>,
    demo: Option<DemoSettings>,
    mdm: MdmSettings,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            listen: "127.0.0.1:9001".into(),
            data_dir: PathBuf::from("/var/lib/depd"),
            api_key: None,
            api_key_file: None,
            secrets_key_file: None,
            max_dep_names: 100_000,
            auth_failure_limit: 10,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            apple: AppleSettings::default(),
            sync: SyncSettings::default(),
            assigner: AssignerSettings::default(),
            webhook: WebhookSettings::default(),
            names: BTreeMap::new(),
            demo: None,
            mdm: MdmSettings::default(),
        }
    }
}

/// The user agent depd sends on its own calls and on proxied requests
/// whose caller sent none (Apple refuses requests without one).
pub const DEFAULT_USER_AGENT: &str = concat!("depd/", env!("CARGO_PKG_VERSION"));

/// How depd reaches Apple.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppleSettings {
    /// Base URL for names that have none stored (`PUT /v1/config`) and none
    /// in their `[names.<name>]` table.
    pub base_url: String,
    /// `X-Server-Protocol-Version` of depd's own calls. 10 lets assignment
    /// results say `THROTTLED` with `retry_after_seconds`.
    pub protocol_version: u32,
    /// `X-Server-Protocol-Version` added to proxied requests that carry
    /// none (7, as NanoDEP sends).
    pub proxy_protocol_version: u32,
    pub user_agent: String,
    /// Seconds to establish a connection to Apple.
    pub connect_timeout_secs: u64,
    /// Seconds for a whole request to Apple, until the response headers.
    pub request_timeout_secs: u64,
    /// Largest proxied request body, buffered so the request can be
    /// replayed once after a session refresh (413 beyond it).
    pub proxy_body_limit: usize,
    /// Hosts, `*.suffix`es, addresses and networks depd may send a name's
    /// credentials to (src/dep/allowlist.rs). Configuration file only.
    pub allowed_hosts: Vec<String>,
    /// `allowed_hosts`, parsed when the settings are validated.
    #[serde(skip)]
    pub allow: Arc<Allowlist>,
}

impl Default for AppleSettings {
    fn default() -> Self {
        AppleSettings {
            base_url: APPLE_BASE_URL.into(),
            protocol_version: 10,
            proxy_protocol_version: 7,
            user_agent: DEFAULT_USER_AGENT.into(),
            connect_timeout_secs: 10,
            request_timeout_secs: 60,
            proxy_body_limit: 1024 * 1024,
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            allow: Arc::default(),
        }
    }
}

/// The sync loop of every name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Run cycles on the timer. Off: only `POST /v1/sync` (or
    /// `depd sync --once`) starts one.
    pub auto: bool,
    /// Seconds between the sync cycles of a name.
    pub interval_secs: u64,
    /// Jitter of the interval and of retry waits, in percent either way,
    /// so that many names do not call Apple at the same moment.
    pub jitter_percent: u8,
    /// Devices per fetch/sync page (capped by what `/account` advertises).
    pub page_limit: u32,
    /// Wait after a failed cycle; doubled per further failure.
    pub retry_first_secs: u64,
    /// Longest wait after failures.
    pub retry_max_secs: u64,
    /// Wait while Apple refuses the name for a reason only a person can fix
    /// (terms not accepted, token rejected).
    pub slow_retry_secs: u64,
    /// Longest `Retry-After` obeyed.
    pub max_retry_after_secs: u64,
    /// Ceiling of the first wait before a failed request (5xx, 429,
    /// timeout, connection error) is sent again within the cycle.
    pub request_retry_first_ms: u64,
    /// Largest backoff between in-place retries of one request.
    pub request_retry_max_secs: u64,
    /// Consecutive failures of the same request that end the cycle.
    pub request_max_failures: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            auto: true,
            interval_secs: 30 * 60,
            jitter_percent: 10,
            page_limit: 1000,
            retry_first_secs: 30,
            retry_max_secs: 30 * 60,
            slow_retry_secs: 60 * 60,
            max_retry_after_secs: 24 * 60 * 60,
            request_retry_first_ms: 1000,
            request_retry_max_secs: 60,
            request_max_failures: 6,
        }
    }
}

/// Automatic profile assignment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssignerSettings {
    /// Assign again when Apple reports a device `modified` with its profile
    /// `removed` (unless the removal was made through depd).
    pub reassign_removed: bool,
    /// How long a profile removal made through depd keeps the assigner away.
    pub removal_window_secs: i64,
    /// Wait after a `FAILED` answer.
    pub failed_cooldown_secs: i64,
    /// `FAILED` answers after which a serial is given up and flagged.
    pub max_failures: u32,
    /// Wait after `THROTTLED` when Apple gives no `retry_after_seconds`.
    pub throttled_cooldown_secs: i64,
    /// Serials per assignment call (Apple allows at most 1000).
    pub batch_limit: usize,
}

impl Default for AssignerSettings {
    fn default() -> Self {
        AssignerSettings {
            reassign_removed: true,
            removal_window_secs: 60 * 60,
            failed_cooldown_secs: 60 * 60,
            max_failures: 3,
            throttled_cooldown_secs: 24 * 60 * 60,
            batch_limit: 1000,
        }
    }
}

/// Webhook delivery of sync events.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where every name's events go (a name's `webhook_urls` replaces it).
    pub urls: Vec<String>,
    /// When set, each delivery is signed with HMAC-SHA256 of the body.
    pub secret: Option<Secret>,
    /// Seconds for one delivery, connection to end of answer.
    pub timeout_secs: u64,
    /// Wait after a failed delivery; doubled per further failure.
    pub retry_first_secs: u64,
    pub retry_max_secs: u64,
}

/// URLs without userinfo or query: receivers put credentials there.
impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &crate::daemon::redact::urls(&self.urls))
            .field("secret", &self.secret)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_first_secs", &self.retry_first_secs)
            .field("retry_max_secs", &self.retry_max_secs)
            .finish()
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            urls: Vec::new(),
            secret: None,
            timeout_secs: 30,
            retry_first_secs: 1,
            retry_max_secs: 15 * 60,
        }
    }
}

/// The demo (`config/demo.toml`): a DEP name backed by a depsim started
/// inside depd, so depd can be tried without Apple.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    /// The DEP name wired to the simulator.
    pub name: String,
    /// Devices the simulator has.
    pub devices: usize,
    /// The simulator's seed: the same devices and credentials every start.
    pub seed: u64,
    /// Simulated devices (of the first `devices`) that enroll in depd's
    /// MDM service once assigned, and check in every `mdm_checkin_secs`;
    /// 0: the MDM service stays as configured.
    pub mdm_devices: usize,
    pub mdm_checkin_secs: u64,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            name: "demo".into(),
            devices: 300,
            seed: 1,
            mdm_devices: 0,
            mdm_checkin_secs: 10,
        }
    }
}

/// A DEP name declared in the configuration, with its overrides.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameSettings {
    /// Base URL used until one is stored through the API.
    pub base_url: Option<String>,
    pub protocol_version: Option<u32>,
    pub proxy_protocol_version: Option<u32>,
    pub user_agent: Option<String>,
    /// Seconds between this name's sync cycles (`sync.interval_secs`).
    pub sync_interval_secs: Option<u64>,
    /// This name's webhook URLs instead of `webhook.urls` (empty: none).
    pub webhook_urls: Option<Vec<String>>,
}

impl fmt::Debug for NameSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameSettings")
            .field("base_url", &self.base_url)
            .field("protocol_version", &self.protocol_version)
            .field("proxy_protocol_version", &self.proxy_protocol_version)
            .field("user_agent", &self.user_agent)
            .field("sync_interval_secs", &self.sync_interval_secs)
            .field(
                "webhook_urls",
                &self
                    .webhook_urls
                    .as_deref()
                    .map(crate::daemon::redact::urls),
            )
            .finish()
    }
}

/// How one DEP name talks to Apple: the global `[apple]` settings with the
/// name's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AppleProfile {
    pub protocol_version: u32,
    pub proxy_protocol_version: u32,
    pub user_agent: String,
    pub connect_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub allow: Arc<Allowlist>,
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub api_key: Option<Secret>,
    pub log_format: Option<LogFormat>,
    /// `--webhook-url` (as NanoDEP's depsyncer): replaces `webhook.urls`.
    pub webhook_url: Option<String>,
}

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub api_key: Secret,
    /// The key that seals secrets at rest, when not the systemd credential
    /// (`store/secrets.rs`); `None`: `secrets.key` in the data directory.
    pub secrets_key_file: Option<PathBuf>,
    /// Most DEP names depd holds; creating one more is 409.
    pub max_dep_names: usize,
    /// Wrong credentials from one address within a minute before it is
    /// answered 429 for a minute (0: never).
    pub auth_failure_limit: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    pub apple: AppleSettings,
    pub sync: SyncSettings,
    pub assigner: AssignerSettings,
    pub webhook: WebhookSettings,
    pub names: BTreeMap<DepName, NameSettings>,
    /// The demo simulator, when `[demo]` is present.
    pub demo: Option<DemoSettings>,
    pub mdm: MdmSettings,
    /// The file these settings were read from, if any (re-read on SIGHUP).
    pub source: Option<PathBuf>,
    /// `DEPD_…` environment variables that name no setting: ignored, and
    /// named in a warning at start (`warn_ignored_env`).
    pub ignored_env: Vec<String>,
}

impl Settings {
    /// The base URL a name uses when none is stored for it.
    pub fn default_base_url(&self, name: &DepName) -> &str {
        self.names
            .get(name)
            .and_then(|n| n.base_url.as_deref())
            .unwrap_or(&self.apple.base_url)
    }

    /// The time between a name's sync cycles (before jitter).
    pub fn sync_interval(&self, name: &DepName) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.names
                .get(name)
                .and_then(|n| n.sync_interval_secs)
                .unwrap_or(self.sync.interval_secs),
        )
    }

    /// Where a name's webhook events go (none: no events are queued).
    pub fn webhook_urls(&self, name: &DepName) -> &[String] {
        self.names
            .get(name)
            .and_then(|n| n.webhook_urls.as_deref())
            .unwrap_or(&self.webhook.urls)
    }

    /// Protocol versions, user agent and timeouts of a name.
    pub fn apple_profile(&self, name: &DepName) -> AppleProfile {
        let n = self.names.get(name);
        AppleProfile {
            protocol_version: n
                .and_then(|n| n.protocol_version)
                .unwrap_or(self.apple.protocol_version),
            proxy_protocol_version: n
                .and_then(|n| n.proxy_protocol_version)
                .unwrap_or(self.apple.proxy_protocol_version),
            user_agent: n
                .and_then(|n| n.user_agent.clone())
                .unwrap_or_else(|| self.apple.user_agent.clone()),
            connect_timeout: std::time::Duration::from_secs(self.apple.connect_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.apple.request_timeout_secs),
            allow: self.apple.allow.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
    #[error(
        "no API key configured: set api_key or api_key_file in the configuration file, \
         DEPD_API_KEY in the environment, or pass --api-key"
    )]
    NoApiKey,
    #[error("reading api_key_file {path}: {message}")]
    ApiKeyFile { path: PathBuf, message: String },
}

/// Which configuration file to read: the one asked for (it must exist), else
/// the default path when it exists, else none.
pub fn resolve_config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let default = Path::new(DEFAULT_CONFIG_PATH);
            default.exists().then(|| default.to_path_buf())
        }
    }
}

/// Logs one warning per ignored `DEPD_…` variable (its name, never its
/// value, which may be a secret).
pub fn warn_ignored_env(settings: &Settings) {
    for var in &settings.ignored_env {
        tracing::warn!(
            variable = %var,
            "ignoring environment variable {var}: it names no depd setting (see config/depd.toml for the keys; DEPD_SECTION__KEY sets a key of a section)"
        );
    }
}

/// The shortest API key depd does not warn about.
pub const MIN_API_KEY_CHARS: usize = 16;

/// What the settings risk, said once at start: a guessable API key, and
/// a listener other hosts reach while depd speaks plain HTTP.
pub fn security_warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let chars = settings.api_key.expose().chars().count();
    if chars < MIN_API_KEY_CHARS {
        out.push(format!(
            "the API key has {chars} characters; use at least {MIN_API_KEY_CHARS} random ones \
             (openssl rand -hex 24), given by api_key_file or DEPD_API_KEY, not --api-key, \
             which other users can read in the process list"
        ));
    }
    if !settings.listen.ip().is_loopback() {
        out.push(format!(
            "listening on {}, which other hosts can reach: depd serves plain HTTP, so put a TLS \
             reverse proxy in front of it (docs/operations.md, Security)",
            settings.listen
        ));
    }
    out
}

pub fn warn_security(settings: &Settings) {
    for warning in security_warnings(settings) {
        tracing::warn!("{warning}");
    }
}

/// Loads and validates settings from a file (if any), the given environment
/// (pass `std::env::vars()`) and flags, for a server: an API key is
/// required.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &FlagOverrides,
) -> Result<Settings, SettingsError> {
    load_for(file, env, flags, KeyNeed::Required)
}

/// Loads settings for a command that serves no HTTP (`depd sync --once`,
/// `depd import-nanodep`, `depd secrets rotate`): everything is read and
/// checked as for the server, except that no API key is needed. A key the
/// configuration names is read as usual; without one, the settings carry
/// a random key nobody knows, so they could not open the API even if they
/// reached a server.
pub fn load_offline(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &FlagOverrides,
) -> Result<Settings, SettingsError> {
    load_for(file, env, flags, KeyNeed::NotUsed)
}

/// Whether the caller serves the API (and so needs its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyNeed {
    Required,
    NotUsed,
}

fn load_for(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &FlagOverrides,
    need: KeyNeed,
) -> Result<Settings, SettingsError> {
    use config::{Config, Environment, File, FileFormat};

    let mut builder = Config::builder();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let (env_map, ignored_env) = settings_env(env);
    builder = builder.add_source(
        Environment::with_prefix("DEPD")
            .prefix_separator("_")
            .separator("__")
            .source(Some(env_map)),
    );
    let raw: FileSettings = builder
        .build()
        .and_then(Config::try_deserialize)
        .map_err(|e| match file {
            Some(path) => SettingsError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            },
            None => SettingsError::Invalid(e.to_string()),
        })?;
    let mut settings = validate(raw, flags, file, need)?;
    settings.ignored_env = ignored_env;
    Ok(settings)
}

#[cfg(test)]
mod tests;
