//! APNs push against the real server, depsim's push service and its
//! simulated devices: enqueue wakes each device once and it answers;
//! refused tokens are marked and skipped; a refused certificate shows on
//! status; throttling is retried after `Retry-After`; a certificate
//! replaced mid-run keeps pushes going; a thousand IDs in one call; the
//! deadline answers with what is still pending.

use crate::helpers::{KEY, TestApp};
use crate::mdm::{command, plist};
use actix_web::http::Method;
use depd::sim::apns::{ApnsFault, ApnsSim};
use depd::sim::mdm::MdmFleet;
use depd::sim::{SimConfig, SimHandle, Simulator};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Setup {
    app: TestApp,
    sim: SimHandle,
    fleet: Arc<MdmFleet>,
    apns: Arc<ApnsSim>,
    client: awc::Client,
    _dir: tempfile::TempDir,
}

/// depd with the MDM service pushing to depsim's push service, `devices`
/// simulated devices enrolled, and a push certificate for their topic.
async fn setup(devices: usize, extra: &str) -> Setup {
    let sim = Simulator::start(SimConfig {
        devices: devices.max(1),
        apns_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SimConfig::default()
    })
    .expect("sim");
    let apns = sim.apns().expect("push service");
    // A topic of its own per test: the metrics are the process's.
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(500);
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let fleet = Arc::new(MdmFleet::generate(seed, &sim.mdm_fleet_devices(devices)).expect("fleet"));
    sim.set_mdm_fleet(fleet.clone());
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fleet.ca_pem()).expect("ca");
    let apns_ca = dir.path().join("apns-ca.pem");
    std::fs::write(&apns_ca, apns.ca_pem()).expect("apns ca");
    let app = TestApp::spawn_with_config(&format!(
        "[mdm]\nenabled = true\nmigration = true\nca_file = {:?}\napns_base_url = {:?}\napns_ca_file = {:?}\n{extra}\n",
        ca.display().to_string(),
        apns.url(),
        apns_ca.display().to_string(),
    ))
    .await;
    let (cert, key) = apns.issue_push_cert(fleet.topic(), 365).expect("push cert");
    upload(&app, &cert, &key, "").await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    for d in fleet.devices() {
        fleet
            .enroll(&client, &d.udid, &app.url("/mdm"))
            .await
            .expect("enroll");
    }
    Setup {
        app,
        sim,
        fleet,
        apns,
        client,
        _dir: dir,
    }
}

