//! Inspecting the MDM service: enrollments, their queues and results, and
//! the link between an enrolled device and its DEP inventory record.

use crate::helpers::{NAME, TestApp};
use crate::mdm::{
    CHECKIN_TYPE, Pki, REPORT_TYPE, UDID, command, device, fixture, mdm_config, plist, status,
};
use actix_web::http::Method;

async fn enqueue(app: &TestApp, ids: &str, body: &[u8]) {
    let r = app
        .call(Method::PUT, &format!("/v1/enqueue/{ids}?nopush=1"), body)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[actix_web::test]
async fn enrollments_queues_and_results_can_be_inspected() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let id = pki.identity("dev");
    for f in ["Authenticate.2.plist", "TokenUpdate.2.plist"] {
        assert_eq!(
            device(&app, "/mdm", CHECKIN_TYPE, &fixture(f), Some(&id))
                .await
                .status,
            200
        );
    }
    let user_tu = plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{UDID}</string><key>UserID</key><string>U1</string><key>UserShortName</key><string>ann</string><key>Topic</key><string>com.apple.mgmt.t</string><key>PushMagic</key><string>M</string><key>Token</key><data>AQID</data>"
    ));
    assert_eq!(
        device(&app, "/mdm", CHECKIN_TYPE, &user_tu, Some(&id))
            .await
            .status,
        200
    );

    let all = app.get("/v1/enrollments").await.json();
    assert_eq!(all["total"], 2);
    let users = app.get("/v1/enrollments?type=User").await.json();
    assert_eq!(users["total"], 1);
    assert_eq!(users["enrollments"][0]["id"], format!("{UDID}:U1"));
    assert_eq!(users["enrollments"][0]["parent_id"], UDID);
    assert_eq!(
        app.get("/v1/enrollments?enabled=false").await.json()["total"],
        0
    );
    assert_eq!(
        app.get("/v1/enrollments?seen_before=2000-01-01T00:00:00Z")
            .await
            .json()["total"],
        0
    );
    assert_eq!(
        app.get("/v1/enrollments?limit=1&offset=1").await.json()["enrollments"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    for bad in [
        "type=Robot",
        "enabled=maybe",
        "seen_since=yesterday",
        "colour=red",
    ] {
        let r = app.get(&format!("/v1/enrollments?{bad}")).await;
        assert_eq!((r.status, r.code().as_str()), (400, "bad-query"), "{bad}");
    }

    enqueue(&app, UDID, &command("C1", "DeviceInformation")).await;
    enqueue(&app, UDID, &command("C2", "ProfileList")).await;
    // C1 goes out and is acknowledged with a result payload.
    assert_eq!(
        device(
            &app,
            "/mdm",
            REPORT_TYPE,
            &status(UDID, "Idle", ""),
            Some(&id)
        )
        .await
        .status,
        200
    );
    let ack = fixture("DeviceInformation.1.plist");
    let ack = String::from_utf8(ack)
        .expect("text")
        .replace("76eda240-5488-4989-8339-f2ae160113c4", "C1");
    assert_eq!(
        device(&app, "/mdm", REPORT_TYPE, ack.as_bytes(), Some(&id))
            .await
            .status,
        200
    );

    let e = app.get(&format!("/v1/enrollments/{UDID}")).await.json();
    assert_eq!(e["type"], "Device");
    assert_eq!(e["device"]["serial_number"], "C02MT66KFLHH");
    assert!(
        e["device"]["identity"]["subject"]
            .as_str()
            .unwrap_or("")
            .contains("CN=TESTDEVICE")
    );
    assert_eq!(e["device"]["bootstrap_token_present"], false);
    assert_eq!(e["queue_length"], 1);
    assert_eq!(e["token_update_tally"], 1);
    let c = app
        .get(&format!("/v1/enrollments/{UDID}/commands?raw=1"))
        .await
        .json();
    assert_eq!(c["queue"][0]["command_uuid"], "C2");
    assert_eq!(c["queue"][0]["request_type"], "ProfileList");
    assert_eq!(c["results"][0]["command_uuid"], "C1");
    assert_eq!(c["results"][0]["status"], "Acknowledged");
    assert!(
        c["results"][0]["result"]
            .as_str()
            .unwrap_or("")
            .contains("fruit.example.com")
    );
    assert!(
        c["queue"][0]["command"]
            .as_str()
            .unwrap_or("")
            .contains("ProfileList")
    );
    let plain = app
        .get(&format!("/v1/enrollments/{UDID}/commands"))
        .await
        .json();
    assert!(
        plain["results"][0].get("result").is_none(),
        "raw only on request"
    );

    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/enrollments/{UDID}/queue"),
            b"",
        )
        .await;
    assert_eq!((r.status, r.json()["removed"].as_u64()), (200, Some(1)));
    assert_eq!(
        app.get(&format!("/v1/enrollments/{UDID}")).await.json()["queue_length"],
        0
    );
    let r = device(
        &app,
        "/mdm",
        REPORT_TYPE,
        &status(UDID, "Idle", ""),
        Some(&id),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "nothing left to send");

    for path in ["/v1/enrollments/NOPE", "/v1/enrollments/NOPE/commands"] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "unknown-enrollment"),
            "{path}"
        );
    }
    let r = app
        .call(Method::DELETE, "/v1/enrollments/NOPE/queue", b"")
        .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn an_enrolled_device_links_to_its_dep_record_and_back() {
    use depd::sim::{SimConfig, Simulator};
    let sim = Simulator::start(SimConfig {
        devices: 5,
        ..SimConfig::default()
    })
    .expect("sim");
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    app.point(NAME, &sim).await;
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200);
    let serial =
        app.get(&format!("/v1/devices/{NAME}?limit=1")).await.json()["devices"][0]["serial_number"]
            .as_str()
            .expect("serial")
            .to_owned();
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

    let d = app
        .get(&format!("/v1/devices/{NAME}?serial={serial}"))
        .await
        .json();
    assert_eq!(d["devices"][0]["depd"]["mdm"]["enrollment_ids"][0], UDID);
    let others = app.get(&format!("/v1/devices/{NAME}?limit=5")).await.json();
    let linked = others["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["depd"].get("mdm").is_some())
        .count();
    assert_eq!(linked, 1, "only the enrolled device carries the link");
    let e = app.get(&format!("/v1/enrollments/{UDID}")).await.json();
    assert_eq!(e["dep"][0]["dep_name"], NAME);
    assert_eq!(e["dep"][0]["serial_number"], serial.as_str());
}
