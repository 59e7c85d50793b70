//! Canned responses, latency and the admin API's guard.

use crate::helpers::{JSON, oauth_header, spawn};
use depd::sim::faults::{LatencyFault, ResponseFault};
use serde_json::json;
use std::time::{Duration, Instant};

#[actix_web::test]
async fn the_next_responses_get_a_status_and_body() {
    let t = spawn(5);
    let token = t.session().await;
    t.sim
        .add_fault(ResponseFault::new(500, "INTERNAL_ERROR").times(2));
    t.get("/account", &token)
        .await
        .is_error(500, "INTERNAL_ERROR");
    t.post("/server/devices", &token, json!({}))
        .await
        .is_error(500, "INTERNAL_ERROR");
    assert_eq!(t.get("/account", &token).await.status, 200);
    let s = t.sim.stats();
    assert_eq!(s.count_status("GET", "/account", 500), 1);
    assert_eq!(s.count_status("POST", "/server/devices", 500), 1);
}

#[actix_web::test]
async fn service_unavailable_with_retry_after_on_one_path() {
    let t = spawn(5);
    let token = t.session().await;
    let fault = json!({"status": 503, "body": "", "headers": {"Retry-After": "30"}, "path": "/devices/sync", "count": 1});
    let a = t.admin("POST", "/faults/response", Some(fault)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        t.admin("GET", "/faults", None).await.json()["responses"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Other paths are untouched.
    assert_eq!(t.get("/account", &token).await.status, 200);
    let a = t
        .post("/devices/sync", &token, json!({"cursor": "x"}))
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after").as_deref(), Some("30"));
    t.post("/devices/sync", &token, json!({"cursor": "x"}))
        .await
        .is_error(400, "INVALID_CURSOR");
}

#[actix_web::test]
async fn terms_not_signed_on_session() {
    let t = spawn(5);
    t.sim
        .add_fault(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/session"));
    t.session_answer().await.is_error(403, "T_C_NOT_SIGNED");
    assert_eq!(t.sim.stats().session_calls, 1);
    // Faults answer before verification: even an unsigned call got it; now a real session works.
    let h = oauth_header(
        &t.url("/session"),
        &t.creds,
        &t.creds.consumer_secret,
        t.now(),
        "after",
    );
    assert_eq!(t.session_raw(&h, Some(JSON)).await.status, 200);
}

#[actix_web::test]
async fn invalid_faults_are_refused_by_the_admin_api() {
    let t = spawn(5);
    let bad_header = json!({"status": 503, "headers": {"Bad Header": "x"}});
    assert_eq!(
        t.admin("POST", "/faults/response", Some(bad_header))
            .await
            .status,
        400
    );
    assert_eq!(
        t.admin("POST", "/faults/response", Some(json!({"status": 42})))
            .await
            .status,
        400
    );
    assert_eq!(
        t.admin(
            "POST",
            "/faults/assign",
            Some(json!({"serial": "X", "result": "MAYBE"}))
        )
        .await
        .status,
        400
    );
    assert_eq!(t.admin("GET", "/nothing", None).await.status, 404);
    assert_eq!(
        t.admin("POST", "/clock", Some(json!({"advance_seconds": -1})))
            .await
            .status,
        400
    );
}

#[actix_web::test]
async fn added_latency_per_path_and_global() {
    let t = spawn(5);
    let token = t.session().await;
    t.sim.set_latency(LatencyFault {
        path: Some("/account".into()),
        millis: 300,
    });
    let started = Instant::now();
    assert_eq!(t.get("/account", &token).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let a = t
        .admin(
            "POST",
            "/faults/latency",
            Some(json!({"millis": 0, "path": "/account"})),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        t.admin("POST", "/faults/latency", Some(json!({"millis": 200})))
            .await
            .status,
        200
    );
    let started = Instant::now();
    assert_eq!(
        t.post("/server/devices", &token, json!({})).await.status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    t.sim.clear_faults();
    assert!(t.sim.faults().latency.is_empty());
}
