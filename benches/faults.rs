//! A sync through Apple's bad minutes, against the same sync without them:
//! the real `depd` binary, depsim and a webhook receiver (both in this
//! process), `FAULTS_BENCH_DEVICES` devices (default 30,000), every device
//! assigned, every page posted to the webhook.
//!
//!     cargo bench --bench faults
//!
//! Faulted run: depsim answers 25 % of requests with 503 and
//! `Retry-After: 1`, every session expires every 3 s, and the receiver
//! refuses 30 % of deliveries. Both runs start from an empty store with a
//! fresh simulator of the same seed, and end when every device is stored,
//! assigned and delivered. Reported: time to completion, Apple requests
//! (depsim's count), faults served, and the waits on the sync's critical
//! path (the page chain's Retry-After and backoff waits, from status).
//! Target (issue #17): faulted time < fault-free time + critical waits +
//! 20 %, and requests <= 1.5 x fault-free + faults served.

use actix_web::{App, HttpResponse, HttpServer, web};
use depd::domain::name::DepName;
use depd::domain::state::NameState;
use depd::sim::faults::RateFault;
use depd::sim::{SimConfig, SimHandle, Simulator};
use depd::store::NameData;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key-0123456789";
const NAME: &str = "bench";
/// The endpoints of the sync's own chain: what the cycle waits for.
const CHAIN: [&str; 4] = ["/account", "/server/devices", "/devices/sync", "/session"];

