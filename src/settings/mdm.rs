//! `[mdm]`: the NanoMDM-compatible MDM service. The key names are
//! NanoMDM's flags (`-ca` is `ca_file`, `-ua-zl-dc` is
//! `user_authenticate_zero_challenge`, …) so tools that generate NanoMDM
//! configurations map one to one. `enabled` and `checkin_endpoint` add or
//! remove routes and take effect at the next start; everything else is
//! reloaded on SIGHUP.

use super::*;

#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MdmSettings {
    /// Serve `/mdm` (and `/checkin`, `/authproxy/`, `/migration`) and the
    /// MDM API. Needs a restart.
    pub enabled: bool,
    /// PEM file of the root CAs that issue device identities (required
    /// when enabled).
    pub ca_file: Option<PathBuf>,
    /// PEM file of intermediates between the roots and the identities.
    pub intermediate_file: Option<PathBuf>,
    /// Read the identity from this header (set by a TLS-terminating proxy:
    /// RFC 9440 or a URL-escaped PEM) instead of `Mdm-Signature`.
    pub cert_header: String,
    /// Check-ins on `/checkin`, reports only on `/mdm`. Needs a restart.
    pub checkin_endpoint: bool,
    /// Let an enrollment without a certificate binding bind the first
    /// identity it presents (for migrated enrollments).
    pub retro: bool,
    /// Answer `UserAuthenticate` with an empty `DigestChallenge` instead
    /// of 410.
    pub user_authenticate_zero_challenge: bool,
    /// Base URL of the Declarative Management service (`-dm`).
    pub dm_url: String,
    pub dm_send_hmac_key: Option<Secret>,
    pub dm_recv_hmac_key: Option<Secret>,
    /// Seconds for one Declarative Management request.
    pub dm_timeout_secs: u64,
    /// Target of the device-authenticated `/authproxy/` reverse proxy.
    pub auth_proxy_url: String,
    /// Serve `/migration` (API-authenticated raw check-ins).
    pub migration: bool,
    /// Delete a command's queue entry and result once it is finished.
    pub delete_finished_commands: bool,
    /// Where the MicroMDM-compatible webhook events go.
    pub webhook_url: String,
    pub webhook_hmac_key: Option<Secret>,
    /// The DEP name whose MAID JWT answers `GetToken` for devices no DEP
    /// name synced.
    pub maid_default_dep_name: String,
    /// Largest request body from a device, in bytes (413 beyond).
    pub body_limit: usize,
    /// APNs service for push certificates uploaded without
    /// `?environment=`: `production` or `sandbox`.
    pub apns_environment: String,
    /// Overrides Apple's APNs base URL (`https://host[:port]`, within
    /// `apple.allowed_hosts`): for depsim's push simulator and tests.
    pub apns_base_url: String,
    /// PEM roots trusted for the APNs server besides the system's (a test
    /// CA, with `apns_base_url`).
    pub apns_ca_file: Option<PathBuf>,
    /// Send `apns-expiration` = now + this many seconds, so APNs keeps the
    /// wake-up for an offline device; 0: not sent (APNs tries once).
    pub apns_expiration_secs: u64,
    /// Pushes of one call in flight at once, per topic (h2 also keeps
    /// within the stream limit APNs advertises).
    pub push_concurrency: usize,
    /// `/v1/push` and `/v1/enqueue` answer after this many seconds at the
    /// latest; pushes still in flight are listed under `pending` and
    /// finish in the background.
    pub push_deadline_secs: u64,
}

impl Default for MdmSettings {
    fn default() -> Self {
        MdmSettings {
            enabled: false,
            ca_file: None,
            intermediate_file: None,
            cert_header: String::new(),
            checkin_endpoint: false,
            retro: false,
            user_authenticate_zero_challenge: false,
            dm_url: String::new(),
            dm_send_hmac_key: None,
            dm_recv_hmac_key: None,
            dm_timeout_secs: 30,
            auth_proxy_url: String::new(),
            migration: false,
            delete_finished_commands: false,
            webhook_url: String::new(),
            webhook_hmac_key: None,
            maid_default_dep_name: String::new(),
            body_limit: 10 * 1024 * 1024,
            apns_environment: "production".into(),
            apns_base_url: String::new(),
            apns_ca_file: None,
            apns_expiration_secs: 0,
            push_concurrency: 1000,
            push_deadline_secs: 30,
        }
    }
}

