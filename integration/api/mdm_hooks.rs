//! The MDM service's outbound sides: the MicroMDM-compatible webhook,
//! Declarative Management forwarding, and `GetToken` for `com.apple.maid`.

use crate::helpers::{KEY, TestApp};
use crate::mdm::{
    CHECKIN_TYPE, Pki, REPORT_TYPE, UDID, device, fixture, mdm_config, plist, status,
};
use actix_web::http::Method;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request an upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Script = Arc<dyn Fn(usize, &Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// An HTTP server on 127.0.0.1:0 that records every request and answers
/// as `script` says (given the request's number, from 0).
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _server: actix_web::dev::ServerHandle,
}

pub fn upstream(script: Script) -> Upstream {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let (s, script) = (s.clone(), script.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (s, script) = (s.clone(), script.clone());
            async move {
                let seen = Seen {
                    method: req.method().to_string(),
                    path: req.uri().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: body.to_vec(),
                };
                let n = {
                    let mut all = s.lock().expect("lock");
                    all.push(seen.clone());
                    all.len() - 1
                };
                let (status, headers, body) = script(n, &seen);
                let mut resp = HttpResponse::build(
                    actix_web::http::StatusCode::from_u16(status).expect("status"),
                );
                for (k, v) in headers {
                    resp.insert_header((k, v));
                }
                resp.body(body)
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind upstream");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Upstream {
        url: format!("http://{addr}"),
        seen,
        _server: handle,
    }
}

/// base64 HMAC-SHA256, computed here with openssl directly.
fn hmac(key: &[u8], body: &[u8]) -> String {
    let pkey = openssl::pkey::PKey::hmac(key).expect("key");
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).expect("signer");
    openssl::base64::encode_block(&signer.sign_oneshot_to_vec(body).expect("sign"))
}