fn devices() -> usize {
    std::env::var("FAULTS_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
}

fn prepare(data: &Path, sim: &SimHandle, profile: &str) {
    let store = depd::store::open_data_dir(data, None)
        .expect("open store")
        .store;
    let now = time::OffsetDateTime::now_utc();
    let tokens = depd::domain::tokens::parse(sim.tokens_json().as_bytes()).expect("tokens");
    let mut state = NameState::new(DepName::parse(NAME).expect("name"), NameData::default());
    let changes = vec![
        state.put_tokens(&tokens, false, now).expect("tokens"),
        state.put_base_url(sim.base_url(), now),
        state.put_assigner(profile.to_owned(), now),
    ];
    for change in changes {
        let next = change.next.clone();
        store.commit(change.write).expect("commit");
        state.adopt(next);
    }
    store.flush().expect("flush");
}

#[derive(Default)]
struct Receiver {
    posts: AtomicU64,
    /// Refuse 3 deliveries in 10.
    flaky: bool,
    serials: Mutex<HashSet<String>>,
}

fn receiver(flaky: bool) -> (String, Arc<Receiver>) {
    let seen = Arc::new(Receiver {
        flaky,
        ..Receiver::default()
    });
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let s = s.clone();
        App::new()
            .app_data(web::PayloadConfig::new(64 << 20))
            .default_service(web::to(move |body: web::Bytes| {
                let s = s.clone();
                async move {
                    let n = s.posts.fetch_add(1, Ordering::Relaxed);
                    if s.flaky && n % 10 < 3 {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let devices = &event["device_response_event"]["device_response"]["devices"];
                    let mut serials = s.serials.lock().unwrap_or_else(PoisonError::into_inner);
                    for d in devices.as_array().into_iter().flatten() {
                        if let Some(serial) = d["serial_number"].as_str() {
                            serials.insert(serial.to_owned());
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
    let url = format!("http://{}/hook", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (url, seen)
}

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

async fn get(client: &awc::Client, url: &str) -> serde_json::Value {
    let mut resp = client
        .get(url)
        .basic_auth("depserver", KEY)
        .send()
        .await
        .expect("request");
    let body = resp.body().limit(64 << 20).await.expect("body");
    serde_json::from_slice(&body).unwrap_or_default()
}

struct Outcome {
    secs: f64,
    requests: u64,
    faults: u64,
    early: u64,
    retries: u64,
    chain_wait: f64,
    all_wait: f64,
}

async fn run(faulted: bool) -> Outcome {
    let devices = devices();
    let sim = Simulator::start(SimConfig {
        devices,
        seed: 17,
        workers: 1,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let profile = define_profile(&sim).await;
    let (hook, seen) = receiver(faulted);
    let dir = tempfile::tempdir().expect("tempdir");
    prepare(&dir.path().join("data"), &sim, &profile);
    let config = format!(
        "api_key = \"{KEY}\"\n[sync]\nauto = false\n[webhook]\nurls = [\"{hook}\"]\nretry_max_secs = 4\n"
    );
    let (mut child, url, log) = daemon::serve(dir.path(), &config);
    daemon::drain(log);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(600))
        .finish();
    sim.reset_stats();
    let expiring = faulted.then(|| {
        sim.set_rate_fault(RateFault {
            percent: 25,
            status: 503,
            body: "SERVICE_UNAVAILABLE".into(),
            headers: BTreeMap::from([("Retry-After".to_owned(), "1".to_owned())]),
            path: None,
            seed: 3,
        });
        let expire = format!("http://{}/_sim/sessions/expire", sim.addr());
        actix_web::rt::spawn(async move {
            let c = awc::Client::default();
            loop {
                actix_web::rt::time::sleep(Duration::from_secs(3)).await;
                let _ = c.post(&expire).send().await;
            }
        })
    });
    let start = Instant::now();
    let mut resp = client
        .post(format!("{url}/v1/sync/{NAME}?wait=1"))
        .basic_auth("depserver", KEY)
        .send()
        .await
        .expect("sync");
    let report: serde_json::Value =
        serde_json::from_slice(&resp.body().limit(64 << 20).await.expect("body"))
            .unwrap_or_default();
    assert_eq!(report["outcome"], "complete", "{report}");
    let status = loop {
        let status = get(&client, &format!("{url}/v1/status/{NAME}")).await;
        let delivered = seen
            .serials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if status["assignments"]["by_result"]["SUCCESS"] == devices as u64 && delivered == devices {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "not done: {status}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let secs = start.elapsed().as_secs_f64();
    if let Some(task) = expiring {
        task.abort();
    }
    let stats = sim.stats();
    let waits = &status["sync"]["retry_waits_ms"];
    let wait_of = |endpoints: &mut dyn Iterator<Item = &str>| {
        endpoints
            .map(|e| waits[e].as_u64().unwrap_or(0))
            .sum::<u64>() as f64
            / 1000.0
    };
    let all: Vec<String> = waits
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let outcome = Outcome {
        secs,
        requests: stats.total,
        faults: stats.faults_served,
        early: stats.early_requests,
        retries: status["sync"]["retries"].as_u64().unwrap_or(0),
        chain_wait: wait_of(&mut CHAIN.iter().copied()),
        all_wait: wait_of(&mut all.iter().map(String::as_str)),
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[actix_web::main]
async fn main() {
    let before = machine::ticks();
    let devices = devices();
    let clean = run(false).await;
    let faulted = run(true).await;
    println!("faulted sync: {devices} devices, 1000 per page, assigner + webhook");
    for (label, o) in [("fault-free", &clean), ("faulted", &faulted)] {
        println!(
            "  {label:>10}: {:.1} s  requests {}  faults served {}  retries {}  early {}  \
             waits: chain {:.1} s, all endpoints {:.1} s",
            o.secs, o.requests, o.faults, o.retries, o.early, o.chain_wait, o.all_wait
        );
    }
    let time_limit = (clean.secs + faulted.chain_wait) * 1.2;
    let request_limit = 1.5 * clean.requests as f64 + faulted.faults as f64;
    println!(
        "  target time: {:.1} s < (fault-free {:.1} s + chain waits {:.1} s) x 1.2 = {time_limit:.1} s: {}",
        faulted.secs,
        clean.secs,
        faulted.chain_wait,
        if faulted.secs < time_limit {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  target requests: {} <= 1.5 x {} + {} = {request_limit:.0}: {}",
        faulted.requests,
        clean.requests,
        faulted.faults,
        if (faulted.requests as f64) <= request_limit {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("  {}", machine::stolen_since(before));
}
