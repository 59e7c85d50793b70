//! `/session`: OAuth verification, nonces, content type, session lifetime.

use crate::helpers::{JSON, oauth_header, spawn, spawn_with};
use std::time::Duration;

#[actix_web::test]
async fn a_signed_request_gets_a_session_that_works() {
    let t = spawn(10);
    let token = t.session().await;
    let a = t.get("/account", &token).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(t.sim.stats().session_calls, 1);
}

#[actix_web::test]
async fn a_wrong_secret_is_signature_invalid() {
    let t = spawn(10);
    let h = oauth_header(
        &t.url("/session"),
        &t.creds,
        "not-the-secret",
        t.now(),
        "n1",
    );
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "signature_invalid");
    // A signature over another URL (host) is wrong too.
    let other = t.url("/session").replace("127.0.0.1", "localhost");
    let h = oauth_header(&other, &t.creds, &t.creds.consumer_secret, t.now(), "n2");
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "signature_invalid");
}

#[actix_web::test]
async fn unknown_keys_and_tokens_are_refused() {
    let t = spawn(10);
    let mut creds = t.creds.clone();
    creds.consumer_key = "CK_unknown".into();
    let h = oauth_header(
        &t.url("/session"),
        &creds,
        &creds.consumer_secret,
        t.now(),
        "n1",
    );
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "consumer_key_unknown");
    let mut creds = t.creds.clone();
    creds.access_token = "AT_unknown".into();
    let h = oauth_header(
        &t.url("/session"),
        &creds,
        &creds.consumer_secret,
        t.now(),
        "n2",
    );
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "token_rejected");
    t.session_raw("Basic Zm9vOmJhcg==", Some(JSON))
        .await
        .is_error(400, "parameter_absent");
}

#[actix_web::test]
async fn a_reused_nonce_is_refused() {
    let t = spawn(10);
    let h = oauth_header(
        &t.url("/session"),
        &t.creds,
        &t.creds.consumer_secret,
        t.now(),
        "once",
    );
    assert_eq!(t.session_raw(&h, Some(JSON)).await.status, 200);
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "nonce_used");
}

#[actix_web::test]
async fn a_stale_timestamp_is_refused() {
    let t = spawn(10);
    let h = oauth_header(
        &t.url("/session"),
        &t.creds,
        &t.creds.consumer_secret,
        t.now() - 3600,
        "n",
    );
    t.session_raw(&h, Some(JSON))
        .await
        .is_error(401, "timestamp_refused");
}

#[actix_web::test]
async fn the_content_type_must_be_exact() {
    let t = spawn(10);
    for ct in [
        None,
        Some("application/json"),
        Some("application/json; charset=UTF-8"),
    ] {
        let h = oauth_header(
            &t.url("/session"),
            &t.creds,
            &t.creds.consumer_secret,
            t.now(),
            &t.fresh_nonce(),
        );
        t.session_raw(&h, ct)
            .await
            .is_error(400, "INVALID_CONTENT_TYPE");
    }
}

#[actix_web::test]
async fn sessions_expire_when_idle() {
    let t = spawn(10);
    let token = t.session().await;
    t.clock.advance(time::Duration::minutes(29));
    assert_eq!(t.get("/account", &token).await.status, 200);
    // Use refreshed the idle timer: 29 more minutes are fine, 31 are not.
    t.clock.advance(time::Duration::minutes(29));
    assert_eq!(t.get("/account", &token).await.status, 200);
    t.clock.advance(time::Duration::minutes(31));
    t.get("/account", &token)
        .await
        .is_error(401, "UNAUTHORIZED");
    t.get("/account", &token)
        .await
        .is_error(401, "UNAUTHORIZED");
}

