use super::*;
use std::io::Write as _;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with_key() -> FlagOverrides {
    FlagOverrides {
        api_key: Some(Secret::new("k")),
        ..Default::default()
    }
}

#[test]
fn security_settings_from_the_environment() {
    let s = load(
        None,
        env(&[
            ("DEPD_AUTH_FAILURE_LIMIT", "0"),
            ("DEPD_MAX_DEP_NAMES", "5"),
            ("DEPD_SECRETS_KEY_FILE", "/etc/depd/secrets.key"),
        ]),
        &with_key(),
    )
    .expect("settings");
    assert_eq!(s.auth_failure_limit, 0);
    assert_eq!(s.max_dep_names, 5);
    assert_eq!(
        s.secrets_key_file.as_deref(),
        Some(Path::new("/etc/depd/secrets.key"))
    );
    assert!(s.ignored_env.is_empty(), "{:?}", s.ignored_env);
    let d = load(None, env(&[]), &with_key()).expect("defaults");
    assert_eq!((d.auth_failure_limit, d.max_dep_names), (10, 100_000));
    assert_eq!(d.apple.allow, Arc::new(Allowlist::default()));
    assert!(
        security_warnings(&d)
            .iter()
            .any(|w| w.contains("1 characters")),
        "{:?}",
        security_warnings(&d)
    );
}

#[test]
fn debug_hides_webhook_credentials() {
    let f = file(
        "[webhook]\nurls = [\"https://u:hookpass@h.example/x?sig=hooksig\"]\n\
         [names.acme]\nwebhook_urls = [\"https://t0ken@h.example/y?k=namesig\"]\n",
    );
    let s = load(Some(f.path()), env(&[]), &with_key()).expect("settings");
    let text = format!("{s:?}");
    for secret in ["hookpass", "hooksig", "t0ken", "namesig"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("https://***@h.example/x"), "{text}");
}

#[test]
fn defaults_need_only_a_key() {
    let s = load(None, env(&[]), &with_key()).expect("settings");
    assert_eq!(s.listen.to_string(), "127.0.0.1:9001");
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/depd"));
    assert_eq!(s.apple.base_url, APPLE_BASE_URL);
    assert_eq!(s.log_format, LogFormat::Human);
    assert!(s.names.is_empty());
}

#[test]
fn no_key_refuses_with_reason() {
    let err = load(None, env(&[]), &FlagOverrides::default()).expect_err("no key");
    assert!(matches!(err, SettingsError::NoApiKey));
    assert!(err.to_string().contains("DEPD_API_KEY"));
    let f = file("api_key = \"\"\n");
    let err = load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect_err("empty");
    assert!(matches!(err, SettingsError::NoApiKey));
}

#[test]
fn layers_file_then_env_then_flags() {
    let f = file(
        "listen = \"127.0.0.1:1000\"\ndata_dir = \"/from/file\"\napi_key = \"file\"\nlog_level = \"debug\"\n",
    );
    let s = load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect("file");
    assert_eq!(s.listen.port(), 1000);
    assert_eq!(s.api_key.expose(), "file");
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.source.as_deref(), Some(f.path()));

    let e = env(&[
        ("DEPD_LISTEN", "127.0.0.1:2000"),
        ("DEPD_API_KEY", "env"),
        ("DEPD_APPLE__BASE_URL", "http://127.0.0.1:9/x"),
        ("DEPD_URL", "http://client-only"),
        ("HOME", "/root"),
    ]);
    let s = load(Some(f.path()), e.clone(), &FlagOverrides::default()).expect("env");
    assert_eq!(s.listen.port(), 2000);
    assert_eq!(s.api_key.expose(), "env");
    assert_eq!(s.apple.base_url, "http://127.0.0.1:9/x");
    assert_eq!(s.data_dir, PathBuf::from("/from/file"));

    let flags = FlagOverrides {
        listen: Some("127.0.0.1:3000".into()),
        data_dir: Some("/from/flag".into()),
        api_key: Some(Secret::new("flag")),
        webhook_url: None,
        log_format: Some(LogFormat::Json),
    };
    let s = load(Some(f.path()), e, &flags).expect("flags");
    assert_eq!(s.listen.port(), 3000);
    assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(s.api_key.expose(), "flag");
    assert_eq!(s.log_format, LogFormat::Json);
}

