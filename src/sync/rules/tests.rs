use super::*;

const MAC: &str = "11111111111111111111111111111111";
const IPAD: &str = "22222222-2222-2222-2222-222222222222";
const PIN: &str = "33333333333333333333333333333333";
const OLD: &str = "44444444444444444444444444444444";

fn set(json: serde_json::Value) -> Result<Compiled, RuleError> {
    let s: RuleSet = serde_json::from_value(json).map_err(|e| RuleError {
        rule: None,
        message: e.to_string(),
    })?;
    s.compile(Some(OLD))
}

fn device(serial: &str, family: &str, model: &str) -> DeviceAttrs<'static> {
    DeviceAttrs {
        serial: serial.into(),
        device_family: Some(family.to_owned().into()),
        model: Some(model.to_owned().into()),
        os: Some("OSX".into()),
        description: Some("MBP 14.2 SG/M3 PRO".into()),
        color: Some("SPACE GRAY".into()),
        device_assigned_by: Some("admin@example.com".into()),
        op_type: Some("added".into()),
    }
    .normalized()
}

fn example() -> Compiled {
    set(serde_json::json!({
        "rules": [
            { "name": "lab", "match": { "serial_prefix": ["lab"] }, "action": "none" },
            { "name": "macs", "match": { "device_family": ["mac"] }, "profile_uuid": MAC },
            { "name": "ipads", "match": { "device_family": ["iPad"], "model": "ipad*" }, "profile_uuid": IPAD, "force": true },
        ],
        "pins": { "C02PIN": PIN, "C02BOTH": PIN },
        "exclude": ["c02nope", "C02BOTH"],
    }))
    .expect("valid")
}

#[test]
fn the_first_match_wins_then_the_assigner() {
    let c = example();
    let mac = device("C02MAC", "Mac", "MacBook Pro");
    assert_eq!(c.choose(&mac).target(), Some(MAC));
    assert_eq!(c.choose(&mac).label().as_deref(), Some("rule:macs"));
    assert!(!c.choose(&mac).forced());
    let ipad = device("DMPIPAD", "iPad", "IPAD PRO 11");
    assert_eq!(c.choose(&ipad).target(), Some(IPAD));
    assert!(c.choose(&ipad).forced());
    // An iPad whose model does not match the glob falls through.
    let odd = device("DMPODD", "iPad", "Tablet");
    assert_eq!(c.choose(&odd), Choice::Assigner(OLD));
    assert!(!c.choose(&odd).forced());
    // A lab serial matches "lab" first (prefix, any case): left alone.
    let lab = device("LAB0001", "Mac", "MacBook Pro");
    assert_eq!(c.choose(&lab).target(), None);
    assert_eq!(c.choose(&lab).label().as_deref(), Some("rule:lab"));
    let tv = device("TV1", "AppleTV", "Apple TV 4K");
    assert_eq!(
        set(serde_json::json!({ "rules": [] }))
            .expect("empty")
            .choose(&tv),
        Choice::Assigner(OLD)
    );
    let none = RuleSet::default().compile(None).expect("nothing");
    assert_eq!(none.choose(&tv), Choice::Nothing);
    assert!(!none.has_rules());
}

#[test]
fn pins_override_rules_and_exclusions_override_pins() {
    let c = example();
    assert_eq!(c.choose(&device("c02pin", "Mac", "x")), Choice::Pinned(PIN));
    assert_eq!(c.choose(&device("C02BOTH", "Mac", "x")), Choice::Excluded);
    assert_eq!(c.choose(&device("C02NOPE", "Mac", "x")), Choice::Excluded);
    assert_eq!(c.choose(&device("C02NOPE", "Mac", "x")).target(), None);
}

#[test]
fn every_key_of_a_match_must_hold_and_text_ignores_case() {
    let c = set(serde_json::json!({ "rules": [{
        "name": "r",
        "match": {
            "device_family": ["MAC"], "os": ["osx"], "color": ["space gray"],
            "device_assigned_by": ["ADMIN@example.com"], "op_type": ["ADDED"],
            "serials": ["c02mac"], "model": "macbook*", "description": "*m3 pro",
        },
        "profile_uuid": MAC,
    }]}))
    .expect("valid");
    let d = device("C02MAC", "Mac", "MacBook Pro");
    assert_eq!(c.choose(&d).target(), Some(MAC));
    for change in [
        |d: &mut DeviceAttrs| d.os = Some("iOS".into()),
        |d: &mut DeviceAttrs| d.color = None,
        |d: &mut DeviceAttrs| d.op_type = Some("modified".into()),
        |d: &mut DeviceAttrs| d.serial = "OTHER".into(),
        |d: &mut DeviceAttrs| d.model = Some("iMac".into()),
        |d: &mut DeviceAttrs| d.description = Some("MBA M2".into()),
        |d: &mut DeviceAttrs| d.device_assigned_by = None,
    ] {
        let mut other = d.clone();
        change(&mut other);
        let other = other.normalized();
        assert_eq!(c.choose(&other), Choice::Assigner(OLD), "{other:?}");
    }
}

