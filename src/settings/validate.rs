//! Checking loaded settings: ranges, URLs, names, the allowlist, the API
//! key file. Every error names the key it is about.

use super::*;

pub(super) fn validate(
    mut raw: FileSettings,
    flags: &FlagOverrides,
    source: Option<&Path>,
    need: KeyNeed,
) -> Result<Settings, SettingsError> {
    let listen_text = flags.listen.clone().unwrap_or(raw.listen);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        SettingsError::Invalid(format!(
            "listen: {listen_text:?} is not an address like 127.0.0.1:9001"
        ))
    })?;
    let data_dir = flags.data_dir.clone().unwrap_or(raw.data_dir);
    if data_dir.as_os_str().is_empty() {
        return Err(SettingsError::Invalid("data_dir is empty".into()));
    }
    tracing_subscriber::EnvFilter::try_new(&raw.log_level)
        .map_err(|e| SettingsError::Invalid(format!("log_level {:?}: {e}", raw.log_level)))?;
    raw.apple.allow = Arc::new(
        Allowlist::parse(&raw.apple.allowed_hosts)
            .map_err(|m| SettingsError::Invalid(format!("apple.allowed_hosts: {m}")))?,
    );
    validate_base_url(&raw.apple.base_url)
        .and_then(|()| {
            raw.apple
                .allow
                .check_url(&raw.apple.base_url)
                .map_err(|r| r.to_string())
        })
        .map_err(|m| SettingsError::Invalid(format!("apple.base_url: {m}")))?;
    validate_apple(&raw.apple)?;
    if !(1..=10_000_000).contains(&raw.max_dep_names) {
        return Err(SettingsError::Invalid(format!(
            "max_dep_names: {} must be from 1 to 10000000",
            raw.max_dep_names
        )));
    }
    validate_sync(&raw.sync)?;
    validate_assigner(&raw.assigner)?;
    #[cfg(not(feature = "sim"))]
    if raw.demo.is_some() {
        return Err(SettingsError::Invalid(
            "[demo] needs the simulator, which this build of depd leaves out (a production \
             build, --no-default-features); remove [demo], or run a default build"
                .into(),
        ));
    }
    if let Some(demo) = &raw.demo {
        DepName::parse(&demo.name)
            .map_err(|e| SettingsError::Invalid(format!("demo.name: {e}")))?;
        if demo.mdm_devices > demo.devices {
            return Err(SettingsError::Invalid(format!(
                "demo.mdm_devices: {} is more than demo.devices ({})",
                demo.mdm_devices, demo.devices
            )));
        }
        if !(1..=3600).contains(&demo.mdm_checkin_secs) {
            return Err(SettingsError::Invalid(format!(
                "demo.mdm_checkin_secs: {} must be from 1 to 3600",
                demo.mdm_checkin_secs
            )));
        }
        if !(1..=1_000_000).contains(&demo.devices) {
            return Err(SettingsError::Invalid(format!(
                "demo.devices: {} must be from 1 to 1000000",
                demo.devices
            )));
        }
    }
    if let Some(url) = &flags.webhook_url {
        validate_webhook_url(url)
            .map_err(|m| SettingsError::Invalid(format!("--webhook-url: {m}")))?;
        raw.webhook.urls = vec![url.clone()];
    }
    validate_webhook(&raw.webhook)?;
    let mut names = BTreeMap::new();
    for (raw_name, settings) in raw.names {
        let name = DepName::parse(&raw_name)
            .map_err(|e| SettingsError::Invalid(format!("names.{raw_name:?}: {e}")))?;
        if let Some(url) = &settings.base_url {
            validate_base_url(url)
                .and_then(|()| raw.apple.allow.check_url(url).map_err(|r| r.to_string()))
                .map_err(|m| SettingsError::Invalid(format!("names.{raw_name:?}.base_url: {m}")))?;
        }
        for (key, version) in [
            ("protocol_version", settings.protocol_version),
            ("proxy_protocol_version", settings.proxy_protocol_version),
        ] {
            if let Some(v) = version {
                validate_protocol_version(v).map_err(|m| {
                    SettingsError::Invalid(format!("names.{raw_name:?}.{key}: {m}"))
                })?;
            }
        }
        if let Some(secs) = settings.sync_interval_secs {
            check_range(secs, SYNC_INTERVAL_RANGE).map_err(|m| {
                SettingsError::Invalid(format!("names.{raw_name:?}.sync_interval_secs: {m}"))
            })?;
        }
        for url in settings.webhook_urls.iter().flatten() {
            validate_webhook_url(url).map_err(|m| {
                SettingsError::Invalid(format!("names.{raw_name:?}.webhook_urls: {m}"))
            })?;
        }
        if let Some(ua) = &settings.user_agent {
            validate_user_agent(ua).map_err(|m| {
                SettingsError::Invalid(format!("names.{raw_name:?}.user_agent: {m}"))
            })?;
        }
        names.insert(name, settings);
    }
    let api_key = match (
        flags.api_key.clone().or(raw.api_key),
        raw.api_key_file,
        need,
    ) {
        (Some(key), _, _) => key,
        // An offline command does not read a key file it does not need
        // (outside systemd the credential's path does not exist).
        (None, _, KeyNeed::NotUsed) => unknowable_key()?,
        (None, Some(path), KeyNeed::Required) => read_key_file(&path)?,
        (None, None, KeyNeed::Required) => return Err(SettingsError::NoApiKey),
    };
    if api_key.expose().is_empty() {
        return Err(SettingsError::NoApiKey);
    }
    super::mdm::validate_mdm(&raw.mdm)?;
    if raw.mdm.enabled && !raw.mdm.apns_base_url.is_empty() {
        raw.apple
            .allow
            .check_url(&raw.mdm.apns_base_url)
            .map_err(|r| SettingsError::Invalid(format!("mdm.apns_base_url: {r}")))?;
    }
    Ok(Settings {
        listen,
        data_dir,
        api_key,
        secrets_key_file: raw.secrets_key_file,
        max_dep_names: raw.max_dep_names,
        auth_failure_limit: raw.auth_failure_limit,
        log_format: flags.log_format.unwrap_or(raw.log_format),
        log_level: raw.log_level,
        apple: raw.apple,
        sync: raw.sync,
        assigner: raw.assigner,
        webhook: raw.webhook,
        names,
        demo: raw.demo,
        mdm: raw.mdm,
        source: source.map(Path::to_path_buf),
        ignored_env: Vec::new(),
    })
}

