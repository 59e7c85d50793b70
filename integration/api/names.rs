//! `GET /v1/dep_names` and DEP name validation.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn lists_every_known_name_sorted_with_stable_pages() {
    let app = TestApp::spawn_with_config("[names.declared]\n").await;
    for name in ["zulu", "alpha", "Mike", "echo"] {
        assert_eq!(
            app.put(&format!("/v1/tokens/{name}"), &tokens_json("CK"))
                .await
                .status,
            200
        );
    }
    // A name known only through its assigner or base URL counts too.
    assert_eq!(
        app.put("/v1/assigner/bravo?profile_uuid=P1", "")
            .await
            .status,
        200
    );
    assert_eq!(
        app.put("/v1/config/charlie", r#"{"base_url":"http://127.0.0.1:1"}"#)
            .await
            .status,
        200
    );

    let all = app.get("/v1/dep_names").await.json();
    let want = json!([
        "Mike", "alpha", "bravo", "charlie", "declared", "echo", "zulu"
    ]);
    assert_eq!(all["dep_names"], want);

    let mut paged = Vec::new();
    for offset in (0..8).step_by(3) {
        let page = app
            .get(&format!("/v1/dep_names?limit=3&offset={offset}"))
            .await
            .json();
        paged.extend(page["dep_names"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(json!(paged), want);
    assert_eq!(
        app.get("/v1/dep_names?offset=100").await.json()["dep_names"],
        json!([])
    );
    assert_eq!(
        app.get("/v1/dep_names?limit=0").await.json()["dep_names"],
        json!([])
    );

    let some = app
        .get("/v1/dep_names?dep_name=zulu&dep_name=alpha&dep_name=unknown")
        .await
        .json();
    assert_eq!(some["dep_names"], json!(["alpha", "zulu"]));
}

#[actix_web::test]
async fn bad_pagination_and_filters_are_400() {
    let app = TestApp::spawn().await;
    for query in [
        "limit=-1",
        "limit=abc",
        "limit=1001",
        "offset=-5",
        "offset=1.5",
        "limit=1&limit=2",
        "dep_name=a%2F..",
        "dep_name=%zz",
        "color=blue",
    ] {
        let r = app.get(&format!("/v1/dep_names?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(!r.json()["error"].as_str().unwrap_or_default().is_empty());
    }
}

#[actix_web::test]
async fn bad_names_are_400_and_create_nothing() {
    let app = TestApp::spawn().await;
    let long = "n".repeat(129);
    for name in ["..", "a..b", "a%00b", "a%0Ab", "a%7Fb", long.as_str()] {
        for path in ["tokens", "config", "assigner"] {
            let r = app.get(&format!("/v1/{path}/{name}")).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (400, "invalid-dep-name"),
                "{path}/{name}"
            );
        }
        let r = app
            .put(&format!("/v1/tokens/{name}"), &tokens_json("CK"))
            .await;
        assert_eq!(r.status, 400, "{name}");
    }
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        json!([])
    );
    // A name of exactly 128 bytes with spaces and non-ASCII is fine.
    let ok = format!("{}%20%C3%A9", "n".repeat(125));
    assert_eq!(
        app.put(&format!("/v1/tokens/{ok}"), &tokens_json("CK"))
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn unknown_names_are_404() {
    let app = TestApp::spawn().await;
    for path in ["/v1/tokens/ghost", "/v1/config/ghost", "/v1/assigner/ghost"] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "unknown-dep-name"),
            "{path}"
        );
    }
}