#[test]
fn globs_take_star_and_question_mark_only() {
    let g = |p: &str| Glob::parse("r", "model", p).expect("glob");
    assert!(g("*").matches(""));
    assert!(g("MAC*").matches("MacBook Pro"));
    assert!(g("*pro").matches("macbook pro"));
    assert!(g("m?c*").matches("mac mini"));
    assert!(!g("m?c").matches("mac mini"));
    assert!(g("*a*b*c*").matches("xxaxxbxxcxx"));
    assert!(!g("*a*b*c*d").matches("xxaxxbxxcxx"));
    assert!(g("ÉCRAN*").matches("écran 27"));
    assert!(g("é?ran*").matches("Écran 27"));
    // Long inputs with many stars stay linear enough.
    let text = "a".repeat(5000);
    assert!(!g("*a*a*a*a*a*a*a*a*b").matches(&text));
    for bad in ["", "[abc]", "a{b,c}", "x\\*"] {
        assert!(Glob::parse("r", "model", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn bad_rule_sets_are_refused_naming_the_rule() {
    let cases = [
        (
            serde_json::json!({ "rules": [{ "name": "a", "match": {}, "profile_uuid": MAC, "action": "none" }] }),
            "rule \"a\": needs exactly one",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "match": {} }] }),
            "rule \"a\": needs exactly one",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "profile_uuid": "nope" }] }),
            "rule \"a\": profile_uuid \"nope\"",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "action": "remove" }] }),
            "rule \"a\": action \"remove\"",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "action": "none", "force": true }] }),
            "rule \"a\": force",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "profile": "macs" }] }),
            "rule \"a\": profile \"macs\"",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "match": { "model": "[x]" }, "profile_uuid": MAC }] }),
            "rule \"a\": match.model",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "match": { "os": [] }, "profile_uuid": MAC }] }),
            "rule \"a\": match.os",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "a", "profile_uuid": MAC }, { "name": "a", "profile_uuid": MAC }] }),
            "rule \"a\": the name is used",
        ),
        (
            serde_json::json!({ "rules": [{ "name": "", "profile_uuid": MAC }] }),
            "rule 1: a name",
        ),
        (
            serde_json::json!({ "pins": { "S1": "macs" } }),
            "pin \"S1\": \"macs\"",
        ),
        (
            serde_json::json!({ "exclude": [" "] }),
            "exclude: an empty serial",
        ),
    ];
    for (json, want) in cases {
        let e = set(json.clone()).expect_err("refused");
        assert!(e.to_string().starts_with(want), "{json}: {e}");
    }
    // Unknown fields anywhere are refused by the parser.
    for json in [
        serde_json::json!({ "rules": [], "extra": 1 }),
        serde_json::json!({ "rules": [{ "name": "a", "profile_uuid": MAC, "colour": "red" }] }),
        serde_json::json!({ "rules": [{ "name": "a", "match": { "family": ["Mac"] }, "profile_uuid": MAC }] }),
    ] {
        assert!(serde_json::from_value::<RuleSet>(json).is_err());
    }
}

#[test]
fn matching_rules_lists_every_rule_that_would_match() {
    let c = set(serde_json::json!({ "rules": [
        { "name": "all", "match": {}, "profile_uuid": MAC },
        { "name": "macs", "match": { "device_family": ["Mac"] }, "profile_uuid": MAC },
        { "name": "tvs", "match": { "device_family": ["AppleTV"] }, "profile_uuid": MAC },
    ]}))
    .expect("valid");
    let d = device("S", "Mac", "m");
    let matching: Vec<usize> = (0..c.rule_count())
        .filter(|i| c.rule_matches(*i, &d))
        .collect();
    assert_eq!(matching, [0, 1]);
    assert_eq!(c.rule_names().collect::<Vec<_>>(), ["all", "macs", "tvs"]);
    assert!(c.uuids().contains(MAC) && c.uuids().contains(OLD));
}

#[test]
fn attributes_come_from_apples_json() {
    let d = DeviceAttrs::from_json(
        r#"{"serial_number":"C02X","model":"MacBook Air","device_family":"Mac","os":"OSX","color":"MIDNIGHT","description":"MBA","device_assigned_by":"a@b","op_type":"added","profile_status":"empty"}"#,
    );
    assert_eq!(d.device_family.as_deref(), Some("Mac"));
    assert_eq!(d.op_type.as_deref(), Some("added"));
    assert_eq!(DeviceAttrs::from_json("not json"), DeviceAttrs::default());
    // The serial is read lower-cased; the rest as sent (matching ignores
    // case).
    assert_eq!(d.serial, "c02x");
    assert_eq!(d.model.as_deref(), Some("MacBook Air"));
}

#[test]
fn rules_and_pins_name_managed_profiles() {
    use crate::sync::profiles::{ManagedProfile, ProfileVersion};
    let v = |u: &str| ProfileVersion {
        profile_uuid: u.into(),
        defined_at: "2026-12-05T00:00:00Z".into(),
    };
    let profiles = crate::sync::profiles::Profiles::from([(
        "macs".to_string(),
        ManagedProfile {
            definition: serde_json::Map::new(),
            profile_uuid: MAC.into(),
            history: vec![v(OLD), v(MAC)],
        },
    )]);
    let set: RuleSet = serde_json::from_value(serde_json::json!({
        "rules": [{ "name": "m", "match": { "device_family": ["Mac"] }, "profile": "macs" }],
        "pins": { "S1": "macs" },
    }))
    .expect("set");
    let c = set.compile_with(None, &profiles).expect("valid");
    assert_eq!(c.choose(&device("X", "Mac", "m")).target(), Some(MAC));
    assert_eq!(c.choose(&device("S1", "iPad", "m")), Choice::Pinned(MAC));
    assert!(c.uuids().contains(OLD), "an older version is depd's too");
    assert!(set.references("macs") && !set.references("ipads"));
    assert!(set.compile(None).is_err(), "unknown without the profiles");
}
