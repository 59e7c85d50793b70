//! `depd import-nanodep`: a NanoDEP filekv directory written by the test,
//! imported (a dry run first, then twice for real), then the daemon started
//! on the imported store makes a proxied call with the imported tokens.

use crate::helpers::*;
use actix_web::http::Method;
use depd::cli::import::{Outcome, Report, import_nanodep};
use depd::daemon::app::Application;
use depd::pki::KeyPair;
use depd::settings::{self, FlagOverrides, Secret};
use depd::sim::{SimConfig, Simulator};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use time::OffsetDateTime;

fn outcome<'a>(report: &'a Report, name: &str, what: &str) -> &'a Outcome {
    report
        .names
        .iter()
        .find(|n| n.name == name)
        .and_then(|n| n.items.iter().find(|i| i.what == what))
        .map(|i| &i.outcome)
        .unwrap_or_else(|| panic!("no {what} for {name}: {report}"))
}

fn put(dir: &Path, file: &str, value: &[u8]) {
    std::fs::write(dir.join(file), value).expect("write filekv value");
}

fn write_tokens(dir: &Path, name: &str, tokens: &Value) {
    for field in [
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_secret",
        "access_token_expiry",
    ] {
        let value = tokens[field].as_str().expect("token field");
        put(dir, &format!("{field}.{name}"), value.as_bytes());
    }
}

