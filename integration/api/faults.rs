//! Apple's bad minutes: a quarter of requests failing with 503 and
//! `Retry-After`, sessions expiring every two seconds, and a webhook
//! receiver refusing 30 % of deliveries. The sync rides them out in place:
//! every device ends up in the inventory, assigned, and at the receiver, and
//! no request reaches the simulator before a `Retry-After` it sent.

use crate::helpers::{NAME, TestApp};
use actix_web::http::Method;
use actix_web::{App, HttpResponse, HttpServer, web};
use depd::sim::faults::RateFault;
use depd::sim::{SimConfig, Simulator};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const DEVICES: usize = 500;

#[derive(Default)]
struct Receiver {
    posts: AtomicU64,
    refused: AtomicU64,
    serials: Mutex<HashSet<String>>,
}

/// A webhook receiver that answers 500 to 3 deliveries in 10.
fn flaky_receiver(seen: Arc<Receiver>) -> String {
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        App::new()
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::to(move |body: web::Bytes| {
                let seen = seen.clone();
                async move {
                    let n = seen.posts.fetch_add(1, Ordering::SeqCst);
                    if n % 10 < 3 {
                        seen.refused.fetch_add(1, Ordering::SeqCst);
                        return HttpResponse::InternalServerError().finish();
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let devices = &event["device_response_event"]["device_response"]["devices"];
                    let mut serials = seen.serials.lock().unwrap_or_else(PoisonError::into_inner);
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
    url
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if done().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_web::test]
async fn a_faulted_sync_completes_without_an_early_request() {
    let sim = Simulator::start(SimConfig {
        devices: DEVICES,
        seed: 11,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let seen: Arc<Receiver> = Arc::default();
    let hook = flaky_receiver(seen.clone());
    // Short backoff ceilings, so Apple's one-second Retry-After is what
    // the waits are made of; ten failures in a row end a cycle (at 25 %
    // that is one request in a million).
    let app = TestApp::spawn_with_config(&format!(
        "[sync]\nauto = false\npage_limit = 50\nrequest_retry_first_ms = 50\n\
         request_max_failures = 10\n\
         [assigner]\nbatch_limit = 100\n\
         [webhook]\nurls = [\"{hook}\"]\nretry_first_secs = 1\nretry_max_secs = 2\n"
    ))
    .await;
    app.point(NAME, &sim).await;
    let body = json!({"profile_name": "Corp", "url": "https://mdm.example/enroll"});
    let r = app
        .call(
            Method::POST,
            &format!("/proxy/{NAME}/profile"),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let profile = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/assigner/{NAME}?profile_uuid={profile}"),
            b"",
        )
        .await;
    assert_eq!(r.status, 200);

    sim.reset_stats();
    sim.set_rate_fault(RateFault {
        percent: 25,
        status: 503,
        body: "SERVICE_UNAVAILABLE".into(),
        headers: BTreeMap::from([("Retry-After".to_owned(), "1".to_owned())]),
        path: None,
        seed: 5,
    });
    // Through the admin API, as an outside tool would.
    let expire = format!("http://{}/_sim/sessions/expire", sim.addr());
    let expiring = actix_web::rt::spawn(async move {
        let client = awc::Client::default();
        loop {
            actix_web::rt::time::sleep(Duration::from_secs(2)).await;
            let _ = client.post(&expire).send().await;
        }
    });

    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let report = r.json();
    assert_eq!(report["outcome"], "complete", "{report}");

    until("every device assigned and delivered", async || {
        let status = app.get(&format!("/v1/status/{NAME}")).await.json();
        let delivered = seen
            .serials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        status["assignments"]["by_result"]["SUCCESS"] == DEVICES as u64
            && status["webhook"]["backlog"] == 0
            && delivered == DEVICES
    })
    .await;
    expiring.abort();

    let inventory = app.get(&format!("/v1/devices/{NAME}?limit=0")).await.json();
    assert_eq!(inventory["total"], DEVICES as u64);
    for serial in sim.serials(0, DEVICES) {
        assert_eq!(
            sim.device(&serial).map(|d| d.profile_uuid),
            Some(profile.clone()),
            "{serial}"
        );
    }
    let stats = sim.stats();
    assert!(stats.faults_served > 0, "the faults were served");
    assert_eq!(
        stats.early_requests, 0,
        "a request came before a Retry-After deadline"
    );
    assert!(seen.refused.load(Ordering::SeqCst) > 0);

    let status = app.get(&format!("/v1/status/{NAME}")).await.json();
    let retries = status["sync"]["retries"].as_u64().unwrap_or_default();
    assert!(retries > 0, "{status}");
    let last = &status["sync"]["last_upstream_error"];
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("it asked to wait 1 s")),
        "{last}"
    );
    // Every retry counted in the metrics under its Apple endpoint.
    let metrics = String::from_utf8(app.get("/metrics").await.body).expect("text");
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("depd_apple_retries_total{") && l.contains(NAME))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, retries, "{metrics}");
}
