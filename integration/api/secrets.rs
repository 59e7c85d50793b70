//! Secrets at rest and in logs (issue #18): a scenario against the real
//! daemon binary, with its data directory and its debug log read
//! afterwards for every secret the scenario used.

use crate::helpers::*;
use actix_web::http::Method;
use depd::sim::{SimConfig, Simulator};
use std::path::{Path, PathBuf};
use std::process::Command;

const API_KEY: &str = "scenario-7f3a9c";
const HOOK_PASSWORD: &str = "hookpass-5e1d";
const HOOK_QUERY_SECRET: &str = "hooksig-a77c";

async fn call(d: &Daemon, method: Method, path: &str, body: &str) -> Reply {
    send(
        &awc::Client::default(),
        method,
        &d.url(path),
        Some(("depserver", API_KEY)),
        body.as_bytes().to_vec(),
    )
    .await
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn config(dir: &Path, key_file: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            "api_key = \"{API_KEY}\"\nsecrets_key_file = \"{}\"\nlog_level = \"debug\"\n\
             [webhook]\nurls = [\"http://hook:{HOOK_PASSWORD}@127.0.0.1:9/events?sig={HOOK_QUERY_SECRET}\"]\n\
             retry_first_secs = 1\n",
            key_file.display()
        ),
    )
}

#[actix_web::test]
async fn a_copied_data_directory_and_the_debug_log_hold_no_secret() {
    let sim = Simulator::start(SimConfig {
        devices: 20,
        ..SimConfig::default()
    })
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("secrets.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).expect("key");
    let config = config(dir.path(), &key_file);
    let data = dir.path().join("data");

    let mut d = Daemon::start(&config, &data);
    let tokens = sim.credentials().into_iter().next().expect("sim tokens");
    assert_eq!(
        call(&d, Method::PUT, "/v1/tokens/acme", &sim.tokens_json())
            .await
            .status,
        200
    );
    let base = serde_json::json!({ "base_url": sim.base_url() }).to_string();
    assert_eq!(
        call(&d, Method::PUT, "/v1/config/acme", &base).await.status,
        200
    );
    // A staging key pair: its private key is stored too.
    assert_eq!(
        call(&d, Method::GET, "/v1/tokenpki/acme", "").await.status,
        200
    );
    let r = call(&d, Method::POST, "/v1/sync/acme?wait=1", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        call(&d, Method::GET, "/proxy/acme/account", "")
            .await
            .status,
        200
    );
    // The webhook receiver is down: deliveries fail and are logged.
    d.wait_for_log("webhook delivery failed");

    let sessions: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.header("X-ADM-Auth-Session").map(str::to_owned))
        .collect();
    assert!(!sessions.is_empty(), "depd used a session");
    d.signal("TERM");
    let mut log = d.seen.clone();
    let exit = d.wait();
    assert!(exit.success(), "{exit:?}");

    let mut secrets: Vec<(&str, String)> = vec![
        ("consumer secret", tokens.consumer_secret.clone()),
        ("access token", tokens.access_token.clone()),
        ("access secret", tokens.access_secret.clone()),
        ("API key", API_KEY.into()),
        ("webhook password", HOOK_PASSWORD.into()),
        ("webhook query", HOOK_QUERY_SECRET.into()),
        ("private key", "PRIVATE KEY".into()),
        ("secrets key", "ab".repeat(32)),
    ];
    for s in &sessions {
        secrets.push(("session token", s.clone()));
    }
    let stored = files(&data);
    for (what, secret) in &secrets {
        for (path, bytes) in &stored {
            assert!(
                !contains(bytes, secret),
                "{what} found in {}",
                path.display()
            );
        }
    }
    // The scan read what sled wrote: the base URL is stored in the clear.
    assert!(
        stored.iter().any(|(_, b)| contains(b, &sim.base_url())),
        "the scan found the stored base URL"
    );

    // Private files: the directory 0700, everything in it 0600 (or 0700).
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for (path, _) in &stored {
        assert_eq!(
            mode(path) & 0o077,
            0,
            "{} is {:o}",
            path.display(),
            mode(path)
        );
    }

    // Same key: everything still works after a restart. A directory open
    // to the group is warned about.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    let d = Daemon::start(&config, &data);
    assert!(
        d.seen
            .iter()
            .any(|l| l.contains("the data directory is readable or writable by group or others")),
        "{:?}",
        d.seen
    );
    assert!(
        d.seen.iter().any(|l| l.contains("the API key has")),
        "short API key warned about"
    );
    let r = call(&d, Method::GET, "/v1/tokens/acme", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["consumer_key"], tokens.consumer_key);
    let r = call(&d, Method::POST, "/v1/sync/acme?wait=1", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        call(&d, Method::GET, "/proxy/acme/account", "")
            .await
            .status,
        200
    );
    d.signal("TERM");
    log.extend(d.seen.clone());
    assert!(d.wait().success());
    for s in sim
        .requests()
        .iter()
        .filter_map(|r| r.header("X-ADM-Auth-Session").map(str::to_owned))
    {
        secrets.push(("session token", s));
    }

    // The log was read (debug lines included) and holds no secret.
    assert!(
        log.iter().any(|l| l.contains("\"DEBUG\"")),
        "debug lines captured"
    );
    assert!(log.iter().any(|l| l.contains("webhook delivery failed")));
    for (what, secret) in &secrets {
        for line in &log {
            assert!(!line.contains(secret.as_str()), "{what} logged: {line}");
        }
    }

    // A wrong key: start-up fails with a clear message, nothing changes
    // (sled itself rewrites files when it opens, so records are compared).
    let records = || {
        let opened = depd::store::open_data_dir(&data, Some(&key_file)).expect("open");
        let names = opened.store.load_all().expect("load");
        let scan = opened.store.secrets_scan().expect("scan");
        (names, scan)
    };
    let before = records();
    assert_eq!(before.1.plain, 0);
    assert!(before.1.sealed >= 2, "{:?}", before.1);
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "cd".repeat(32)).expect("key");
    let wrong_config = write_config(
        dir.path(),
        &format!(
            "api_key = \"{API_KEY}\"\nsecrets_key_file = \"{}\"\n",
            wrong.display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&wrong_config)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("DEPD_API_KEY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run depd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sealed with key"), "{stderr}");
    assert!(
        records() == before,
        "a wrong key changed the stored records"
    );
}
