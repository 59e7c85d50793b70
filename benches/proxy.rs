//! Proxy overhead: `GET /account` straight to depsim against the same call
//! through depd's proxy, in one run, with 64 concurrent connections.
//!
//!     cargo bench --bench proxy
//!
//! Environment: `PROXY_BENCH_SECS` (per phase, default 5),
//! `PROXY_BENCH_ROUNDS` (default 3), `PROXY_BENCH_CONNS` (default 64),
//! `PROXY_BENCH_THREADS` (load-generator threads, default 2). Each round
//! measures a direct phase, then a proxied one; the ratio reported is the
//! median of the rounds' ratios, because the direct figure alone moves by
//! ±15 % between runs on a 2-core machine. depsim, depd and the load generator share the
//! machine, so the figures are for the whole arrangement, as it would run
//! on one host.
//!
//! Each phase also reports the process's CPU time (user + system, all
//! threads) per request. On a machine shared with other work the req/s
//! move with the neighbours' load; the CPU cost of a request moves much
//! less, so `cpu ratio` (direct µs/req over proxied µs/req) is the figure
//! to compare changes by there. It is not the target, only a steadier
//! view of the same work.
//!
//! Each phase's CPU is also split by who spent it (`where:`): depsim's HTTP
//! workers, depd's HTTP workers and the load generator's threads, read per
//! thread from /proc (the servers' threads are told apart by the threads
//! each server's start created).

#![allow(unsafe_code)] // benches read CPU time and thread ids through libc

use depd::daemon::app::Application;
use depd::dep::client::{self, Target};
use depd::dep::oauth1::Credentials;
use depd::domain::clock::{SharedClock, SystemClock};
use depd::settings::{self, FlagOverrides, Secret};
use depd::sim::{SimConfig, Simulator};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the servers' thread tells the load generator.
struct Servers {
    sim_url: String,
    depd_url: String,
    session: String,
    /// Threads created by depsim's start and by depd's.
    sim_threads: Vec<u32>,
    depd_threads: Vec<u32>,
}

/// This process's thread ids.
fn threads() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// User + system CPU seconds of this process's threads `tids` so far.
fn threads_cpu_secs(tids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tids.iter()
        .map(|tid| {
            let stat =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
            // Fields after the command name, which is in parentheses.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime and stime are fields 14 and 15; `rest` starts at field 3.
            (ticks(11) + ticks(12)) / hz
        })
        .sum()
}

/// The threads created since `before`, once a server's workers are up
/// (they start in the background after its start returns).
async fn new_threads(before: &[u32]) -> Vec<u32> {
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    threads()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect()
}

fn start_servers(tx: mpsc::Sender<Servers>) {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let before = threads();
        let sim = Simulator::start(SimConfig {
            workers: 2,
            ..SimConfig::default()
        })
        .expect("start depsim");
        let sim_threads = new_threads(&before).await;
        let before = threads();
        let dir = tempfile::tempdir().expect("tempdir");
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().join("data")),
            api_key: Some(Secret::new(KEY)),
            webhook_url: None,
            log_format: None,
        };
        let settings = settings::load(None, Vec::new(), &flags).expect("settings");
        let app = Application::build(settings).await.expect("depd");
        let depd_url = format!("http://{}", app.addr());
        actix_web::rt::spawn(app.run_until_stopped());
        let depd_threads = new_threads(&before).await;

        let http = awc::Client::new();
        let put = |path: String, body: String| {
            let req = http
                .put(format!("{depd_url}{path}"))
                .basic_auth("depserver", KEY);
            async move {
                let resp = req.send_body(body).await.expect("configure depd");
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
            }
        };
        put("/v1/tokens/bench".into(), sim.tokens_json()).await;
        put(
            "/v1/config/bench".into(),
            format!(r#"{{"base_url":"{}"}}"#, sim.base_url()),
        )
        .await;

        // A session of the direct client's own, as any DEP client has.
        let t = sim.credentials().into_iter().next().expect("credentials");
        let creds = Credentials {
            consumer_key: t.consumer_key,
            consumer_secret: t.consumer_secret,
            access_token: t.access_token,
            access_secret: t.access_secret,
        };
        let target = Target {
            base_url: sim.base_url(),
            protocol_version: 7,
            user_agent: "bench/1".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            allow: Default::default(),
        };
        let clock: SharedClock = Arc::new(SystemClock);
        let session = client::open_session(&target, &creds, &clock)
            .await
            .expect("session");
        tx.send(Servers {
            sim_url: sim.base_url(),
            depd_url,
            session,
            sim_threads,
            depd_threads,
        })
        .expect("report");
        // Serve until the process exits.
        std::future::pending::<()>().await;
        drop((sim, dir));
    });
}

struct Phase {
    requests: u64,
    errors: u64,
    secs: f64,
    /// CPU time of the whole process during the phase.
    cpu_secs: f64,
    /// CPU time of depsim's, depd's and the load generator's threads.
    split_secs: [f64; 3],
    latencies_us: Vec<u32>,
}

/// User + system CPU time of the whole process so far, in seconds.
fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.requests.max(1) as f64)
    }
}

