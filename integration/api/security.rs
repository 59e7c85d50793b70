//! Issue #18: what a holder of the API key cannot make depd do, and what a
//! copy of the data directory or the logs does not give away.

use crate::helpers::*;
use actix_web::http::Method;
use depd::sim::{SimConfig, Simulator};
use serde_json::json;

/// `PUT /v1/config` refuses hosts outside `apple.allowed_hosts`, internal
/// addresses that are not listed, and plain http to anything but loopback;
/// nothing is stored for a refused URL.
#[actix_web::test]
async fn base_urls_outside_the_allowlist_are_refused() {
    let app = TestApp::spawn().await;
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254",
        "https://10.1.2.3/dep",
        "https://192.168.0.10",
        "https://[fd00::1]",
        "https://[::ffff:169.254.169.254]",
        "https://dep.example.com",
        "http://mdmenrollment.apple.com",
    ] {
        let body = json!({ "base_url": url }).to_string();
        let r = app.put("/v1/config/acme", &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "upstream-not-allowed"),
            "{url}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        json!([])
    );
    // Apple's own host and loopback are on the default list.
    for url in ["https://mdmenrollment.apple.com", "http://127.0.0.1:9/x"] {
        let body = json!({ "base_url": url }).to_string();
        assert_eq!(app.put("/v1/config/acme", &body).await.status, 200, "{url}");
    }
}

/// A listed name is not enough: the addresses it resolves to are checked,
/// and loopback addresses pass only when an address entry lists them.
#[actix_web::test]
async fn a_name_resolving_to_an_unlisted_internal_address_is_refused() {
    let app = TestApp::spawn_with_config(
        "[apple]\nbase_url = \"https://mdmenrollment.apple.com\"\nallowed_hosts = [\"mdmenrollment.apple.com\", \"localhost\"]\n",
    )
    .await;
    let r = app
        .put(
            "/v1/config/acme",
            r#"{"base_url":"http://localhost:9/dep"}"#,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "upstream-not-allowed"));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{}",
        r.json()
    );
    let r = app
        .put(
            "/v1/config/acme",
            r#"{"base_url":"http://127.0.0.1:9/dep"}"#,
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "upstream-not-allowed"));
}

/// A stored base URL that a reload takes off the list is no longer
/// called: the proxy answers 502 with a stable code, a sync fails, and the
/// name's status says why. Putting it back on the list restores both.
#[actix_web::test]
async fn a_reload_that_unlists_a_stored_url_stops_calls_to_it() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let app = TestApp::spawn().await;
    app.point(NAME, &sim).await;
    assert_eq!(app.get(&format!("/proxy/{NAME}/account")).await.status, 200);
    let served = sim.stats().total;

    app.reload_config("[apple]\nallowed_hosts = [\"mdmenrollment.apple.com\"]\n")
        .await;
    // Through the actor's mailbox: the reload is applied after this.
    app.get(&format!("/v1/status/{NAME}")).await;
    let r = app.get(&format!("/proxy/{NAME}/account")).await;
    assert_eq!((r.status, r.code().as_str()), (502, "upstream-not-allowed"));
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let status = app.get(&format!("/v1/status/{NAME}")).await.json();
    let said = status.to_string();
    assert!(said.contains("not in apple.allowed_hosts"), "{status}");
    assert_eq!(
        sim.stats().total,
        served,
        "nothing reached the unlisted host"
    );

    app.reload_config("").await;
    app.get(&format!("/v1/status/{NAME}")).await;
    assert_eq!(app.get(&format!("/proxy/{NAME}/account")).await.status, 200);
}

