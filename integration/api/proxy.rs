//! The authenticating proxy and the name's Apple session, against depsim.

use crate::helpers::{KEY, NAME, Reply, TestApp, tokens_json};
use actix_web::http::Method;
use depd::sim::SimConfig;
use depd::sim::faults::ResponseFault;
use futures_util::future::join_all;
use serde_json::{Value, json};

const NANODEP_CT: &str = "application/json;charset=UTF8";

/// A request shaped like NanoDEP's curl scripts: `-u depserver:KEY`,
/// `-A agent`, `-H 'Content-type: application/json;charset=UTF8'`,
/// `-X METHOD --data-binary @-`.
async fn nanodep(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut req = app
        .client()
        .request(method, app.url(path))
        .basic_auth("depserver", KEY)
        .insert_header(("User-Agent", "nanodep-tools/0"));
    let mut resp = match body {
        Some(b) => {
            req = req.insert_header(("Content-type", NANODEP_CT));
            req.send_body(b.to_string()).await
        }
        None => req.send().await,
    }
    .expect("request");
    let body = resp.body().limit(16 << 20).await.expect("body");
    Reply {
        status: resp.status().as_u16(),
        body: body.to_vec(),
    }
}

fn proxy(path: &str) -> String {
    format!("/proxy/{NAME}{path}")
}

