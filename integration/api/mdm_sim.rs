//! depsim's simulated MDM devices against the real server: devices that
//! depsim's DEP side assigned a profile enroll at the profile's URL, take
//! commands, answer NotNow, check out; the results show through the
//! inspection endpoints and the DEP inventory links to the enrollments.

use crate::helpers::{NAME, TestApp};
use actix_web::http::Method;
use depd::sim::mdm::MdmFleet;
use depd::sim::{SimConfig, Simulator};
use std::time::Duration;

const DEVICES: usize = 8;

#[actix_web::test]
async fn simulated_devices_enroll_take_commands_and_check_out() {
    let sim = Simulator::start(SimConfig {
        devices: DEVICES,
        ..SimConfig::default()
    })
    .expect("sim");
    let fleet = MdmFleet::generate(3, &sim.mdm_fleet_devices(DEVICES)).expect("fleet");
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fleet.ca_pem()).expect("ca");
    let app = TestApp::spawn_with_config(&format!(
        "[mdm]\nenabled = true\nca_file = {:?}\n",
        ca.display().to_string()
    ))
    .await;
    app.point(NAME, &sim).await;

    // The DEP side: an enrollment profile whose url is depd's /mdm,
    // assigned to every device by the sync.
    let profile = serde_json::json!({ "profile_name": "depd", "url": app.url("/mdm") }).to_string();
    let r = app
        .call(
            Method::POST,
            &format!("/proxy/{NAME}/profile"),
            profile.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let uuid = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(
        app.put(&format!("/v1/assigner/{NAME}?profile_uuid={uuid}"), "")
            .await
            .status,
        200
    );
    assert_eq!(
        app.call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
            .await
            .status,
        200
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut udids = Vec::new();
    for d in fleet.devices() {
        // Assignment runs after the cycle; wait for it (bounded).
        let mut url = None;
        for _ in 0..500 {
            url = sim.mdm_server_url(&d.serial_number);
            if url.is_some() {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        let url = url.expect("the device was assigned the profile");
        assert_eq!(url, app.url("/mdm"));
        fleet.enroll(&client, &d.udid, &url).await.expect("enroll");
        udids.push(d.udid.clone());
    }
    let list = app.get("/v1/enrollments").await.json();
    assert_eq!(list["total"], DEVICES);

    // One command to every device, then each connects and answers it.
    let ids = udids.join(",");
    let cmd = depd_plist("DeviceInformation", "C-INFO");
    let r = app
        .call(Method::PUT, &format!("/v1/enqueue/{ids}?nopush=1"), &cmd)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for u in &udids {
        let report = fleet.connect(&client, u).await.expect("connect");
        assert_eq!(report.answered, ["C-INFO"]);
    }
    let d0 = &fleet.devices()[0];
    let c = app
        .get(&format!("/v1/enrollments/{}/commands?raw=1", d0.udid))
        .await
        .json();
    assert_eq!(c["results"][0]["status"], "Acknowledged");
    let result = c["results"][0]["result"].as_str().unwrap_or("");
    assert!(
        result.contains(&d0.serial_number),
        "QueryResponses hold the serial: {result}"
    );

    // NotNow: every command deferred once, then answered at the next
    // connection. An unknown command is an Error with its chain.
    fleet.set_not_now_percent(100);
    let u = &udids[1];
    app.call(
        Method::PUT,
        &format!("/v1/enqueue/{u}?nopush=1"),
        &depd_plist("ProfileList", "C-LIST"),
    )
    .await;
    app.call(
        Method::PUT,
        &format!("/v1/enqueue/{u}?nopush=1"),
        &depd_plist("Frobnicate", "C-ODD"),
    )
    .await;
    let first = fleet.connect(&client, u).await.expect("connect");
    assert_eq!(first.not_now, ["C-LIST", "C-ODD"]);
    assert!(first.answered.is_empty());
    let c = app
        .get(&format!("/v1/enrollments/{u}/commands"))
        .await
        .json();
    assert_eq!(c["queue"][0]["status"], "NotNow");
    let second = fleet.connect(&client, u).await.expect("connect");
    assert_eq!(second.answered, ["C-LIST", "C-ODD"]);
    let c = app
        .get(&format!("/v1/enrollments/{u}/commands?raw=1"))
        .await
        .json();
    let odd = c["results"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["command_uuid"] == "C-ODD")
        .expect("C-ODD result");
    assert_eq!(odd["status"], "Error");
    assert!(
        odd["result"]
            .as_str()
            .unwrap_or("")
            .contains("MCMDMErrorDomain")
    );
    assert_eq!(c["queue"].as_array().map(Vec::len), Some(0));

    // Check-out disables the enrollment.
    fleet
        .check_out(&client, &udids[2])
        .await
        .expect("check out");
    let e = app
        .get(&format!("/v1/enrollments/{}", udids[2]))
        .await
        .json();
    assert_eq!(e["enabled"], false);
    assert_eq!(
        app.get("/v1/enrollments?enabled=true").await.json()["total"],
        DEVICES - 1
    );

    // The DEP inventory links to the enrollments, and back.
    let serial = &d0.serial_number;
    let dev = app
        .get(&format!("/v1/devices/{NAME}?serial={serial}"))
        .await
        .json();
    assert_eq!(
        dev["devices"][0]["depd"]["mdm"]["enrollment_ids"][0],
        d0.udid.as_str()
    );
    let e = app
        .get(&format!("/v1/enrollments/{}", d0.udid))
        .await
        .json();
    assert_eq!(e["dep"][0]["dep_name"], NAME);
}

#[actix_web::test]
async fn a_saved_fleet_loads_with_the_same_identities() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fleet.pem");
    let serials = vec![
        ("S1".to_owned(), "iPad13,1".to_owned()),
        ("S2".to_owned(), "Mac14,2".to_owned()),
    ];
    let a = MdmFleet::load_or_generate(&path, 9, &serials).expect("generate");
    let b = MdmFleet::load_or_generate(&path, 9, &serials).expect("load");
    assert_eq!(a.ca_pem(), b.ca_pem());
    for (x, y) in a.devices().iter().zip(b.devices()) {
        assert_eq!(
            (x.udid.as_str(), x.cert_pem()),
            (y.udid.as_str(), y.cert_pem())
        );
    }
    // Another size makes a new fleet.
    let c = MdmFleet::load_or_generate(&path, 9, &serials[..1]).expect("regenerate");
    assert_ne!(a.ca_pem(), c.ca_pem());
}

fn depd_plist(request_type: &str, uuid: &str) -> Vec<u8> {
    crate::mdm::command(uuid, request_type)
}

/// `POST`s JSON to depsim's admin API; the answer's JSON.
async fn admin(client: &awc::Client, url: String, body: serde_json::Value) -> serde_json::Value {
    let mut resp = client.post(url).send_json(&body).await.expect("admin call");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().limit(16 << 20).await.expect("json")
}

#[actix_web::test]
async fn the_admin_api_makes_a_fleet_that_enrolls_and_connects_when_told() {
    let sim = Simulator::start(SimConfig {
        devices: 3,
        ..SimConfig::default()
    })
    .expect("sim");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let made = admin(
        &client,
        format!("{}/mdm/fleet", sim.admin_url()),
        serde_json::json!({ "devices": 3 }),
    )
    .await;
    assert_eq!(made["devices"], 3);
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, made["ca_pem"].as_str().expect("ca")).expect("write");
    let app = TestApp::spawn_with_config(&format!(
        "[mdm]\nenabled = true\nca_file = {:?}\n",
        ca.display().to_string()
    ))
    .await;
    // Without an assigned profile a device needs a url.
    let r = admin(
        &client,
        format!("{}/mdm/enroll", sim.admin_url()),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(r["failed"].as_array().map(Vec::len), Some(3));
    let r = admin(
        &client,
        format!("{}/mdm/enroll", sim.admin_url()),
        serde_json::json!({ "url": app.url("/mdm") }),
    )
    .await;
    assert_eq!(r["done"].as_array().map(Vec::len), Some(3), "{r}");
    let devices = {
        let mut resp = client
            .get(format!("{}/mdm/devices", sim.admin_url()))
            .send()
            .await
            .expect("devices");
        resp.json::<serde_json::Value>().await.expect("json")
    };
    let ids: Vec<String> = devices["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["udid"].as_str().map(str::to_owned))
        .collect();
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/enqueue/{}?nopush=1", ids.join(",")),
            &depd_plist("SecurityInfo", "C-SEC"),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = admin(
        &client,
        format!("{}/mdm/connect", sim.admin_url()),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(r["done"][0]["answered"][0], "C-SEC");
    let r = admin(
        &client,
        format!("{}/mdm/checkout", sim.admin_url()),
        serde_json::json!({ "udid": ids[0] }),
    )
    .await;
    assert_eq!(r["done"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/v1/enrollments?enabled=true").await.json()["total"],
        2
    );
}

/// The demo with simulated MDM devices: the real binary, a config like
/// `config/demo.toml` but small; devices sync, enroll, and answer a
/// command enqueued through the API.
#[actix_web::test]
async fn the_demo_devices_sync_enroll_and_answer_a_command() {
    use crate::helpers::{Daemon, write_config};
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        "api_key = \"demo\"\n[demo]\nname = \"demo\"\ndevices = 20\nmdm_devices = 4\nmdm_checkin_secs = 1\n[sync]\ninterval_secs = 60\n",
    );
    let data = dir.path().join("data");
    let (daemon, wired) = actix_web::web::block(move || {
        let mut d = Daemon::start(&config, &data);
        let wired = d
            .wait_for_log("demo: DEP name wired to an in-process depsim; it syncs and assigns now");
        (d, wired)
    })
    .await
    .expect("start");
    let sim_url =
        serde_json::from_str::<serde_json::Value>(&wired).expect("JSON log")["fields"]["simulator"]
            .as_str()
            .expect("the demo logs its simulator's URL")
            .to_owned();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let get = |path: &str| {
        let req = client.get(daemon.url(path)).basic_auth("depserver", "demo");
        async move {
            let mut resp = req.send().await.expect("request");
            resp.json::<serde_json::Value>().await.expect("json")
        }
    };
    let mut enrolled = serde_json::Value::Null;
    for _ in 0..1500 {
        enrolled = get("/v1/enrollments").await;
        if enrolled["total"] == 4 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(enrolled["total"], 4, "{enrolled}");
    let udid = enrolled["enrollments"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Linked to the DEP inventory it was synced into.
    let e = get(&format!("/v1/enrollments/{udid}")).await;
    assert_eq!(e["dep"][0]["dep_name"], "demo");
    // Pushed through the demo's depsim push service, which wakes the device.
    let mut resp = client
        .put(daemon.url(&format!("/v1/enqueue/{udid}")))
        .basic_auth("nanomdm", "demo")
        .send_body(depd_plist("SecurityInfo", "DEMO-1"))
        .await
        .expect("enqueue");
    assert_eq!(resp.status().as_u16(), 200);
    let answer: serde_json::Value = resp.json().await.expect("json");
    assert!(
        answer["status"][&udid]["push_result"].is_string(),
        "{answer}"
    );
    let mut woken = serde_json::Value::Null;
    for _ in 0..1500 {
        let mut r = client
            .get(format!("{sim_url}/_sim/apns"))
            .send()
            .await
            .expect("sim admin");
        woken = r.json::<serde_json::Value>().await.expect("json")["stats"]["woken"].clone();
        if woken.as_u64() >= Some(1) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(woken.as_u64() >= Some(1), "a push woke the device: {woken}");
    let mut status = serde_json::Value::Null;
    for _ in 0..1500 {
        let c = get(&format!("/v1/enrollments/{udid}/commands")).await;
        status = c["results"][0]["status"].clone();
        if status == "Acknowledged" {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "Acknowledged");
}
