//! Account, details, disown, activation lock, profiles and assignment,
//! beta enrollment, account-driven enrollment, observability.

use crate::helpers::{TestSim, spawn};
use depd::sim::faults::{AssignFault, AssignOutcome};
use serde_json::{Value, json};

#[actix_web::test]
async fn account_advertises_urls_and_limits() {
    let t = spawn(5);
    let token = t.session().await;
    let a = t.get("/account", &token).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/json;charset=UTF8")
    );
    let account: depd::dep::wire::Account = serde_json::from_slice(&a.body).expect("account");
    assert_eq!(account.server_name, "depsim");
    assert!(!account.server_uuid.is_empty() && !account.org_name.is_empty());
    assert_eq!(account.limit_maximum("/server/devices"), Some(1000));
    assert_eq!(account.limit_maximum("/devices/sync"), Some(1000));
    let fetch = account
        .urls
        .iter()
        .find(|u| u.uri == "/server/devices")
        .expect("fetch url");
    assert_eq!(fetch.http_method, ["POST"]);
    assert_eq!(fetch.limit.as_ref().map(|l| l.default), Some(100));
}

#[actix_web::test]
async fn unknown_paths_and_methods() {
    let t = spawn(5);
    let token = t.session().await;
    t.get("/nope", &token).await.is_error(404, "NOT_FOUND");
    t.call("DELETE", "/account", &token, 10, None)
        .await
        .is_error(405, "METHOD_NOT_ALLOWED");
}

