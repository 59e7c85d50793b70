//! The whole token exchange against depsim: a staging certificate from
//! depd, a token file encrypted to it in Apple's format by depsim, the
//! upload, then Apple calls with those tokens; and the MAID JWT's server
//! UUID from `/account`, cached for an hour.

use crate::helpers::{NAME, TestApp};
use actix_web::http::Method;
use depd::domain::clock::ManualClock;
use depd::sim::faults::ResponseFault;
use depd::sim::{SimConfig, SimHandle, Simulator};
use openssl::symm::Cipher;
use serde_json::{Value, json};
use std::sync::Arc;

/// Points `NAME` at `sim`, downloads a staging certificate, has depsim
/// encrypt its credentials to it and uploads the result.
/// Returns the certificate the tokens were encrypted to (now current).
pub(crate) async fn exchange(app: &TestApp, sim: &SimHandle, cipher: Cipher) -> Vec<u8> {
    let config = json!({ "base_url": sim.base_url() }).to_string();
    assert_eq!(
        app.put(&format!("/v1/config/{NAME}"), &config).await.status,
        200
    );
    let cert = app.get(&format!("/v1/tokenpki/{NAME}?cn=depd-e2e")).await;
    assert_eq!(cert.status, 200);
    let p7m =
        depd::sim::token_file::token_file(&sim.tokens_json(), &cert.body, cipher).expect("p7m");
    assert!(
        p7m.starts_with("Content-Type: application/pkcs7-mime"),
        "{p7m}"
    );
    let r = app
        .call(Method::PUT, &format!("/v1/tokenpki/{NAME}"), p7m.as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sim_tokens: Value = serde_json::from_str(&sim.tokens_json()).expect("tokens");
    assert_eq!(r.json()["consumer_key"], sim_tokens["consumer_key"]);
    cert.body
}

pub(crate) fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    let mut b64 = payload.replace('-', "+").replace('_', "/");
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    let bytes = openssl::base64::decode_block(&b64).expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

#[actix_web::test]
async fn certificate_exchange_end_to_end_then_proxied_calls() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let app = TestApp::spawn().await;
    exchange(&app, &sim, Cipher::aes_128_cbc()).await;
    let r = app.get(&format!("/proxy/{NAME}/account")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let server_uuid = r.json()["server_uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(sim.stats().session_calls, 1);

    // The MAID JWT without server_uuid: the UUID comes from /account, once.
    let before = sim.stats().count("GET", "/account");
    for _ in 0..3 {
        let r = app.get(&format!("/v1/maidjwt/{NAME}")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let claims = jwt_claims(&String::from_utf8_lossy(&r.body));
        assert_eq!(claims["iss"], server_uuid.as_str());
        assert_eq!(claims["service_type"], "com.apple.maid");
    }
    assert_eq!(sim.stats().count("GET", "/account"), before + 1);

    // A second exchange (a renewed token, other cipher) keeps working.
    exchange(&app, &sim, Cipher::aes_256_cbc()).await;
    assert_eq!(app.get(&format!("/proxy/{NAME}/account")).await.status, 200);
    assert_eq!(sim.stats().session_calls, 2, "new tokens, new session");
}

#[actix_web::test]
async fn server_uuid_is_refreshed_hourly_and_kept_when_apple_fails() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let sim = Simulator::start(SimConfig {
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let app = TestApp::spawn_with("", Arc::new(clock.clone())).await;
    exchange(&app, &sim, Cipher::aes_128_cbc()).await;
    let path = format!("/v1/maidjwt/{NAME}");
    assert_eq!(app.get(&path).await.status, 200);
    assert_eq!(sim.stats().count("GET", "/account"), 1);
    clock.advance(time::Duration::minutes(59));
    assert_eq!(app.get(&path).await.status, 200);
    assert_eq!(
        sim.stats().count("GET", "/account"),
        1,
        "cached within the hour"
    );
    clock.advance(time::Duration::minutes(2));
    assert_eq!(app.get(&path).await.status, 200);
    assert_eq!(
        sim.stats().count("GET", "/account"),
        2,
        "refreshed after an hour"
    );

    // Apple failing a refresh: the known UUID is still used.
    clock.advance(time::Duration::hours(2));
    sim.add_fault(ResponseFault::new(500, "INTERNAL").on_path("/account"));
    let r = app.get(&path).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(sim.stats().count("GET", "/account"), 3);
}

#[actix_web::test]
async fn server_uuid_unknown_and_apple_failing_is_502() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let app = TestApp::spawn().await;
    exchange(&app, &sim, Cipher::aes_128_cbc()).await;
    sim.add_fault(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/session"));
    let r = app.get(&format!("/v1/maidjwt/{NAME}")).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "server-uuid-unavailable".to_owned())
    );
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("T_C_NOT_SIGNED"))
    );
    // With the UUID given, Apple is not needed.
    let r = app
        .get(&format!("/v1/maidjwt/{NAME}?server_uuid=ABC-123"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        jwt_claims(&String::from_utf8_lossy(&r.body))["iss"],
        "ABC-123"
    );
}
