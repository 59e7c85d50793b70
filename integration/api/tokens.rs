//! `GET/PUT /v1/tokens/{name}`.

use crate::helpers::*;
use actix_web::http::Method;

#[actix_web::test]
async fn put_then_get_round_trips() {
    let app = TestApp::spawn().await;
    let r = app.put("/v1/tokens/acme", &tokens_json("CK_1")).await;
    assert_eq!(r.status, 200);
    let want: serde_json::Value = serde_json::from_str(&tokens_json("CK_1")).expect("json");
    assert_eq!(r.json(), want);
    assert_eq!(app.get("/v1/tokens/acme").await.json(), want);
}

#[actix_web::test]
async fn consumer_key_mismatch_is_409_unless_forced() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.put("/v1/tokens/acme", &tokens_json("CK_1"))
            .await
            .status,
        200
    );
    // Same consumer key: a renewal, accepted.
    let renewed = tokens_json("CK_1").replace("AT_token", "AT_renewed");
    assert_eq!(app.put("/v1/tokens/acme", &renewed).await.status, 200);

    for query in ["", "?force=0"] {
        let r = app
            .put(&format!("/v1/tokens/acme{query}"), &tokens_json("CK_2"))
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (409, "consumer-key-mismatch")
        );
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or_default()
                .contains("force=1")
        );
        assert_eq!(
            app.get("/v1/tokens/acme").await.json()["access_token"],
            "AT_renewed"
        );
    }
    let r = app
        .put("/v1/tokens/acme?force=1", &tokens_json("CK_2"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get("/v1/tokens/acme").await.json()["consumer_key"],
        "CK_2"
    );
}

#[actix_web::test]
async fn bad_token_bodies_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.put("/v1/tokens/acme", &tokens_json("CK_1"))
            .await
            .status,
        200
    );
    let before = app.get("/v1/tokens/acme").await.json();
    let incomplete = tokens_json("CK_1").replace(r#""access_secret":"AS_secret","#, "");
    let bad_expiry = tokens_json("CK_1").replace("2027-06-01T12:00:00Z", "June");
    for body in [
        "",
        "{",
        "not json",
        "[1,2]",
        r#"["CK","CS","AT","AS","2027-06-01T12:00:00Z"]"#,
        "null",
        incomplete.as_str(),
        bad_expiry.as_str(),
    ] {
        let r = app.put("/v1/tokens/acme", body).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid-tokens"),
            "{body}"
        );
        // The same for a name not seen before: it is not created.
        let r = app.put("/v1/tokens/newname", body).await;
        assert_eq!(r.status, 400, "{body}");
    }
    assert_eq!(app.get("/v1/tokens/acme").await.json(), before);
    assert_eq!(
        app.get("/v1/tokens/newname").await.code(),
        "unknown-dep-name"
    );
    assert_eq!(
        app.put("/v1/tokens/acme?force=2", &tokens_json("X"))
            .await
            .status,
        400
    );
    assert_eq!(
        app.put("/v1/tokens/acme?forse=1", &tokens_json("X"))
            .await
            .status,
        400
    );
    assert_eq!(app.get("/v1/tokens/acme").await.json(), before);
}

#[actix_web::test]
async fn oversized_bodies_are_413_and_change_nothing() {
    let app = TestApp::spawn().await;
    let padded =
        tokens_json("CK_1").replace("{", &format!("{{\"pad\":\"{}\",", "x".repeat(70_000)));
    for path in ["/v1/tokens/acme", "/v1/config/acme"] {
        let r = app.call(Method::PUT, path, padded.as_bytes()).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (413, "body-too-large"),
            "{path}"
        );
    }
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        serde_json::json!([])
    );
}

#[actix_web::test]
async fn a_known_name_without_tokens_is_404_no_tokens() {
    let app = TestApp::spawn_with_config("[names.declared]\n").await;
    let r = app.get("/v1/tokens/declared").await;
    assert_eq!((r.status, r.code().as_str()), (404, "no-tokens"));
}