/// URLs without userinfo or query; keys shown as redacted.
impl fmt::Debug for MdmSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |u: &str| crate::daemon::redact::url(u);
        f.debug_struct("MdmSettings")
            .field("enabled", &self.enabled)
            .field("ca_file", &self.ca_file)
            .field("intermediate_file", &self.intermediate_file)
            .field("cert_header", &self.cert_header)
            .field("checkin_endpoint", &self.checkin_endpoint)
            .field("retro", &self.retro)
            .field(
                "user_authenticate_zero_challenge",
                &self.user_authenticate_zero_challenge,
            )
            .field("dm_url", &url(&self.dm_url))
            .field("dm_send_hmac_key", &self.dm_send_hmac_key)
            .field("dm_recv_hmac_key", &self.dm_recv_hmac_key)
            .field("dm_timeout_secs", &self.dm_timeout_secs)
            .field("auth_proxy_url", &url(&self.auth_proxy_url))
            .field("migration", &self.migration)
            .field("delete_finished_commands", &self.delete_finished_commands)
            .field("webhook_url", &url(&self.webhook_url))
            .field("webhook_hmac_key", &self.webhook_hmac_key)
            .field("maid_default_dep_name", &self.maid_default_dep_name)
            .field("body_limit", &self.body_limit)
            .field("apns_environment", &self.apns_environment)
            .field("apns_base_url", &url(&self.apns_base_url))
            .field("apns_ca_file", &self.apns_ca_file)
            .field("apns_expiration_secs", &self.apns_expiration_secs)
            .field("push_concurrency", &self.push_concurrency)
            .field("push_deadline_secs", &self.push_deadline_secs)
            .finish()
    }
}

/// Checks `[mdm]`; every error names its key.
pub(super) fn validate_mdm(m: &MdmSettings) -> Result<(), SettingsError> {
    let bad = |m: String| SettingsError::Invalid(m);
    if !m.enabled {
        return Ok(());
    }
    let ca = m
        .ca_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| bad("mdm.ca_file is required when mdm.enabled is true".into()))?;
    let intermediate = m.intermediate_file.as_ref().map(|p| p.to_string_lossy());
    crate::mdm::identity::Verifier::from_files(&ca.to_string_lossy(), intermediate.as_deref())
        .map_err(|e| bad(format!("mdm.ca_file / mdm.intermediate_file: {e}")))?;
    if !m.cert_header.is_empty()
        && !m
            .cert_header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(format!(
            "mdm.cert_header: {:?} is not an HTTP header name",
            m.cert_header
        )));
    }
    for (key, url) in [
        ("mdm.dm_url", &m.dm_url),
        ("mdm.auth_proxy_url", &m.auth_proxy_url),
    ] {
        if !url.is_empty() {
            validate_base_url(url).map_err(|e| bad(format!("{key}: {e}")))?;
        }
    }
    if !m.webhook_url.is_empty() {
        super::validate::validate_webhook_url(&m.webhook_url)
            .map_err(|e| bad(format!("mdm.webhook_url: {e}")))?;
    }
    if !(1..=600).contains(&m.dm_timeout_secs) {
        return Err(bad(format!(
            "mdm.dm_timeout_secs: {} must be from 1 to 600",
            m.dm_timeout_secs
        )));
    }
    if !(1024..=1024 * 1024 * 1024).contains(&m.body_limit) {
        return Err(bad(format!(
            "mdm.body_limit: {} must be from 1024 to 1073741824",
            m.body_limit
        )));
    }
    if crate::apns::wire::Environment::parse(&m.apns_environment).is_none() {
        return Err(bad(format!(
            "mdm.apns_environment: {:?} is not production or sandbox",
            m.apns_environment
        )));
    }
    if !m.apns_base_url.is_empty() {
        crate::apns::conn::Endpoint::parse(&m.apns_base_url)
            .map_err(|e| bad(format!("mdm.apns_base_url: {e}")))?;
    }
    if let Some(path) = m
        .apns_ca_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        read_pem_roots(path).map_err(|e| bad(format!("mdm.apns_ca_file: {e}")))?;
    }
    if m.apns_expiration_secs > 30 * 86_400 {
        return Err(bad(format!(
            "mdm.apns_expiration_secs: {} is more than 30 days",
            m.apns_expiration_secs
        )));
    }
    if !(1..=10_000).contains(&m.push_concurrency) {
        return Err(bad(format!(
            "mdm.push_concurrency: {} must be from 1 to 10000",
            m.push_concurrency
        )));
    }
    if !(1..=3600).contains(&m.push_deadline_secs) {
        return Err(bad(format!(
            "mdm.push_deadline_secs: {} must be from 1 to 3600",
            m.push_deadline_secs
        )));
    }
    if !m.maid_default_dep_name.is_empty() {
        DepName::parse(&m.maid_default_dep_name)
            .map_err(|e| bad(format!("mdm.maid_default_dep_name: {e}")))?;
    }
    Ok(())
}

/// The certificates of a PEM file (at least one).
pub fn read_pem_roots(path: &std::path::Path) -> Result<Vec<openssl::x509::X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}
