use super::*;
use crate::mdm::ids::resolve;
use crate::mdm::message::{parse_checkin, parse_report};

/// Go's zero `time.Time`, as NanoMDM's known answers carry it.
const ZERO_TIME: OffsetDateTime = time::macros::datetime!(0001-01-01 0:00 UTC);

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/testdata/nanomdm");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn known(name: &str) -> String {
    String::from_utf8(fixture(name))
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
fn checkin_event_matches_nanomdms_known_answer() {
    let raw = fixture("Authenticate.2.plist");
    let m = parse_checkin(&raw).expect("check-in");
    let id = resolve(&m.ident).expect("id");
    let params = BTreeMap::new();
    let req = Request {
        ident: &m.ident,
        id: Some(&id),
        raw: &raw,
        url_params: &params,
        event_id: "test_event_id",
        created_at: ZERO_TIME,
    };
    let body = checkin_event("Authenticate", &req, None);
    assert_eq!(body, known("Authenticate.2.json"));
    assert_eq!(
        signature(b"12345", body.as_bytes()).expect("hmac"),
        "1ob6UsJtoNPiDYTp9Ya/zoGF222Ls5ieH1PMuplaLmc="
    );
}

#[test]
fn acknowledge_event_matches_nanomdms_known_answer() {
    let raw = fixture("DeviceInformation.1.plist");
    let r = parse_report(&raw).expect("report");
    let id = resolve(&r.ident).expect("id");
    let params = BTreeMap::new();
    let req = Request {
        ident: &r.ident,
        id: Some(&id),
        raw: &raw,
        url_params: &params,
        event_id: "test_event_id",
        created_at: ZERO_TIME,
    };
    let body = acknowledge_event(&r.status, &r.command_uuid, &req);
    assert_eq!(body, known("DeviceInformation.1.json"));
    assert_eq!(
        signature(b"12345", body.as_bytes()).expect("hmac"),
        "5gLQYUN8BPcItWsMiwLKSZQbs2LWYpICGOZ68r5P9zk="
    );
}

#[test]
fn user_channels_tallies_and_params_have_their_keys() {
    let ident = Identity {
        udid: "D".into(),
        user_id: "U".into(),
        ..Identity::default()
    };
    let id = resolve(&ident).expect("id");
    let params = BTreeMap::from([("tenant".to_string(), "a&b".to_string())]);
    let req = Request {
        ident: &ident,
        id: Some(&id),
        raw: b"x",
        url_params: &params,
        event_id: "",
        created_at: time::macros::datetime!(2026-01-02 03:04:05.123456 UTC),
    };
    assert_eq!(
        checkin_event("TokenUpdate", &req, Some(1)),
        r#"{"checkin_event":{"ids":{"id":"D:U","parent_id":"D","type":"User"},"raw_payload":"eA==","token_update_tally":1,"udid":"D","url_params":{"tenant":"a\u0026b"}},"created_at":"2026-01-02T03:04:05.123456Z","topic":"mdm.TokenUpdate"}"#
    );
}

#[test]
fn go_times() {
    assert_eq!(go_time(ZERO_TIME), "0001-01-01T00:00:00Z");
    assert_eq!(
        go_time(time::macros::datetime!(2026-01-02 03:04:05.5 +02:00)),
        "2026-01-02T01:04:05.5Z"
    );
}