#[actix_web::test]
async fn details_and_disown() {
    let t = spawn(5);
    let token = t.session().await;
    let serials = t.sim.serials(0, 2);
    let a = t
        .post(
            "/devices",
            &token,
            json!({"devices": [serials[0], "UNKNOWN1"]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let d = a.json();
    assert_eq!(d["devices"][&serials[0]]["response_status"], "SUCCESS");
    assert_eq!(
        d["devices"][&serials[0]]["serial_number"],
        serials[0].as_str()
    );
    assert_eq!(d["devices"]["UNKNOWN1"]["response_status"], "NOT_FOUND");
    t.post("/devices", &token, json!({"devices": []}))
        .await
        .is_error(400, "DEVICE_ID_REQUIRED");
    let a = t
        .post(
            "/devices/disown",
            &token,
            json!({"devices": [serials[1], "UNKNOWN1"]}),
        )
        .await;
    assert_eq!(
        a.json()["devices"],
        json!({serials[1].clone(): "SUCCESS", "UNKNOWN1": "NOT_ACCESSIBLE"})
    );
    assert!(t.sim.device(&serials[1]).expect("state").disowned);
    let d = t
        .post("/devices", &token, json!({"devices": [serials[1]]}))
        .await
        .json();
    assert_eq!(d["devices"][&serials[1]]["response_status"], "NOT_FOUND");
    let a = t
        .post("/devices/disown", &token, json!({"devices": [serials[1]]}))
        .await;
    assert_eq!(a.json()["devices"][&serials[1]], "NOT_ACCESSIBLE");
}

#[actix_web::test]
async fn activation_lock() {
    let t = spawn(5);
    let token = t.session().await;
    let serial = t.sim.serials(0, 1).remove(0);
    let a = t
        .post(
            "/device/activationlock",
            &token,
            json!({"device": serial, "escrow_key": "abc", "lost_message": "call IT"}),
        )
        .await;
    let first = a.json()["response_status"].clone();
    assert!(
        first == "SUCCESS" || first == "DEVICE_NOT_SUPPORTED",
        "{first}"
    );
    if first == "SUCCESS" {
        let again = t
            .post("/device/activationlock", &token, json!({"device": serial}))
            .await
            .json();
        assert_eq!(again["response_status"], "DEVICE_ALREADY_LOCKED");
        assert!(t.sim.device(&serial).expect("state").activation_locked);
    }
    let a = t
        .post(
            "/device/activationlock",
            &token,
            json!({"device": "UNKNOWN1"}),
        )
        .await
        .json();
    assert_eq!(
        a,
        json!({"serial_number": "UNKNOWN1", "response_status": "NOT_ACCESSIBLE"})
    );
    t.post("/device/activationlock", &token, json!({}))
        .await
        .is_error(400, "DEVICE_ID_REQUIRED");
}

async fn define(t: &TestSim, token: &str, body: Value) -> Value {
    let a = t.post("/profile", token, body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

#[actix_web::test]
async fn profiles_are_validated_stored_and_read_back() {
    let t = spawn(5);
    let token = t.session().await;
    t.post("/profile", &token, json!({"url": "https://mdm"}))
        .await
        .is_error(400, "CONFIG_NAME_REQUIRED");
    t.post("/profile", &token, json!({"profile_name": "P"}))
        .await
        .is_error(400, "CONFIG_URL_REQUIRED");
    t.post(
        "/profile",
        &token,
        json!({"profile_name": "P", "url": "https://mdm", "is_supervised": "yes"}),
    )
    .await
    .is_error(400, "FLAGS_INVALID");
    let serial = t.sim.serials(0, 1).remove(0);
    let body = json!({"profile_name": "Staff", "url": "https://mdm.example/enroll", "is_supervised": true,
                      "skip_setup_items": ["Siri"], "devices": [serial, "UNKNOWN1"]});
    let p = define(&t, &token, body).await;
    let uuid = p["profile_uuid"].as_str().expect("uuid").to_owned();
    assert!(
        uuid.len() == 32
            && uuid
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert_eq!(
        p["devices"],
        json!({serial.clone(): "SUCCESS", "UNKNOWN1": "NOT_ACCESSIBLE"})
    );
    assert_eq!(t.sim.device(&serial).expect("state").profile_uuid, uuid);
    let got = t
        .get(&format!("/profile?profile_uuid={uuid}"), &token)
        .await
        .json();
    assert_eq!(got["profile_name"], "Staff");
    assert_eq!(got["skip_setup_items"], json!(["Siri"]));
    assert!(got.get("devices").is_none());
    t.get("/profile", &token)
        .await
        .is_error(400, "PROFILE_UUID_REQUIRED");
    t.get("/profile?profile_uuid=0000", &token)
        .await
        .is_error(404, "NOT_FOUND");
    assert!(t.sim.profiles().iter().any(|p| p.profile_uuid == uuid));
}

#[actix_web::test]
async fn assignment_changes_state_and_produces_sync_events() {
    let t = spawn(10);
    let token = t.session().await;
    let (serials, cursor) = t.fetch_all(&token, 1000).await;
    let uuid = define(
        &t,
        &token,
        json!({"profile_name": "P", "url": "https://mdm"}),
    )
    .await["profile_uuid"]
        .as_str()
        .expect("uuid")
        .to_owned();
    let before = t.sim.now();
    for (method, serial) in [("POST", &serials[0]), ("PUT", &serials[1])] {
        let a = t
            .call(
                method,
                "/profile/devices",
                &token,
                10,
                Some(&json!({"profile_uuid": uuid, "devices": [serial, "UNKNOWN1"]})),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let r = a.json();
        assert_eq!(r["profile_uuid"], uuid.as_str());
        assert_eq!(
            r["devices"],
            json!({serial.clone(): "SUCCESS", "UNKNOWN1": "NOT_ACCESSIBLE"})
        );
        assert!(r.get("retry_after_seconds").is_none());
        let state = t.sim.device(serial).expect("state");
        assert_eq!(
            (state.profile_uuid.as_str(), state.profile_status.as_str()),
            (uuid.as_str(), "assigned")
        );
    }
    let details = t
        .post("/devices", &token, json!({"devices": [serials[0]]}))
        .await
        .json();
    let d = &details["devices"][&serials[0]];
    assert_eq!(d["profile_status"], "assigned");
    let assigned = time::OffsetDateTime::parse(
        d["profile_assign_time"].as_str().expect("assign time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    assert!(assigned >= before.replace_nanosecond(0).expect("ns"));
    // Remove (DELETE) from the first.
    let r = t
        .call(
            "DELETE",
            "/profile/devices",
            &token,
            10,
            Some(&json!({"devices": [serials[0], "UNKNOWN1"]})),
        )
        .await
        .json();
    assert_eq!(
        r["devices"],
        json!({serials[0].clone(): "SUCCESS", "UNKNOWN1": "NOT_ACCESSIBLE"})
    );
    let state = t.sim.device(&serials[0]).expect("state");
    assert_eq!(
        (state.profile_uuid.as_str(), state.profile_status.as_str()),
        ("", "removed")
    );
    let page = t
        .post("/devices/sync", &token, json!({"cursor": cursor}))
        .await
        .json();
    let events: Vec<(&str, &str, &str, &str)> = page["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["serial_number"].as_str().unwrap_or(""),
                d["op_type"].as_str().unwrap_or(""),
                d["profile_status"].as_str().unwrap_or(""),
                d["profile_uuid"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (serials[0].as_str(), "modified", "assigned", uuid.as_str()),
            (serials[1].as_str(), "modified", "assigned", uuid.as_str()),
            (serials[0].as_str(), "modified", "removed", ""),
        ]
    );
}

#[actix_web::test]
async fn assignment_request_errors() {
    let t = spawn(5);
    let token = t.session().await;
    let serial = t.sim.serials(0, 1).remove(0);
    t.post("/profile/devices", &token, json!({"devices": [serial]}))
        .await
        .is_error(400, "PROFILE_UUID_REQUIRED");
    t.post(
        "/profile/devices",
        &token,
        json!({"profile_uuid": "0123456789ABCDEF0123456789ABCDEF", "devices": [serial]}),
    )
    .await
    .is_error(400, "PROFILE_NOT_FOUND");
    let uuid = t.sim.profiles()[0].profile_uuid.clone();
    t.post(
        "/profile/devices",
        &token,
        json!({"profile_uuid": uuid, "devices": []}),
    )
    .await
    .is_error(400, "DEVICE_ID_REQUIRED");
    let many: Vec<String> = (0..1001).map(|i| format!("S{i}")).collect();
    t.post(
        "/profile/devices",
        &token,
        json!({"profile_uuid": uuid, "devices": many}),
    )
    .await
    .is_error(400, "DEVICE_ID_LIMIT_EXCEEDED");
}

#[actix_web::test]
async fn throttled_and_failed_by_protocol_version() {
    let t = spawn(5);
    let token = t.session().await;
    let serials = t.sim.serials(0, 3);
    let uuid = t.sim.profiles()[0].profile_uuid.clone();
    let throttle = |retry| AssignFault {
        serial: serials[0].clone(),
        result: AssignOutcome::Throttled,
        retry_after_seconds: retry,
        count: Some(1),
    };
    let body = json!({"profile_uuid": uuid, "devices": [serials[0], serials[1]]});
    let cases: [(u32, &str, Option<u64>); 3] = [
        (8, "FAILED", None),
        (9, "THROTTLED", None),
        (10, "THROTTLED", Some(3600)),
    ];
    for (protocol, expected, retry) in cases {
        t.sim.add_assign_fault(throttle(Some(3600)));
        let r = t
            .call("POST", "/profile/devices", &token, protocol, Some(&body))
            .await
            .json();
        assert_eq!(r["devices"][&serials[0]], expected, "protocol {protocol}");
        assert_eq!(r["devices"][&serials[1]], "SUCCESS");
        assert_eq!(
            r["retry_after_seconds"].as_u64(),
            retry,
            "protocol {protocol}"
        );
    }
    // The fault was used up: the next attempt succeeds.
    let r = t
        .call("POST", "/profile/devices", &token, 10, Some(&body))
        .await
        .json();
    assert_eq!(r["devices"][&serials[0]], "SUCCESS");
    // FAILED through the admin API, until cleared.
    let a = t
        .admin(
            "POST",
            "/faults/assign",
            Some(json!({"serial": serials[2], "result": "FAILED"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let body = json!({"profile_uuid": uuid, "devices": [serials[2]]});
    let before = t.sim.device(&serials[2]);
    for _ in 0..2 {
        let r = t
            .post("/profile/devices", &token, body.clone())
            .await
            .json();
        assert_eq!(r["devices"][&serials[2]], "FAILED");
    }
    assert_eq!(
        t.sim.device(&serials[2]),
        before,
        "a failed assignment changes nothing"
    );
    assert_eq!(t.admin("DELETE", "/faults", None).await.status, 200);
    let r = t.post("/profile/devices", &token, body).await.json();
    assert_eq!(r["devices"][&serials[2]], "SUCCESS");
}

#[actix_web::test]
async fn beta_enrollment_tokens_and_their_fault() {
    let t = spawn(5);
    let token = t.session().await;
    let a = t.get("/os-beta-enrollment/tokens", &token).await;
    assert!(
        a.json()["betaEnrollmentTokens"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );
    t.sim.set_beta_enrollment_off(true);
    t.get("/os-beta-enrollment/tokens", &token)
        .await
        .is_error(403, "APPLE_SEED_FOR_IT_TURNED_OFF");
    let a = t
        .admin(
            "POST",
            "/faults/beta-enrollment",
            Some(json!({"off": false})),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        t.get("/os-beta-enrollment/tokens", &token).await.status,
        200
    );
}

#[actix_web::test]
async fn account_driven_enrollment_profile() {
    let t = spawn(5);
    let token = t.session().await;
    assert_eq!(
        t.get("/account-driven-enrollment/profile", &token)
            .await
            .json(),
        json!({})
    );
    let url = "https://mdm.example/.well-known/com.apple.remotemanagement";
    let a = t
        .post(
            "/account-driven-enrollment/profile",
            &token,
            json!({"mdm_service_discovery_url": url}),
        )
        .await;
    assert_eq!(a.status, 200);
    let got = t
        .get("/account-driven-enrollment/profile", &token)
        .await
        .json();
    assert_eq!(got["mdm_service_discovery_url"], url);
    t.post("/account-driven-enrollment/profile", &token, json!({}))
        .await
        .is_error(400, "MDM_SERVICE_DISCOVERY_URL_REQUIRED");
    assert_eq!(
        t.call(
            "DELETE",
            "/account-driven-enrollment/profile",
            &token,
            10,
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        t.get("/account-driven-enrollment/profile", &token)
            .await
            .json(),
        json!({})
    );
}

#[actix_web::test]
async fn stats_request_log_and_device_state() {
    let t = spawn(5);
    let token = t.session().await;
    t.post("/server/devices", &token, json!({"limit": 2})).await;
    t.get("/account", "bogus").await;
    let s = t.sim.stats();
    assert_eq!(s.session_calls, 1);
    assert_eq!(s.count_status("POST", "/server/devices", 200), 1);
    assert_eq!(s.count_status("GET", "/account", 403), 1);
    assert_eq!(s.total, 3);
    let log = t.sim.requests();
    let fetch = log
        .iter()
        .find(|r| r.path == "/server/devices")
        .expect("logged");
    assert_eq!(fetch.header("x-adm-auth-session"), Some(token.as_str()));
    assert_eq!(fetch.header("user-agent"), Some("sim-test/1"));
    assert_eq!(fetch.header("x-server-protocol-version"), Some("10"));
    assert_eq!(fetch.body, r#"{"limit":2}"#);
    // The same through the admin API.
    let stats = t.admin("GET", "/stats", None).await.json();
    assert_eq!(stats["session_calls"], 1);
    let logged = t.admin("GET", "/requests", None).await.json();
    assert_eq!(logged.as_array().map(Vec::len), Some(3));
    let serial = t.sim.serials(0, 1).remove(0);
    let state = t
        .admin("GET", &format!("/devices/{serial}"), None)
        .await
        .json();
    assert_eq!(state["serial_number"], serial.as_str());
    let all = t
        .admin("GET", "/devices?offset=0&limit=3", None)
        .await
        .json();
    assert_eq!(
        (
            all["total"].as_u64(),
            all["devices"].as_array().map(Vec::len)
        ),
        (Some(5), Some(3))
    );
    assert_eq!(
        t.admin("GET", "/profiles", None)
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(t.admin("POST", "/stats/reset", None).await.status, 200);
    assert_eq!(t.sim.stats().total, 0);
    assert!(t.sim.requests().is_empty());
    // A session token straight from the admin API works.
    let issued = t.admin("POST", "/sessions", None).await.json();
    let issued = issued["auth_session_token"].as_str().expect("token");
    assert_eq!(t.get("/account", issued).await.status, 200);
    assert_eq!(t.sim.stats().session_calls, 0);
}
