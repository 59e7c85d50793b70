use crate::helpers::*;
use actix_web::http::Method;

#[actix_web::test]
async fn api_requires_the_key_but_version_and_health_do_not() {
    let app = TestApp::spawn().await;
    for (auth, want) in [
        (None, 401),
        (Some(("depserver", "wrong")), 401),
        (Some(("admin", KEY)), 401),
        (Some(("depserver", "")), 401),
        (Some(("depserver", KEY)), 200),
    ] {
        let r = app.call_as(Method::GET, "/v1/dep_names", auth, b"").await;
        assert_eq!(r.status, want, "{auth:?}");
        if want == 401 {
            assert_eq!(r.code(), "unauthorized");
        }
    }
    // Writes are refused the same way and change nothing.
    let r = app
        .call_as(
            Method::PUT,
            "/v1/tokens/acme",
            Some(("depserver", "nope")),
            tokens_json("CK").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        serde_json::json!([])
    );

    for path in ["/version", "/healthz", "/readyz"] {
        let r = app.call_as(Method::GET, path, None, b"").await;
        assert_eq!(r.status, 200, "{path}");
    }
    assert_eq!(
        app.call_as(Method::GET, "/version", None, b"").await.json()["version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/nothing-here").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not-found"));
    let r = app.call(Method::DELETE, "/v1/tokens/acme", b"").await;
    assert_eq!((r.status, r.code().as_str()), (405, "method-not-allowed"));

    // Every known path answers a method it does not take with 405 and the
    // methods it does take in `Allow`, the unauthenticated ones included.
    for (method, path, allow) in [
        ("TRACE", "/version", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("TRACE", "/openapi.json", "GET"),
        ("TRACE", "/v1/dep_names", "GET"),
        ("DELETE", "/v1/tokens/acme", "GET, PUT"),
        ("GET", "/v1/sync/acme", "POST"),
        ("PATCH", "/v1/tokenpki/acme", "GET, PUT"),
    ] {
        let resp = app
            .client()
            .request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                app.url(path),
            )
            .basic_auth("depserver", KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        let got = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(got, allow, "{method} {path}");
    }
}