/// `conns` concurrent loops of GET `url` for `secs`, spread over `threads`
/// load-generator threads; `servers` for the CPU split.
fn load(
    url: &str,
    headers: &[(&str, String)],
    conns: u64,
    threads: u64,
    secs: u64,
    servers: &Servers,
) -> Phase {
    let start = Instant::now();
    let cpu_start = process_cpu_secs();
    let servers_start = [
        threads_cpu_secs(&servers.sim_threads),
        threads_cpu_secs(&servers.depd_threads),
    ];

    let deadline = start + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let url = url.to_owned();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let mine = conns / threads + u64::from(t < conns % threads);
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() } as u32;
                let cpu = || threads_cpu_secs(&[tid]);
                let cpu_start = cpu();
                let loops = actix_web::rt::System::new().block_on(async move {
                    let http = awc::Client::builder()
                        .connector(awc::Connector::new().limit(0))
                        .timeout(Duration::from_secs(30))
                        .finish();
                    let loops = (0..mine).map(|_| {
                        let (http, url, headers) = (http.clone(), url.clone(), headers.clone());
                        async move {
                            let (mut n, mut errors, mut lat) = (0u64, 0u64, Vec::new());
                            while Instant::now() < deadline {
                                let mut req = http.get(&url);
                                for (k, v) in &headers {
                                    req = req.insert_header((k.as_str(), v.as_str()));
                                }
                                let t0 = Instant::now();
                                match req.send().await {
                                    Ok(mut resp) if resp.status().is_success() => {
                                        if resp.body().await.is_ok() {
                                            n += 1;
                                            lat.push(t0.elapsed().as_micros() as u32);
                                        } else {
                                            errors += 1;
                                        }
                                    }
                                    _ => errors += 1,
                                }
                            }
                            (n, errors, lat)
                        }
                    });
                    futures_util::future::join_all(loops).await
                });
                (loops, cpu() - cpu_start)
            })
        })
        .collect();
    let mut phase = Phase {
        requests: 0,
        errors: 0,
        secs: 0.0,
        cpu_secs: 0.0,
        split_secs: [0.0; 3],
        latencies_us: Vec::new(),
    };
    for h in handles {
        let (loops, cpu) = h.join().expect("load thread");
        phase.split_secs[2] += cpu;
        for (n, e, lat) in loops {
            phase.requests += n;
            phase.errors += e;
            phase.latencies_us.extend(lat);
        }
    }
    phase.secs = start.elapsed().as_secs_f64();
    phase.cpu_secs = process_cpu_secs() - cpu_start;
    phase.split_secs[0] = threads_cpu_secs(&servers.sim_threads) - servers_start[0];
    phase.split_secs[1] = threads_cpu_secs(&servers.depd_threads) - servers_start[1];

    phase.latencies_us.sort_unstable();
    phase
}

fn report(label: &str, p: &Phase) {
    println!(
        "{label:<8} {:>9.0} req/s  {:>8} requests  {:>4} errors  p50 {:>6.2} ms  p99 {:>6.2} ms  cpu {:>6.1} us/req",
        p.rate(),
        p.requests,
        p.errors,
        p.percentile(0.50),
        p.percentile(0.99),
        p.cpu_us_per_request()
    );
    let per = |secs: f64| secs * 1e6 / (p.requests.max(1) as f64);
    println!(
        "         where: depsim workers {:.1} us/req, depd workers {:.1} us/req, load generator {:.1} us/req",
        per(p.split_secs[0]),
        per(p.split_secs[1]),
        per(p.split_secs[2])
    );
}

fn main() {
    let secs = env_or("PROXY_BENCH_SECS", 5);
    let rounds = env_or("PROXY_BENCH_ROUNDS", 3).max(1);
    let conns = env_or("PROXY_BENCH_CONNS", 64);
    let threads = env_or("PROXY_BENCH_THREADS", 2).max(1);
    let before = machine::ticks();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || start_servers(tx));
    let servers = rx.recv().expect("servers started");
    let auth = format!(
        "Basic {}",
        openssl::base64::encode_block(format!("depserver:{KEY}").as_bytes())
    );
    println!(
        "GET /account, {conns} connections, {threads} load threads, {rounds} rounds of {secs} s per phase"
    );
    let direct_url = format!("{}/account", servers.sim_url);
    let direct_headers = [
        ("X-ADM-Auth-Session", servers.session.clone()),
        ("User-Agent", "bench/1".into()),
    ];
    let proxied_url = format!("{}/proxy/bench/account", servers.depd_url);
    let proxied_headers = [("Authorization", auth)];
    // Warm both paths (connections, the proxy's session) before measuring.
    load(&direct_url, &direct_headers, conns, threads, 1, &servers);
    load(&proxied_url, &proxied_headers, conns, threads, 1, &servers);
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        println!("round {round}");
        let d = load(&direct_url, &direct_headers, conns, threads, secs, &servers);
        report("direct", &d);
        let p = load(
            &proxied_url,
            &proxied_headers,
            conns,
            threads,
            secs,
            &servers,
        );
        report("proxied", &p);
        ratios.push(p.rate() / d.rate().max(1.0));
        cpu_ratios.push(d.cpu_us_per_request() / p.cpu_us_per_request().max(f64::MIN_POSITIVE));
        direct.push(d);
        proxied.push(p);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let all = |phases: Vec<Phase>| {
        let mut merged = Phase {
            requests: 0,
            errors: 0,
            secs: 0.0,
            cpu_secs: 0.0,
            split_secs: [0.0; 3],
            latencies_us: Vec::new(),
        };
        for p in phases {
            merged.requests += p.requests;
            merged.errors += p.errors;
            merged.secs += p.secs;
            merged.cpu_secs += p.cpu_secs;
            for (m, s) in merged.split_secs.iter_mut().zip(p.split_secs) {
                *m += s;
            }
            merged.latencies_us.extend(p.latencies_us);
        }
        merged.latencies_us.sort_unstable();
        merged
    };
    println!("all rounds");
    report("direct", &all(direct));
    report("proxied", &all(proxied));
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "proxied/direct throughput: {:.2} (median of {})",
        median(&mut ratios),
        each.join(", ")
    );
    println!(
        "cpu ratio (direct us/req / proxied us/req): {:.2} (median)",
        median(&mut cpu_ratios)
    );
    println!("machine: {}", machine::stolen_since(before));
}
