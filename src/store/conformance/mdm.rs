//! The MDM storage cases, run on every engine through the
//! core service, as NanoMDM's end-to-end suite runs on every backend.

use super::*;
use crate::mdm::certauth::Refusal;
use crate::mdm::ids::resolve;
use crate::mdm::message::{parse_checkin, parse_command, parse_report};
use crate::mdm::service::{self, Answer, Config, DeviceRequest, EnqueueError, ServiceError};
use std::collections::BTreeMap;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/testdata/nanomdm");
const UDID: &str = "66ADE930-5FDF-5EC4-8429-15640684C489";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn plist(body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>{body}</dict></plist>"#
    )
    .into_bytes()
}

fn req(body: Vec<u8>, hash: &str, now: i64) -> DeviceRequest {
    DeviceRequest {
        body,
        cert_hash: Some(hash.to_owned()),
        identity: None,
        url_params: BTreeMap::new(),
        event_id: format!("e{now}"),
        now: time::OffsetDateTime::from_unix_timestamp(now).expect("time"),
    }
}

fn checkin(
    store: &Store,
    cfg: &Config,
    body: Vec<u8>,
    hash: &str,
    now: i64,
) -> Result<Answer, ServiceError> {
    let m = parse_checkin(&body).expect("check-in");
    let id = resolve(&m.ident).expect("id");
    service::checkin(store, cfg, &req(body, hash, now), &m, &id)
}

fn report(
    store: &Store,
    cfg: &Config,
    body: Vec<u8>,
    hash: &str,
    now: i64,
) -> Result<Answer, ServiceError> {
    let r = parse_report(&body).expect("report");
    let id = resolve(&r.ident).expect("id");
    service::report(store, cfg, &req(body, hash, now), &r, &id)
}

fn token_update(udid: &str, token: &[u8]) -> Vec<u8> {
    let token = openssl::base64::encode_block(token);
    plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{udid}</string>\
         <key>Topic</key><string>com.apple.mgmt.test</string><key>PushMagic</key><string>MAGIC-{udid}</string>\
         <key>Token</key><data>{token}</data>"
    ))
}

fn authenticate(udid: &str) -> Vec<u8> {
    plist(&format!(
        "<key>MessageType</key><string>Authenticate</string><key>UDID</key><string>{udid}</string>\
         <key>Topic</key><string>com.apple.mgmt.test</string><key>SerialNumber</key><string>SER-{udid}</string>"
    ))
}

fn status(udid: &str, status: &str, uuid: &str) -> Vec<u8> {
    let uuid = if uuid.is_empty() {
        String::new()
    } else {
        format!("<key>CommandUUID</key><string>{uuid}</string>")
    };
    plist(&format!(
        "<key>UDID</key><string>{udid}</string><key>Status</key><string>{status}</string>{uuid}"
    ))
}

fn command(uuid: &str) -> Vec<u8> {
    plist(&format!(
        "<key>CommandUUID</key><string>{uuid}</string><key>Command</key><dict><key>RequestType</key><string>{uuid}</string></dict>"
    ))
}

fn enqueue(store: &Store, ids: &[&str], uuid: &str) -> BTreeMap<String, EnqueueError> {
    let raw = command(uuid);
    let cmd = parse_command(&raw).expect("command");
    assert!(service::store_command(store, &cmd, &raw, 1).expect("store"));
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    service::enqueue(store, &ids, uuid, 1).expect("enqueue")
}

