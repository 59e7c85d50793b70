//! Fetch every device of a 1,000,000-device simulator at 1000 per page
//! with a plain awc client; prints devices/s, seconds and the process's
//! memory (the simulator runs in-process, so VmHWM is an upper bound on
//! its resident memory). `SIM_BENCH_DEVICES=N` for a quick smoke run.
//!
//! cargo bench --bench sim_fetch

use depd::dep::oauth1::{self, Credentials};
use depd::sim::{SimConfig, Simulator};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::time::Instant;

#[derive(Deserialize)]
struct Page {
    cursor: String,
    devices: Vec<IgnoredAny>,
    more_to_follow: bool,
}

#[derive(Deserialize)]
struct Session {
    auth_session_token: String,
}

/// `VmRSS` and `VmHWM` from /proc/self/status, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices: usize = match std::env::var("SIM_BENCH_DEVICES") {
        Ok(n) => n.parse()?,
        Err(_) => 1_000_000,
    };
    actix_web::rt::System::new().block_on(async move {
        let started = Instant::now();
        let sim = Simulator::start(SimConfig {
            devices,
            ..SimConfig::default()
        })?;
        let generated = started.elapsed();
        let set = sim
            .credentials()
            .into_iter()
            .next()
            .ok_or("no credentials")?;
        let creds = Credentials {
            consumer_key: set.consumer_key,
            consumer_secret: set.consumer_secret,
            access_token: set.access_token,
            access_secret: set.access_secret,
        };
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .finish();
        let url = format!("{}/session", sim.base_url());
        let auth = oauth1::authorization_header(
            "GET",
            &url,
            &creds,
            time::OffsetDateTime::now_utc().unix_timestamp(),
            &oauth1::nonce(),
        );
        let session: Session = client
            .get(&url)
            .insert_header(("Authorization", auth))
            .insert_header(("Content-Type", "application/json;charset=UTF8"))
            .insert_header(("User-Agent", "sim-bench/1"))
            .send()
            .await?
            .json()
            .await?;

        let fetch_url = format!("{}/server/devices", sim.base_url());
        let fetch_started = Instant::now();
        let mut cursor: Option<String> = None;
        let (mut fetched, mut pages, mut bytes) = (0usize, 0usize, 0usize);
        loop {
            let body = match &cursor {
                Some(c) => serde_json::json!({"cursor": c, "limit": 1000}),
                None => serde_json::json!({"limit": 1000}),
            };
            let mut resp = client
                .post(&fetch_url)
                .insert_header(("X-ADM-Auth-Session", session.auth_session_token.as_str()))
                .insert_header(("User-Agent", "sim-bench/1"))
                .insert_header(("X-Server-Protocol-Version", "10"))
                .insert_header(("Content-Type", "application/json;charset=UTF8"))
                .send_json(&body)
                .await?;
            if !resp.status().is_success() {
                return Err(format!("fetch answered {}", resp.status()).into());
            }
            let raw = resp.body().limit(16 << 20).await?;
            bytes += raw.len();
            let page: Page = serde_json::from_slice(&raw)?;
            fetched += page.devices.len();
            pages += 1;
            if !page.more_to_follow {
                break;
            }
            cursor = Some(page.cursor);
        }
        let secs = fetch_started.elapsed().as_secs_f64();
        let (rss, hwm) = memory();
        println!("depsim fetch benchmark");
        println!("  devices            {devices}");
        println!("  generated in       {:.2} s", generated.as_secs_f64());
        println!(
            "  fetched            {fetched} devices in {pages} pages ({:.0} MiB of JSON)",
            bytes as f64 / 1048576.0
        );
        println!("  fetch time         {secs:.2} s");
        println!(
            "  throughput         {:.0} devices/s",
            fetched as f64 / secs
        );
        println!("  memory (process)   VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB");
        sim.stop().await;
        if fetched != devices {
            return Err(format!("fetched {fetched} of {devices} devices").into());
        }
        Ok(())
    })
}