#[actix_web::test]
async fn the_idle_time_is_configurable_and_the_admin_clock_moves() {
    let t = spawn_with(10, |c| c.session_idle = Duration::from_secs(60));
    let token = t.session().await;
    let a = t
        .admin(
            "POST",
            "/clock",
            Some(serde_json::json!({"advance_seconds": 61})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    t.get("/account", &token)
        .await
        .is_error(401, "UNAUTHORIZED");
}

#[actix_web::test]
async fn tokens_never_issued_are_forbidden() {
    let t = spawn(10);
    t.get("/account", "1413984232320O1O0123456789ABCDEF")
        .await
        .is_error(403, "FORBIDDEN");
    // No session header at all: get one first.
    let a = t.call("GET", "/account", "", 10, None).await;
    a.is_error(401, "UNAUTHORIZED");
}

#[actix_web::test]
async fn a_user_agent_is_required() {
    let t = spawn(10);
    let token = t.session().await;
    let bare = awc::Client::builder().no_default_headers().finish();
    for ua in [None, Some("")] {
        let mut req = bare
            .get(t.url("/account"))
            .insert_header(("X-ADM-Auth-Session", token.as_str()));
        if let Some(ua) = ua {
            req = req.insert_header(("User-Agent", ua));
        }
        let mut resp = req.send().await.expect("request");
        let body = resp.body().await.expect("body");
        assert_eq!(
            (resp.status().as_u16(), &body[..]),
            (400, &b"USER_AGENT_MISSING"[..])
        );
    }
}

#[actix_web::test]
async fn expiring_all_sessions() {
    let t = spawn(10);
    let token = t.session().await;
    t.sim.expire_sessions();
    t.get("/account", &token)
        .await
        .is_error(401, "UNAUTHORIZED");
    let token = t.session().await;
    assert_eq!(t.admin("POST", "/sessions/expire", None).await.status, 200);
    t.get("/account", &token)
        .await
        .is_error(401, "UNAUTHORIZED");
}

#[actix_web::test]
async fn rotation_hands_out_new_tokens_with_a_grace_period() {
    let t = spawn_with(10, |c| {
        c.rotate_sessions = true;
        c.rotation_grace = Duration::from_secs(30);
    });
    let first = t.session().await;
    let a = t.get("/account", &first).await;
    assert_eq!(a.status, 200);
    let second = a.header("X-ADM-Auth-Session").expect("rotated token");
    assert_ne!(first, second);
    // A request already in flight with the old token still succeeds.
    assert_eq!(t.get("/account", &first).await.status, 200);
    t.clock.advance(time::Duration::seconds(31));
    t.get("/account", &first)
        .await
        .is_error(401, "UNAUTHORIZED");
    assert_eq!(t.get("/account", &second).await.status, 200);
}

#[actix_web::test]
async fn a_path_prefix_is_signed_and_served() {
    let t = spawn_with(10, |c| c.path_prefix = "/dep/v1".into());
    assert!(t.sim.base_url().ends_with("/dep/v1"));
    let token = t.session().await;
    let a = t.get("/account", &token).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(t.sim.requests().iter().any(|r| r.path == "/account"));
}

#[actix_web::test]
async fn several_credential_sets() {
    let t = spawn_with(10, |c| c.credential_sets = 2);
    let sets = t.sim.credentials();
    assert_eq!(sets.len(), 2);
    assert_ne!(sets[0].consumer_key, sets[1].consumer_key);
    let h = oauth_header(
        &t.url("/session"),
        &sets[1],
        &sets[1].consumer_secret,
        t.now(),
        "n",
    );
    assert_eq!(t.session_raw(&h, Some(JSON)).await.status, 200);
    let json: serde_json::Value = serde_json::from_str(&t.sim.tokens_json()).expect("tokens json");
    for key in [
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_secret",
        "access_token_expiry",
    ] {
        assert!(json[key].as_str().is_some_and(|v| !v.is_empty()), "{key}");
    }
    assert!(depd::domain::tokens::parse(t.sim.tokens_json().as_bytes()).is_ok());
}