fn answered(a: Answer) -> Option<String> {
    match a {
        Answer::Plist(p) => Some(parse_command(&p).expect("a command").uuid),
        Answer::Empty => None,
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn mdm_enroll_tally_and_reenroll(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config::default();
    let a = checkin(&store, &cfg, fixture("Authenticate.2.plist"), "h1", 10).expect("auth");
    assert_eq!(a, Answer::Empty);
    assert_eq!(
        store
            .mdm_device(UDID)
            .expect("read")
            .map(|d| d.serial_number),
        Some("C02MT66KFLHH".to_string())
    );
    assert!(
        store.mdm_enrollment(UDID).expect("read").is_none(),
        "enrolled at TokenUpdate"
    );
    checkin(&store, &cfg, fixture("TokenUpdate.2.plist"), "h1", 11).expect("token update");
    let e = store.mdm_enrollment(UDID).expect("read").expect("enrolled");
    assert_eq!(
        e.topic,
        "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9"
    );
    assert_eq!(e.push_magic, "888CEB39-BFFA-40F6-89FA-B60752EB63C2");
    assert_eq!(
        e.token_hex,
        "1ba7c90066c50f77689a24f3a425caf68a300f729e88e460a9416022d5d642cc"
    );
    assert!(e.enabled);
    assert_eq!((e.token_update_tally, e.enrolled_unix), (1, Some(11)));
    checkin(&store, &cfg, fixture("TokenUpdate.2.plist"), "h1", 12).expect("again");
    assert_eq!(
        store
            .mdm_enrollment(UDID)
            .expect("read")
            .map(|e| e.token_update_tally),
        Some(2)
    );

    // Bootstrap token: none, set, read back byte for byte.
    let get = plist(&format!(
        "<key>MessageType</key><string>GetBootstrapToken</string><key>UDID</key><string>{UDID}</string>"
    ));
    assert_eq!(
        checkin(&store, &cfg, get.clone(), "h1", 13).expect("get"),
        Answer::Empty
    );
    let hello = openssl::base64::encode_block(b"hello world");
    let set = plist(&format!(
        "<key>MessageType</key><string>SetBootstrapToken</string><key>UDID</key><string>{UDID}</string><key>BootstrapToken</key><data>{hello}</data>"
    ));
    checkin(&store, &cfg, set, "h1", 14).expect("set");
    let Answer::Plist(p) = checkin(&store, &cfg, get.clone(), "h1", 15).expect("get") else {
        panic!("a plist")
    };
    let v = plist::Value::from_reader(std::io::Cursor::new(p)).expect("plist");
    assert_eq!(
        v.as_dictionary()
            .and_then(|d| d.get("BootstrapToken"))
            .and_then(|t| t.as_data()),
        Some(&b"hello world"[..])
    );

    // Re-enrolment: disabled until its TokenUpdate, tally from 1, the
    // bootstrap token gone.
    checkin(&store, &cfg, fixture("Authenticate.2.plist"), "h1", 20).expect("re-auth");
    let e = store.mdm_enrollment(UDID).expect("read").expect("kept");
    assert!(!e.enabled);
    checkin(&store, &cfg, fixture("TokenUpdate.2.plist"), "h1", 21).expect("token update");
    assert_eq!(
        store
            .mdm_enrollment(UDID)
            .expect("read")
            .map(|e| e.token_update_tally),
        Some(1)
    );
    checkin(&store, &cfg, fixture("TokenUpdate.2.plist"), "h1", 22).expect("token update");
    assert_eq!(
        store
            .mdm_enrollment(UDID)
            .expect("read")
            .map(|e| e.token_update_tally),
        Some(2)
    );
    assert_eq!(
        checkin(&store, &cfg, get, "h1", 23).expect("get"),
        Answer::Empty
    );

    // The secrets are sealed on disk.
    for key in [format!("md/{UDID}"), format!("me/{UDID}")] {
        let raw = store
            .engine
            .get(key.as_bytes())
            .expect("get")
            .expect("stored");
        assert!(crate::store::secrets::is_sealed(&raw), "{key}");
        assert!(
            !raw.windows(8).any(|w| w == b"888CEB39"),
            "{key} shows the push magic"
        );
    }
    // Key rotation reseals them too.
    let new = crate::store::secrets::SecretsKey::generate().expect("key");
    let (rotated, n) = store.reseal(new).expect("reseal");
    assert!(n >= 2, "{n} records resealed");
    assert_eq!(
        rotated
            .mdm_enrollment(UDID)
            .expect("read")
            .map(|e| e.push_magic),
        Some("888CEB39-BFFA-40F6-89FA-B60752EB63C2".to_string())
    );
    assert!(
        store.mdm_enrollment(UDID).is_err(),
        "the old key no longer opens it"
    );
}

pub(super) fn mdm_certauth(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config::default();
    let d = "CERTAUTH-1";
    let idle = status(d, "Idle", "");
    for _ in 0..2 {
        assert!(matches!(
            report(&store, &cfg, idle.clone(), "hA", 1),
            Err(ServiceError::Refused(Refusal::NotAssociated))
        ));
    }
    checkin(&store, &cfg, authenticate(d), "hA", 2).expect("binds");
    report(&store, &cfg, idle.clone(), "hA", 3).expect("allowed");
    let before = store.mdm_device(d).expect("read");
    assert!(matches!(
        report(&store, &cfg, idle.clone(), "hFresh", 4),
        Err(ServiceError::Refused(Refusal::NotAssociated))
    ));
    // Another device cannot enrol with the same identity, and the refusal
    // writes nothing.
    assert!(matches!(
        checkin(&store, &cfg, authenticate("CERTAUTH-2"), "hA", 5),
        Err(ServiceError::Refused(Refusal::ReUse))
    ));
    assert!(store.mdm_device("CERTAUTH-2").expect("read").is_none());
    assert_eq!(store.mdm_device(d).expect("read"), before);
    assert_eq!(
        store.mdm_enrollment_by_hash("hA").expect("read").as_deref(),
        Some(d)
    );

    let retro = Config {
        retro: true,
        ..Config::default()
    };
    let m = "RETRO-1";
    report(&store, &retro, status(m, "Idle", ""), "hR", 6).expect("first binds");
    report(&store, &retro, status(m, "Idle", ""), "hR", 7).expect("second passes");
    assert!(matches!(
        report(&store, &retro, status(m, "Idle", ""), "hSwapped", 8),
        Err(ServiceError::Refused(Refusal::ReUse))
    ));
    assert!(matches!(
        report(&store, &retro, status("RETRO-2", "Idle", ""), "hR", 9),
        Err(ServiceError::Refused(Refusal::ReUse))
    ));
}

pub(super) fn mdm_queue_walkthrough(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config::default();
    let d = "QUEUE-1";
    checkin(&store, &cfg, authenticate(d), "hq", 1).expect("auth");
    checkin(&store, &cfg, token_update(d, &[1; 32]), "hq", 2).expect("token update");
    let r = |body: Vec<u8>| answered(report(&store, &cfg, body, "hq", 3).expect("report"));
    assert_eq!(r(status(d, "Idle", "")), None);
    assert!(enqueue(&store, &[d], "CMD1").is_empty());
    assert!(enqueue(&store, &[d], "CMD2").is_empty());
    assert_eq!(r(status(d, "Idle", "")).as_deref(), Some("CMD1"));
    assert_eq!(
        r(status(d, "Acknowledged", "CMD1")).as_deref(),
        Some("CMD2")
    );
    assert_eq!(r(status(d, "Acknowledged", "CMD2")), None);
    assert!(enqueue(&store, &[d], "CMD3").is_empty());
    assert_eq!(r(status(d, "Idle", "")).as_deref(), Some("CMD3"));
    assert_eq!(r(status(d, "NotNow", "CMD3")), None);
    assert_eq!(r(status(d, "Idle", "")).as_deref(), Some("CMD3"));
    assert_eq!(r(status(d, "Acknowledged", "CMD3")), None);
    let result = store.mdm_result(d, "CMD3").expect("read").expect("stored");
    assert_eq!(
        (result.status.as_str(), result.not_now_count),
        ("Acknowledged", 1)
    );
    assert!(
        String::from_utf8_lossy(&result.raw).contains("CMD3"),
        "raw kept"
    );
    // Authenticate clears what is outstanding.
    assert!(enqueue(&store, &[d], "CMD4").is_empty());
    checkin(&store, &cfg, authenticate(d), "hq", 4).expect("re-auth");
    assert_eq!(r(status(d, "Idle", "")), None);
    // One command, several targets; unknown IDs refused one by one.
    checkin(&store, &cfg, authenticate("QUEUE-2"), "hq2", 5).expect("auth");
    checkin(&store, &cfg, token_update("QUEUE-2", &[2; 32]), "hq2", 6).expect("tu");
    let errors = enqueue(&store, &[d, "QUEUE-2", "NOPE"], "CMD5");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.get("NOPE"), Some(&EnqueueError::Unknown));
    assert_eq!(r(status(d, "Idle", "")).as_deref(), Some("CMD5"));
    let r2 =
        answered(report(&store, &cfg, status("QUEUE-2", "Idle", ""), "hq2", 7).expect("report"));
    assert_eq!(r2.as_deref(), Some("CMD5"));
}

pub(super) fn mdm_check_out_disables_and_keeps_the_queue(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config::default();
    let d = "OUT-1";
    checkin(&store, &cfg, authenticate(d), "ho", 1).expect("auth");
    checkin(&store, &cfg, token_update(d, &[5; 32]), "ho", 2).expect("tu");
    assert!(enqueue(&store, &[d], "KEEP").is_empty());
    let out = plist(&format!(
        "<key>MessageType</key><string>CheckOut</string><key>UDID</key><string>{d}</string>"
    ));
    assert_eq!(
        checkin(&store, &cfg, out, "ho", 3).expect("check out"),
        Answer::Empty
    );
    let e = store.mdm_enrollment(d).expect("read").expect("kept");
    assert!(!e.enabled);
    assert_eq!(e.token_update_tally, 0);
    assert_eq!(
        store.mdm_queue(d).expect("queue").len(),
        1,
        "CheckOut does not clear"
    );
    // Enrolling again starts the tally at 1.
    checkin(&store, &cfg, token_update(d, &[5; 32]), "ho", 4).expect("tu");
    assert_eq!(
        store
            .mdm_enrollment(d)
            .expect("read")
            .map(|e| (e.enabled, e.token_update_tally)),
        Some((true, 1))
    );
}

pub(super) fn mdm_user_channels_follow_their_device(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config::default();
    let d = "USERS-1";
    checkin(&store, &cfg, authenticate(d), "hu", 1).expect("auth");
    checkin(&store, &cfg, token_update(d, &[3; 32]), "hu", 2).expect("tu");
    let user_tu = plist(&format!(
        "<key>MessageType</key><string>TokenUpdate</string><key>UDID</key><string>{d}</string>\
         <key>UserID</key><string>U1</string><key>UserShortName</key><string>ann</string>\
         <key>Topic</key><string>com.apple.mgmt.test</string><key>PushMagic</key><string>M</string><key>Token</key><data>AQID</data>"
    ));
    checkin(&store, &cfg, user_tu, "hu", 3).expect("user token update");
    let uid = format!("{d}:U1");
    let u = store
        .mdm_enrollment(&uid)
        .expect("read")
        .expect("user enrolled");
    assert_eq!(
        (
            u.device_id.as_str(),
            u.user_id.as_deref(),
            u.token_hex.as_str()
        ),
        (d, Some("U1"), "010203")
    );
    assert!(enqueue(&store, &[&uid], "UCMD").is_empty());
    // Authenticate of the device disables and clears its user channels.
    checkin(&store, &cfg, authenticate(d), "hu", 4).expect("re-auth");
    let u = store.mdm_enrollment(&uid).expect("read").expect("kept");
    assert!(!u.enabled);
    assert_eq!(u.token_update_tally, 0);
    assert!(store.mdm_queue(&uid).expect("queue").is_empty());
    // UserAuthenticate is declined by default.
    let ua = plist(&format!(
        "<key>MessageType</key><string>UserAuthenticate</string><key>UDID</key><string>{d}</string><key>UserID</key><string>U2</string>"
    ));
    assert_eq!(
        checkin(&store, &cfg, ua.clone(), "hu", 5).expect("ua"),
        Answer::Gone
    );
    let zl = Config {
        user_authenticate_zero_challenge: true,
        ..Config::default()
    };
    let Answer::Plist(challenge) = checkin(&store, &zl, ua, "hu", 6).expect("ua") else {
        panic!("a challenge")
    };
    assert!(String::from_utf8_lossy(&challenge).contains("DigestChallenge"));
}

pub(super) fn mdm_finished_commands_can_be_deleted(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config {
        delete_finished_commands: true,
        ..Config::default()
    };
    for d in ["DEL-1", "DEL-2"] {
        checkin(&store, &cfg, authenticate(d), d, 1).expect("auth");
        checkin(&store, &cfg, token_update(d, &[4; 32]), d, 2).expect("tu");
    }
    assert!(enqueue(&store, &["DEL-1", "DEL-2"], "X").is_empty());
    report(
        &store,
        &cfg,
        status("DEL-1", "Acknowledged", "X"),
        "DEL-1",
        3,
    )
    .expect("ack");
    assert!(store.mdm_result("DEL-1", "X").expect("read").is_none());
    assert!(
        store.mdm_command("X").expect("read").is_some(),
        "DEL-2 still holds it"
    );
    report(&store, &cfg, status("DEL-2", "Error", "X"), "DEL-2", 4).expect("error");
    assert!(
        store.mdm_command("X").expect("read").is_none(),
        "deleted with its last target"
    );
}

pub(super) fn mdm_events_queue_in_order(engine: Arc<dyn Engine>) {
    let store = Store::new(engine);
    let cfg = Config {
        webhook: true,
        ..Config::default()
    };
    checkin(&store, &cfg, fixture("Authenticate.2.plist"), "hw", 1).expect("auth");
    checkin(&store, &cfg, fixture("TokenUpdate.2.plist"), "hw", 2).expect("tu");
    report(&store, &cfg, status(UDID, "Idle", ""), "hw", 3).expect("idle");
    // A refused request queues nothing.
    assert!(report(&store, &cfg, status("OTHER", "Idle", ""), "hw2", 4).is_err());
    let events = store.mdm_outbox_peek(10).expect("peek");
    let topics: Vec<&str> = events.iter().map(|(_, e)| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["mdm.Authenticate", "mdm.TokenUpdate", "mdm.Connect"]
    );
    assert!(events[1].1.body.contains(r#""token_update_tally":1"#));
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    store.mdm_outbox_remove(&seqs[..2]).expect("remove");
    assert_eq!(store.mdm_outbox_peek(10).expect("peek").len(), 1);
    // A new store over the same engine continues the sequence.
    let again = Store::new(store.engine.clone());
    assert!(again.mdm_next_event_seq().expect("seq") > seqs[2]);
}