async fn upload(app: &TestApp, cert: &[u8], key: &[u8], query: &str) -> serde_json::Value {
    let mut body = cert.to_vec();
    body.extend_from_slice(key);
    let r = app
        .call(Method::PUT, &format!("/v1/pushcert{query}"), &body)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1500 {
        if done().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting: {what}");
}

fn records_for(apns: &ApnsSim, token: &str) -> usize {
    apns.pushes().iter().filter(|p| p.token == token).count()
}

#[actix_web::test]
async fn enqueue_pushes_each_device_once_and_it_answers() {
    let s = setup(4, "").await;
    let udids: Vec<String> = s.fleet.devices().iter().map(|d| d.udid.clone()).collect();
    let r = s
        .app
        .call(
            Method::PUT,
            &format!("/v1/enqueue/{}", udids.join(",")),
            &command("C-PUSHED", "ProfileList"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["command_uuid"], "C-PUSHED");
    for d in s.fleet.devices() {
        let id = v["status"][&d.udid]["push_result"]
            .as_str()
            .unwrap_or_else(|| panic!("push_result for {}: {v}", d.udid));
        assert_eq!(id.len(), 36, "an apns-id: {id}");
        assert_eq!(s.apns.delivered_to(&d.push_token_hex()), 1);
    }
    // Every device, woken by its push, connected and acknowledged.
    for d in s.fleet.devices() {
        let path = format!("/v1/enrollments/{}/commands", d.udid);
        until("the device answers its command", async || {
            s.app.get(&path).await.json()["results"][0]["status"] == "Acknowledged"
        })
        .await;
    }
    // Apple's headers, which NanoMDM leaves out; no expiration by default.
    let pushes = s.apns.pushes();
    assert_eq!(pushes.len(), 4);
    for p in &pushes {
        assert_eq!(p.apns_topic.as_deref(), Some(s.fleet.topic()));
        assert_eq!(p.apns_push_type.as_deref(), Some("mdm"));
        assert_eq!(p.apns_priority.as_deref(), Some("10"));
        assert_eq!(p.apns_expiration, None);
        assert_eq!(p.cert_topic.as_deref(), Some(s.fleet.topic()));
    }
    let d = &s.fleet.devices()[0];
    let p = pushes
        .iter()
        .find(|p| p.token == d.push_token_hex())
        .expect("pushed");
    assert_eq!(p.body, format!("{{\"mdm\":\"{}\"}}", d.push_magic()));
    // The topic shows on status, connected, with its expiry.
    let st = s.app.get("/v1/status").await.json();
    let t = &st["push_topics"][0];
    assert_eq!(t["topic"], s.fleet.topic());
    assert_eq!(t["state"], "connected");
    assert!(
        (363..=365).contains(&t["days_left"].as_i64().unwrap_or(0)),
        "{t}"
    );
    assert_eq!(t["delivered"], 4);
    let metrics = String::from_utf8(s.app.get("/metrics").await.body).expect("text");
    assert!(
        metrics.contains(&format!(
            "depd_push_total{{topic=\"{}\",result=\"delivered\"}} 4",
            s.fleet.topic()
        )),
        "{metrics}"
    );
    assert!(metrics.contains("depd_push_cert_days_to_expiry{topic="));
    assert!(metrics.contains("depd_push_duration_seconds_bucket"));
}

#[actix_web::test]
async fn refused_tokens_are_marked_and_not_pushed_again_until_a_token_update() {
    let s = setup(3, "apns_expiration_secs = 86400").await;
    let [a, b, c] = [0, 1, 2].map(|i| &s.fleet.devices()[i]);
    for (d, status, reason) in [(a, 400, "BadDeviceToken"), (b, 410, "Unregistered")] {
        s.apns.add_fault(ApnsFault {
            token: Some(d.push_token_hex()),
            status,
            reason: reason.into(),
            retry_after: None,
            times: None,
        });
    }
    let ids = format!("{},{},{}", a.udid, b.udid, c.udid);
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{ids}"), b"")
        .await;
    assert_eq!(r.status, 207, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        v["status"][&a.udid]["push_error"],
        "push HTTP status: 400: APNs push error: BadDeviceToken"
    );
    let gone = v["status"][&b.udid]["push_error"].as_str().unwrap_or("");
    assert!(
        gone.starts_with("push HTTP status: 410: APNs push error: Unregistered: timestamp "),
        "{gone}"
    );
    assert!(
        v["status"][&a.udid]["push_result"].is_string(),
        "apns-id kept with the error"
    );
    assert!(v["status"][&c.udid]["push_result"].is_string());
    assert!(s.apns.pushes().iter().all(|p| p.apns_expiration.is_some()));

    let e = s
        .app
        .get(&format!("/v1/enrollments/{}", b.udid))
        .await
        .json();
    assert_eq!(e["push_token_invalid"]["reason"], "Unregistered", "{e}");
    let listed = s.app.get("/v1/enrollments").await.json();
    let invalid = listed["enrollments"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| !e["push_token_invalid"].is_null())
        .count();
    assert_eq!(invalid, 2);

    // No further pushes to them; the third still gets its push.
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{ids}"), b"")
        .await;
    assert_eq!(r.status, 207);
    let v = r.json();
    assert!(
        v["status"][&a.udid]["push_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("push token invalid: APNs answered BadDeviceToken")),
        "{v}"
    );
    assert_eq!(records_for(&s.apns, &a.push_token_hex()), 1);
    assert_eq!(records_for(&s.apns, &b.push_token_hex()), 1);
    assert_eq!(s.apns.delivered_to(&c.push_token_hex()), 2);

    // A new TokenUpdate makes the device pushable again.
    s.apns.clear_faults();
    s.fleet
        .enroll(&s.client, &b.udid, &s.app.url("/mdm"))
        .await
        .expect("re-enroll");
    let e = s
        .app
        .get(&format!("/v1/enrollments/{}", b.udid))
        .await
        .json();
    assert!(e["push_token_invalid"].is_null(), "{e}");
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{}", b.udid), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.apns.delivered_to(&b.push_token_hex()), 1);
}

#[actix_web::test]
async fn a_refused_certificate_shows_on_status_until_a_good_one_is_uploaded() {
    let s = setup(1, "").await;
    let d = &s.fleet.devices()[0];
    // The right topic, but not from the push service's CA.
    let other = ApnsSim::new().expect("another CA");
    let (cert, key) = other.issue_push_cert(s.fleet.topic(), 30).expect("cert");
    upload(&s.app, &cert, &key, "").await;
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{}", d.udid), b"")
        .await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["status"][&d.udid]["push_error"],
        "push HTTP status: 403: APNs push error: BadCertificate"
    );
    let st = s.app.get("/v1/status").await.json();
    let t = &st["push_topics"][0];
    assert_eq!(t["state"], "failed", "{t}");
    assert!(t["failed_since"].is_string());
    assert!(
        t["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("BadCertificate"),
        "{t}"
    );
    assert!(
        (28..=30).contains(&t["days_left"].as_i64().unwrap_or(0)),
        "{t}"
    );

    let (cert, key) = s.apns.issue_push_cert(s.fleet.topic(), 365).expect("cert");
    upload(&s.app, &cert, &key, "").await;
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{}", d.udid), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let st = s.app.get("/v1/status").await.json();
    assert_eq!(st["push_topics"][0]["state"], "connected");
}

#[actix_web::test]
async fn throttling_is_retried_after_retry_after() {
    let s = setup(1, "").await;
    let d = &s.fleet.devices()[0];
    s.apns.add_fault(ApnsFault {
        token: Some(d.push_token_hex()),
        status: 429,
        reason: "TooManyRequests".into(),
        retry_after: Some(1),
        times: Some(1),
    });
    let started = Instant::now();
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{}", d.udid), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
    let seen: Vec<u16> = s.apns.pushes().iter().map(|p| p.status).collect();
    assert_eq!(seen, [429, 200]);
    let metrics = String::from_utf8(s.app.get("/metrics").await.body).expect("text");
    assert!(
        metrics.contains("depd_push_retries_total{topic="),
        "{metrics}"
    );
    assert!(metrics.contains("result=\"TooManyRequests\""));
}

#[actix_web::test]
async fn a_certificate_replaced_mid_run_keeps_pushes_going() {
    let s = setup(6, "").await;
    s.apns.set_wake(false);
    s.apns.set_latency_ms(300);
    let ids: Vec<String> = s.fleet.devices().iter().map(|d| d.udid.clone()).collect();
    let app_url = s.app.url("/v1/push");
    let client = s.client.clone();
    let body = serde_json::json!({ "ids": ids });
    let in_flight = actix_web::rt::spawn(async move {
        let mut r = client
            .post(app_url)
            .basic_auth("nanomdm", KEY)
            .send_json(&body)
            .await
            .expect("push");
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.expect("json"),
        )
    });
    // While those pushes wait for their answers, a renewed certificate.
    until("the pushes reach the push service", async || {
        s.app.get("/v1/status").await.json()["push_topics"][0]["state"] == "connected"
    })
    .await;
    let (cert, key) = s.apns.issue_push_cert(s.fleet.topic(), 400).expect("cert");
    let new_serial = openssl::x509::X509::from_pem(&cert)
        .expect("pem")
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|h| h.to_string()))
        .expect("serial");
    let answer = upload(&s.app, &cert, &key, "").await;
    assert_eq!(answer["topic"], s.fleet.topic());
    let (status, v) = in_flight.await.expect("join");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"].as_object().map(|m| m.len()), Some(6));
    // The next pushes go out with the new certificate.
    s.apns.set_latency_ms(0);
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/{}", ids[0]), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let serials: Vec<Option<String>> = s
        .apns
        .pushes()
        .iter()
        .map(|p| p.cert_serial.clone())
        .collect();
    assert_eq!(serials.len(), 7);
    assert!(
        serials[..6].iter().all(|c| c.as_ref() != Some(&new_serial)),
        "the pushes under way finished on the old connection"
    );
    assert_eq!(
        serials[6].as_ref(),
        Some(&new_serial),
        "then the new certificate"
    );
    let st = s.app.get("/v1/status").await.json();
    assert!((398..=400).contains(&st["push_topics"][0]["days_left"].as_i64().unwrap_or(0)));
    assert_eq!(st["push_topics"][0]["delivered"], 7);
}

