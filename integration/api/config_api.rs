//! `GET/PUT /v1/config/{name}` and `GET/PUT /v1/assigner/{name}`.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn base_url_defaults_then_set_then_reset() {
    let app = TestApp::spawn_with_config(
        "[apple]\nbase_url = \"http://127.0.0.1:9/global\"\n[names.special]\nbase_url = \"http://127.0.0.1:9/special\"\n",
    )
    .await;
    assert_eq!(
        app.get("/v1/config/special").await.json(),
        json!({"base_url": "http://127.0.0.1:9/special"})
    );

    let r = app
        .put(
            "/v1/config/acme",
            r#"{"base_url":"https://mdmenrollment.apple.com/prefix"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"base_url": "https://mdmenrollment.apple.com/prefix"})
        )
    );
    assert_eq!(
        app.get("/v1/config/acme").await.json()["base_url"],
        "https://mdmenrollment.apple.com/prefix"
    );
    // An empty URL removes the stored one: the configured default applies.
    let r = app.put("/v1/config/acme", r#"{"base_url":""}"#).await;
    assert_eq!(r.json()["base_url"], "http://127.0.0.1:9/global");
    assert_eq!(
        app.get("/v1/config/acme").await.json()["base_url"],
        "http://127.0.0.1:9/global"
    );
}

#[actix_web::test]
async fn bad_config_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.put("/v1/config/acme", r#"{"base_url":"http://127.0.0.1:1"}"#)
            .await
            .status,
        200
    );
    for (body, code) in [
        ("", "invalid-json"),
        ("{", "invalid-json"),
        (r#"{"base_url":42}"#, "invalid-json"),
        ("[]", "invalid-json"),
        (r#"["http://127.0.0.1:2"]"#, "invalid-json"),
        (r#"{"base_url":"http://x","colour":1}"#, "invalid-json"),
        (r#"{"base_url":"ftp://127.0.0.1"}"#, "invalid-base-url"),
        (r#"{"base_url":"not a url"}"#, "invalid-base-url"),
        (r#"{"base_url":"http://x/?a=b"}"#, "invalid-base-url"),
    ] {
        let r = app.put("/v1/config/acme", body).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{body}");
        let r = app.put("/v1/config/fresh", body).await;
        assert_eq!(r.status, 400, "{body}");
    }
    assert_eq!(
        app.get("/v1/config/acme").await.json()["base_url"],
        "http://127.0.0.1:1"
    );
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        json!(["acme"])
    );
}

#[actix_web::test]
async fn assigner_keeps_its_modification_time() {
    let app = TestApp::spawn_with_config("[names.acme]\n").await;
    let r = app.get("/v1/assigner/acme").await;
    assert_eq!((r.status, r.code().as_str()), (404, "no-assigner"));

    let first = app
        .put("/v1/assigner/acme?profile_uuid=0A1B2C3D4E5F", "")
        .await;
    assert_eq!(first.status, 200);
    let first = first.json();
    assert_eq!(first["profile_uuid"], "0A1B2C3D4E5F");
    let modified = first["modified_at"].as_str().unwrap_or_default().to_owned();
    assert!(
        time::OffsetDateTime::parse(&modified, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );
    assert_eq!(app.get("/v1/assigner/acme").await.json(), first);
    // The same profile again keeps the time it was set.
    let again = app
        .put("/v1/assigner/acme?profile_uuid=0A1B2C3D4E5F", "")
        .await
        .json();
    assert_eq!(again["modified_at"], modified.as_str());
}

#[actix_web::test]
async fn bad_assigner_requests_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.put("/v1/assigner/acme?profile_uuid=P1", "")
            .await
            .status,
        200
    );
    for query in [
        "",
        "?profile_uuid=",
        "?profile_uuid=a%20b",
        "?profile_uuid=x&profile_uuid=y",
        "?uuid=P2",
        &format!("?profile_uuid={}", "A".repeat(65)),
    ] {
        let r = app.put(&format!("/v1/assigner/acme{query}"), "").await;
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            app.put(&format!("/v1/assigner/other{query}"), "")
                .await
                .status,
            400
        );
    }
    assert_eq!(
        app.get("/v1/assigner/acme").await.json()["profile_uuid"],
        "P1"
    );
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        json!(["acme"])
    );
}
