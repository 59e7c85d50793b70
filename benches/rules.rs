//! Assignment rules at scale: `RULES_BENCH_DEVICES` (default 1,000,000)
//! inventory devices in depsim (in this process) and 50 rules, then a
//! change of the rules that moves about a tenth of the devices.
//!
//!     cargo bench --bench rules
//!
//! Setup (not timed): depd (its own process) syncs the inventory with the
//! first rule set, every device is assigned, then a second sync lets depd
//! learn the profiles. Timed: the preview of the second rule set, the
//! `PUT` and the queueing it triggers (until depd logs the devices
//! queued), and the time until every queued device is on its new profile
//! at depsim (no assignment pending at depd). Reported with depd's peak
//! RSS. Targets (issue #23, 2 cores): preview under 2 s, every device
//! moved in under 60 s, peak RSS under 300 MB.

use depd::sim::{SimConfig, Simulator};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key-0123456789";
const NAME: &str = "bench";
/// depsim's serial alphabet (and the first letters of its legacy prefixes).
const FIRST: &str = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn rules(profiles: &[String], moved: &[char]) -> Value {
    let mut rules = Vec::new();
    for (i, c) in FIRST.chars().enumerate() {
        let p = if moved.contains(&c) {
            &profiles[9]
        } else {
            &profiles[i % 8]
        };
        rules.push(json!({
            "name": format!("first {c}"),
            "match": { "serial_prefix": [c.to_string()] },
            "profile_uuid": p,
        }));
    }
    // Rules by family and model that earlier rules shadow: they still
    // cost a match per device.
    for (i, f) in ["Mac", "iPhone", "iPad", "AppleTV"].iter().enumerate() {
        for g in ["*pro*", "*air*", "*mini*", "*"] {
            if rules.len() < 50 {
                rules.push(json!({
                    "name": format!("{f} {g}"),
                    "match": { "device_family": [f], "description": g },
                    "profile_uuid": profiles[8 - i % 2],
                }));
            }
        }
    }
    json!({ "rules": rules })
}

async fn call(client: &awc::Client, method: &str, url: String, body: Option<Value>) -> Value {
    let req = match method {
        "PUT" => client.put(url),
        "POST" => client.post(url),
        _ => client.get(url),
    }
    .basic_auth("depserver", KEY);
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let body = resp.body().limit(64 << 20).await.expect("body");
    assert!(
        resp.status().is_success(),
        "{}: {}",
        resp.status(),
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

async fn pending(client: &awc::Client, base: &str) -> u64 {
    let st = call(client, "GET", format!("{base}/v1/status/{NAME}"), None).await;
    st["assignments"]["by_result"]["PENDING"]
        .as_u64()
        .unwrap_or(0)
}

#[actix_web::main]
async fn main() {
    let devices = daemon::env_count("RULES_BENCH_DEVICES", 1_000_000);
    let sim = Simulator::start(SimConfig {
        devices,
        workers: 1,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let config = format!("api_key = \"{KEY}\"\n[sync]\nauto = false\n");
    let (mut child, base, log) = daemon::serve(dir.path(), &config);
    let pid = child.id();
    // The log, watched for the line that says the devices were queued.
    let (queued_tx, queued_rx) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        for line in log.map_while(Result::ok) {
            if line.contains("devices queued for their new targets") {
                let _ = queued_tx.send(Instant::now());
            }
        }
    });
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(3600))
        .finish();
    call(
        &client,
        "PUT",
        format!("{base}/v1/tokens/{NAME}"),
        Some(serde_json::from_str(&sim.tokens_json()).expect("tokens")),
    )
    .await;
    call(
        &client,
        "PUT",
        format!("{base}/v1/config/{NAME}"),
        Some(json!({ "base_url": sim.base_url() })),
    )
    .await;
    let mut profiles = Vec::new();
    for i in 0..10 {
        let p = call(
            &client,
            "POST",
            format!("{base}/proxy/{NAME}/profile"),
            Some(json!({ "profile_name": format!("P{i}"), "url": "https://mdm.example/enroll" })),
        )
        .await;
        profiles.push(p["profile_uuid"].as_str().expect("uuid").to_owned());
    }
    let first = rules(&profiles, &[]);
    assert_eq!(first["rules"].as_array().map(Vec::len), Some(50));
    call(
        &client,
        "PUT",
        format!("{base}/v1/rules/{NAME}"),
        Some(first),
    )
    .await;
    let t = Instant::now();
    call(
        &client,
        "POST",
        format!("{base}/v1/sync/{NAME}?wait=1"),
        None,
    )
    .await;
    while pending(&client, &base).await > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    call(
        &client,
        "POST",
        format!("{base}/v1/sync/{NAME}?wait=1"),
        None,
    )
    .await;
    println!(
        "setup: {devices} devices synced and assigned by 50 rules in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    while queued_rx.try_recv().is_ok() {}
    // For profiling (`perf record -p <pid>`): previews first, untimed.
    let extra = daemon::env_count("RULES_BENCH_PREVIEWS", 0);
    if extra > 0 {
        println!("depd pid {pid}: {extra} previews");
        for _ in 0..extra {
            let second = rules(&profiles, &['3']);
            call(
                &client,
                "POST",
                format!("{base}/v1/rules/{NAME}/preview"),
                Some(second),
            )
            .await;
        }
    }

    // Rules for six first letters now give another profile.
    let moved = ['3', '7', 'K', 'R', 'M', 'W'];
    let second = rules(&profiles, &moved);
    let machine = machine::ticks();
    let t = Instant::now();
    let preview = call(
        &client,
        "POST",
        format!("{base}/v1/rules/{NAME}/preview"),
        Some(second.clone()),
    )
    .await;
    let preview_secs = t.elapsed().as_secs_f64();
    let queued = preview["queued"].as_u64().unwrap_or(0);
    let t = Instant::now();
    call(
        &client,
        "PUT",
        format!("{base}/v1/rules/{NAME}"),
        Some(second),
    )
    .await;
    let put_secs = t.elapsed().as_secs_f64();
    let queued_at = queued_rx
        .recv_timeout(Duration::from_secs(600))
        .expect("depd logs the queued devices");
    let queue_secs = queued_at.duration_since(t).as_secs_f64();
    while pending(&client, &base).await > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let moved_secs = t.elapsed().as_secs_f64();
    let steal = machine::stolen_since(machine);
    // depsim's side: every device of a moved letter is on the new profile.
    let serials = sim.serials(0, devices);
    let on_new = serials
        .iter()
        .filter(|s| s.starts_with(moved.as_slice()))
        .filter(|s| sim.device(s).is_some_and(|d| d.profile_uuid == profiles[9]))
        .count();
    println!(
        "Rules: {devices} devices, 50 rules; a change moving {queued} devices ({:.1} %)",
        queued as f64 * 100.0 / devices as f64
    );
    println!("  preview: {preview_secs:.2} s (target < 2 s)");
    println!(
        "  PUT answered in {put_secs:.2} s; devices queued {queue_secs:.2} s after it was sent"
    );
    println!(
        "  every moved device on its new profile at depsim: {moved_secs:.1} s after the PUT (target < 60 s)"
    );
    println!("  depsim: {on_new} devices of the moved letters on the new profile");
    println!(
        "  depd peak RSS (VmHWM): {:.0} MiB (target < 300 MB)",
        daemon::memory(pid).1
    );
    println!("  machine: {steal}");
    let _ = child.kill();
    let _ = child.wait();
}