#[actix_web::test]
async fn imports_a_filekv_directory_and_the_daemon_uses_it() {
    let sim = Simulator::start(SimConfig::default()).expect("depsim");
    let root = tempfile::tempdir().expect("tempdir");
    let kv = root.path().join("nanodep");
    let names = kv.join("dep_names");
    std::fs::create_dir_all(&names).expect("mkdir");
    let now = OffsetDateTime::now_utc();

    // acme: the simulator's tokens and URL, an assigner, a current pair.
    let sim_tokens: Value = serde_json::from_str(&sim.tokens_json()).expect("tokens");
    write_tokens(&names, "acme", &sim_tokens);
    let config = serde_json::json!({ "base_url": sim.base_url() }).to_string();
    put(&names, "config.acme", config.as_bytes());
    put(&names, "assigner_profile.acme", b"0A1B2C3D4E5F");
    put(
        &names,
        "assigner_profile_mod_time.acme",
        b"2026-01-02T03:04:05Z",
    );
    let current = KeyPair::generate("depserver", 30, now).expect("key pair");
    put(&names, "cert.acme", &current.cert_pem().expect("cert"));
    put(&names, "key.acme", &current.key_pem(None).expect("key"));
    put(&names, "cursor.acme", b"MTIzNDU2Nzg5MA");
    // beta: other tokens and a staging pair waiting for a token file.
    let beta_tokens = serde_json::from_str::<Value>(&tokens_json("CK_beta")).expect("tokens");
    write_tokens(&names, "beta", &beta_tokens);
    let staging = KeyPair::generate("depserver", 1, now).expect("key pair");
    put(
        &names,
        "cert_staging.beta",
        &staging.cert_pem().expect("cert"),
    );
    put(
        &names,
        "key_staging.beta",
        &staging.key_pem(None).expect("key"),
    );
    // partial: secrets missing, and a certificate without its key.
    put(&names, "consumer_key.partial", b"CK_partial");
    put(&names, "access_token.partial", b"AT_partial");
    put(&names, "cert.partial", &staging.cert_pem().expect("cert"));
    put(&names, "notes.txt", b"not a NanoDEP value");

    let data = root.path().join("data");
    let dry = Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(["import-nanodep", "--dry-run", "--filekv"])
        .arg(&kv)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run depd");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        text.contains("  tokens: would import (consumer key CK_"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing was written"), "{text}");
    assert!(!data.exists(), "a dry run writes nothing");

    let first = import_nanodep(&kv, &data, None, false, now).expect("import");
    assert!(matches!(
        outcome(&first, "acme", "tokens"),
        Outcome::Imported(_)
    ));
    assert_eq!(
        outcome(&first, "acme", "base URL"),
        &Outcome::Imported(sim.base_url())
    );
    assert_eq!(
        outcome(&first, "acme", "assigner"),
        &Outcome::Imported("profile 0A1B2C3D4E5F, modified 2026-01-02T03:04:05Z".into())
    );
    assert!(matches!(
        outcome(&first, "acme", "current key pair"),
        Outcome::Imported(_)
    ));
    assert!(matches!(
        outcome(&first, "acme", "cursor"),
        Outcome::Imported(_)
    ));
    assert!(matches!(
        outcome(&first, "beta", "staging key pair"),
        Outcome::Imported(_)
    ));
    assert!(matches!(
        outcome(&first, "partial", "tokens"),
        Outcome::Skipped(why) if why == "incomplete, missing consumer_secret, access_secret, access_token_expiry"
    ));
    assert!(matches!(
        outcome(&first, "partial", "current key pair"),
        Outcome::Skipped(why) if why.contains("without key.")
    ));
    assert_eq!(
        first.ignored,
        vec![(
            "dep_names/notes.txt".to_owned(),
            "not a NanoDEP DEP-name value".to_owned()
        )]
    );

    // The imported secrets are sealed on disk, like the daemon's own.
    let secret = sim.credentials()[0].consumer_secret.clone();
    let key_pem = String::from_utf8(current.key_pem(None).expect("key")).expect("PEM");
    let key_body = key_pem.lines().nth(1).expect("a base64 line").to_owned();
    for entry in std::fs::read_dir(&data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            for needle in [secret.as_str(), key_body.as_str(), "PRIVATE KEY"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} in {}",
                    path.display()
                );
            }
        }
    }

    let again = import_nanodep(&kv, &data, None, false, now).expect("import again");
    assert!(!again.changed(), "{again}");
    assert_eq!(outcome(&again, "acme", "tokens"), &Outcome::Unchanged);
    assert_eq!(
        outcome(&again, "beta", "staging key pair"),
        &Outcome::Unchanged
    );

    // The daemon on the imported store: Apple (depsim) accepts the tokens.
    let flags = FlagOverrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data.clone()),
        api_key: Some(Secret::new(KEY)),
        webhook_url: None,
        log_format: None,
    };
    let settings = settings::load(None, Vec::new(), &flags).expect("settings");
    let app = Application::build(settings).await.expect("build");
    let base = format!("http://{}", app.addr());
    actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::default();
    let auth = Some(("depserver", KEY));
    let account = send(
        &client,
        Method::GET,
        &format!("{base}/proxy/acme/account"),
        auth,
        Vec::new(),
    )
    .await;
    assert_eq!(
        account.status,
        200,
        "{}",
        String::from_utf8_lossy(&account.body)
    );
    assert!(account.json()["server_uuid"].is_string());
    let assigner = send(
        &client,
        Method::GET,
        &format!("{base}/v1/assigner/acme"),
        auth,
        Vec::new(),
    )
    .await;
    assert_eq!(assigner.json()["modified_at"], "2026-01-02T03:04:05Z");
    let names = send(
        &client,
        Method::GET,
        &format!("{base}/v1/dep_names"),
        auth,
        Vec::new(),
    )
    .await;
    // Nothing of "partial" could be imported, so depd does not know it.
    assert_eq!(
        names.json()["dep_names"],
        serde_json::json!(["acme", "beta"])
    );
}

#[test]
fn a_running_daemon_makes_the_import_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The import finds data_dir in the daemon's configuration file.
    let config = write_config(
        dir.path(),
        &format!(
            "api_key = \"test-api-key\"\ndata_dir = {:?}\n",
            data.to_str().expect("utf-8 temp path")
        ),
    );
    std::fs::create_dir_all(dir.path().join("kv/dep_names")).expect("mkdir");
    let _daemon = Daemon::start(&config, &data);
    let out = Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(["import-nanodep", "--filekv"])
        .arg(dir.path().join("kv"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run depd");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stop depd first"), "{stderr}");
}
