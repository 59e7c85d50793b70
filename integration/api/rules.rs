//! Assignment rules against depsim: profiles by device family, pins and
//! exclusions, a preview that matches what applying does, a change that
//! moves exactly the devices whose target changed, and refused rule sets
//! that change nothing.

use crate::helpers::{NAME, TestApp};
use actix_web::http::Method;
use depd::sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

const DEVICES: usize = 80;

async fn setup() -> (TestApp, SimHandle) {
    let sim = Simulator::start(SimConfig {
        devices: DEVICES,
        seed: 7,
        ..SimConfig::default()
    })
    .expect("sim");
    let app = TestApp::spawn_with_config("[sync]\nauto = false\n").await;
    app.point(NAME, &sim).await;
    (app, sim)
}

/// Defines a profile in the simulator through the proxy; its UUID.
async fn define(app: &TestApp, name: &str) -> String {
    let body = json!({"profile_name": name, "url": "https://mdm.example/enroll"});
    let r = app
        .call(
            Method::POST,
            &format!("/proxy/{NAME}/profile"),
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["profile_uuid"].as_str().expect("uuid").to_owned()
}

async fn sync(app: &TestApp) {
    let r = app
        .call(Method::POST, &format!("/v1/sync/{NAME}?wait=1"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// serial → device family, from depd's inventory.
async fn families(app: &TestApp) -> BTreeMap<String, String> {
    let v = app
        .get(&format!("/v1/devices/{NAME}?limit=1000"))
        .await
        .json();
    v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["serial_number"].as_str().unwrap_or("").to_owned(),
                d["device_family"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn put_rules(app: &TestApp, body: &Value) -> crate::helpers::Reply {
    app.call(
        Method::PUT,
        &format!("/v1/rules/{NAME}"),
        body.to_string().as_bytes(),
    )
    .await
}

/// Waits (bounded) until every serial has its expected profile at depsim.
async fn settle(sim: &SimHandle, want: &BTreeMap<String, String>) {
    for _ in 0..1500 {
        if want.iter().all(|(s, p)| profile_at(sim, s) == *p) {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let wrong: Vec<_> = want
        .iter()
        .filter(|(s, p)| profile_at(sim, s) != **p)
        .map(|(s, p)| (s, p, profile_at(sim, s)))
        .collect();
    panic!("devices not on their profile: {wrong:?}");
}

/// The profile depsim shows for a serial (empty: none).
fn profile_at(sim: &SimHandle, serial: &str) -> String {
    sim.device(serial)
        .map(|d| d.profile_uuid)
        .unwrap_or_default()
}

/// The serials sent in `/profile/devices` calls logged by depsim.
fn assigned_serials(sim: &SimHandle) -> Vec<(String, String)> {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/profile/devices")
        .flat_map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let uuid = v["profile_uuid"].as_str().unwrap_or("").to_owned();
            v["devices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |s| (s.as_str().unwrap_or("").to_owned(), uuid.clone()))
        })
        .collect()
}

#[actix_web::test]
async fn rules_pins_and_exclusions_choose_each_devices_profile() {
    let (app, sim) = setup().await;
    let (mac, ipad, pin) = (
        define(&app, "Macs").await,
        define(&app, "iPads").await,
        define(&app, "Pinned").await,
    );
    sync(&app).await;
    let fam = families(&app).await;
    let of = |f: &str| -> Vec<String> {
        fam.iter()
            .filter(|(_, v)| v.as_str() == f)
            .map(|(s, _)| s.clone())
            .collect()
    };
    let initial: BTreeMap<String, String> = fam
        .keys()
        .map(|s| (s.clone(), profile_at(&sim, s)))
        .collect();
    let fresh = |f: &str| -> Vec<String> {
        of(f)
            .into_iter()
            .filter(|s| initial[s].is_empty())
            .collect()
    };
    let (macs, ipads) = (of("Mac"), of("iPad"));
    let (fresh_macs, fresh_ipads) = (fresh("Mac"), fresh("iPad"));
    assert!(fresh_macs.len() >= 3 && fresh_ipads.len() >= 3, "{fam:?}");
    // The pin is on a Mac with someone else's profile when there is one:
    // a pin takes it anyway.
    let pinned = macs
        .iter()
        .find(|s| !initial[*s].is_empty())
        .unwrap_or(&fresh_macs[0])
        .clone();
    let excluded = fresh_ipads[0].clone();
    // A serial both pinned and excluded is excluded.
    let both = fresh_ipads[1].clone();
    sim.reset_stats();
    let body = json!({
        "rules": [
            { "name": "macs", "match": { "device_family": ["mac"] }, "profile_uuid": mac },
            { "name": "ipads", "match": { "device_family": ["iPad"], "model": "*" }, "profile_uuid": ipad },
        ],
        "pins": { pinned.to_lowercase(): pin, both.clone(): pin },
        "exclude": [excluded.clone(), both.clone()],
    });
    let r = put_rules(&app, &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(app.get(&format!("/v1/rules/{NAME}")).await.json(), r.json());

    // What depd assigns: the pinned Mac, and the Macs and iPads without
    // a profile from elsewhere, but the excluded ones. depsim's own
    // population moves the others' profiles over time, so for them the
    // check is that depd sent nothing.
    let mut want = BTreeMap::new();
    want.insert(pinned.clone(), pin.clone());
    for s in fresh_macs.iter().filter(|s| **s != pinned) {
        want.insert(s.clone(), mac.clone());
    }
    for s in fresh_ipads
        .iter()
        .filter(|s| **s != excluded && **s != both)
    {
        want.insert(s.clone(), ipad.clone());
    }
    settle(&sim, &want).await;
    let sent = assigned_serials(&sim);
    assert!(
        sent.iter().all(|(s, _)| *s != excluded && *s != both),
        "excluded serials are never sent"
    );
    let sent_serials: BTreeSet<&String> = sent.iter().map(|(s, _)| s).collect();
    assert_eq!(sent_serials.len(), sent.len(), "each serial sent once");
    // The record says what chose the profile.
    let rec = |s: &str| {
        let app = &app;
        let s = s.to_owned();
        async move {
            app.get(&format!("/v1/devices/{NAME}?serial={s}"))
                .await
                .json()["devices"][0]["depd"]["assignment"]
                .clone()
        }
    };
    let other_mac = fresh_macs.iter().find(|s| **s != pinned).expect("a Mac");
    assert_eq!(rec(other_mac).await["rule"], "rule:macs");
    assert_eq!(rec(&pinned).await["rule"], "pin");
    assert_eq!(rec(&fresh_ipads[2]).await["rule"], "rule:ipads");
    // Exactly those were sent, each with its profile: devices with
    // someone else's profile, the excluded ones and the other families
    // were not.
    let sent_map: BTreeMap<String, String> = sent.iter().cloned().collect();
    assert_eq!(sent_map, want);
    let _ = (&macs, &ipads);
    assert!(rec(&excluded).await.is_null());
}

#[actix_web::test]
async fn preview_matches_what_applying_does_and_only_changed_targets_move() {
    let (app, sim) = setup().await;
    let (mac, ipad, other) = (
        define(&app, "Macs").await,
        define(&app, "iPads").await,
        define(&app, "iPads 2").await,
    );
    sync(&app).await;
    let fam = families(&app).await;
    let initial: BTreeMap<String, String> = fam
        .keys()
        .map(|s| (s.clone(), profile_at(&sim, s)))
        .collect();
    // The iPads the rules take: those without someone else's profile.
    let ipads: BTreeSet<String> = fam
        .iter()
        .filter(|(s, f)| f.as_str() == "iPad" && initial[*s].is_empty())
        .map(|(s, _)| s.clone())
        .collect();
    let all_ipads = fam.values().filter(|f| f.as_str() == "iPad").count();
    let first = json!({ "rules": [
        { "name": "macs", "match": { "device_family": ["Mac"] }, "profile_uuid": mac },
        { "name": "ipads", "match": { "device_family": ["iPad"] }, "profile_uuid": ipad },
    ]});
    assert_eq!(put_rules(&app, &first).await.status, 200);
    let settled: BTreeMap<String, String> = fam
        .iter()
        .filter(|(s, f)| initial[*s].is_empty() && matches!(f.as_str(), "Mac" | "iPad"))
        .map(|(s, f)| {
            let p = if f == "Mac" {
                mac.clone()
            } else {
                ipad.clone()
            };
            (s.clone(), p)
        })
        .collect();
    settle(&sim, &settled).await;
    // depd learns of the profiles with the next sync.
    sync(&app).await;

    // The iPads move to another profile; a rule that can match nothing
    // and one an earlier rule hides are reported.
    let second = json!({ "rules": [
        { "name": "macs", "match": { "device_family": ["Mac"] }, "profile_uuid": mac },
        { "name": "ipads", "match": { "device_family": ["iPad"] }, "profile_uuid": other },
        { "name": "more ipads", "match": { "model": "ipad*" }, "profile_uuid": mac },
        { "name": "watches", "match": { "device_family": ["Watch"] }, "action": "none" },
    ]});
    let preview = app
        .call(
            Method::POST,
            &format!("/v1/rules/{NAME}/preview"),
            second.to_string().as_bytes(),
        )
        .await;
    assert_eq!(
        preview.status,
        200,
        "{}",
        String::from_utf8_lossy(&preview.body)
    );
    let p = preview.json();
    assert_eq!(p["rules"][1]["name"], "ipads");
    assert_eq!(p["rules"][1]["devices"], all_ipads);
    assert!(
        p["rules"][1]["sample"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(
        p["moves"],
        json!([{ "from": ipad, "to": other, "devices": ipads.len() }])
    );
    assert_eq!(p["queued"], ipads.len());
    assert_eq!(p["unmatched"], json!(["watches"]));
    assert_eq!(p["shadowed"], json!(["more ipads"]));
    // The preview changed nothing.
    assert_eq!(app.get(&format!("/v1/rules/{NAME}")).await.json(), first);

    sim.reset_stats();
    assert_eq!(put_rules(&app, &second).await.status, 200);
    let mut moved = settled.clone();
    for s in &ipads {
        moved.insert(s.clone(), other.clone());
    }
    settle(&sim, &moved).await;
    let sent: BTreeSet<String> = assigned_serials(&sim).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        sent, ipads,
        "exactly the devices whose target changed were sent, as previewed"
    );
}

#[actix_web::test]
async fn invalid_rules_are_refused_and_change_nothing() {
    let (app, sim) = setup().await;
    let mac = define(&app, "Macs").await;
    sync(&app).await;
    let good = json!({ "rules": [{ "name": "macs", "match": { "device_family": ["Mac"] }, "profile_uuid": mac }] });
    assert_eq!(put_rules(&app, &good).await.status, 200);
    // Once the Macs are assigned, nothing else should be sent.
    for _ in 0..1500 {
        let st = app.get(&format!("/v1/status/{NAME}")).await.json();
        let by = &st["assignments"]["by_result"];
        if by["SUCCESS"].as_u64().unwrap_or(0) > 0 && by.get("PENDING").is_none() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sim.reset_stats();
    for (bad, says) in [
        (
            json!({ "rules": [{ "name": "x", "match": { "model": "[a]" }, "profile_uuid": mac }] }),
            "rule \"x\"",
        ),
        (
            json!({ "rules": [{ "name": "x", "profile_uuid": mac, "action": "none" }] }),
            "rule \"x\"",
        ),
        (
            json!({ "rules": [{ "name": "x", "profile": "lab" }] }),
            "rule \"x\"",
        ),
        (
            json!({ "rules": [{ "name": "x", "match": { "colour": ["red"] }, "profile_uuid": mac }] }),
            "colour",
        ),
        (json!({ "rules": [], "extra": true }), "extra"),
        (json!({ "pins": { "S1": "not-a-uuid" } }), "pin \"S1\""),
    ] {
        let r = put_rules(&app, &bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.code(), "invalid-rules");
        let message = r.json()["error"].as_str().unwrap_or("").to_owned();
        assert!(message.contains(says), "{bad}: {message}");
        let p = app
            .call(
                Method::POST,
                &format!("/v1/rules/{NAME}/preview"),
                bad.to_string().as_bytes(),
            )
            .await;
        assert_eq!(p.status, 400, "{bad}");
    }
    assert_eq!(app.get(&format!("/v1/rules/{NAME}")).await.json(), good);
    assert!(assigned_serials(&sim).is_empty(), "nothing was assigned");
    let unknown = app
        .call(
            Method::POST,
            "/v1/rules/nobody/preview",
            good.to_string().as_bytes(),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

fn profile_definitions(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/profile")
        .count()
}

#[actix_web::test]
async fn a_changed_managed_profile_is_defined_once_and_moves_exactly_its_devices() {
    let (app, sim) = setup().await;
    let put_profile = |name: &str, body: Value| {
        let app = &app;
        let name = name.to_owned();
        async move {
            app.call(
                Method::PUT,
                &format!("/v1/profiles/{NAME}/{name}"),
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    sync(&app).await;
    let fam = families(&app).await;
    let initial: BTreeMap<String, String> = fam
        .keys()
        .map(|s| (s.clone(), profile_at(&sim, s)))
        .collect();
    let fresh = |f: &str| -> BTreeSet<String> {
        fam.iter()
            .filter(|(s, v)| v.as_str() == f && initial[*s].is_empty())
            .map(|(s, _)| s.clone())
            .collect()
    };
    let (macs, ipads) = (fresh("Mac"), fresh("iPad"));

    // Bad definitions and names change nothing at Apple.
    sim.reset_stats();
    for (name, body, code) in [
        (
            "macs",
            json!({ "url": "https://mdm.example/enroll" }),
            "invalid-profile",
        ),
        (
            "macs",
            json!({ "profile_name": "M", "url": "u", "devices": ["S"] }),
            "invalid-profile",
        ),
        (
            "11111111111111111111111111111111",
            json!({ "profile_name": "M", "url": "u" }),
            "invalid-profile-name",
        ),
    ] {
        let r = put_profile(name, body).await;
        assert_eq!((r.status, r.code()), (400, code.to_owned()));
    }
    assert_eq!(profile_definitions(&sim), 0);

    let v1 = json!({ "profile_name": "Macs", "url": "https://mdm.example/enroll", "is_supervised": true });
    let r = put_profile("macs", v1.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let first = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    let r = put_profile(
        "ipads",
        json!({ "profile_name": "iPads", "url": "https://mdm.example/enroll" }),
    )
    .await;
    let ipad = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    assert_eq!(profile_definitions(&sim), 2);
    // Apple holds the definition as given.
    let at_apple = sim.profiles();
    assert!(at_apple.iter().any(|p| p.profile_uuid == first));
    // The same definition again: no new profile at Apple.
    assert_eq!(
        put_profile("macs", v1.clone()).await.json()["profile_uuid"],
        first
    );
    assert_eq!(profile_definitions(&sim), 2);

    let rules = json!({ "rules": [
        { "name": "macs", "match": { "device_family": ["Mac"] }, "profile": "macs" },
        { "name": "ipads", "match": { "device_family": ["iPad"] }, "profile": "ipads" },
    ]});
    assert_eq!(put_rules(&app, &rules).await.status, 200);
    let mut want: BTreeMap<String, String> =
        macs.iter().map(|s| (s.clone(), first.clone())).collect();
    want.extend(ipads.iter().map(|s| (s.clone(), ipad.clone())));
    settle(&sim, &want).await;
    sync(&app).await;

    // A new definition: one new profile at Apple, and exactly the Macs move.
    sim.reset_stats();
    let v2 = json!({ "profile_name": "Macs v2", "url": "https://mdm.example/enroll", "is_supervised": true });
    let r = put_profile("macs", v2.clone()).await;
    assert_eq!(r.status, 200);
    let second = r.json()["profile_uuid"].as_str().expect("uuid").to_owned();
    assert_ne!(second, first);
    let h = app.get(&format!("/v1/profiles/{NAME}/macs")).await.json();
    assert_eq!(h["definition"], v2);
    assert_eq!(h["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(h["history"][0]["profile_uuid"], first);
    assert_eq!(h["history"][1]["profile_uuid"], second);
    for s in &macs {
        want.insert(s.clone(), second.clone());
    }
    settle(&sim, &want).await;
    assert_eq!(profile_definitions(&sim), 1, "exactly one new profile");
    let sent: BTreeSet<String> = assigned_serials(&sim).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sent, macs, "exactly the devices that had the old version");

    // The list, and a delete refused while a rule names it.
    let list = app.get(&format!("/v1/profiles/{NAME}")).await.json();
    assert_eq!(list["profiles"].as_array().map(Vec::len), Some(2));
    let r = app
        .call(Method::DELETE, &format!("/v1/profiles/{NAME}/macs"), b"")
        .await;
    assert_eq!((r.status, r.code()), (409, "profile-in-use".to_owned()));
    let r = app
        .call(Method::DELETE, &format!("/v1/profiles/{NAME}/nope"), b"")
        .await;
    assert_eq!(r.status, 404);
    let only_ipads = json!({ "rules": [
        { "name": "ipads", "match": { "device_family": ["iPad"] }, "profile": "ipads" },
    ]});
    assert_eq!(put_rules(&app, &only_ipads).await.status, 200);
    let r = app
        .call(Method::DELETE, &format!("/v1/profiles/{NAME}/macs"), b"")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get(&format!("/v1/profiles/{NAME}/macs")).await.status,
        404
    );
}

/// `depd rules …` and `depd profile managed …` with the real binary.
#[actix_web::test]
async fn the_command_line_sets_checks_and_previews_rules() {
    use crate::cli::{both, depd_env};
    let (app, _sim) = setup().await;
    sync(&app).await;
    let dir = tempfile::tempdir().expect("dir");
    let profile = dir.path().join("macs.json");
    std::fs::write(
        &profile,
        r#"{"profile_name": "Macs", "url": "https://mdm.example/enroll"}"#,
    )
    .expect("write");
    let p = profile.to_str().expect("path");
    let (text, json) = both(&app, &["profile", "managed", "set", "-n", NAME, "macs", p]).await;
    assert!(text.ok().contains("profile_uuid"), "{}", text.stdout);
    assert_eq!(json.json()["name"], "macs");
    let (text, json) = both(&app, &["profile", "managed", "list", "-n", NAME]).await;
    assert!(text.ok().contains("macs"), "{}", text.stdout);
    assert_eq!(json.json()["profiles"][0]["name"], "macs");

    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"{"rules": [{"name": "macs", "match": {"device_family": ["Mac"]}, "profile": "macs"}]}"#,
    )
    .expect("write");
    let r = rules.to_str().expect("path");
    let check = depd_env(&["rules", "check", r], &[]).await;
    assert!(
        check
            .ok()
            .contains("1 rules, 0 pins, 0 excluded serials: valid")
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"rules": [{"name": "x", "match": {"model": "[a]"}, "profile_uuid": "11111111111111111111111111111111"}]}"#)
        .expect("write");
    let refused = depd_env(&["rules", "check", bad.to_str().expect("path")], &[]).await;
    assert!(refused.failed(1).contains("rule \"x\""));

    let (text, json) = both(&app, &["rules", "preview", "-n", NAME, r]).await;
    assert!(text.ok().contains("macs"), "{}", text.stdout);
    assert!(json.json()["queued"].as_u64().is_some_and(|n| n > 0));
    let (_, json) = both(&app, &["rules", "get", "-n", NAME]).await;
    assert_eq!(json.json(), json!({}), "preview changed nothing");
    let (text, _) = both(&app, &["rules", "set", "-n", NAME, r]).await;
    assert!(text.ok().contains("macs"), "{}", text.stdout);
    let (_, json) = both(&app, &["rules", "get", "-n", NAME]).await;
    assert_eq!(json.json()["rules"][0]["profile"], "macs");
    let (text, _) = both(&app, &["profile", "managed", "delete", "-n", NAME, "macs"]).await;
    assert!(text.failed(1).contains("profile-in-use"), "{}", text.stderr);
}
