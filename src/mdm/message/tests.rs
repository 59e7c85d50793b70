use super::*;
use crate::mdm::ids::{EnrollType, resolve};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/testdata/nanomdm");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn nanomdm_fixtures_decode() {
    let a1 = parse_checkin(&fixture("Authenticate.1.plist")).expect("Authenticate.1");
    assert_eq!(a1.kind(), CheckinType::Authenticate);
    assert_eq!(a1.ident.udid, "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69");
    assert_eq!(a1.serial_number, "F5JM992LF193");
    assert_eq!(
        a1.topic,
        "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9"
    );
    let a2 = parse_checkin(&fixture("Authenticate.2.plist")).expect("Authenticate.2");
    assert_eq!(a2.ident.udid, "66ADE930-5FDF-5EC4-8429-15640684C489");
    assert_eq!(a2.serial_number, "C02MT66KFLHH");

    let t1 = parse_checkin(&fixture("TokenUpdate.1.plist")).expect("TokenUpdate.1");
    assert_eq!(t1.kind(), CheckinType::TokenUpdate);
    assert_eq!(t1.push_magic, "CEFDF0BD-E342-4A27-8742-E930EA116B0A");
    assert_eq!(
        hex(t1.token.as_deref().expect("token")),
        "47e8eec062c2f729ec1703c1b3e18f1971d85f00be76445d34080baa701b5f51"
    );
    assert!(t1.unlock_token.as_ref().is_some_and(|u| u.len() > 100));
    let t2 = parse_checkin(&fixture("TokenUpdate.2.plist")).expect("TokenUpdate.2");
    assert_eq!(t2.push_magic, "888CEB39-BFFA-40F6-89FA-B60752EB63C2");
    assert_eq!(
        hex(t2.token.as_deref().expect("token")),
        "1ba7c90066c50f77689a24f3a425caf68a300f729e88e460a9416022d5d642cc"
    );
    assert_eq!(resolve(&t2.ident).expect("id").kind, EnrollType::Device);

    let r = parse_report(&fixture("DeviceInformation.1.plist")).expect("report");
    assert_eq!(r.ident.udid, "66ADE930-5FDF-5EC4-8429-15640684C489");
    assert_eq!(r.status, "Acknowledged");
    assert_eq!(r.command_uuid, "76eda240-5488-4989-8339-f2ae160113c4");
    assert_eq!(r.request_type, "DeviceInformation");
}

fn plist(body: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd"><plist version="1.0"><dict>{body}</dict></plist>"#
    )
    .into_bytes()
}

#[test]
fn unknown_or_missing_types_are_errors() {
    let odd = plist(
        "<key>MessageType</key><string>OldManYellsAtCloud.gif</string><key>UDID</key><string>x</string>",
    );
    assert_eq!(
        parse_checkin(&odd),
        Err(MessageError::UnknownType("OldManYellsAtCloud.gif".into()))
    );
    assert_eq!(
        parse_checkin(&plist("<key>UDID</key><string>x</string>")),
        Err(MessageError::Missing("MessageType"))
    );
    assert!(matches!(
        parse_checkin(b"not a plist"),
        Err(MessageError::NotPlist(_))
    ));
    assert!(matches!(
        parse_checkin(b"<?xml version=\"1.0\"?><plist><array/></plist>"),
        Err(MessageError::NotDict)
    ));
    let wrong = plist(
        "<key>MessageType</key><string>TokenUpdate</string><key>Token</key><string>abc</string>",
    );
    assert_eq!(
        parse_checkin(&wrong),
        Err(MessageError::WrongType {
            key: "Token",
            want: "data"
        })
    );
}

#[test]
fn get_token_decodes() {
    let body = plist(
        "<key>MessageType</key><string>GetToken</string><key>UDID</key><string>test</string><key>TokenServiceType</key><string>com.apple.maid</string>",
    );
    let c = parse_checkin(&body).expect("GetToken");
    assert_eq!(c.kind(), CheckinType::GetToken);
    assert_eq!(c.token_service_type, "com.apple.maid");
}

#[test]
fn reports_need_a_status_and_results_a_uuid() {
    assert_eq!(
        parse_report(&plist("<key>UDID</key><string>x</string>")),
        Err(MessageError::Missing("Status"))
    );
    assert_eq!(
        parse_report(&plist(
            "<key>UDID</key><string>x</string><key>Status</key><string>Acknowledged</string>"
        )),
        Err(MessageError::Missing("CommandUUID"))
    );
    let idle = parse_report(&plist(
        "<key>UDID</key><string>x</string><key>Status</key><string>Idle</string>",
    ))
    .expect("idle");
    assert!(idle.is_idle());
}

#[test]
fn commands_need_uuid_and_request_type() {
    let ok = plist(
        "<key>CommandUUID</key><string>CMD1</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict>",
    );
    assert_eq!(
        parse_command(&ok),
        Ok(Command {
            uuid: "CMD1".into(),
            request_type: "ProfileList".into()
        })
    );
    assert_eq!(
        parse_command(&plist(
            "<key>Command</key><dict><key>RequestType</key><string>X</string></dict>"
        )),
        Err(MessageError::Missing("CommandUUID"))
    );
    assert_eq!(
        parse_command(&plist(
            "<key>CommandUUID</key><string>A</string><key>Command</key><dict/>"
        )),
        Err(MessageError::Missing("Command.RequestType"))
    );
    assert_eq!(
        parse_command(&plist("<key>CommandUUID</key><string>A</string>")),
        Err(MessageError::Missing("Command"))
    );
}

#[test]
fn binary_plists_decode_too() {
    let xml = fixture("TokenUpdate.2.plist");
    let value = plist::Value::from_reader(std::io::Cursor::new(&xml)).expect("xml");
    let mut binary = Vec::new();
    plist::to_writer_binary(&mut binary, &value).expect("binary");
    assert!(binary.starts_with(b"bplist0"));
    assert_eq!(parse_checkin(&binary), parse_checkin(&xml));
}

#[test]
fn answers_are_plists_of_one_key() {
    let body = answer_plist(
        "BootstrapToken",
        plist::Value::Data(b"hello world".to_vec()),
    )
    .expect("plist");
    let d = dict(&body).expect("dict");
    assert_eq!(
        d.get("BootstrapToken"),
        Some(&plist::Value::Data(b"hello world".to_vec()))
    );
}