/// A `TokenUpdate` for a made-up device, as `/migration` takes it.
fn token_update(i: usize, topic: &str) -> (String, Vec<u8>) {
    let udid = format!("00000000-0000-4000-8000-{i:012}");
    let token = openssl::sha::sha256(udid.as_bytes());
    let body = plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{udid}</string><key>Topic</key><string>{topic}</string><key>PushMagic</key><string>M-{i}</string><key>Token</key><data>{}</data>",
        openssl::base64::encode_block(&token)
    ));
    (udid, body)
}

#[actix_web::test]
async fn a_thousand_ids_in_one_call_and_the_url_limit() {
    let s = setup(0, "").await;
    let mut ids = Vec::new();
    for i in 0..1000 {
        let (udid, body) = token_update(i, s.fleet.topic());
        let r = s
            .app
            .call_as(Method::PUT, "/migration", Some(("nanomdm", KEY)), &body)
            .await;
        assert_eq!(r.status, 200);
        ids.push(udid);
    }
    // In a JSON body, with duplicates (pushed once).
    let mut with_dups = ids.clone();
    with_dups.extend(ids[..10].iter().cloned());
    let r = s
        .app
        .call(
            Method::POST,
            "/v1/push",
            serde_json::json!({ "ids": with_dups })
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let status = v["status"].as_object().expect("status");
    assert_eq!(status.len(), 1000);
    assert!(status.values().all(|r| r["push_result"].is_string()));
    assert!(v.get("pending").is_none());
    assert_eq!(s.apns.stats().accepted, 1000);

    // In the URL: 1,000 UDIDs fit (37 KB); past 48 KiB is a 414.
    let r = s
        .app
        .call(Method::GET, &format!("/v1/push/{}", ids.join(",")), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.apns.stats().accepted, 2000);
    let long = vec![ids[0].as_str(); 1400].join(",");
    let r = s
        .app
        .call(Method::GET, &format!("/v1/push/{long}"), b"")
        .await;
    assert_eq!(r.status, 414);
    assert!(String::from_utf8_lossy(&r.body).contains("POST /v1/push"));
    let r = s
        .app
        .call(
            Method::PUT,
            &format!("/v1/enqueue/{long}"),
            &command("X", "ProfileList"),
        )
        .await;
    assert_eq!(r.status, 414);
    assert_eq!(s.apns.stats().accepted, 2000);

    // Bad bodies change nothing.
    for bad in [
        &b"{}"[..],
        b"{\"ids\": []}",
        b"[1]",
        b"{\"ids\": [\"a\"], \"x\": 1}",
        b"{\"ids\": [\"a\", \"\"]}",
    ] {
        let r = s.app.call(Method::POST, "/v1/push", bad).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(s.apns.stats().accepted, 2000);
}

#[actix_web::test]
async fn the_deadline_answers_with_the_pushes_still_pending() {
    let s = setup(3, "push_deadline_secs = 1").await;
    s.apns.set_wake(false);
    s.apns.set_latency_ms(2500);
    let ids: Vec<String> = s.fleet.devices().iter().map(|d| d.udid.clone()).collect();
    let r = s
        .app
        .call(
            Method::POST,
            "/v1/push",
            serde_json::json!({ "ids": ids }).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let mut pending: Vec<String> = serde_json::from_value(v["pending"].clone()).expect("pending");
    pending.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(pending, want);
    // They finish in the background.
    until("the pending pushes arrive", async || {
        s.apns.stats().accepted == 3
    })
    .await;
    drop(s.sim);
}

#[actix_web::test]
async fn pushes_skip_unknown_and_checked_out_enrollments() {
    let s = setup(2, "").await;
    let d = &s.fleet.devices()[1];
    s.fleet
        .check_out(&s.client, &d.udid)
        .await
        .expect("checkout");
    let r = s
        .app
        .call(Method::POST, &format!("/v1/push/nope,{}", d.udid), b"")
        .await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        v["status"]["nope"]["push_error"],
        "push data missing for id"
    );
    assert!(
        v["status"][&d.udid]["push_error"]
            .as_str()
            .is_some_and(|e| e.contains("checked out"))
    );
    assert_eq!(s.apns.stats().accepted + s.apns.stats().refused, 0);
}

#[actix_web::test]
async fn the_push_key_is_never_logged_nor_stored_in_plain_form() {
    use crate::helpers::{Daemon, write_config};
    let sim = Simulator::start(SimConfig {
        devices: 1,
        apns_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..SimConfig::default()
    })
    .expect("sim");
    let apns = sim.apns().expect("push service");
    let fleet = Arc::new(MdmFleet::generate(77, &sim.mdm_fleet_devices(1)).expect("fleet"));
    sim.set_mdm_fleet(fleet.clone());
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ca.pem"), fleet.ca_pem()).expect("ca");
    std::fs::write(dir.path().join("apns-ca.pem"), apns.ca_pem()).expect("apns ca");
    let config = write_config(
        dir.path(),
        &format!(
            "api_key = {KEY:?}\n[mdm]\nenabled = true\nca_file = {:?}\napns_base_url = {:?}\napns_ca_file = {:?}\n",
            dir.path().join("ca.pem").display().to_string(),
            apns.url(),
            dir.path().join("apns-ca.pem").display().to_string(),
        ),
    );
    let data = dir.path().join("data");
    let d = actix_web::web::block(move || {
        Daemon::start_with_env(&config, &data, &[("DEPD_LOG", "debug")])
    })
    .await
    .expect("daemon");
    let mut d = d;
    let (cert, key) = apns.issue_push_cert(fleet.topic(), 365).expect("cert");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut body = cert.clone();
    body.extend_from_slice(&key);
    let r = crate::helpers::send(
        &client,
        Method::PUT,
        &d.url("/v1/pushcert"),
        Some(("nanomdm", KEY)),
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    let dev = &fleet.devices()[0];
    fleet
        .enroll(&client, &dev.udid, &d.url("/mdm"))
        .await
        .expect("enroll");
    let r = crate::helpers::send(
        &client,
        Method::POST,
        &d.url(&format!("/v1/push/{}", dev.udid)),
        Some(("nanomdm", KEY)),
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    d.signal("TERM");
    let _ = d.wait_for_log("stopped");
    let logs = d.seen.join("\n");
    assert!(
        logs.contains("push certificate stored"),
        "debug logs were read"
    );

    // The key's PEM lines and its DER, nowhere.
    let pkey = openssl::pkey::PKey::private_key_from_pem(&key).expect("key");
    let ders = [
        pkey.private_key_to_der().expect("der"),
        pkey.private_key_to_pkcs8().expect("pkcs8"),
    ];
    let key_text = String::from_utf8(key.clone()).expect("pem");
    let lines: Vec<&str> = key_text
        .lines()
        .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
        .collect();
    assert!(lines.len() > 10);
    assert!(!logs.contains("PRIVATE KEY"));
    for l in &lines {
        assert!(!logs.contains(l), "a line of the key is in the logs");
    }
    let mut files = vec![dir.path().join("data")];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir") {
                files.push(e.expect("entry").path());
            }
            continue;
        }
        let bytes = std::fs::read(&p).expect("read");
        scanned += bytes.len();
        for l in &lines {
            assert!(
                !bytes.windows(l.len()).any(|w| w == l.as_bytes()),
                "a line of the key is in {}",
                p.display()
            );
        }
        for der in &ders {
            // 48 bytes of the DER: the start of the modulus or the private part.
            for chunk in der.chunks(48).filter(|c| c.len() == 48).step_by(7) {
                assert!(
                    !bytes.windows(48).any(|w| w == chunk),
                    "key bytes are in {}",
                    p.display()
                );
            }
        }
    }
    assert!(scanned > 0, "the data directory was scanned");
    assert_eq!(d.wait().code(), Some(0));
}

#[actix_web::test]
async fn a_connection_the_push_service_drops_is_reopened() {
    let s = setup(2, "").await;
    s.apns.set_wake(false);
    let ids: Vec<String> = s.fleet.devices().iter().map(|d| d.udid.clone()).collect();
    let push = async || {
        s.app
            .call(
                Method::POST,
                "/v1/push",
                serde_json::json!({ "ids": ids }).to_string().as_bytes(),
            )
            .await
    };
    assert_eq!(push().await.status, 200);
    // The push service goes away and comes back: every connection to it
    // is closed under depd.
    s.sim.restart_apns().await.expect("restart");
    let r = push().await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.apns.stats().accepted, 4);
    let st = s.app.get("/v1/status").await.json();
    assert_eq!(st["push_topics"][0]["state"], "connected");
}