/// Waits (without sleeping past need) until `done` holds; a generous
/// bound fails the test.
async fn until(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn webhook_events_arrive_signed_in_order_through_failures() {
    // The receiver refuses every other delivery: each event is retried.
    let hook = upstream(Arc::new(|n, _| {
        (if n % 2 == 0 { 503 } else { 200 }, vec![], vec![])
    }));
    let pki = Pki::new();
    let config = mdm_config(
        &pki,
        &format!(
            "webhook_url = \"{}/hook\"\nwebhook_hmac_key = \"12345\"\n\n[webhook]\nretry_first_secs = 1\nretry_max_secs = 1",
            hook.url
        ),
    );
    let app = TestApp::spawn_with_config(&config).await;
    let id = pki.identity("dev");
    let auth = fixture("Authenticate.2.plist");
    let tu = fixture("TokenUpdate.2.plist");
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &auth, Some(&id))
            .await
            .status,
        200
    );
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &tu, Some(&id))
            .await
            .status,
        200
    );
    let idle = status(UDID, "Idle", "");
    assert_eq!(
        device(&app, "/mdm?tenant=a", REPORT_TYPE, &idle, Some(&id))
            .await
            .status,
        200
    );
    // A refused request has no event.
    let stranger = pki.identity("stranger");
    assert_eq!(
        device(&app, "/mdm", REPORT_TYPE, &idle, Some(&stranger))
            .await
            .status,
        500
    );

    let delivered = || {
        hook.seen
            .lock()
            .expect("lock")
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 2 == 1)
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
    };
    until(|| delivered().len() >= 3).await;
    let got = delivered();
    let events: Vec<Value> = got
        .iter()
        .map(|s| serde_json::from_slice(&s.body).expect("json"))
        .collect();
    let topics: Vec<&str> = events
        .iter()
        .map(|e| e["topic"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        topics,
        ["mdm.Authenticate", "mdm.TokenUpdate", "mdm.Connect"]
    );
    for s in &got {
        assert_eq!(
            s.header("X-Hmac-Signature"),
            Some(hmac(b"12345", &s.body).as_str())
        );
        assert_eq!(
            s.header("Content-Type"),
            Some("application/json; charset=utf-8")
        );
        let text = String::from_utf8_lossy(&s.body);
        assert!(
            !text.contains(": ") && !text.contains('\n'),
            "compact, as Go writes it"
        );
    }
    let a = &events[0]["checkin_event"];
    assert_eq!(a["udid"], UDID);
    assert_eq!(
        a["ids"],
        serde_json::json!({ "id": UDID, "type": "Device" })
    );
    assert_eq!(
        openssl::base64::decode_block(a["raw_payload"].as_str().unwrap_or("")).expect("base64"),
        auth
    );
    assert_eq!(events[1]["checkin_event"]["token_update_tally"], 1);
    let c = &events[2]["acknowledge_event"];
    assert_eq!(
        (c["status"].as_str(), c["url_params"]["tenant"].as_str()),
        (Some("Idle"), Some("a"))
    );
    assert!(
        events[0]["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(events[0]["event_id"].as_str().map(str::len), Some(16));
    // Each event was first refused, then delivered once: 6 requests.
    assert_eq!(hook.seen.lock().expect("lock").len(), 6);
    // The same event_id on the retry of an event.
    let all = hook.seen.lock().expect("lock").clone();
    assert_eq!(all[0].body, all[1].body);
}

fn dm_checkin(endpoint: &str, data: Option<&[u8]>) -> Vec<u8> {
    let data = data
        .map(|d| {
            format!(
                "<key>Data</key><data>{}</data>",
                openssl::base64::encode_block(d)
            )
        })
        .unwrap_or_default();
    plist(&format!(
        "<key>MessageType</key><string>DeclarativeManagement</string><key>UDID</key><string>{UDID}</string><key>Endpoint</key><string>{endpoint}</string>{data}"
    ))
}

#[actix_web::test]
async fn declarative_management_is_forwarded_with_hmacs() {
    // NanoMDM's known answer: send key pwOut, receive key pwIn; the
    // service answers {"foo":"bar"} signed with pwIn (or, for `bad`, with
    // another key).
    let dm = upstream(Arc::new(|_, seen| {
        let body = br#"{"foo":"bar"}"#.to_vec();
        let key: &[u8] = if seen.path.ends_with("/bad") {
            b"nope"
        } else {
            b"pwIn"
        };
        let status = if seen.path.ends_with("/down") {
            502
        } else {
            200
        };
        (
            status,
            vec![("X-Hmac-Signature".into(), hmac(key, &body))],
            body,
        )
    }));
    let pki = Pki::new();
    let config = mdm_config(
        &pki,
        &format!(
            "dm_url = \"{}/dm/\"\ndm_send_hmac_key = \"pwOut\"\ndm_recv_hmac_key = \"pwIn\"",
            dm.url
        ),
    );
    let app = TestApp::spawn_with_config(&config).await;
    let id = pki.identity("dev");
    assert_eq!(
        device(
            &app,
            "/mdm",
            CHECKIN_TYPE,
            &fixture("Authenticate.2.plist"),
            Some(&id)
        )
        .await
        .status,
        200
    );

    let r = device(
        &app,
        "/mdm",
        CHECKIN_TYPE,
        &dm_checkin("status", Some(br#"{"baz":"foo"}"#)),
        Some(&id),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &br#"{"foo":"bar"}"#[..])
    );
    let r = device(
        &app,
        "/mdm",
        CHECKIN_TYPE,
        &dm_checkin("declaration-items", None),
        Some(&id),
    )
    .await;
    assert_eq!(r.status, 200);
    {
        let seen = dm.seen.lock().expect("lock");
        let put = &seen[0];
        assert_eq!(
            (put.method.as_str(), put.path.as_str()),
            ("PUT", "/dm/status")
        );
        assert_eq!(put.body, br#"{"baz":"foo"}"#);
        assert_eq!(
            put.header("X-Hmac-Signature"),
            Some(hmac(b"pwOut", br#"{"baz":"foo"}"#).as_str())
        );
        assert_eq!(put.header("Content-Type"), Some("application/json"));
        assert_eq!(put.header("X-Enrollment-ID"), Some(UDID));
        assert_eq!(put.header("X-Enrollment-Type"), Some("Device"));
        assert_eq!(put.header("X-Enrollment-ParentID"), None);
        let get = &seen[1];
        assert_eq!(
            (get.method.as_str(), get.path.as_str()),
            ("GET", "/dm/declaration-items")
        );
        assert_eq!(
            get.header("X-Hmac-Signature"),
            Some(hmac(b"pwOut", b"").as_str())
        );
    }
    // A badly signed answer, an upstream error, an endpoint leaving the
    // service.
    let bad = device(
        &app,
        "/mdm",
        CHECKIN_TYPE,
        &dm_checkin("bad", None),
        Some(&id),
    )
    .await;
    assert_eq!(bad.status, 500);
    let down = device(
        &app,
        "/mdm",
        CHECKIN_TYPE,
        &dm_checkin("down", None),
        Some(&id),
    )
    .await;
    assert_eq!(down.status, 500);
    assert!(
        down.body.ends_with(br#"{"foo":"bar"}"#),
        "upstream body appended, as NanoMDM"
    );
    let away = device(
        &app,
        "/mdm",
        CHECKIN_TYPE,
        &dm_checkin("https://evil.example/x", None),
        Some(&id),
    )
    .await;
    assert_eq!(away.status, 400);
    assert_eq!(
        dm.seen.lock().expect("lock").len(),
        4,
        "nothing sent for the refused endpoint"
    );
}

#[actix_web::test]
async fn migration_needs_it_enabled_and_reload_applies_mdm_settings() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let r = app
        .call_as(
            Method::PUT,
            "/migration",
            Some(("nanomdm", KEY)),
            &fixture("Authenticate.2.plist"),
        )
        .await;
    assert_eq!(r.status, 404);
    app.reload_config(&mdm_config(&pki, "migration = true"))
        .await;
    let r = app
        .call_as(
            Method::PUT,
            "/migration",
            Some(("nanomdm", KEY)),
            &fixture("Authenticate.2.plist"),
        )
        .await;
    assert_eq!(r.status, 200);
    // UserAuthenticate's zero-length challenge, switched on by a reload.
    let id = pki.identity("dev");
    let ua = plist(&format!(
        "<key>MessageType</key><string>UserAuthenticate</string><key>UDID</key><string>{UDID}</string><key>UserID</key><string>U1</string>"
    ));
    // Migrated devices have no binding: bind through Authenticate first.
    assert_eq!(
        device(
            &app,
            "/mdm",
            CHECKIN_TYPE,
            &fixture("Authenticate.2.plist"),
            Some(&id)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &ua, Some(&id))
            .await
            .status,
        410
    );
    app.reload_config(&mdm_config(&pki, "user_authenticate_zero_challenge = true"))
        .await;
    let r = device(&app, "/mdm", CHECKIN_TYPE, &ua, Some(&id)).await;
    assert_eq!(r.status, 200);
    let v = plist::Value::from_reader(std::io::Cursor::new(&r.body)).expect("plist");
    assert_eq!(
        v.as_dictionary()
            .and_then(|d| d.get("DigestChallenge"))
            .and_then(|c| c.as_string()),
        Some("")
    );
}

/// Verifies an RS256 JWT's signature with `cert`'s public key.
fn verify_rs256(jwt: &str, cert_pem: &[u8]) -> bool {
    let cert = openssl::x509::X509::from_pem(cert_pem).expect("cert");
    let key = cert.public_key().expect("key");
    let mut parts = jwt.rsplitn(2, '.');
    let (Some(sig), Some(signed)) = (parts.next(), parts.next()) else {
        return false;
    };
    let mut b64 = sig.replace('-', "+").replace('_', "/");
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    let sig = openssl::base64::decode_block(&b64).expect("signature");
    let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)
        .expect("verifier");
    v.update(signed.as_bytes()).expect("update");
    v.verify(&sig).unwrap_or(false)
}

#[actix_web::test]
async fn get_token_answers_the_maid_jwt_of_the_name_that_synced_the_device() {
    use depd::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        devices: 5,
        ..SimConfig::default()
    })
    .expect("sim");
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let current = crate::exchange::exchange(&app, &sim, openssl::symm::Cipher::aes_256_cbc()).await;
    let r = app
        .call(
            Method::POST,
            &format!("/v1/sync/{}?wait=1", crate::helpers::NAME),
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let devices = app
        .get(&format!("/v1/devices/{}?limit=1", crate::helpers::NAME))
        .await
        .json();
    let serial = devices["devices"][0]["serial_number"]
        .as_str()
        .expect("serial")
        .to_owned();
    let account = app
        .get(&format!("/proxy/{}/account", crate::helpers::NAME))
        .await
        .json();

    let id = pki.identity("dev");
    let auth = plist(&format!(
        "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>{UDID}</string><key>SerialNumber</key><string>{serial}</string><key>Topic</key><string>com.apple.mgmt.t</string>"
    ));
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &auth, Some(&id))
            .await
            .status,
        200
    );
    let get_token = plist(&format!(
        "<key>MessageType</key><string>GetToken</string><key>UDID</key><string>{UDID}</string><key>TokenServiceType</key><string>com.apple.maid</string>"
    ));
    let r = device(&app, "/mdm", CHECKIN_TYPE, &get_token, Some(&id)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = plist::Value::from_reader(std::io::Cursor::new(&r.body)).expect("plist");
    let token = v
        .as_dictionary()
        .and_then(|d| d.get("TokenData"))
        .and_then(|t| t.as_data())
        .expect("TokenData");
    let jwt = String::from_utf8(token.to_vec()).expect("text");
    let claims = crate::exchange::jwt_claims(&jwt);
    assert_eq!(claims["service_type"], "com.apple.maid");
    assert_eq!(claims["iss"], account["server_uuid"]);
    // Signed by the name's current token-PKI key, whose certificate Apple
    // encrypted the tokens to.
    assert!(verify_rs256(&jwt, &current), "signed with the current key");
    let staging = app
        .get(&format!("/v1/tokenpki/{}?cn=other", crate::helpers::NAME))
        .await;
    assert!(
        !verify_rs256(&jwt, &staging.body),
        "not with a new staging key"
    );

    // A device no DEP name synced: 500 until a default name is set.
    let other = pki.identity("other");
    let stranger_auth = plist(
        "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>OTHER</string><key>SerialNumber</key><string>NOT-SYNCED</string><key>Topic</key><string>com.apple.mgmt.t</string>",
    );
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &stranger_auth, Some(&other))
            .await
            .status,
        200
    );
    let gt = get_token_for("OTHER");
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &gt, Some(&other))
            .await
            .status,
        500
    );
    app.reload_config(&mdm_config(
        &pki,
        &format!("maid_default_dep_name = \"{}\"", crate::helpers::NAME),
    ))
    .await;
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &gt, Some(&other))
            .await
            .status,
        200
    );
}