#[test]
fn webhook_url_flag_replaces_the_configured_urls() {
    let f = file(
        "api_key = \"k\"\n[webhook]\nurls = [\"http://127.0.0.1:1/a\", \"http://127.0.0.1:1/b\"]\n",
    );
    let flags = FlagOverrides {
        webhook_url: Some("http://127.0.0.1:2/hook".into()),
        ..FlagOverrides::default()
    };
    let s = load(Some(f.path()), env(&[]), &flags).expect("settings");
    assert_eq!(s.webhook.urls, vec!["http://127.0.0.1:2/hook".to_owned()]);
    let bad = FlagOverrides {
        webhook_url: Some("ftp://x".into()),
        ..FlagOverrides::default()
    };
    let err = load(Some(f.path()), env(&[]), &bad).expect_err("bad URL");
    assert!(err.to_string().contains("--webhook-url"), "{err}");
}

#[test]
fn unknown_keys_are_named() {
    for (text, key) in [
        ("api_key = \"k\"\nlisten_addr = \"x\"\n", "listen_addr"),
        ("api_key = \"k\"\n[apple]\nbase_ur = \"x\"\n", "base_ur"),
        ("api_key = \"k\"\n[names.acme]\nbase = \"x\"\n", "base"),
    ] {
        let f = file(text);
        let err =
            load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect_err("unknown key");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn unknown_environment_variables_are_ignored_and_named() {
    let vars = env(&[
        ("DEPD_LISTN", "x"),
        ("DEPD_WRAPPER_PID", "42"),
        ("DEPD_SYNC__BOGUS", "1"),
        ("DEPD_SYNC", "1"),
        ("DEPD_NAMES__ACME__BOGUS", "1"),
        ("DEPD_A__B__C__D", "1"),
        ("DEPD_SYNC__INTERVAL_SECS", "120"),
        ("DEPD_NAMES__ACME__SYNC_INTERVAL_SECS", "300"),
        ("DEPD_LOG_LEVEL", "debug"),
        ("DEPD_URL", "http://127.0.0.1:9001"),
        ("OTHER", "x"),
    ]);
    let s = load(None, vars, &with_key()).expect("unknown variables are not fatal");
    assert_eq!(
        s.ignored_env,
        [
            "DEPD_A__B__C__D",
            "DEPD_LISTN",
            "DEPD_NAMES__ACME__BOGUS",
            "DEPD_SYNC",
            "DEPD_SYNC__BOGUS",
            "DEPD_WRAPPER_PID",
        ]
    );
    assert_eq!(s.sync.interval_secs, 120);
    assert_eq!(s.log_level, "debug");
    let acme = DepName::parse("acme").expect("name");
    assert_eq!(s.sync_interval(&acme), std::time::Duration::from_secs(300));
    // A known key with a bad value is still an error.
    let err = load(
        None,
        env(&[("DEPD_SYNC__INTERVAL_SECS", "soon")]),
        &with_key(),
    )
    .expect_err("bad value");
    assert!(err.to_string().contains("interval_secs"), "{err}");
}

#[test]
fn every_file_key_is_settable_from_the_environment() {
    for key in struct_fields::<FileSettings>() {
        let path = vec![key.to_string()];
        let section = SECTIONS.iter().any(|(s, _)| s == key);
        assert_eq!(is_setting_path(&path), !section && *key != "names", "{key}");
    }
    for (section, fields) in SECTIONS {
        assert!(!fields().is_empty(), "{section}");
        for key in fields() {
            assert!(is_setting_path(&[section.to_string(), key.to_string()]));
        }
    }
    assert!(struct_fields::<NameSettings>().contains(&"base_url"));
}

#[test]
fn invalid_values_are_explained() {
    for (text, needle) in [
        ("listen = \"nope\"\n", "listen"),
        ("log_format = \"xml\"\n", "xml"),
        ("[apple]\nbase_url = \"ftp://x\"\n", "http"),
        ("[names.\"a/b\"]\n", "a/b"),
        ("[names.acme]\nbase_url = \"http://x/?q=1\"\n", "query"),
        ("listen = [\n", "configuration file"),
    ] {
        let f = file(text);
        let err = load(Some(f.path()), env(&[]), &with_key()).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn apple_profile_applies_name_overrides() {
    let f = file(
        "[apple]\nprotocol_version = 9\nuser_agent = \"mdm/2\"\n\
         [names.acme]\nproxy_protocol_version = 8\nuser_agent = \"acme-mdm\"\n[names.beta]\n",
    );
    let s = load(Some(f.path()), env(&[]), &with_key()).expect("settings");
    let acme = s.apple_profile(&DepName::parse("acme").expect("name"));
    assert_eq!(
        (
            acme.protocol_version,
            acme.proxy_protocol_version,
            acme.user_agent.as_str()
        ),
        (9, 8, "acme-mdm")
    );
    let beta = s.apple_profile(&DepName::parse("beta").expect("name"));
    assert_eq!(
        (
            beta.protocol_version,
            beta.proxy_protocol_version,
            beta.user_agent.as_str()
        ),
        (9, 7, "mdm/2")
    );
    let d = load(None, env(&[]), &with_key()).expect("defaults");
    let p = d.apple_profile(&DepName::parse("x").expect("name"));
    assert_eq!((p.protocol_version, p.proxy_protocol_version), (10, 7));
    assert!(p.user_agent.starts_with("depd/"));
    for (text, needle) in [
        ("[apple]\nprotocol_version = 0\n", "protocol_version"),
        ("[apple]\nuser_agent = \"\"\n", "user_agent"),
        (
            "[apple]\nrequest_timeout_secs = 0\n",
            "request_timeout_secs",
        ),
        ("[apple]\nproxy_body_limit = 1\n", "proxy_body_limit"),
        ("[names.a]\nuser_agent = \"x\\ny\"\n", "user_agent"),
    ] {
        let f = file(text);
        let err = load(Some(f.path()), env(&[]), &with_key()).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn sync_assigner_webhook_defaults_overrides_and_checks() {
    let d = load(None, env(&[]), &with_key()).expect("defaults");
    let x = DepName::parse("x").expect("name");
    assert_eq!(d.sync_interval(&x).as_secs(), 1800);
    assert_eq!((d.sync.page_limit, d.sync.jitter_percent), (1000, 10));
    assert!(d.assigner.reassign_removed);
    assert_eq!(
        (d.assigner.max_failures, d.assigner.failed_cooldown_secs),
        (3, 3600)
    );
    assert!(d.webhook_urls(&x).is_empty());
    assert_eq!(d.webhook.secret, None);

    let f = file(
        "[sync]\ninterval_secs = 600\n[assigner]\nreassign_removed = false\n\
         [webhook]\nurls = [\"http://127.0.0.1:7/hook?x=1\"]\nsecret = \"whs\"\n\
         [names.acme]\nsync_interval_secs = 120\nwebhook_urls = [\"https://a.example/h\", \"http://b:9/\"]\n\
         [names.quiet]\nwebhook_urls = []\n",
    );
    let s = load(Some(f.path()), env(&[]), &with_key()).expect("settings");
    let acme = DepName::parse("acme").expect("name");
    let quiet = DepName::parse("quiet").expect("name");
    assert_eq!(s.sync_interval(&acme).as_secs(), 120);
    assert_eq!(s.sync_interval(&x).as_secs(), 600);
    assert_eq!(
        s.webhook_urls(&acme),
        ["https://a.example/h", "http://b:9/"]
    );
    assert_eq!(s.webhook_urls(&x), ["http://127.0.0.1:7/hook?x=1"]);
    assert!(s.webhook_urls(&quiet).is_empty());
    assert!(!s.assigner.reassign_removed);
    assert_eq!(s.webhook.secret.as_ref().map(Secret::expose), Some("whs"));
    assert!(!format!("{s:?}").contains("whs"));

    let e = env(&[
        ("DEPD_SYNC__PAGE_LIMIT", "500"),
        ("DEPD_ASSIGNER__MAX_FAILURES", "5"),
    ]);
    let s = load(None, e, &with_key()).expect("env");
    assert_eq!((s.sync.page_limit, s.assigner.max_failures), (500, 5));

    for (text, needle) in [
        ("[sync]\ninterval_secs = 5\n", "sync.interval_secs"),
        ("[sync]\npage_limit = 1001\n", "sync.page_limit"),
        ("[sync]\njitter_percent = 90\n", "sync.jitter_percent"),
        (
            "[sync]\nretry_first_secs = 100\nretry_max_secs = 10\n",
            "sync.retry_max_secs",
        ),
        ("[sync]\nintervl = 5\n", "intervl"),
        ("[assigner]\nbatch_limit = 0\n", "assigner.batch_limit"),
        ("[assigner]\nmax_failures = 0\n", "assigner.max_failures"),
        (
            "[assigner]\nremoval_window_secs = -1\n",
            "assigner.removal_window_secs",
        ),
        ("[webhook]\nurls = [\"ftp://x\"]\n", "webhook.urls"),
        ("[webhook]\nsecret = \"\"\n", "webhook.secret"),
        ("[webhook]\ntimeout_secs = 0\n", "webhook.timeout_secs"),
        ("[names.a]\nsync_interval_secs = 1\n", "sync_interval_secs"),
        ("[names.a]\nwebhook_urls = [\"nope\"]\n", "webhook_urls"),
    ] {
        let f = file(text);
        let err = load(Some(f.path()), env(&[]), &with_key()).expect_err(text);
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn reference_config_shows_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/depd.toml");
    let s = load(Some(&path), env(&[]), &with_key()).expect("config/depd.toml");
    assert_eq!(s.sync, SyncSettings::default());
    assert_eq!(s.assigner, AssignerSettings::default());
    assert_eq!(s.webhook, WebhookSettings::default());
}

#[test]
fn names_keep_case_and_overrides() {
    let f = file("[names.\"Acme-Prod\"]\nbase_url = \"http://127.0.0.1:5/prefix\"\n[names.beta]\n");
    let s = load(Some(f.path()), env(&[]), &with_key()).expect("settings");
    let acme = DepName::parse("Acme-Prod").expect("name");
    let beta = DepName::parse("beta").expect("name");
    assert_eq!(s.default_base_url(&acme), "http://127.0.0.1:5/prefix");
    assert_eq!(s.default_base_url(&beta), APPLE_BASE_URL);
}

#[test]
fn api_key_file_is_read_and_trimmed() {
    let key = file("s3cret\n");
    let f = file(&format!("api_key_file = {:?}\n", key.path()));
    let s = load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect("settings");
    assert_eq!(s.api_key.expose(), "s3cret");
    let f = file("api_key_file = \"/nonexistent/key\"\n");
    let err = load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/key"), "{err}");
}

#[test]
fn secrets_do_not_print() {
    let s = load(None, env(&[]), &with_key()).expect("settings");
    assert!(!format!("{s:?}").contains("\"k\""));
}

#[test]
fn base_url_validation() {
    assert!(validate_base_url("https://mdmenrollment.apple.com").is_ok());
    assert!(validate_base_url("http://127.0.0.1:8080/some/prefix").is_ok());
    for bad in [
        "",
        "mdmenrollment.apple.com",
        "file:///x",
        "http://",
        "https://x/#f",
    ] {
        assert!(validate_base_url(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn url_errors_do_not_repeat_credentials() {
    let f = file("[webhook]\nurls = [\"ftp://hook:pw-123@h.example/x?sig=s-456\"]\n");
    let err = load(Some(f.path()), env(&[]), &with_key())
        .expect_err("ftp is refused")
        .to_string();
    assert!(err.contains("http:// or https://"), "{err}");
    assert!(!err.contains("pw-123") && !err.contains("s-456"), "{err}");
}

#[test]
fn offline_commands_need_no_api_key_and_get_none_anyone_knows() {
    let f = file("data_dir = \"/srv/depd\"\napi_key_file = \"/nonexistent/api_key\"\n");
    let a = load_offline(Some(f.path()), env(&[]), &FlagOverrides::default()).expect("offline");
    let b = load_offline(Some(f.path()), env(&[]), &FlagOverrides::default()).expect("offline");
    assert_eq!(a.data_dir, PathBuf::from("/srv/depd"));
    assert_eq!(a.api_key.expose().len(), 64);
    assert_ne!(a.api_key.expose(), b.api_key.expose());
    // The server still requires one, and reads the file.
    let err = load(Some(f.path()), env(&[]), &FlagOverrides::default()).expect_err("server");
    assert!(err.to_string().contains("/nonexistent/api_key"), "{err}");
}

#[test]
fn mdm_settings_come_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    let key = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                .expect("group"),
        )
        .expect("key"),
    )
    .expect("pkey");
    let mut b = openssl::x509::X509::builder().expect("builder");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).expect("t"))
        .expect("na");
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .expect("sign");
    std::fs::write(&ca, b.build().to_pem().expect("pem")).expect("write");

    // Off by default; enabled without a CA is an error naming the key.
    let s = load(None, env(&[]), &with_key()).expect("defaults");
    assert!(!s.mdm.enabled);
    assert_eq!(s.mdm.body_limit, 10 * 1024 * 1024);
    let err = load(None, env(&[("DEPD_MDM__ENABLED", "true")]), &with_key())
        .expect_err("no CA")
        .to_string();
    assert!(err.contains("mdm.ca_file"), "{err}");
    // DEPD_MDM__… as for every section.
    let s = load(
        None,
        env(&[
            ("DEPD_MDM__ENABLED", "true"),
            ("DEPD_MDM__CA_FILE", ca.to_str().expect("path")),
            ("DEPD_MDM__RETRO", "true"),
            ("DEPD_MDM__WEBHOOK_URL", "https://hooks.example/mdm?token=x"),
        ]),
        &with_key(),
    )
    .expect("from the environment");
    assert!(s.mdm.enabled && s.mdm.retro);
    assert_eq!(s.mdm.webhook_url, "https://hooks.example/mdm?token=x");
    assert!(s.ignored_env.is_empty(), "{:?}", s.ignored_env);
    // A CA file that holds no certificate, a bad header name.
    let f = file(&format!(
        "[mdm]\nenabled = true\nca_file = {:?}\n",
        dir.path().join("missing.pem").display().to_string()
    ));
    let err = load(Some(f.path()), env(&[]), &with_key())
        .expect_err("missing CA")
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let f = file(&format!(
        "[mdm]\nenabled = true\nca_file = {:?}\ncert_header = \"X Bad\"\n",
        ca.display().to_string()
    ));
    let err = load(Some(f.path()), env(&[]), &with_key())
        .expect_err("header")
        .to_string();
    assert!(err.contains("mdm.cert_header"), "{err}");
    // Debug output shows no key.
    let f = file(&format!(
        "[mdm]\nenabled = true\nca_file = {:?}\nwebhook_hmac_key = \"hmac-secret-1\"\n",
        ca.display().to_string()
    ));
    let s = load(Some(f.path()), env(&[]), &with_key()).expect("with a key");
    assert!(!format!("{:?}", s.mdm).contains("hmac-secret-1"));
}