#[actix_web::test]
async fn every_endpoint_family_goes_through() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let serials = sim.serials(0, 3);

    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["server_uuid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/server/devices"),
        Some(json!({"limit": 50})),
    )
    .await;
    assert_eq!(r.status, 200);
    let page = r.json();
    assert_eq!(page["devices"].as_array().map(Vec::len), Some(50));
    let cursor = page["cursor"].as_str().expect("cursor").to_owned();

    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/devices/sync"),
        Some(json!({"cursor": cursor})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/devices"),
        Some(json!({"devices": [serials[0], "NOPE"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    let details = r.json();
    assert_eq!(
        details["devices"][&serials[0]]["response_status"],
        "SUCCESS"
    );
    assert_eq!(details["devices"]["NOPE"]["response_status"], "NOT_FOUND");

    let profile =
        json!({"profile_name": "Corp", "url": "https://mdm.example/enroll", "devices": []});
    let r = nanodep(&app, Method::POST, &proxy("/profile"), Some(profile)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let uuid = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();

    let r = nanodep(
        &app,
        Method::GET,
        &proxy(&format!("/profile?profile_uuid={uuid}")),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["profile_name"], "Corp");

    for method in [Method::POST, Method::PUT] {
        let body = json!({"profile_uuid": uuid, "devices": [serials[1]]});
        let r = nanodep(&app, method, &proxy("/profile/devices"), Some(body)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["devices"][&serials[1]], "SUCCESS");
    }
    assert_eq!(
        sim.device(&serials[1]).map(|d| d.profile_uuid),
        Some(uuid.clone())
    );

    let r = nanodep(
        &app,
        Method::DELETE,
        &proxy("/profile/devices"),
        Some(json!({"devices": [serials[1]]})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["devices"][&serials[1]], "SUCCESS");

    let body = json!({"device": serials[2], "escrow_key": "0123"});
    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/device/activationlock"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["serial_number"], serials[2]);

    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/devices/disown"),
        Some(json!({"devices": [serials[0]]})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["devices"][&serials[0]], "SUCCESS");

    let r = nanodep(
        &app,
        Method::GET,
        &proxy("/os-beta-enrollment/tokens"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    let body = json!({"mdm_service_discovery_url": "https://mdm.example/.well-known"});
    let r = nanodep(
        &app,
        Method::POST,
        &proxy("/account-driven-enrollment/profile"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = nanodep(
        &app,
        Method::GET,
        &proxy("/account-driven-enrollment/profile"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    // Apple's own errors come back untouched.
    let r = nanodep(&app, Method::GET, &proxy("/profile"), None).await;
    assert_eq!(
        (
            r.status,
            String::from_utf8_lossy(&r.body).contains("PROFILE_UUID_REQUIRED")
        ),
        (400, true)
    );

    // One session served all of it.
    assert_eq!(sim.stats().session_calls, 1);
}

#[actix_web::test]
async fn header_rules_as_the_simulator_saw_them() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let mut resp = app
        .client()
        .get(app.url(&proxy("/account?x=1%202")))
        .basic_auth("depserver", KEY)
        .insert_header(("User-Agent", "caller-agent/1"))
        .insert_header(("X-ADM-Auth-Session", "caller-made-this-up"))
        .insert_header(("X-Custom", "kept"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers().get("x-adm-auth-session").is_none(),
        "the session stays with depd"
    );
    let _ = resp.body().await;

    let seen = sim.requests();
    let account = seen
        .iter()
        .rev()
        .find(|r| r.path == "/account")
        .expect("account request");
    assert_eq!(account.query, "x=1%202");
    assert_eq!(account.header("authorization"), None);
    assert_eq!(account.header("user-agent"), Some("caller-agent/1"));
    assert_eq!(account.header("x-server-protocol-version"), Some("7"));
    assert_eq!(account.header("x-custom"), Some("kept"));
    assert_eq!(
        account.header("host"),
        Some(sim.addr().to_string().as_str())
    );
    let token = account
        .header("x-adm-auth-session")
        .expect("depd's session");
    assert_ne!(token, "caller-made-this-up");

    // A caller's protocol version is kept; without a user agent depd's is sent.
    let r = send_raw(&app, &[("X-Server-Protocol-Version", "4")]).await;
    assert_eq!(r, 200);
    let seen = sim.requests();
    let last = seen
        .iter()
        .rev()
        .find(|r| r.path == "/account")
        .expect("account");
    assert_eq!(last.header("x-server-protocol-version"), Some("4"));
    assert!(
        last.header("user-agent")
            .is_some_and(|ua| ua.starts_with("depd/")),
        "{last:?}"
    );

    // Headers the caller's Connection header names are hop-by-hop too. awc
    // will not send a custom Connection header, so this one goes raw.
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nUser-Agent: raw/1\r\nAuthorization: Basic {}\r\n\
         Connection: close, X-Private\r\nX-Private: dropped\r\nX-Public: kept\r\n\r\n",
        proxy("/account"),
        openssl::base64::encode_block(format!("depserver:{KEY}").as_bytes()),
    );
    let addr = app.addr;
    let answer = actix_web::web::block(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr)?;
        conn.write_all(raw.as_bytes())?;
        let mut out = String::new();
        conn.read_to_string(&mut out)?;
        Ok::<_, std::io::Error>(out)
    })
    .await
    .expect("blocking task")
    .expect("raw request");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = sim.requests();
    let last = seen
        .iter()
        .rev()
        .find(|r| r.path == "/account")
        .expect("account");
    assert_eq!(
        (last.header("x-private"), last.header("x-public")),
        (None, Some("kept"))
    );
    assert_eq!(last.header("connection"), None);

    // The session depd opened was signed and sent with Apple's content type.
    let session = seen
        .iter()
        .find(|r| r.path == "/session")
        .expect("session request");
    assert_eq!(session.header("content-type"), Some(NANODEP_CT));
    assert!(
        session
            .header("authorization")
            .is_some_and(|a| a.starts_with("OAuth "))
    );
    assert_eq!(session.header("x-server-protocol-version"), Some("10"));
}

/// A GET of `/account` through the proxy with only these headers (awc sends
/// no user agent unless told to).
async fn send_raw(app: &TestApp, headers: &[(&str, &str)]) -> u16 {
    let mut req = app
        .client()
        .get(app.url(&proxy("/account")))
        .basic_auth("depserver", KEY)
        .no_decompress();
    for h in headers {
        req = req.insert_header(*h);
    }
    let mut resp = req.send().await.expect("request");
    let _ = resp.body().await;
    resp.status().as_u16()
}

#[actix_web::test]
async fn base_url_changes_take_effect_on_the_next_request_and_keep_the_prefix() {
    let (app, first) = TestApp::with_sim(SimConfig::default()).await;
    let second = depd::sim::Simulator::start(SimConfig {
        path_prefix: "/dep/v1".into(),
        ..SimConfig::default()
    })
    .expect("second sim");
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    assert_eq!(first.stats().count("GET", "/account"), 1);

    // Same seed, same credentials: only the base URL changes.
    let config = json!({ "base_url": second.base_url() }).to_string();
    assert_eq!(
        app.put(&format!("/v1/config/{NAME}"), &config).await.status,
        200
    );
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    assert_eq!(first.stats().count("GET", "/account"), 1);
    assert_eq!(second.stats().count("GET", "/account"), 1);
    let seen = second.requests();
    assert!(seen.iter().any(|r| r.path == "/account"), "{seen:?}");
}

#[actix_web::test]
async fn expired_sessions_are_renewed_invisibly_and_single_flight() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    assert_eq!(sim.stats().session_calls, 1);

    sim.expire_sessions();
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(sim.stats().session_calls, 2);

    sim.expire_sessions();
    let path = proxy("/account");
    let calls = (0..64).map(|_| nanodep(&app, Method::GET, &path, None));
    let replies = join_all(calls).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(
        sim.stats().session_calls,
        3,
        "64 waiting requests, one /session"
    );
}

#[actix_web::test]
async fn forbidden_sessions_are_renewed_but_other_403s_are_answers() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    sim.add_fault(ResponseFault::new(403, "FORBIDDEN").on_path("/account"));
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    assert_eq!(sim.stats().session_calls, 2);

    sim.add_fault(ResponseFault::new(403, "ACCESS_DENIED").on_path("/account"));
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (403, b"ACCESS_DENIED".as_slice())
    );
    assert_eq!(sim.stats().session_calls, 2);

    // A session rejected twice in a row is replayed only once.
    sim.add_fault(
        ResponseFault::new(401, "UNAUTHORIZED")
            .on_path("/account")
            .times(2),
    );
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(sim.stats().session_calls, 3);
}

#[actix_web::test]
async fn rotated_session_tokens_are_used_from_then_on() {
    let (app, sim) = TestApp::with_sim(SimConfig {
        rotate_sessions: true,
        ..SimConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            nanodep(&app, Method::GET, &proxy("/account"), None)
                .await
                .status,
            200
        );
    }
    let tokens: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.path == "/account")
        .filter_map(|r| r.header("x-adm-auth-session").map(str::to_owned))
        .collect();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens[0] != tokens[1] && tokens[1] != tokens[2],
        "{tokens:?}"
    );
    assert_eq!(sim.stats().session_calls, 1);
}

#[actix_web::test]
async fn the_proxy_and_depds_own_calls_share_one_session() {
    let (app, sim) = TestApp::with_sim(SimConfig {
        devices: 3,
        ..SimConfig::default()
    })
    .await;
    // A sync cycle opens the session with depd's own calls first.
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for _ in 0..2 {
        let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(sim.stats().session_calls, 1);
    let tokens: Vec<String> = sim
        .requests()
        .iter()
        .filter_map(|r| r.header("x-adm-auth-session").map(str::to_owned))
        .collect();
    assert!(tokens.len() >= 3, "{tokens:?}");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
}

#[actix_web::test]
async fn refused_sessions_are_502_with_apple_reason_and_show_on_the_name() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    sim.add_fault(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/session"));
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(
        (body["code"].as_str(), body["apple_body"].as_str()),
        (Some("session-failed"), Some("T_C_NOT_SIGNED"))
    );
    assert_eq!(body["apple_status"], 403);
    let status = app.get(&format!("/v1/status/{NAME}")).await.json();
    assert_eq!(status["token_health"], "terms-not-signed");
    assert_eq!(status["session"]["state"], "failed");
    assert_eq!(status["last_error"]["apple_code"], "T_C_NOT_SIGNED");

    // No tight loop: until the hold-off ends, Apple is not asked again.
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 502);
    assert_eq!(sim.stats().session_calls, 1);
    assert_eq!(sim.stats().count("GET", "/account"), 0);

    // New tokens (the admin accepted the terms and re-uploaded) reset it.
    let tokens = sim.tokens_json();
    assert_eq!(
        app.put(&format!("/v1/tokens/{NAME}"), &tokens).await.status,
        200
    );
    assert_eq!(
        nanodep(&app, Method::GET, &proxy("/account"), None)
            .await
            .status,
        200
    );
    let status = app.get(&format!("/v1/status/{NAME}")).await.json();
    assert_eq!(
        (
            status["token_health"].as_str(),
            status["session"]["state"].as_str()
        ),
        (Some("ok"), Some("active"))
    );
}

#[actix_web::test]
async fn a_wrong_consumer_secret_is_a_rejected_token() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let mut tokens: Value = serde_json::from_str(&sim.tokens_json()).expect("tokens");
    tokens["consumer_secret"] = json!("not-the-secret");
    let r = app
        .put(&format!("/v1/tokens/{NAME}"), &tokens.to_string())
        .await;
    assert_eq!(r.status, 200);
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["apple_status"], 401);
    let status = app.get(&format!("/v1/status/{NAME}")).await.json();
    assert_eq!(status["token_health"], "token-rejected");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rejected"))
    );
}

#[actix_web::test]
async fn bad_requests_never_reach_apple() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    // Unknown name, and a name without tokens.
    let r = nanodep(&app, Method::GET, "/proxy/nobody/account", None).await;
    assert_eq!((r.status, r.code()), (404, "unknown-dep-name".to_owned()));
    let config = json!({ "base_url": sim.base_url() }).to_string();
    assert_eq!(app.put("/v1/config/empty", &config).await.status, 200);
    let r = nanodep(&app, Method::GET, "/proxy/empty/account", None).await;
    assert_eq!((r.status, r.code()), (409, "no-tokens".to_owned()));
    // Too large a body (the default limit is 1 MiB).
    let big = json!({"devices": vec!["X".repeat(100); 20_000]});
    let r = nanodep(&app, Method::POST, &proxy("/devices"), Some(big)).await;
    assert_eq!((r.status, r.code()), (413, "body-too-large".to_owned()));
    // Bad name; no API key.
    let r = nanodep(&app, Method::GET, "/proxy/a%2F..%2Fb/account", None).await;
    assert_eq!(r.status, 400);
    let r = app
        .call_as(Method::GET, &proxy("/account"), None, b"")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(sim.stats().total, 0, "{:?}", sim.stats());
}

#[actix_web::test]
async fn unreachable_upstream_is_502() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.put(&format!("/v1/tokens/{NAME}"), &tokens_json("CK"))
            .await
            .status,
        200
    );
    // A port nothing listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = json!({ "base_url": format!("http://127.0.0.1:{port}") }).to_string();
    assert_eq!(
        app.put(&format!("/v1/config/{NAME}"), &config).await.status,
        200
    );
    let r = nanodep(&app, Method::GET, &proxy("/account"), None).await;
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(body["code"], "session-failed");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach")),
        "{body}"
    );
}
