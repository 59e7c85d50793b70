//! Continuous sync against depsim: cycles, cursors, failures and backoff,
//! the inventory, the assigner, and the webhook.

use crate::helpers::{NAME, Reply, TestApp};
use actix_web::http::Method;
use depd::domain::clock::{Clock, ManualClock};
use depd::sim::faults::{AssignFault, AssignOutcome, ResponseFault};
use depd::sim::{SimConfig, SimEvent, SimHandle, Simulator};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// depd on a manual clock with `config`, and a simulator of `devices`
/// whose OAuth timestamp check is off (the clocks differ on purpose).
async fn setup(config: &str, devices: usize) -> (TestApp, SimHandle, ManualClock) {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let sim = Simulator::start(SimConfig {
        devices,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let app = TestApp::spawn_with(config, Arc::new(clock.clone())).await;
    app.point(NAME, &sim).await;
    (app, sim, clock)
}

async fn sync(app: &TestApp) -> Value {
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn status(app: &TestApp) -> Value {
    app.get(&format!("/v1/status/{NAME}")).await.json()
}

async fn devices(app: &TestApp, query: &str) -> Value {
    let r = app.get(&format!("/v1/devices/{NAME}?{query}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn fetches(sim: &SimHandle) -> u64 {
    sim.stats().count("POST", "/server/devices")
}

fn syncs(sim: &SimHandle) -> u64 {
    sim.stats().count("POST", "/devices/sync")
}

/// Defines a profile in the simulator and makes it the name's assigner.
async fn assigner(app: &TestApp, name: &str) -> String {
    let body = json!({"profile_name": name, "url": "https://mdm.example/enroll"});
    let r = app
        .call(
            Method::POST,
            &format!("/proxy/{NAME}/profile"),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let uuid = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    let r = app
        .call(
            Method::PUT,
            &format!("/v1/assigner/{NAME}?profile_uuid={uuid}"),
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    uuid
}

#[actix_web::test]
async fn first_cycle_fetches_then_syncs_and_builds_the_inventory() {
    let (app, sim, _clock) = setup("[sync]\nauto = false\npage_limit = 100\n", 250).await;
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "complete");
    assert_eq!(report["devices"]["none"], 250);
    assert_eq!(report["pages"], 4, "3 fetch pages, then one sync page");
    assert_eq!((fetches(&sim), syncs(&sim)), (3, 1));
    let s = status(&app).await;
    assert_eq!(s["sync"]["phase"], "sync");
    assert_eq!(s["sync"]["last_cycle"]["result"], "complete");
    assert_eq!(s["devices"]["total"], 250);

    let all = devices(&app, "limit=10").await;
    assert_eq!(
        (
            all["total"].as_u64(),
            all["devices"].as_array().map(Vec::len)
        ),
        (Some(250), Some(10))
    );
    let first = &all["devices"][0];
    let serial = first["serial_number"].as_str().expect("serial").to_owned();
    assert!(
        first["model"].is_string() && first["depd"]["first_seen"].is_string(),
        "{first}"
    );
    let one = devices(&app, &format!("serial={serial}")).await;
    assert_eq!(one["total"], 1);

    // Changes arrive through sync, not a new fetch.
    let added = sim.event(&SimEvent::Add { count: 3 }).expect("add");
    sim.event(&SimEvent::Delete {
        serial: serial.clone(),
    })
    .expect("delete");
    let report = sync(&app).await;
    assert_eq!(
        (
            report["devices"]["added"].as_u64(),
            report["devices"]["deleted"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(fetches(&sim), 3);
    assert_eq!(devices(&app, "op_type=added").await["total"], 3);
    let gone = devices(&app, &format!("serial={serial}")).await;
    assert_eq!(
        (
            gone["devices"][0]["op_type"].as_str(),
            gone["devices"][0]["depd"]["deleted"].as_bool()
        ),
        (Some("deleted"), Some(true))
    );
    assert_eq!(
        devices(&app, "").await["total"],
        253,
        "deleted devices stay in the inventory, marked"
    );
    assert!(added.iter().all(|s| !s.is_empty()));
}

#[actix_web::test]
async fn cursor_errors_restart_a_full_fetch_and_a_repeated_cursor_ends_the_cycle() {
    let (app, sim, _clock) = setup("[sync]\nauto = false\n", 50).await;
    sync(&app).await;
    assert_eq!(fetches(&sim), 1);

    sim.add_fault(ResponseFault::new(400, "INVALID_CURSOR").on_path("/devices/sync"));
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "complete");
    assert_eq!(fetches(&sim), 2, "INVALID_CURSOR → full fetch");

    sim.advance_clock(std::time::Duration::from_secs(8 * 86_400));
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "complete");
    assert_eq!(fetches(&sim), 3, "EXPIRED_CURSOR → full fetch");

    // Apple repeating a cursor with more_to_follow: the cycle stops.
    sim.repeat_cursor(100);
    let before = syncs(&sim);
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "repeated_cursor");
    assert!(
        syncs(&sim) - before <= 2,
        "no tight loop: {}",
        syncs(&sim) - before
    );
    assert_eq!(
        status(&app).await["sync"]["last_cycle"]["result"],
        "repeated_cursor"
    );

    // Resync forgets the cursor.
    sim.repeat_cursor(0);
    let r = app
        .call(Method::POST, &format!("/v1/resync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fetches(&sim), 4);
}

#[actix_web::test]
async fn retry_after_is_honoured_and_terms_not_signed_sets_health() {
    // One failure ends the cycle here: this is about the waits between
    // cycles (in-place retries have their own test).
    let (app, sim, clock) = setup(
        "[sync]\nauto = true\ninterval_secs = 3600\nrequest_max_failures = 1\n",
        20,
    )
    .await;
    sim.add_fault(
        ResponseFault::new(503, "")
            .on_path("/server/devices")
            .header("Retry-After", "120"),
    );
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "failed");
    assert_eq!(fetches(&sim), 1);
    let next = status(&app).await["sync"]["next_sync"]
        .as_str()
        .expect("next")
        .to_owned();
    let next =
        OffsetDateTime::parse(&next, &time::format_description::well_known::Rfc3339).expect("time");
    assert!(next - clock.now() >= time::Duration::seconds(120), "{next}");

    clock.advance(time::Duration::seconds(119));
    assert_eq!(app.handle.tick().await, 0);
    assert_eq!(fetches(&sim), 1, "nothing before Apple's deadline");
    clock.advance(time::Duration::seconds(60));
    assert_eq!(app.handle.tick().await, 1);
    assert_eq!(
        sync(&app).await["outcome"],
        "complete",
        "joins the cycle the tick started"
    );
    assert_eq!(fetches(&sim), 2);

    // Terms not signed: health shows it, retries are slow.
    sim.add_fault(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/devices/sync"));
    assert_eq!(sync(&app).await["outcome"], "failed");
    let s = status(&app).await;
    assert_eq!(s["token_health"], "terms-not-signed");
    assert_eq!(s["sync"]["last_error"]["apple_code"], "T_C_NOT_SIGNED");
    clock.advance(time::Duration::minutes(30));
    assert_eq!(app.handle.tick().await, 0, "slow retry");
    // The admin accepts the terms and asks for a sync.
    assert_eq!(sync(&app).await["outcome"], "complete");
    assert_eq!(status(&app).await["token_health"], "ok");
}

#[actix_web::test]
async fn the_assigner_follows_each_candidate_rule() {
    let (app, sim, _clock) = setup("[sync]\nauto = false\n", 30).await;
    let profile = assigner(&app, "Corp").await;
    let report = sync(&app).await;
    assert_eq!(report["assignments"]["SUCCESS"], 30, "{report}");
    let serials = sim.serials(0, 30);
    assert!(
        serials
            .iter()
            .all(|s| sim.device(s).map(|d| d.profile_uuid) == Some(profile.clone()))
    );

    // Added devices; a device moved away and back; a profile removed in
    // the portal: all assigned. A profile removed through depd: not.
    let added = sim.event(&SimEvent::Add { count: 2 }).expect("add");
    sim.event(&SimEvent::MoveAwayAndBack {
        serial: serials[0].clone(),
    })
    .expect("move");
    sim.event(&SimEvent::RemoveProfile {
        serial: serials[1].clone(),
    })
    .expect("remove");
    let body = json!({"devices": [serials[2]]}).to_string();
    let r = app
        .call(
            Method::DELETE,
            &format!("/proxy/{NAME}/profile/devices"),
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        sim.device(&serials[2]).map(|d| d.profile_status),
        Some("removed".into())
    );
    let report = sync(&app).await;
    assert_eq!(report["assignments"]["SUCCESS"], 4, "{report}");
    for s in added.iter().chain(&serials[..2]) {
        assert_eq!(
            sim.device(s).map(|d| d.profile_uuid),
            Some(profile.clone()),
            "{s}"
        );
    }
    assert_eq!(
        sim.device(&serials[2]).map(|d| d.profile_status),
        Some("removed".into()),
        "depd's own removal stands"
    );
    let records = app
        .get(&format!("/v1/assignments/{NAME}?limit=1000"))
        .await
        .json();
    assert_eq!(records["assignments"].as_array().map(Vec::len), Some(32));
}

#[actix_web::test]
async fn failed_and_throttled_assignments_cool_down_and_give_up() {
    let (app, sim, clock) = setup("[sync]\nauto = false\n", 5).await;
    let serials = sim.serials(0, 5);
    sim.add_assign_fault(AssignFault {
        serial: serials[0].clone(),
        result: AssignOutcome::Failed,
        retry_after_seconds: None,
        count: None,
    });
    sim.add_assign_fault(AssignFault {
        serial: serials[1].clone(),
        result: AssignOutcome::Throttled,
        retry_after_seconds: Some(600),
        count: Some(1),
    });
    assigner(&app, "Corp").await;
    let report = sync(&app).await;
    assert_eq!(
        (
            report["assignments"]["FAILED"].as_u64(),
            report["assignments"]["THROTTLED"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let failed =
        devices(&app, &format!("serial={}", serials[0])).await["devices"][0]["depd"]["assignment"]
            .clone();
    assert_eq!(
        (failed["result"].as_str(), failed["attempts"].as_u64()),
        (Some("FAILED"), Some(1))
    );

    // Not before the cooldowns end.
    clock.advance(time::Duration::minutes(9));
    app.handle.tick().await;
    let calls = sim.stats().count("POST", "/profile/devices");
    clock.advance(time::Duration::minutes(2));
    app.handle.tick().await;
    wait_for(|| {
        sim.device(&serials[1])
            .is_some_and(|d| !d.profile_uuid.is_empty())
    })
    .await;
    assert!(
        sim.stats().count("POST", "/profile/devices") > calls,
        "THROTTLED retried after retry_after_seconds"
    );

    // FAILED: retried hourly, three attempts, then flagged.
    for attempt in 2..=3 {
        clock.advance(time::Duration::minutes(61));
        app.handle.tick().await;
        wait_for_json(&app, &serials[0], |a| {
            a["attempts"].as_u64() == Some(attempt)
        })
        .await;
    }
    let s = status(&app).await;
    assert_eq!(s["assignments"]["gave_up"], 1, "{s}");
    let calls = sim.stats().count("POST", "/profile/devices");
    clock.advance(time::Duration::hours(5));
    app.handle.tick().await;
    assert_eq!(
        sim.stats().count("POST", "/profile/devices"),
        calls,
        "given up: no more attempts"
    );
}

#[actix_web::test]
async fn a_serial_left_due_is_not_sent_twice_in_one_pass() {
    // Apple answers THROTTLED with retry_after_seconds 0, on a clock that
    // does not move: the serial is due again at once. One pass must still
    // send it only once (the next pass, at a later tick, may again).
    let (app, sim, _clock) = setup("[sync]\nauto = false\n", 3).await;
    let serials = sim.serials(0, 3);
    sim.add_assign_fault(AssignFault {
        serial: serials[0].clone(),
        result: AssignOutcome::Throttled,
        retry_after_seconds: Some(0),
        count: None,
    });
    assigner(&app, "Corp").await;
    let report = sync(&app).await;
    assert_eq!(
        report["assignments"]["THROTTLED"].as_u64(),
        Some(1),
        "{report}"
    );
    assert_eq!(
        report["assignments"]["SUCCESS"].as_u64(),
        Some(2),
        "{report}"
    );
    assert_eq!(sim.stats().count("POST", "/profile/devices"), 1);
    let a =
        devices(&app, &format!("serial={}", serials[0])).await["devices"][0]["depd"]["assignment"]
            .clone();
    assert_eq!(
        (a["result"].as_str(), a["attempts"].as_u64()),
        (Some("THROTTLED"), Some(1))
    );
}

#[actix_web::test]
async fn assignments_go_in_batches_during_the_cycle_each_serial_once() {
    // Five pages of five devices, calls of at most two serials: passes run
    // as pages arrive, one batch's answer is recorded while the next batch
    // is sent, and no serial is sent twice or left out.
    let (app, sim, _clock) = setup(
        "[sync]\nauto = false\npage_limit = 5\n[assigner]\nbatch_limit = 2\n",
        25,
    )
    .await;
    let uuid = assigner(&app, "Corp").await;
    let report = sync(&app).await;
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(
        report["assignments"]["SUCCESS"].as_u64(),
        Some(25),
        "{report}"
    );
    let mut sent = Vec::new();
    for r in sim.requests() {
        if r.method == "POST" && r.path == "/profile/devices" {
            let body: Value = serde_json::from_str(&r.body).expect("JSON");
            let devices = body["devices"].as_array().expect("devices").clone();
            assert!(
                (1..=2).contains(&devices.len()),
                "a call of {}",
                devices.len()
            );
            sent.extend(
                devices
                    .into_iter()
                    .filter_map(|d| d.as_str().map(str::to_owned)),
            );
        }
    }
    sent.sort();
    let mut expected = sim.serials(0, 25);
    expected.sort();
    assert_eq!(sent, expected, "every serial sent exactly once");
    for serial in &expected {
        let state = sim.device(serial).expect("device");
        assert_eq!(state.profile_uuid, uuid, "{serial}");
    }
    let s = status(&app).await;
    assert_eq!(s["assignments"]["by_result"]["SUCCESS"], 25, "{s}");
}

/// Waits (bounded) for work the tick started in the background; failing
/// the bound fails the test, so it is not a timing assumption.
async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the background work did not happen");
}

async fn wait_for_json(app: &TestApp, serial: &str, done: impl Fn(&Value) -> bool) {
    for _ in 0..500 {
        let body = devices(app, &format!("serial={serial}")).await;
        if done(&body["devices"][0]["depd"]["assignment"]) {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the assignment of {serial} did not change");
}

#[actix_web::test]
async fn a_new_profile_is_applied_from_the_inventory_without_a_fetch() {
    let (app, sim, _clock) = setup("[sync]\nauto = false\n", 40).await;
    assigner(&app, "First").await;
    sync(&app).await;
    let fetched = fetches(&sim);
    let second = assigner(&app, "Second").await;
    let serials = sim.serials(0, 40);
    wait_for(|| {
        serials
            .iter()
            .all(|s| sim.device(s).map(|d| d.profile_uuid) == Some(second.clone()))
    })
    .await;
    assert_eq!(fetches(&sim), fetched);
}

/// A webhook receiver that fails every other request and keeps what it
/// accepted.
struct Receiver {
    url: String,
    accepted: Arc<Mutex<Vec<Value>>>,
    _server: actix_web::dev::ServerHandle,
}

fn receiver() -> Receiver {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let accepted: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(Mutex::new(0u64));
    let (acc, c) = (accepted.clone(), calls.clone());
    let server = HttpServer::new(move || {
        let (acc, c) = (acc.clone(), c.clone());
        App::new().default_service(web::to(move |body: web::Bytes| {
            let (acc, c) = (acc.clone(), c.clone());
            async move {
                let mut n = c.lock().expect("lock");
                *n += 1;
                if *n % 2 == 1 {
                    return HttpResponse::InternalServerError().finish();
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                acc.lock().expect("lock").push(v);
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind receiver");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Receiver {
        url: format!("http://{addr}/hook"),
        accepted,
        _server: handle,
    }
}

#[actix_web::test]
async fn webhook_events_reach_an_intermittent_receiver_in_order() {
    let hook = receiver();
    let config = format!(
        "[sync]\nauto = false\npage_limit = 10\n[webhook]\nurls = [\"{}\"]\n",
        hook.url
    );
    let (app, sim, clock) = setup(&config, 35).await;
    let report = sync(&app).await;
    assert_eq!(report["pages"], 5);
    assert!(
        report["webhook_backlog"].as_u64() > Some(0),
        "the receiver failed: {report}"
    );
    for _ in 0..50 {
        if status(&app).await["webhook"]["backlog"] == 0 {
            break;
        }
        clock.advance(time::Duration::minutes(20));
        app.handle.tick().await;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&app).await["webhook"]["backlog"], 0);
    let got = hook.accepted.lock().expect("lock").clone();
    let topics: Vec<&str> = got.iter().filter_map(|e| e["topic"].as_str()).collect();
    assert_eq!(
        topics,
        ["dep.FetchDevices"; 4]
            .iter()
            .copied()
            .chain(["dep.SyncDevices"])
            .collect::<Vec<_>>()
    );
    let serials: std::collections::BTreeSet<&str> = got
        .iter()
        .filter_map(|e| e["device_response_event"]["device_response"]["devices"].as_array())
        .flatten()
        .filter_map(|d| d["serial_number"].as_str())
        .collect();
    assert_eq!(serials.len(), 35);
    assert!(
        got.iter()
            .all(|e| e["device_response_event"]["dep_name"] == NAME)
    );
    let ids: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids.len(), got.len(), "unique event ids");
    assert_eq!(fetches(&sim), 4);
}

#[actix_web::test]
async fn sync_requests_are_checked() {
    let (app, _sim, _clock) = setup("[sync]\nauto = false\n", 1).await;
    let r: Reply = app.call(Method::POST, "/v1/sync/nobody", b"").await;
    assert_eq!((r.status, r.code()), (404, "unknown-dep-name".to_owned()));
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?when=now"), b"")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        app.put("/v1/assigner/bare?profile_uuid=ABC", "")
            .await
            .status,
        200
    );
    let r = app.call(Method::POST, "/v1/sync/bare", b"").await;
    assert_eq!((r.status, r.code()), (409, "no-tokens".to_owned()));
    let r = app.get(&format!("/v1/devices/{NAME}?limit=5000")).await;
    assert_eq!(r.status, 400);
    let r = app.call(Method::POST, "/v1/sync?wait=1", b"").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["reports"][0]["dep_name"], NAME);
    assert_eq!(body["skipped"], json!(["bare"]));
}

/// The value of one series in `/metrics` text (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[actix_web::test]
async fn metrics_count_apple_calls_cycles_devices_and_assignments() {
    // Other tests use other DEP names' series; this one uses its own name.
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let sim = Simulator::start(SimConfig {
        devices: 12,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let app = TestApp::spawn_with("[sync]\nauto = false\n", Arc::new(clock)).await;
    let name = "metered";
    app.point(name, &sim).await;
    let body = json!({"profile_name": "M", "url": "https://mdm.example/e"}).to_string();
    let r = app
        .call(
            Method::POST,
            &format!("/proxy/{name}/profile"),
            body.as_bytes(),
        )
        .await;
    let uuid = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(
        app.put(&format!("/v1/assigner/{name}?profile_uuid={uuid}"), "")
            .await
            .status,
        200
    );
    let r = app
        .call(Method::POST, &format!("/v1/sync/{name}?wait=1"), b"")
        .await;
    assert_eq!(r.json()["outcome"], "complete");
    // The tick refreshes gauges such as the token's days left.
    app.handle.tick().await;
    let text = String::from_utf8(app.get("/metrics").await.body).expect("text");
    let l = |series: &str| metric(&text, series);
    assert_eq!(
        l(r#"depd_apple_sessions_total{dep_name="metered",result="ok"}"#),
        1,
        "{text}"
    );
    assert_eq!(
        l(r#"depd_apple_requests_total{dep_name="metered",endpoint="/profile",status="200"}"#),
        1
    );
    assert_eq!(
        l(
            r#"depd_apple_requests_total{dep_name="metered",endpoint="/server/devices",status="200"}"#
        ),
        1
    );
    assert_eq!(
        l(r#"depd_sync_cycles_total{dep_name="metered",outcome="complete"}"#),
        1
    );
    assert_eq!(
        l(r#"depd_sync_devices_total{dep_name="metered",op_type="none"}"#),
        12
    );
    assert_eq!(
        l(r#"depd_assignments_total{dep_name="metered",result="SUCCESS"}"#),
        12
    );
    assert!(l(r#"depd_token_days_to_expiry{dep_name="metered"}"#) > 300);
}
