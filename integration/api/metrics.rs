//! `GET /metrics`: the Prometheus text, and the per-route request counts.
//!
//! The registry is process-wide, shared by every test in this binary, so
//! the checks are before/after deltas on label sets no other test produces
//! (methods other tests do not send to those routes).

use crate::helpers::*;
use actix_web::http::Method;

/// A series' value in the text, 0 when absent (a counter never recorded).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v}: {e}")))
        .unwrap_or(0)
}

async fn scrape(app: &TestApp) -> String {
    let r = app.call_as(Method::GET, "/metrics", None, b"").await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).expect("UTF-8")
}

#[actix_web::test]
async fn counts_requests_by_route_pattern_method_and_status() {
    let app = TestApp::spawn().await;
    let wrong_method =
        r#"depd_http_requests_total{route="/v1/status/{name}",method="PATCH",status="405"}"#;
    let unauthorized =
        r#"depd_http_requests_total{route="/v1/maidjwt/{name}",method="OPTIONS",status="401"}"#;
    let unmatched = r#"depd_http_requests_total{route="unmatched",method="TRACE",status="404"}"#;
    let before = scrape(&app).await;

    for name in ["metrics-a", "metrics-b", "metrics-c"] {
        let r = app
            .call(Method::PATCH, &format!("/v1/status/{name}"), b"")
            .await;
        assert_eq!(r.status, 405);
    }
    for name in ["metrics-a", "metrics-b"] {
        let path = format!("/v1/maidjwt/{name}");
        let r = app.call_as(Method::OPTIONS, &path, None, b"").await;
        assert_eq!(r.status, 401);
    }
    let r = app
        .call(Method::TRACE, "/metrics-test/no/such/path", b"")
        .await;
    assert_eq!(r.status, 404);

    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, wrong_method) - sample(&before, wrong_method),
        3
    );
    assert_eq!(
        sample(&after, unauthorized) - sample(&before, unauthorized),
        2
    );
    assert_eq!(sample(&after, unmatched) - sample(&before, unmatched), 1);
    // The first scrape counts too; raw paths and names never become labels.
    assert!(
        sample(
            &after,
            r#"depd_http_requests_total{route="/metrics",method="GET",status="200"}"#
        ) >= 1
    );
    assert!(!after.contains("metrics-a"), "{after}");
    assert!(!after.contains("/metrics-test"), "{after}");
}

#[actix_web::test]
async fn is_prometheus_text_without_auth() {
    let app = TestApp::spawn().await;
    let resp = app
        .client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");

    let text = scrape(&app).await;
    assert_eq!(sample(&text, "depd_up"), 1);
    let build = format!(
        r#"depd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build), 1);
    assert!(text.contains("# TYPE depd_http_requests_total counter\n"));
    assert!(text.ends_with('\n'));
}
