//! No MDM event is lost to a crash: the real `depd` binary takes a burst of
//! signed check-ins and is killed with SIGKILL in the middle of it. Every
//! check-in it answered 200 must reach the webhook receiver after the
//! restart, from the durable outbox.

use crate::helpers::{Daemon, KEY, write_config};
use crate::mdm::{CHECKIN_TYPE, Pki, UDID, plist};
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const BURST: usize = 300;

async fn start(config: std::path::PathBuf, data: std::path::PathBuf) -> Daemon {
    web::block(move || Daemon::start(&config, &data))
        .await
        .expect("start depd")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_web::test]
async fn sigkill_during_a_burst_of_check_ins_loses_no_event() {
    let received: Arc<Mutex<BTreeSet<Vec<u8>>>> = Arc::default();
    let r = received.clone();
    let receiver = HttpServer::new(move || {
        let r = r.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let r = r.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(raw) = event["checkin_event"]["raw_payload"].as_str()
                    && let Ok(raw) = openssl::base64::decode_block(raw)
                {
                    r.lock().unwrap_or_else(PoisonError::into_inner).insert(raw);
                }
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind receiver");
    let hook = format!("http://{}/hook", receiver.addrs()[0]);
    actix_web::rt::spawn(receiver.run());

    let pki = Pki::new();
    let id = pki.identity("dev");
    // One device re-authenticating: each body differs, each answered one
    // is one event.
    let requests: Vec<(Vec<u8>, String)> = (0..BURST)
        .map(|i| {
            let body = plist(&format!(
                "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>{UDID}</string><key>DeviceName</key><string>burst {i}</string><key>Topic</key><string>com.apple.mgmt.t</string>"
            ));
            let sig = id.sign(&body);
            (body, sig)
        })
        .collect();

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        &format!(
            "api_key = \"{KEY}\"\n[mdm]\nenabled = true\nca_file = {:?}\nwebhook_url = \"{hook}\"\n[webhook]\nretry_first_secs = 1\nretry_max_secs = 2\n",
            pki.ca_file().display().to_string()
        ),
    );
    let daemon = start(config.clone(), data.clone()).await;
    let url = daemon.url("/mdm");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let answered: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, (body, sig)) in requests.iter().cloned().enumerate() {
        let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let resp = client
                .put(&url)
                .insert_header(("Content-Type", CHECKIN_TYPE))
                .insert_header(("Mdm-Signature", sig))
                .send_body(body)
                .await;
            if let Ok(r) = resp
                && r.status().as_u16() == 200
            {
                answered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(i);
            }
        }));
    }
    let count = || {
        answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    };
    until("a third of the burst answered", || count() >= BURST / 3).await;
    web::block(move || daemon.kill()).await.expect("kill");
    for t in tasks {
        let _ = t.await;
    }
    let answered: Vec<usize> = answered
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        answered.len() < BURST,
        "the kill landed after the burst ({} answered); nothing was tested",
        answered.len()
    );

    eprintln!(
        "{} of {BURST} check-ins answered before SIGKILL",
        answered.len()
    );
    let _daemon = start(config, data).await;
    until("every answered check-in's event", || {
        let got = received.lock().unwrap_or_else(PoisonError::into_inner);
        answered.iter().all(|i| got.contains(&requests[*i].0))
    })
    .await;
}