/// Proxied paths with dot segments (plain or percent-encoded) or encoded
/// slashes are refused before anything reaches Apple, so a caller cannot
/// climb out of the base URL's path prefix.
#[actix_web::test]
async fn proxied_dot_segments_and_encoded_slashes_are_refused() {
    let sim = Simulator::start(SimConfig {
        path_prefix: "/dep/v1".into(),
        ..SimConfig::default()
    })
    .expect("sim");
    let app = TestApp::spawn().await;
    app.point(NAME, &sim).await;
    for path in [
        "/../account",
        "/./account",
        "/devices/../account",
        "/%2e%2e/account",
        "/%2E%2E/%2e%2E/account",
        "/%2e/account",
        "/.%2e/account",
        "/profile%2F..%2Faccount",
        "/profile%2faccount",
        "/profile%5C..%5Caccount",
        "/a/..",
    ] {
        let r = app.get(&format!("/proxy/{NAME}{path}")).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid-proxy-path"),
            "{path}"
        );
    }
    assert_eq!(sim.stats().total, 0, "{:?}", sim.stats());
    // Dots inside a segment are just characters.
    let r = app.get(&format!("/proxy/{NAME}/account?x=..")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Labels come from fixed tables: 10,000 distinct proxied paths leave
/// `/metrics` with the series it had after the first.
#[actix_web::test]
async fn distinct_proxied_paths_do_not_grow_the_metrics() {
    const BOUNDED: &str = "bounded-metrics";
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let app = TestApp::spawn().await;
    app.point(BOUNDED, &sim).await;
    let ours = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.contains(&format!("dep_name=\"{BOUNDED}\"")) || l.contains("endpoint=\"other\"")
            })
            .map(|l| {
                l.rsplit_once(' ')
                    .map_or(l, |(series, _)| series)
                    .to_owned()
            })
            .filter(|l| !l.contains("depd_apple_request_duration_seconds") || l.contains("other"))
            .collect()
    };
    let r = app.get(&format!("/proxy/{BOUNDED}/unknown/0")).await;
    assert_eq!(r.status, 404);
    let before = ours(&String::from_utf8_lossy(&app.get("/metrics").await.body));
    assert!(!before.is_empty());
    for chunk in (1..10_000).collect::<Vec<u32>>().chunks(100) {
        let paths: Vec<String> = chunk
            .iter()
            .map(|i| format!("/proxy/{BOUNDED}/unknown/{i}?q={i}"))
            .collect();
        let calls = paths.iter().map(|p| app.get(p));
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.status, 404);
        }
    }
    let after = ours(&String::from_utf8_lossy(&app.get("/metrics").await.body));
    assert_eq!(after, before);
    let text = String::from_utf8_lossy(&app.get("/metrics").await.body).into_owned();
    assert!(
        text.contains(&format!(
            "depd_apple_requests_total{{dep_name=\"{BOUNDED}\",endpoint=\"other\",status=\"404\"}} 10000"
        )),
        "{text}"
    );
    assert!(!text.contains("/unknown/"));
}

/// Wrong credentials from one address: at the limit within a minute, 429
/// with `Retry-After` for a minute, right key or not. Requests without
/// credentials do not count.
#[actix_web::test]
async fn repeated_wrong_keys_are_refused_for_a_minute() {
    use depd::domain::clock::ManualClock;
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::spawn_with(
        "auth_failure_limit = 3\n",
        std::sync::Arc::new(clock.clone()),
    )
    .await;
    let status_with = |auth: Option<(&'static str, &'static str)>| {
        let app = &app;
        async move {
            let mut req = app.client().get(app.url("/v1/dep_names"));
            if let Some((u, p)) = auth {
                req = req.basic_auth(u, p);
            }
            let resp = req.send().await.expect("request");
            let retry = resp
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (resp.status().as_u16(), retry)
        }
    };
    for _ in 0..10 {
        assert_eq!(
            status_with(None).await,
            (401, None),
            "no credentials: not counted"
        );
    }
    assert_eq!(status_with(Some(("depserver", "wrong"))).await.0, 401);
    assert_eq!(status_with(Some(("depserver", "wrong"))).await.0, 401);
    assert_eq!(
        status_with(Some(("depserver", "wrong"))).await,
        (429, Some("60".to_owned()))
    );
    assert_eq!(
        status_with(Some(("depserver", KEY))).await,
        (429, Some("60".to_owned())),
        "the address is refused, right key or not"
    );
    clock.advance(time::Duration::seconds(45));
    assert_eq!(
        status_with(Some(("depserver", KEY))).await,
        (429, Some("15".to_owned()))
    );
    clock.advance(time::Duration::seconds(15));
    assert_eq!(status_with(Some(("depserver", KEY))).await, (200, None));
    let metrics = String::from_utf8_lossy(&app.get("/metrics").await.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("depd_auth_failures_total ")),
        "{metrics}"
    );
}

/// `max_dep_names` bounds name creation with a clear 409; existing names
/// keep working.
#[actix_web::test]
async fn name_creation_stops_at_max_dep_names() {
    let app = TestApp::spawn_with_config("max_dep_names = 2\n").await;
    for name in ["one", "two"] {
        assert_eq!(
            app.put(&format!("/v1/tokens/{name}"), &tokens_json("CK"))
                .await
                .status,
            200
        );
    }
    for path in [
        "/v1/tokens/three",
        "/v1/config/three",
        "/v1/assigner/three?profile_uuid=P1",
    ] {
        let body = if path.contains("config") {
            r#"{"base_url":""}"#.to_owned()
        } else {
            tokens_json("CK")
        };
        let r = app.put(path, &body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (409, "too-many-dep-names"),
            "{path}"
        );
    }
    let r = app.get("/v1/tokenpki/three").await;
    assert_eq!((r.status, r.code().as_str()), (409, "too-many-dep-names"));
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        json!(["one", "two"])
    );
    assert_eq!(
        app.put("/v1/tokens/two", &tokens_json("CK")).await.status,
        200
    );
}