pub(super) fn validate_apple(apple: &AppleSettings) -> Result<(), SettingsError> {
    let invalid = |key: &str, m: String| SettingsError::Invalid(format!("apple.{key}: {m}"));
    validate_protocol_version(apple.protocol_version)
        .map_err(|m| invalid("protocol_version", m))?;
    validate_protocol_version(apple.proxy_protocol_version)
        .map_err(|m| invalid("proxy_protocol_version", m))?;
    validate_user_agent(&apple.user_agent).map_err(|m| invalid("user_agent", m))?;
    for (key, secs) in [
        ("connect_timeout_secs", apple.connect_timeout_secs),
        ("request_timeout_secs", apple.request_timeout_secs),
    ] {
        if !(1..=3600).contains(&secs) {
            return Err(invalid(
                key,
                format!("{secs} must be from 1 to 3600 seconds"),
            ));
        }
    }
    if !(1024..=64 * 1024 * 1024).contains(&apple.proxy_body_limit) {
        return Err(invalid(
            "proxy_body_limit",
            format!(
                "{} must be from 1024 to 67108864 bytes",
                apple.proxy_body_limit
            ),
        ));
    }
    Ok(())
}

pub(super) const DAY_SECS: u64 = 24 * 60 * 60;
/// From a minute (tests, small fleets) to a week (Apple expires cursors
/// after 7 days, so a longer interval would always fetch everything).
pub(super) const SYNC_INTERVAL_RANGE: (u64, u64) = (60, 7 * DAY_SECS);

pub(super) fn check_range<T: PartialOrd + fmt::Display>(
    value: T,
    (lo, hi): (T, T),
) -> Result<(), String> {
    if lo <= value && value <= hi {
        Ok(())
    } else {
        Err(format!("{value} must be from {lo} to {hi}"))
    }
}

pub(super) fn validate_sync(sync: &SyncSettings) -> Result<(), SettingsError> {
    let invalid = |key: &str, m: String| SettingsError::Invalid(format!("sync.{key}: {m}"));
    check_range(sync.interval_secs, SYNC_INTERVAL_RANGE)
        .map_err(|m| invalid("interval_secs", m))?;
    check_range(sync.jitter_percent, (0, 50)).map_err(|m| invalid("jitter_percent", m))?;
    check_range(sync.page_limit, (1, 1000)).map_err(|m| invalid("page_limit", m))?;
    check_range(sync.retry_first_secs, (1, DAY_SECS))
        .map_err(|m| invalid("retry_first_secs", m))?;
    check_range(sync.retry_max_secs, (sync.retry_first_secs, DAY_SECS))
        .map_err(|m| invalid("retry_max_secs", m))?;
    check_range(sync.slow_retry_secs, (60, DAY_SECS)).map_err(|m| invalid("slow_retry_secs", m))?;
    check_range(sync.max_retry_after_secs, (1, 7 * DAY_SECS))
        .map_err(|m| invalid("max_retry_after_secs", m))?;
    check_range(sync.request_retry_first_ms, (1, 600_000))
        .map_err(|m| invalid("request_retry_first_ms", m))?;
    check_range(sync.request_retry_max_secs, (1, 3600))
        .map_err(|m| invalid("request_retry_max_secs", m))?;
    check_range(sync.request_max_failures, (1, 100)).map_err(|m| invalid("request_max_failures", m))
}

