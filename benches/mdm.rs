//! The MDM service's throughput and memory: the real `depd` binary takes
//! `MDM_BENCH_ENROLLMENTS` devices (default 10,000) through enrollment
//! (Authenticate then TokenUpdate, each signed with `Mdm-Signature`), then
//! one Idle report each, `MDM_BENCH_CONCURRENCY` requests at a time
//! (default 64), and reports check-ins per second and depd's memory.
//!
//!     cargo bench --bench mdm
//!     MDM_BENCH_ENROLLMENTS=100000 cargo bench --bench mdm
//!
//! Identities are EC P-256 (made in this process, before the clock
//! starts, like every signature): RSA key generation for 100,000
//! identities would take minutes and measure nothing of depd's. Every
//! check-in is verified (CMS signature, chain) and committed durably before
//! it is answered, as in production.

use futures_util::StreamExt as _;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage};
use openssl::x509::{X509, X509NameBuilder};
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/machine.rs"]
mod machine;

const KEY: &str = "bench-key-0123456789";

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    serial: u32,
) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_serial_number(
        &BigNum::from_u32(serial)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial"),
    )
    .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("na");
    match issuer {
        None => {
            b.set_issuer_name(&name).expect("issuer");
            b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                .expect("ext");
            b.sign(key, MessageDigest::sha256()).expect("sign");
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).expect("issuer");
            b.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku"))
                .expect("ext");
            b.sign(ca_key, MessageDigest::sha256()).expect("sign");
        }
    }
    b.build()
}

fn plist(body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>{body}</dict></plist>"#
    )
    .into_bytes()
}

/// A signed request: body and `Mdm-Signature`.
type Signed = (Vec<u8>, String);

fn sign(cert: &X509, key: &PKey<Private>, body: Vec<u8>) -> Signed {
    let none = Stack::new().expect("stack");
    let p7 = Pkcs7::sign(
        cert,
        key,
        &none,
        &body,
        Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY,
    )
    .expect("cms");
    let sig = openssl::base64::encode_block(&p7.to_der().expect("der"));
    (body, sig)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // After the name: state(0) ppid ... utime is field 14 overall, 12 here.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Sends every request, `concurrency` at a time; returns the seconds and
/// the number of answers that were not 200.
async fn phase(
    client: &awc::Client,
    url: &str,
    content_type: &'static str,
    requests: Vec<Signed>,
    concurrency: usize,
) -> (f64, usize) {
    let started = Instant::now();
    let failures = futures_util::stream::iter(requests)
        .map(|(body, sig)| {
            let req = client
                .put(url)
                .insert_header(("Content-Type", content_type))
                .insert_header(("Mdm-Signature", sig));
            async move {
                match req.send_body(body).await {
                    Ok(mut r) => {
                        let _ = r.body().await;
                        usize::from(r.status().as_u16() != 200)
                    }
                    Err(_) => 1,
                }
            }
        })
        .buffer_unordered(concurrency)
        .fold(0usize, |n, f| async move { n + f })
        .await;
    (started.elapsed().as_secs_f64(), failures)
}

#[actix_web::main]
async fn main() {
    let n = daemon::env_count("MDM_BENCH_ENROLLMENTS", 10_000);
    let concurrency = daemon::env_count("MDM_BENCH_CONCURRENCY", 64);
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = ec_key();
    let ca = cert("depd bench CA", &ca_key, None, 1);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.to_pem().expect("pem")).expect("ca");

    let t = Instant::now();
    let mut auth = Vec::with_capacity(n);
    let mut token = Vec::with_capacity(n);
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let key = ec_key();
        let c = cert("bench device", &key, Some((&ca, &ca_key)), (i + 2) as u32);
        let udid = format!("BENCH-{i:08}");
        auth.push(sign(&c, &key, plist(&format!(
            "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>{udid}</string><key>SerialNumber</key><string>S{i:010}</string><key>Topic</key><string>com.apple.mgmt.bench</string>"
        ))));
        let tok = openssl::base64::encode_block(&(i as u64).to_be_bytes().repeat(4));
        token.push(sign(&c, &key, plist(&format!(
            "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{udid}</string><key>Topic</key><string>com.apple.mgmt.bench</string><key>PushMagic</key><string>MAGIC-{i}</string><key>Token</key><data>{tok}</data>"
        ))));
        idle.push(sign(
            &c,
            &key,
            plist(&format!(
                "<key>UDID</key><string>{udid}</string><key>Status</key><string>Idle</string>"
            )),
        ));
    }
    println!(
        "{n} identities and {} signed requests prepared in {:.1} s",
        3 * n,
        t.elapsed().as_secs_f64()
    );

    let config = format!(
        "api_key = \"{KEY}\"\n[sync]\nauto = false\n[mdm]\nenabled = true\nca_file = {:?}\n",
        ca_file.display().to_string()
    );
    let (mut child, base, log) = daemon::serve(dir.path(), &config);
    daemon::drain(log);
    let pid = child.id();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    let url = format!("{base}/mdm");
    let (rss0, _) = daemon::memory(pid);
    let machine = machine::ticks();
    let cpu0 = cpu_secs(pid);
    let me = std::process::id();
    let client0 = cpu_secs(me);
    let checkin = "application/x-apple-aspen-mdm-checkin";
    let (a, fa) = phase(&client, &url, checkin, auth, concurrency).await;
    let (tu, ft) = phase(&client, &url, checkin, token, concurrency).await;
    let cpu1 = cpu_secs(pid);
    let (rss1, _) = daemon::memory(pid);
    let (r, fr) = phase(
        &client,
        &url,
        "application/x-apple-aspen-mdm",
        idle,
        concurrency,
    )
    .await;
    let cpu2 = cpu_secs(pid);
    let client_cpu = cpu_secs(me) - client0;
    let (rss2, hwm) = daemon::memory(pid);
    println!("MDM: {n} enrollments, {concurrency} requests at a time");
    println!(
        "  Authenticate: {a:.1} s  {:.0}/s  (not 200: {fa})",
        n as f64 / a
    );
    println!(
        "  TokenUpdate:  {tu:.1} s  {:.0}/s  (not 200: {ft})",
        n as f64 / tu
    );
    println!(
        "  Idle report:  {r:.1} s  {:.0}/s  (not 200: {fr})",
        n as f64 / r
    );
    println!(
        "  depd cpu: {:.0} us per check-in, {:.0} us per report",
        (cpu1 - cpu0) * 1e6 / (2 * n) as f64,
        (cpu2 - cpu1) * 1e6 / n as f64
    );
    println!(
        "  load generator (this process, one thread): {:.0} us CPU per request",
        client_cpu * 1e6 / (3 * n) as f64
    );
    println!(
        "  depd memory: VmRSS {rss0:.0} MiB before, {rss1:.0} MiB after enrolling, {rss2:.0} MiB after the reports; VmHWM {hwm:.0} MiB"
    );
    println!(
        "  data directory: {:.1} MiB",
        dir_size(&dir.path().join("data")) as f64 / 1048576.0
    );
    println!("  machine: {}", machine::stolen_since(machine));
    let _ = child.kill();
    let _ = child.wait();
}
