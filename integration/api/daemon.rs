//! The real `depd` binary: restart on the same directory, SIGHUP reloads
//! (valid and broken), SIGTERM, and refusing to start without a key.

use crate::helpers::*;
use actix_web::http::Method;
use serde_json::json;
use std::process::Command;

const BASE: &str = "api_key = \"test-api-key\"\n";

async fn get(client: &awc::Client, d: &Daemon, path: &str) -> Reply {
    send(
        client,
        Method::GET,
        &d.url(path),
        Some(("depserver", KEY)),
        Vec::new(),
    )
    .await
}

async fn put(client: &awc::Client, d: &Daemon, path: &str, body: &str) -> Reply {
    send(
        client,
        Method::PUT,
        &d.url(path),
        Some(("depserver", KEY)),
        body.as_bytes().to_vec(),
    )
    .await
}

#[actix_web::test]
async fn state_survives_a_restart_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), BASE);
    let data = dir.path().join("data");
    let client = awc::Client::default();

    let mut d = Daemon::start(&config, &data);
    assert_eq!(
        put(&client, &d, "/v1/tokens/acme", &tokens_json("CK_1"))
            .await
            .status,
        200
    );
    assert_eq!(
        put(
            &client,
            &d,
            "/v1/config/acme",
            r#"{"base_url":"http://127.0.0.1:7/p"}"#
        )
        .await
        .status,
        200
    );
    let assigner = put(&client, &d, "/v1/assigner/acme?profile_uuid=P1", "")
        .await
        .json();
    d.signal("TERM");
    d.wait_for_log("stopped");
    assert_eq!(d.wait().code(), Some(0));

    let d = Daemon::start(&config, &data);
    assert_eq!(
        get(&client, &d, "/v1/dep_names").await.json()["dep_names"],
        json!(["acme"])
    );
    assert_eq!(
        get(&client, &d, "/v1/tokens/acme").await.json()["consumer_key"],
        "CK_1"
    );
    assert_eq!(
        get(&client, &d, "/v1/config/acme").await.json()["base_url"],
        "http://127.0.0.1:7/p"
    );
    assert_eq!(get(&client, &d, "/v1/assigner/acme").await.json(), assigner);
    // The consumer-key rule holds across the restart.
    assert_eq!(
        put(&client, &d, "/v1/tokens/acme", &tokens_json("CK_2"))
            .await
            .status,
        409
    );
}

/// journald restarting (or any log reader going away) leaves depd's
/// standard error a broken pipe: depd keeps serving and still stops cleanly
/// on SIGTERM, instead of panicking on the next log line.
#[actix_web::test]
async fn a_broken_log_pipe_neither_stops_nor_wedges_depd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), BASE);
    let client = awc::Client::default();
    let mut d = Daemon::start(&config, &dir.path().join("data"));
    d.stop_reading_log();
    assert_eq!(get(&client, &d, "/v1/dep_names").await.status, 200);
    d.log_closed();
    for _ in 0..3 {
        assert_eq!(get(&client, &d, "/v1/dep_names").await.status, 200);
    }
    assert_eq!(
        put(&client, &d, "/v1/tokens/acme", &tokens_json("CK_1"))
            .await
            .status,
        200
    );
    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));
}

#[actix_web::test]
async fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &format!("{BASE}[names.first]\n"));
    let client = awc::Client::default();
    let mut d = Daemon::start(&config, &dir.path().join("data"));
    assert_eq!(
        get(&client, &d, "/v1/dep_names").await.json()["dep_names"],
        json!(["first"])
    );

    // Valid change: a new name appears, a removed one (with nothing stored) goes,
    // and a per-name base URL takes effect.
    write_config(
        dir.path(),
        &format!("{BASE}[names.second]\nbase_url = \"http://127.0.0.1:9/second\"\n"),
    );
    d.signal("HUP");
    d.wait_for_log("configuration reloaded");
    assert_eq!(
        get(&client, &d, "/v1/dep_names").await.json()["dep_names"],
        json!(["second"])
    );
    assert_eq!(
        get(&client, &d, "/v1/config/second").await.json()["base_url"],
        "http://127.0.0.1:9/second"
    );

    // Broken change: logged with the offending key, old config keeps serving.
    write_config(
        dir.path(),
        &format!("{BASE}[names.third]\nbase_ulr = \"x\"\n"),
    );
    d.signal("HUP");
    let line =
        d.wait_for_log("configuration reload failed; still running on the previous configuration");
    assert!(line.contains("base_ulr"), "{line}");
    assert_eq!(
        get(&client, &d, "/v1/dep_names").await.json()["dep_names"],
        json!(["second"])
    );

    // A new API key takes effect on reload; the old one stops working.
    write_config(dir.path(), "api_key = \"rotated\"\n[names.second]\n");
    d.signal("HUP");
    d.wait_for_log("configuration reloaded");
    let old = send(
        &client,
        Method::GET,
        &d.url("/v1/dep_names"),
        Some(("depserver", KEY)),
        Vec::new(),
    )
    .await;
    assert_eq!(old.status, 401);
    let new = send(
        &client,
        Method::GET,
        &d.url("/v1/dep_names"),
        Some(("depserver", "rotated")),
        Vec::new(),
    )
    .await;
    assert_eq!(new.status, 200);

    d.signal("TERM");
    assert_eq!(d.wait().code(), Some(0));
}

#[test]
fn refuses_to_start_without_an_api_key_or_with_unknown_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (config, needle) in [
        ("", "no API key configured"),
        ("api_key = \"k\"\nlisten_adress = \"x\"\n", "listen_adress"),
    ] {
        let path = write_config(dir.path(), config);
        let out = Command::new(env!("CARGO_BIN_EXE_depd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("DEPD_API_KEY")
            .output()
            .expect("run depd");
        assert_eq!(out.status.code(), Some(2), "{config}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[actix_web::test]
async fn the_api_key_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let d = Daemon::start_with_env(
        &config,
        &dir.path().join("data"),
        &[("DEPD_API_KEY", "from-env")],
    );
    let client = awc::Client::default();
    let ok = send(
        &client,
        Method::GET,
        &d.url("/v1/dep_names"),
        Some(("depserver", "from-env")),
        Vec::new(),
    )
    .await;
    assert_eq!(ok.status, 200);
    let wrong = send(
        &client,
        Method::GET,
        &d.url("/v1/dep_names"),
        Some(("depserver", KEY)),
        Vec::new(),
    )
    .await;
    assert_eq!(wrong.status, 401);
}

#[actix_web::test]
async fn unknown_depd_variables_are_warned_about_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), BASE);
    let d = Daemon::start_with_env(
        &config,
        &dir.path().join("data"),
        &[
            ("DEPD_WRAPPER_TOKEN", "wrapper-secret-value"),
            ("DEPD_SYNC__NO_SUCH_KEY", "1"),
        ],
    );
    let client = awc::Client::default();
    assert_eq!(get(&client, &d, "/v1/dep_names").await.status, 200);
    let warnings: Vec<&String> = d
        .seen
        .iter()
        .filter(|l| l.contains("\"WARN\"") && l.contains("ignoring environment variable"))
        .collect();
    assert_eq!(warnings.len(), 2, "{:#?}", d.seen);
    assert!(warnings.iter().any(|l| l.contains("DEPD_WRAPPER_TOKEN")));
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("DEPD_SYNC__NO_SUCH_KEY"))
    );
    assert!(
        !d.seen.iter().any(|l| l.contains("wrapper-secret-value")),
        "a variable's value is never logged"
    );
}
