//! Crash safety: the real `depd` binary syncing 100,000 devices from depsim
//! with a webhook receiver is killed with SIGKILL at several moments and
//! restarted each time. Nothing may be lost: every device is in the
//! inventory exactly once, every page reached the receiver at least once,
//! and the cursor carries on in the sync phase.

use crate::helpers::{Daemon, KEY, write_config};
use actix_web::{App, HttpResponse, HttpServer, web};
use depd::sim::{SimConfig, Simulator};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEVICES: usize = 100_000;

#[derive(Default)]
struct Seen {
    events: u64,
    serials: BTreeSet<String>,
}

async fn call(client: &awc::Client, method: &str, url: &str, body: String) -> (u16, Value) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut resp = client
        .request(method, url)
        .basic_auth("depserver", KEY)
        .send_body(body)
        .await
        .expect("request to depd");
    let bytes = resp.body().limit(64 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls (bounded) until `done`; running out fails the test.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts the daemon on a blocking thread (it waits for a log line) so the
/// simulator and the receiver on this thread keep serving.
async fn start(config: std::path::PathBuf, data: std::path::PathBuf) -> Daemon {
    web::block(move || Daemon::start(&config, &data))
        .await
        .expect("start depd")
}

#[actix_web::test]
async fn sigkill_at_any_moment_loses_nothing() {
    let sim = Simulator::start(SimConfig {
        devices: DEVICES,
        seed: 7,
        timestamp_window: None,
        workers: 2,
        ..SimConfig::default()
    })
    .expect("sim");
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s = seen.clone();
    let receiver = HttpServer::new(move || {
        let s = s.clone();
        // A page of 1000 devices is about 500 KB.
        App::new()
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::to(move |body: web::Bytes| {
                let s = s.clone();
                async move {
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut seen = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    seen.events += 1;
                    let devices = &event["device_response_event"]["device_response"]["devices"];
                    for d in devices.as_array().into_iter().flatten() {
                        if let Some(serial) = d["serial_number"].as_str() {
                            seen.serials.insert(serial.to_owned());
                        }
                    }
                    HttpResponse::Ok().finish()
                }
            }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind receiver");
    let hook = format!("http://{}/hook", receiver.addrs()[0]);
    actix_web::rt::spawn(receiver.run());

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            "api_key = \"{KEY}\"\n[sync]\nauto = true\ninterval_secs = 3600\npage_limit = 1000\n\
             [webhook]\nurls = [\"{hook}\"]\n"
        ),
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();

    let mut daemon = start(config.clone(), data.clone()).await;
    let (status, _) = call(
        &client,
        "PUT",
        &daemon.url("/v1/config/crash"),
        format!(r#"{{"base_url":"{}"}}"#, sim.base_url()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &client,
        "PUT",
        &daemon.url("/v1/tokens/crash"),
        sim.tokens_json(),
    )
    .await;
    assert_eq!(status, 200);

    // Kill after these many webhook events (pages), chosen to land in the
    // middle of the fetch, then restart on the same data directory.
    for kill_after in [3u64, 17, 42, 77] {
        until("webhook events", || {
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .events
                >= kill_after
        })
        .await;
        web::block(move || daemon.kill()).await.expect("kill");
        daemon = start(config.clone(), data.clone()).await;
    }

    // The last incarnation finishes the fetch (the restarted actors resume
    // from the stored cursor, and deliver what the outbox still holds).
    until("every serial at the receiver", || {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .serials
            .len()
            >= DEVICES
    })
    .await;
    let fetched = sim.stats().count("POST", "/server/devices");
    let (status, report) = call(
        &client,
        "POST",
        &daemon.url("/v1/sync/crash?wait=1"),
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["webhook_backlog"], 0);
    assert_eq!(
        sim.stats().count("POST", "/server/devices"),
        fetched,
        "the cursor is in the sync phase: no new fetch"
    );

    let (_, inventory) = call(
        &client,
        "GET",
        &daemon.url("/v1/devices/crash?limit=0"),
        String::new(),
    )
    .await;
    assert_eq!(
        inventory["total"], DEVICES as u64,
        "every device exactly once"
    );
    let (_, status) = call(
        &client,
        "GET",
        &daemon.url("/v1/status/crash"),
        String::new(),
    )
    .await;
    assert_eq!(status["sync"]["phase"], "sync", "{status}");
    assert_eq!(status["devices"]["total"], DEVICES as u64);
    assert_eq!(status["webhook"]["backlog"], 0);
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert_eq!(seen.serials.len(), DEVICES);
    // 100 fetch pages at least; restarts may repeat a few (at least once).
    assert!(seen.events >= 100, "{} events", seen.events);
}
