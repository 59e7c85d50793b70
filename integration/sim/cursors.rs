//! Fetch and sync: paging, cursor errors, events, the repeated cursor.

use crate::helpers::spawn;
use depd::sim::SimEvent;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

#[actix_web::test]
async fn fetch_pages_through_every_device_then_the_cursor_is_exhausted() {
    let t = spawn(250);
    let token = t.session().await;
    let (serials, last) = t.fetch_all(&token, 100).await;
    assert_eq!(serials.len(), 250);
    assert_eq!(serials, t.sim.serials(0, 250));
    assert_eq!(serials.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(t.sim.stats().count("POST", "/server/devices"), 3);
    t.post("/server/devices", &token, json!({"cursor": last}))
        .await
        .is_error(400, "EXHAUSTED_CURSOR");
    // The finished fetch cursor is where sync starts: nothing happened yet.
    let a = t
        .post("/devices/sync", &token, json!({"cursor": last}))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let page = a.json();
    assert_eq!(page["devices"], json!([]));
    assert_eq!(page["more_to_follow"], false);
    // A sync cursor given to fetch is exhausted too.
    let sync_cursor = page["cursor"].as_str().expect("cursor");
    t.post("/server/devices", &token, json!({"cursor": sync_cursor}))
        .await
        .is_error(400, "EXHAUSTED_CURSOR");
}

#[actix_web::test]
async fn device_fields_look_like_apples() {
    let t = spawn(300);
    let token = t.session().await;
    let page = t.post("/server/devices", &token, json!({})).await.json();
    let devices = page["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 100, "default limit");
    assert_eq!(page["more_to_follow"], true);
    assert!(
        page["fetched_until"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let mut families = HashSet::new();
    let mut statuses = HashSet::new();
    for d in devices {
        let serial = d["serial_number"].as_str().expect("serial");
        assert!(
            matches!(serial.len(), 10 | 12) && serial.chars().all(|c| c.is_ascii_alphanumeric())
        );
        for key in [
            "model",
            "description",
            "os",
            "device_family",
            "device_assigned_date",
            "device_assigned_by",
        ] {
            assert!(
                d[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} in {d}"
            );
        }
        let os = d["os"].as_str().expect("os");
        let family = d["device_family"].as_str().expect("family");
        let expected_os = match family {
            "Mac" => "OSX",
            "iPhone" => "iOS",
            "iPad" => "iPadOS",
            "AppleTV" => "tvOS",
            other => panic!("family {other}"),
        };
        assert_eq!(os, expected_os);
        let status = d["profile_status"].as_str().expect("profile_status");
        if matches!(status, "assigned" | "pushed") {
            assert_eq!(d["profile_uuid"].as_str().map(str::len), Some(32));
            assert!(d["profile_assign_time"].is_string());
        }
        families.insert(family.to_owned());
        statuses.insert(status.to_owned());
    }
    assert!(families.len() >= 3, "{families:?}");
    assert!(
        statuses.contains("") && statuses.contains("assigned"),
        "{statuses:?}"
    );
    // Below protocol 7 iPads report iOS.
    let old = t
        .call(
            "POST",
            "/server/devices",
            &token,
            6,
            Some(&json!({"limit": 1000})),
        )
        .await
        .json();
    let ipads: Vec<&Value> = old["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter(|d| d["device_family"] == "iPad")
        .collect();
    assert!(!ipads.is_empty() && ipads.iter().all(|d| d["os"] == "iOS"));
}

#[actix_web::test]
async fn limits_clamp_to_the_maximum() {
    let t = spawn(1500);
    let token = t.session().await;
    let page = t
        .post("/server/devices", &token, json!({"limit": 5000}))
        .await
        .json();
    assert_eq!(page["devices"].as_array().map(Vec::len), Some(1000));
    let page = t
        .post("/server/devices", &token, json!({"limit": 7}))
        .await
        .json();
    assert_eq!(page["devices"].as_array().map(Vec::len), Some(7));
}

#[actix_web::test]
async fn cursor_errors() {
    let t = spawn(20);
    let token = t.session().await;
    t.post("/devices/sync", &token, json!({}))
        .await
        .is_error(400, "CURSOR_REQUIRED");
    t.post("/devices/sync", &token, json!({"cursor": ""}))
        .await
        .is_error(400, "CURSOR_REQUIRED");
    for bad in ["garbage", "MTowOjE0NTg2MDk0NTI6MTQ1ODYwOTQ1Mg", "!!"] {
        t.post("/devices/sync", &token, json!({"cursor": bad}))
            .await
            .is_error(400, "INVALID_CURSOR");
        t.post("/server/devices", &token, json!({"cursor": bad}))
            .await
            .is_error(400, "INVALID_CURSOR");
    }
    let (_, cursor) = t.fetch_all(&token, 1000).await;
    // One changed character: the integrity check fails.
    let mut chars: Vec<char> = cursor.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    t.post("/devices/sync", &token, json!({"cursor": tampered}))
        .await
        .is_error(400, "INVALID_CURSOR");
    t.post("/devices/sync", &token, json!("not an object"))
        .await
        .is_error(400, "MALFORMED_REQUEST_BODY");
    // Seven days are fine, a second more is not.
    t.clock.advance(time::Duration::days(7));
    let token = t.session().await;
    assert_eq!(
        t.post("/devices/sync", &token, json!({"cursor": cursor}))
            .await
            .status,
        200
    );
    t.clock.advance(time::Duration::seconds(1));
    let token = t.session().await;
    t.post("/devices/sync", &token, json!({"cursor": cursor}))
        .await
        .is_error(400, "EXPIRED_CURSOR");
}

#[actix_web::test]
async fn a_fetch_cursor_expires_too() {
    let t = spawn(20);
    let token = t.session().await;
    let page = t
        .post("/server/devices", &token, json!({"limit": 5}))
        .await
        .json();
    let cursor = page["cursor"].as_str().expect("cursor").to_owned();
    t.clock.advance(time::Duration::days(8));
    let token = t.session().await;
    t.post("/server/devices", &token, json!({"cursor": cursor}))
        .await
        .is_error(400, "EXPIRED_CURSOR");
}

/// Sync events since `cursor`, all pages: (serial, op_type, profile_status) and the next cursor.
async fn sync_all(
    t: &crate::helpers::TestSim,
    token: &str,
    mut cursor: String,
    limit: u32,
) -> (Vec<(String, String, String)>, String) {
    let mut out = Vec::new();
    loop {
        let a = t
            .post(
                "/devices/sync",
                token,
                json!({"cursor": cursor, "limit": limit}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        let page = a.json();
        for d in page["devices"].as_array().expect("devices") {
            assert!(d["op_date"].as_str().is_some_and(|s| s.ends_with('Z')));
            out.push((
                d["serial_number"].as_str().expect("serial").to_owned(),
                d["op_type"].as_str().expect("op_type").to_owned(),
                d["profile_status"].as_str().expect("status").to_owned(),
            ));
        }
        cursor = page["cursor"].as_str().expect("cursor").to_owned();
        if page["more_to_follow"] == false {
            return (out, cursor);
        }
    }
}

#[actix_web::test]
async fn sync_reports_every_kind_of_event() {
    let t = spawn(30);
    let token = t.session().await;
    let (serials, cursor) = t.fetch_all(&token, 1000).await;
    let added = t.sim.event(&SimEvent::Add { count: 2 }).expect("add");
    let ev = |e: SimEvent| t.sim.event(&e).expect("event");
    ev(SimEvent::Modify {
        serial: serials[0].clone(),
    });
    ev(SimEvent::Delete {
        serial: serials[1].clone(),
    });
    ev(SimEvent::MoveAwayAndBack {
        serial: serials[2].clone(),
    });
    ev(SimEvent::RemoveProfile {
        serial: serials[3].clone(),
    });
    // Through the admin API as well.
    let a = t
        .admin(
            "POST",
            "/events",
            Some(json!({"op": "modify", "serial": serials[4]})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = t
        .admin(
            "POST",
            "/events",
            Some(json!({"op": "delete", "serial": "NOPE"})),
        )
        .await;
    assert_eq!(a.status, 400);
    let (events, cursor) = sync_all(&t, &token, cursor, 2).await;
    let expected = vec![
        (added[0].clone(), "added".into(), String::new()),
        (added[1].clone(), "added".into(), String::new()),
        (
            serials[0].clone(),
            "modified".into(),
            t.sim.device(&serials[0]).expect("d").profile_status,
        ),
        (
            serials[1].clone(),
            "deleted".into(),
            t.sim.device(&serials[1]).expect("d").profile_status,
        ),
        (serials[2].clone(), "modified".into(), "removed".into()),
        (serials[3].clone(), "modified".into(), "removed".into()),
        (
            serials[4].clone(),
            "modified".into(),
            t.sim.device(&serials[4]).expect("d").profile_status,
        ),
    ];
    assert_eq!(events, expected);
    // Nothing new: an empty page, and a deleted device is gone from fetch.
    let (events, _) = sync_all(&t, &token, cursor, 100).await;
    assert!(events.is_empty());
    let (all, _) = t.fetch_all(&token, 1000).await;
    assert_eq!(all.len(), 31);
    assert!(!all.contains(&serials[1]));
}

#[actix_web::test]
async fn events_during_a_fetch_reach_the_following_sync() {
    let t = spawn(30);
    let token = t.session().await;
    let page = t
        .post("/server/devices", &token, json!({"limit": 10}))
        .await
        .json();
    let first = page["devices"][0]["serial_number"]
        .as_str()
        .expect("serial")
        .to_owned();
    t.sim
        .event(&SimEvent::Modify {
            serial: first.clone(),
        })
        .expect("modify");
    let mut cursor = page["cursor"].as_str().expect("cursor").to_owned();
    loop {
        let page = t
            .post(
                "/server/devices",
                &token,
                json!({"cursor": cursor, "limit": 10}),
            )
            .await
            .json();
        cursor = page["cursor"].as_str().expect("cursor").to_owned();
        if page["more_to_follow"] == false {
            break;
        }
    }
    let (events, _) = sync_all(&t, &token, cursor, 100).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        (first.as_str(), "modified")
    );
}

#[actix_web::test]
async fn the_repeated_cursor_fault() {
    let t = spawn(30);
    let token = t.session().await;
    let page = t
        .post("/server/devices", &token, json!({"limit": 10}))
        .await
        .json();
    let cursor = page["cursor"].as_str().expect("cursor").to_owned();
    t.sim.repeat_cursor(2);
    for _ in 0..2 {
        let again = t
            .post(
                "/server/devices",
                &token,
                json!({"cursor": cursor, "limit": 10}),
            )
            .await
            .json();
        assert_eq!(again["cursor"], cursor.as_str());
        assert_eq!(again["more_to_follow"], true);
        assert_eq!(again["devices"], json!([]));
    }
    let next = t
        .post(
            "/server/devices",
            &token,
            json!({"cursor": cursor, "limit": 10}),
        )
        .await
        .json();
    assert_ne!(next["cursor"], cursor.as_str());
    assert_eq!(next["devices"].as_array().map(Vec::len), Some(10));
    // On sync, through the admin API.
    let (_, done) = t.fetch_all(&token, 1000).await;
    let a = t
        .admin("POST", "/faults/repeat-cursor", Some(json!({"count": 1})))
        .await;
    assert_eq!(a.status, 200);
    let again = t
        .post("/devices/sync", &token, json!({"cursor": done}))
        .await
        .json();
    assert_eq!(
        (again["cursor"].as_str(), again["more_to_follow"].as_bool()),
        (Some(done.as_str()), Some(true))
    );
    let counts: BTreeMap<u16, u64> = t
        .sim
        .stats()
        .requests
        .iter()
        .filter(|c| c.path == "/devices/sync")
        .map(|c| (c.status, c.count))
        .collect();
    assert_eq!(counts, BTreeMap::from([(200, 1)]));
}
