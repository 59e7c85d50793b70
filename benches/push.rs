//! APNs push at scale: `PUSH_ENROLLMENTS` (default 100,000) enrollments on
//! one topic, seeded through `/migration`, then one `POST /v1/push` with
//! all their IDs, answered by depsim's push service.
//!
//!     cargo bench --bench push
//!
//! depd runs as its own process; depsim's push service (HTTP/2 over TLS,
//! one worker) and this client share the bench process. Reported: the
//! call's wall time, pushes per second, the push latency percentiles from
//! depd's `depd_push_duration_seconds` histogram (bucket bounds), how long
//! the push service took from its first to its last push, and depd's
//! peak RSS. Targets (issue #22, 2 cores): all pushes acknowledged within
//! 10 s, peak RSS under 300 MB.

use depd::sim::{SimConfig, Simulator};
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key-0123456789";
const TOPIC: &str = "com.apple.mgmt.External.bench-push";

fn token_update(i: usize) -> (String, String) {
    let udid = format!("00000000-0000-4000-8000-{i:012}");
    let token = openssl::sha::sha256(udid.as_bytes());
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{udid}</string><key>Topic</key><string>{TOPIC}</string><key>PushMagic</key><string>MAGIC-{i}</string><key>Token</key><data>{}</data></dict></plist>"#,
        openssl::base64::encode_block(&token)
    );
    (udid, body)
}

/// The `q` quantile of a Prometheus histogram in `metrics` (the upper
/// bound of the bucket it falls in).
fn quantile(metrics: &str, family: &str, q: f64) -> String {
    let mut buckets: Vec<(String, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&format!("{family}_bucket{{result=\"delivered\",le=\""))
        else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        buckets.push((le.to_owned(), count.trim().parse().unwrap_or(0.0)));
    }
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| format!("<= {le} s"))
        .unwrap_or_else(|| "-".into())
}

#[actix_web::main]
async fn main() {
    let n = daemon::env_count("PUSH_ENROLLMENTS", 100_000);
    let sim = Simulator::start(SimConfig {
        devices: 1,
        apns_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SimConfig::default()
    })
    .expect("sim");
    let apns = sim.apns().expect("push service");
    apns.set_wake(false);
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("apns-ca.pem");
    std::fs::write(&ca, apns.ca_pem()).expect("ca");
    let config = format!(
        "api_key = \"{KEY}\"\n[sync]\nauto = false\n[mdm]\nenabled = true\nmigration = true\nca_file = {ca:?}\napns_ca_file = {ca:?}\napns_base_url = {:?}\npush_deadline_secs = 300\nbody_limit = 67108864\n",
        apns.url(),
        ca = ca.display().to_string(),
    );
    let (mut child, base, log) = daemon::serve(dir.path(), &config);
    daemon::drain(log);
    let pid = child.id();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(600))
        .finish();

    let seeding = Instant::now();
    let ids: Vec<String> = (0..n).map(|i| token_update(i).0).collect();
    let failures = futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let mut r = client
                    .put(format!("{base}/migration"))
                    .basic_auth("nanomdm", KEY)
                    .send_body(token_update(i).1)
                    .await
                    .ok()?;
                let _ = r.body().await;
                (r.status().as_u16() == 200).then_some(())
            }
        })
        .buffer_unordered(64)
        .filter(|r| futures_util::future::ready(r.is_none()))
        .count()
        .await;
    assert_eq!(failures, 0, "seeding failed");
    println!(
        "{n} enrollments seeded through /migration in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let (cert, key) = apns.issue_push_cert(TOPIC, 365).expect("cert");
    let mut r = client
        .put(format!("{base}/v1/pushcert"))
        .basic_auth("nanomdm", KEY)
        .send_body([cert, key].concat())
        .await
        .expect("pushcert");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.body().await);
    let (rss_before, _) = daemon::memory(pid);

    let machine = machine::ticks();
    let start = Instant::now();
    let mut r = client
        .post(format!("{base}/v1/push"))
        .basic_auth("nanomdm", KEY)
        .send_json(&serde_json::json!({ "ids": ids }))
        .await
        .expect("push");
    let body = r.body().limit(256 << 20).await.expect("answer");
    let wall = start.elapsed().as_secs_f64();
    let steal = machine::stolen_since(machine);
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let ok = answer["status"]
        .as_object()
        .map(|m| {
            m.values()
                .filter(|v| v["push_result"].is_string() && v.get("push_error").is_none())
                .count()
        })
        .unwrap_or(0);
    let stats = apns.stats();
    assert_eq!(ok, n, "every push acknowledged");
    assert_eq!(stats.accepted as usize, n);
    let mut m = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics");
    let metrics =
        String::from_utf8(m.body().limit(8 << 20).await.expect("m").to_vec()).expect("text");
    let family = "depd_push_duration_seconds";
    println!("APNs push: {n} enrollments on one topic, one POST /v1/push");
    println!(
        "  answered in {wall:.2} s: {:.0} pushes/s (target: all within 10 s)",
        n as f64 / wall
    );
    println!(
        "  push latency (send to APNs's answer, 1,000 streams in flight): p50 {}, p90 {}, p99 {}",
        quantile(&metrics, family, 0.5),
        quantile(&metrics, family, 0.9),
        quantile(&metrics, family, 0.99)
    );
    println!(
        "  depd RSS before {rss_before:.0} MiB; peak (VmHWM) {:.0} MiB (target < 300 MB)",
        daemon::memory(pid).1
    );
    println!("  machine: {steal}");
    let _ = child.kill();
    let _ = child.wait();
}
