//! `depd sync --once`: one cycle per name on a stopped daemon's store, the
//! real binary's exit status telling whether every name succeeded.

use crate::helpers::write_config;
use depd::domain::name::DepName;
use depd::domain::state::NameState;
use depd::sim::faults::ResponseFault;
use depd::sim::{SimConfig, SimHandle, Simulator};
use depd::store::NameData;
use std::path::Path;
use std::process::{Command, Output};

/// A store as a stopped daemon leaves it: `names` hold the simulator's
/// tokens and point at it.
fn prepare(data: &Path, sim: &SimHandle, names: &[&str]) {
    let store = depd::store::open_data_dir(data, None)
        .expect("open store")
        .store;
    let now = time::OffsetDateTime::now_utc();
    for raw in names {
        let mut state = NameState::new(DepName::parse(raw).expect("name"), NameData::default());
        let tokens = depd::domain::tokens::parse(sim.tokens_json().as_bytes()).expect("tokens");
        for change in [
            state.put_tokens(&tokens, false, now).expect("tokens"),
            state.put_base_url(sim.base_url(), now),
        ] {
            let next = change.next.clone();
            store.commit(change.write).expect("commit");
            state.adopt(next);
        }
    }
    store.flush().expect("flush");
}

async fn once(config: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_depd"));
    cmd.args(["sync", "--once", "--json"])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("DEPD_API_KEY")
        .env_remove("DEPD_CONFIG");
    actix_web::web::block(move || cmd.output())
        .await
        .expect("blocking task")
        .expect("run depd")
}

#[actix_web::test]
async fn exit_status_says_whether_every_name_synced() {
    let sim = Simulator::start(SimConfig {
        devices: 30,
        ..SimConfig::default()
    })
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    prepare(&data, &sim, &["one", "two"]);
    // A failed request ends the cycle at once (no in-place retries), so the
    // failing run below is quick.
    let config = write_config(dir.path(), "[sync]\nrequest_max_failures = 1\n");

    let out = once(&config, &data, &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(reports[0]["dep_name"], "one");
    assert_eq!(reports[1]["outcome"], "complete");
    assert_eq!(reports[1]["devices"]["none"], 30);

    // The cursors were kept: the next run syncs and fetches nothing new.
    let fetches = sim.stats().count("POST", "/server/devices");
    let out = once(&config, &data, &["one"]).await;
    assert!(out.status.success());
    assert_eq!(sim.stats().count("POST", "/server/devices"), fetches);

    // Apple failing for one name: exit 1, and the failure is named.
    sim.add_fault(
        ResponseFault::new(500, "INTERNAL")
            .on_path("/devices/sync")
            .times(1),
    );
    let out = once(&config, &data, &["two"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("two"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unknown name, and a bad one.
    let out = once(&config, &data, &["nobody"]).await;
    assert_eq!(out.status.code(), Some(1));
    let out = once(&config, &data, &["a/b"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[actix_web::test]
async fn an_undeliverable_webhook_fails_the_run() {
    let sim = Simulator::start(SimConfig {
        devices: 5,
        ..SimConfig::default()
    })
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    prepare(&data, &sim, &["hooked"]);
    let config = write_config(dir.path(), "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let out = once(&config, &data, &["--webhook-url", &url]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(reports[0]["outcome"], "complete");
    assert!(reports[0]["webhook_backlog"].as_u64() > Some(0));
}
