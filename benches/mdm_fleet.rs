//! depsim's simulated devices through the MDM service: `MDM_FLEET_DEVICES`
//! (default 10,000) enroll, then each completes one command round trip:
//! the command is enqueued with `nopush`, the device connects (`Idle`),
//! gets it, answers `Acknowledged` and gets nothing more.
//!
//!     cargo bench --bench mdm_fleet
//!
//! Identities are made (or loaded from `target/mdm-fleet-N.pem`) before the
//! clock starts. The devices run in this process, 64 requests at a time,
//! signing each request as it goes; depd runs as its own process.
//! Targets (issue #21, 2 cores): the whole run under 20 s, peak RSS under
//! 300 MB.

use depd::sim::mdm::MdmFleet;
use futures_util::StreamExt as _;
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key-0123456789";

#[actix_web::main]
async fn main() {
    let n = daemon::env_count("MDM_FLEET_DEVICES", 10_000);
    let concurrency = daemon::env_count("MDM_FLEET_CONCURRENCY", 64);
    let serials: Vec<(String, String)> = (0..n)
        .map(|i| (format!("FLEET{i:07}"), "iPad13,1".to_owned()))
        .collect();
    let t = Instant::now();
    let cache =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/mdm-fleet-{n}.pem"));
    let fleet = MdmFleet::load_or_generate(&cache, 1, &serials).expect("fleet");
    println!(
        "{n} identities ready in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        cache.display()
    );

    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fleet.ca_pem()).expect("ca");
    let config = format!(
        "api_key = \"{KEY}\"\n[sync]\nauto = false\n[mdm]\nenabled = true\nca_file = {:?}\n",
        ca.display().to_string()
    );
    let (mut child, base, log) = daemon::serve(dir.path(), &config);
    daemon::drain(log);
    let pid = child.id();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    let url = format!("{base}/mdm");
    let udids: Vec<String> = fleet.devices().iter().map(|d| d.udid.clone()).collect();
    let machine = machine::ticks();

    let start = Instant::now();
    let failures = futures_util::stream::iter(udids.iter())
        .map(|u| fleet.enroll(&client, u, &url))
        .buffer_unordered(concurrency)
        .filter(|r| futures_util::future::ready(r.is_err()))
        .count()
        .await;
    let enrolled = start.elapsed().as_secs_f64();
    assert_eq!(failures, 0, "enrollments failed");

    let queued = Instant::now();
    for chunk in udids.chunks(400) {
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>CommandUUID</key><string>RT-{}</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict></dict></plist>"#,
            chunk[0]
        );
        let mut resp = client
            .put(format!("{base}/v1/enqueue/{}?nopush=1", chunk.join(",")))
            .basic_auth("depserver", KEY)
            .send_body(body)
            .await
            .expect("enqueue");
        let _ = resp.body().await;
        assert_eq!(resp.status().as_u16(), 200, "enqueue");
    }
    let enqueue = queued.elapsed().as_secs_f64();
    let round = Instant::now();
    let answered = futures_util::stream::iter(udids.iter())
        .map(|u| fleet.connect(&client, u))
        .buffer_unordered(concurrency)
        .filter_map(|r| futures_util::future::ready(r.ok().map(|r| r.answered.len())))
        .fold(0usize, |a, n| async move { a + n })
        .await;
    let trips = round.elapsed().as_secs_f64();
    let total = start.elapsed().as_secs_f64();
    assert_eq!(answered, n, "every device answered its command");
    println!("MDM fleet: {n} simulated devices, {concurrency} requests at a time");
    println!(
        "  enroll (Authenticate + TokenUpdate): {enrolled:.1} s  {:.0} enrollments/s",
        n as f64 / enrolled
    );
    println!(
        "  enqueue with nopush ({} calls): {enqueue:.2} s",
        n.div_ceil(400)
    );
    println!(
        "  round trips (Idle, command, Acknowledged, nothing more): {trips:.1} s  {:.0} round trips/s",
        n as f64 / trips
    );
    println!("  whole run: {total:.1} s (target < 20 s)");
    println!(
        "  depd peak RSS (VmHWM): {:.0} MiB (target < 300 MB)",
        daemon::memory(pid).1
    );
    println!("  machine: {}", machine::stolen_since(machine));
    let _ = child.kill();
    let _ = child.wait();
}
