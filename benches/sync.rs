//! End-to-end sync throughput and memory of the real `depd` binary
//! against depsim (in this process), with the inventory, the assigner and
//! a webhook receiver (also in this process) all on.
//!
//!     cargo bench --bench sync
//!
//! Two scenarios (choose with `SYNC_BENCH=full|names|both`, default both):
//! - `full`: one DEP name, a full fetch of `SYNC_BENCH_DEVICES` devices
//!   (default 1,000,000) at 1000 per page, every device assigned, every page
//!   posted to the webhook;
//! - `names`: `SYNC_BENCH_NAMES` names (default 10,000) with 100 devices
//!   each, one full cycle for all of them.
//!
//! depd runs as its own process so its memory is measured alone (VmHWM,
//! VmRSS from /proc/PID/status).

#![allow(unsafe_code)] // benches read CPU time and thread ids through libc

use actix_web::{App, HttpResponse, HttpServer, web};
use depd::domain::name::DepName;
use depd::domain::state::NameState;
use depd::sim::{SimConfig, SimHandle, Simulator};
use depd::store::NameData;

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `(VmRSS, VmHWM)` of a process in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of process `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / hz
}

/// A store as a stopped daemon leaves it: `names` hold the simulator's
/// tokens and point at it; one flush at the end.
fn prepare(data: &Path, sim: &SimHandle, names: &[String], profile: Option<&str>) {
    let store = depd::store::open_data_dir(data, None)
        .expect("open store")
        .store;
    let now = time::OffsetDateTime::now_utc();
    let tokens = depd::domain::tokens::parse(sim.tokens_json().as_bytes()).expect("tokens");
    for raw in names {
        let mut state = NameState::new(DepName::parse(raw).expect("name"), NameData::default());
        let mut changes = vec![
            state.put_tokens(&tokens, false, now).expect("tokens"),
            state.put_base_url(sim.base_url(), now),
        ];
        if let Some(p) = profile {
            changes.push(state.put_assigner(p.to_owned(), now));
        }
        for change in changes {
            let next = change.next.clone();
            store.commit(change.write).expect("commit");
            state.adopt(next);
        }
    }
    store.flush().expect("flush");
}

/// `depd serve` on a free port; returns the child and its address.
fn serve(dir: &Path, webhook: Option<&str>) -> (Child, String) {
    let mut config = format!("api_key = \"{KEY}\"\nlog_level = \"info\"\n[sync]\nauto = false\n");
    if let Some(url) = webhook {
        config.push_str(&format!("[webhook]\nurls = [\"{url}\"]\n"));
    }
    let (child, url, lines) = daemon::serve(dir, &config);
    // Keep draining so depd never blocks on a full pipe; SYNC_BENCH_LOG
    // keeps its warnings and errors.
    let keep = std::env::var("SYNC_BENCH_LOG").ok();
    std::thread::spawn(move || {
        let mut out = keep.and_then(|p| std::fs::File::create(p).ok());
        for line in lines.map_while(Result::ok) {
            if let Some(f) = out.as_mut()
                && (line.contains("\"WARN\"") || line.contains("\"ERROR\""))
            {
                use std::io::Write as _;
                let _ = writeln!(f, "{line}");
            }
        }
    });
    (child, url)
}

async fn post(client: &awc::Client, url: &str) -> serde_json::Value {
    let mut resp = client
        .post(url)
        .basic_auth("depserver", KEY)
        .send()
        .await
        .expect("request");
    let body = resp.body().limit(256 << 20).await.expect("body");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    serde_json::from_slice(&body).expect("JSON")
}

/// Events the webhook receiver got: all of them, and those of fetch pages.
#[derive(Default)]
struct Received {
    all: AtomicU64,
    fetch: AtomicU64,
}

fn receiver() -> (String, Arc<Received>) {
    let events = Arc::new(Received::default());
    let e = events.clone();
    let server = HttpServer::new(move || {
        let e = e.clone();
        App::new()
            .app_data(web::PayloadConfig::new(64 << 20))
            .default_service(web::to(move |body: web::Bytes| {
                e.all.fetch_add(1, Ordering::Relaxed);
                // The topic is the envelope's first field.
                let head = &body[..body.len().min(64)];
                if head.windows(16).any(|w| w == b"dep.FetchDevices") {
                    e.fetch.fetch_add(1, Ordering::Relaxed);
                }
                async { HttpResponse::Ok().finish() }
            }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind receiver");
    let url = format!("http://{}/hook", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (url, events)
}

/// A profile defined in the simulator, as an MDM would.
async fn define_profile(sim: &SimHandle) -> String {
    use depd::dep::client::{DepClient, DirectSession, Target};
    let t = sim.credentials().into_iter().next().expect("credentials");
    let creds = depd::dep::oauth1::Credentials {
        consumer_key: t.consumer_key,
        consumer_secret: t.consumer_secret,
        access_token: t.access_token,
        access_secret: t.access_secret,
    };
    let target = Target {
        base_url: sim.base_url(),
        protocol_version: 10,
        user_agent: "bench/1".into(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        allow: Default::default(),
    };
    let clock: depd::domain::clock::SharedClock = Arc::new(depd::domain::clock::SystemClock);
    let dep = DepClient::new(
        target.clone(),
        DirectSession::new(target, creds, clock.clone()),
        clock,
    );
    dep.define_profile(
        &serde_json::json!({"profile_name": "Bench", "url": "https://mdm.example/e"}),
    )
    .await
    .expect("define profile")
    .profile_uuid
}

async fn full(devices: usize) {
    let sim = Simulator::start(SimConfig {
        devices,
        workers: 1,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let profile = define_profile(&sim).await;
    let (hook, events) = receiver();
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(
        &dir.path().join("data"),
        &sim,
        &["bench".into()],
        Some(&profile),
    );
    let (mut child, url) = serve(dir.path(), Some(&hook));
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(3600))
        .finish();
    let start = Instant::now();
    let (depd_cpu, own_cpu) = (cpu_secs(child.id()), cpu_secs(std::process::id()));
    // When the full fetch itself is done end to end: every device stored
    // and assigned, every fetch page delivered. The cycle goes on with its
    // sync phase, which reads back the events the assignments caused.
    let fetch_done = actix_web::rt::spawn(fetch_done(
        client.clone(),
        url.clone(),
        events.clone(),
        devices,
        start,
        (child.id(), depd_cpu, own_cpu),
    ));
    let report = post(&client, &format!("{url}/v1/sync/bench?wait=1")).await;
    let secs = start.elapsed().as_secs_f64();
    fetch_done.abort();
    let fetch_secs = fetch_done.await.ok().flatten();
    let depd_cpu = cpu_secs(child.id()) - depd_cpu;
    let own_cpu = cpu_secs(std::process::id()) - own_cpu;
    let (rss, hwm) = memory(child.id());
    println!("full fetch: {devices} devices, 1000 per page, inventory + assigner + webhook");
    println!(
        "  {secs:.1} s  {:.0} devices/s  pages {}  assigned {}  webhook events {}  backlog {}",
        devices as f64 / secs,
        report["pages"],
        report["assignments"],
        events.all.load(Ordering::Relaxed),
        report["webhook_backlog"]
    );
    match fetch_secs {
        Some((f, depd, own)) => println!(
            "  the full fetch alone (all stored, assigned and delivered): {f:.1} s  {:.0} devices/s\n  \
             cpu during the full fetch: depd {depd:.1} s ({:.1} us/device), depsim + receiver {own:.1} s",
            devices as f64 / f,
            depd * 1e6 / devices as f64
        ),
        None => println!("  the full fetch alone: not seen done"),
    }
    println!(
        "  cpu: depd {depd_cpu:.1} s ({:.1} us/device), depsim + receiver {own_cpu:.1} s",
        depd_cpu * 1e6 / devices as f64
    );
    println!("  depd memory: VmHWM {hwm:.0} MiB, VmRSS after {rss:.0} MiB");
    let _ = child.kill();
    let _ = child.wait();
}

/// Seconds from `start` until every device is assigned and every fetch
/// page delivered, sampled every 100 ms through depd's status, with the
/// CPU seconds depd and this process used until then (`cpu`: depd's pid
/// and both processes' CPU time at `start`).
async fn fetch_done(
    client: awc::Client,
    url: String,
    events: Arc<Received>,
    devices: usize,
    start: Instant,
    cpu: (u32, f64, f64),
) -> Option<(f64, f64, f64)> {
    let pages = devices.div_ceil(1000) as u64;
    let mut delivered = false;
    loop {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        if events.fetch.load(Ordering::Relaxed) < pages {
            continue;
        }
        if !delivered {
            delivered = true;
            println!(
                "  every fetch page delivered after {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        let Ok(mut resp) = client
            .get(format!("{url}/v1/status/bench"))
            .basic_auth("depserver", KEY)
            .send()
            .await
        else {
            continue;
        };
        let Ok(status) = resp.json::<serde_json::Value>().limit(1 << 20).await else {
            continue;
        };
        if status["assignments"]["by_result"]["SUCCESS"].as_u64() >= Some(devices as u64) {
            let (pid, depd, own) = cpu;
            return Some((
                start.elapsed().as_secs_f64(),
                cpu_secs(pid) - depd,
                cpu_secs(std::process::id()) - own,
            ));
        }
    }
}

async fn names(count: usize) {
    let sim = Simulator::start(SimConfig {
        devices: 100,
        workers: 1,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..count).map(|i| format!("name-{i:05}")).collect();
    let t = Instant::now();
    prepare(&dir.path().join("data"), &sim, &names, None);
    println!(
        "{count} names prepared in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (mut child, url) = serve(dir.path(), None);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(3600))
        .finish();
    // Let start-up settle, then measure idle memory.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let (idle_before, _) = memory(child.id());
    let start = Instant::now();
    let (depd_cpu, own_cpu) = (cpu_secs(child.id()), cpu_secs(std::process::id()));
    let answer = post(&client, &format!("{url}/v1/sync?wait=1")).await;
    let secs = start.elapsed().as_secs_f64();
    let depd_cpu = cpu_secs(child.id()) - depd_cpu;
    let own_cpu = cpu_secs(std::process::id()) - own_cpu;
    let reports = answer["reports"].as_array().map_or(0, Vec::len);
    let complete = answer["reports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["outcome"] == "complete")
        .count();
    let (_, hwm) = memory(child.id());
    // depd gives freed heap back once no cycle started for 10 s
    // (`depd::daemon::heap`); it looks every 10 s.
    actix_web::rt::time::sleep(Duration::from_secs(21)).await;
    let (idle_after, _) = memory(child.id());
    println!("{count} names x 100 devices, one full cycle each");
    println!(
        "  {secs:.1} s  ({reports} reports, {complete} complete, {} /session calls)",
        sim.stats().session_calls
    );
    println!("  cpu: depd {depd_cpu:.1} s, depsim {own_cpu:.1} s");
    println!(
        "  depd memory: idle before {idle_before:.0} MiB, VmHWM {hwm:.0} MiB, idle after {idle_after:.0} MiB"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a scenario and says how much CPU time the host took meanwhile.
async fn measured(scenario: impl std::future::Future<Output = ()>) {
    let before = machine::ticks();
    scenario.await;
    println!("  machine: {}", machine::stolen_since(before));
}

fn main() {
    let which = std::env::var("SYNC_BENCH").unwrap_or_else(|_| "both".into());
    let devices = env_or("SYNC_BENCH_DEVICES", 1_000_000) as usize;
    let count = env_or("SYNC_BENCH_NAMES", 10_000) as usize;
    actix_web::rt::System::new().block_on(async move {
        if which == "full" || which == "both" {
            measured(full(devices)).await;
        }
        if which == "names" || which == "both" {
            measured(names(count)).await;
        }
    });
}