fn get_token_for(udid: &str) -> Vec<u8> {
    plist(&format!(
        "<key>MessageType</key><string>GetToken</string><key>UDID</key><string>{udid}</string><key>TokenServiceType</key><string>com.apple.maid</string>"
    ))
}

#[actix_web::test]
async fn the_auth_proxy_forwards_bound_identities_with_their_enrollment_id() {
    let assets = upstream(Arc::new(|_, _| {
        (
            200,
            vec![("X-Asset".into(), "yes".into())],
            b"asset bytes".to_vec(),
        )
    }));
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(
        &pki,
        &format!("auth_proxy_url = \"{}/assets\"", assets.url),
    ))
    .await;
    let id = pki.identity("dev");
    assert_eq!(
        device(
            &app,
            "/mdm",
            CHECKIN_TYPE,
            &fixture("Authenticate.2.plist"),
            Some(&id)
        )
        .await
        .status,
        200
    );
    let get = |who: Option<&crate::mdm::Identity>| {
        let mut req = app.client().get(app.url("/authproxy/foo/bar?x=1"));
        if let Some(who) = who {
            req = req.insert_header(("Mdm-Signature", who.sign(b"")));
        }
        req.send()
    };
    let mut resp = get(Some(&id)).await.expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("X-Asset").and_then(|v| v.to_str().ok()),
        Some("yes")
    );
    assert_eq!(resp.body().await.expect("body").as_ref(), b"asset bytes");
    {
        let seen = assets.seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/assets/foo/bar?x=1");
        assert_eq!(seen[0].header("X-Enrollment-ID"), Some(UDID));
        assert_eq!(seen[0].header("Mdm-Signature"), None);
        assert_eq!(seen[0].header("X-Trace-ID").map(str::len), Some(16));
        assert_eq!(seen[0].header("X-Forwarded-For"), Some("127.0.0.1"));
    }
    // An identity bound to nothing, and none at all.
    let unbound = pki.identity("unbound");
    let mut resp = get(Some(&unbound)).await.expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.body().await.expect("body").as_ref(), b"Unauthorized\n");
    assert_eq!(get(None).await.expect("send").status().as_u16(), 400);
    assert_eq!(
        assets.seen.lock().expect("lock").len(),
        1,
        "refusals reach nothing"
    );
}