pub(super) fn validate_assigner(a: &AssignerSettings) -> Result<(), SettingsError> {
    let invalid = |key: &str, m: String| SettingsError::Invalid(format!("assigner.{key}: {m}"));
    let day = DAY_SECS as i64;
    check_range(a.removal_window_secs, (0, 30 * day))
        .map_err(|m| invalid("removal_window_secs", m))?;
    check_range(a.failed_cooldown_secs, (1, 7 * day))
        .map_err(|m| invalid("failed_cooldown_secs", m))?;
    check_range(a.throttled_cooldown_secs, (1, 7 * day))
        .map_err(|m| invalid("throttled_cooldown_secs", m))?;
    check_range(a.max_failures, (1, 100)).map_err(|m| invalid("max_failures", m))?;
    check_range(a.batch_limit, (1, 1000)).map_err(|m| invalid("batch_limit", m))
}

pub(super) fn validate_webhook(w: &WebhookSettings) -> Result<(), SettingsError> {
    let invalid = |key: &str, m: String| SettingsError::Invalid(format!("webhook.{key}: {m}"));
    for url in &w.urls {
        validate_webhook_url(url).map_err(|m| invalid("urls", m))?;
    }
    if w.secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
        return Err(invalid(
            "secret",
            "must not be empty (leave it out to not sign)".into(),
        ));
    }
    check_range(w.timeout_secs, (1, 600)).map_err(|m| invalid("timeout_secs", m))?;
    check_range(w.retry_first_secs, (1, DAY_SECS)).map_err(|m| invalid("retry_first_secs", m))?;
    check_range(w.retry_max_secs, (w.retry_first_secs, DAY_SECS))
        .map_err(|m| invalid("retry_max_secs", m))
}

/// A webhook URL: absolute http(s) with a host (a query is allowed).
pub(super) fn validate_webhook_url(url: &str) -> Result<(), String> {
    check_http_url(url, true)
}

pub(super) fn validate_protocol_version(v: u32) -> Result<(), String> {
    if (1..=100).contains(&v) {
        Ok(())
    } else {
        Err(format!("{v} is not a DEP protocol version (1 to 100)"))
    }
}

/// A user agent must be a valid, non-empty HTTP header value.
pub(super) fn validate_user_agent(ua: &str) -> Result<(), String> {
    if ua.trim().is_empty() {
        return Err("must not be empty".into());
    }
    actix_web::http::header::HeaderValue::from_str(ua)
        .map(|_| ())
        .map_err(|_| format!("{ua:?} is not a valid header value"))
}

pub(super) fn read_key_file(path: &Path) -> Result<Secret, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::ApiKeyFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let key = text.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        return Err(SettingsError::ApiKeyFile {
            path: path.to_path_buf(),
            message: "the file is empty".into(),
        });
    }
    Ok(Secret::new(key))
}

/// Checks that `url` is an absolute http(s) URL with a host and no query or
/// fragment (a path prefix is allowed and kept).
pub fn validate_base_url(url: &str) -> Result<(), String> {
    check_http_url(url, false)
}

/// An absolute http(s) URL with a host; with `query_allowed` false, no
/// query or fragment either. Messages show the URL without userinfo or
/// query (`crate::daemon::redact::url`): webhook receivers put credentials there,
/// and these messages are logged.
fn check_http_url(url: &str, query_allowed: bool) -> Result<(), String> {
    let shown = crate::daemon::redact::url(url);
    let uri: actix_web::http::Uri = url.parse().map_err(|_| format!("{shown:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{shown:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    if !query_allowed && (uri.query().is_some() || url.contains('#')) {
        return Err(format!("{shown:?} must not have a query or fragment"));
    }
    Ok(())
}

/// 32 random bytes as hex: the API key of settings loaded for a command
/// that serves nothing. Nobody knows it, so it opens nothing.
fn unknowable_key() -> Result<Secret, SettingsError> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| {
        SettingsError::Invalid(format!("no random bytes for a placeholder key: {e}"))
    })?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}
