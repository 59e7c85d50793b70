//! The MDM service over HTTP against the real server: check-ins and
//! reports signed by the `openssl` command-line tool (a producer depd did
//! not write), NanoMDM's fixtures and request shapes, its API.

use crate::helpers::{KEY, Reply, TestApp, send};
use actix_web::http::Method;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/testdata/nanomdm");
pub const UDID: &str = "66ADE930-5FDF-5EC4-8429-15640684C489";
const CHECKIN: &str = "application/x-apple-aspen-mdm-checkin";
const REPORT: &str = "application/x-apple-aspen-mdm";
pub const CHECKIN_TYPE: &str = CHECKIN;
pub const REPORT_TYPE: &str = REPORT;

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Runs the `openssl` command-line tool in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command-line tool must be installed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A device CA and identities it issues, all made by the openssl CLI.
pub struct Pki {
    pub dir: TempDir,
    serial: std::cell::Cell<u32>,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("dir");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=depd test device CA",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=keyCertSign,cRLSign",
            ],
        );
        std::fs::write(dir.path().join("ext.cnf"), "extendedKeyUsage=clientAuth\n").expect("ext");
        Pki {
            dir,
            serial: std::cell::Cell::new(1),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A new device identity (CN `TESTDEVICE`), its files named `tag`.
    pub fn identity(&self, tag: &str) -> Identity {
        let d = self.dir.path();
        let (key, csr, pem) = (
            format!("{tag}.key"),
            format!("{tag}.csr"),
            format!("{tag}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=TESTDEVICE",
            ],
        );
        self.serial.set(self.serial.get() + 1);
        let serial = self.serial.get().to_string();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                "ext.cnf",
            ],
        );
        Identity {
            dir: d.to_path_buf(),
            tag: tag.to_owned(),
        }
    }
}

pub struct Identity {
    dir: PathBuf,
    tag: String,
}

impl Identity {
    /// `Mdm-Signature` for `body`: a detached CMS SignedData made by
    /// `openssl cms -sign`, base64.
    pub fn sign(&self, body: &[u8]) -> String {
        let input = format!("{}.body", self.tag);
        let out = format!("{}.sig", self.tag);
        std::fs::write(self.dir.join(&input), body).expect("body");
        openssl(
            &self.dir,
            &[
                "cms",
                "-sign",
                "-binary",
                "-in",
                &input,
                "-signer",
                &format!("{}.pem", self.tag),
                "-inkey",
                &format!("{}.key", self.tag),
                "-md",
                "sha256",
                "-outform",
                "DER",
                "-out",
                &out,
            ],
        );
        openssl::base64::encode_block(&std::fs::read(self.dir.join(&out)).expect("sig"))
    }

    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.pem", self.tag))).expect("pem")
    }
}

pub fn mdm_config(pki: &Pki, extra: &str) -> String {
    format!(
        "[mdm]\nenabled = true\nca_file = {:?}\n{extra}\n",
        pki.ca_file().display().to_string()
    )
}

/// Sends a device request, signed by `id` unless `None`.
pub async fn device(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &[u8],
    id: Option<&Identity>,
) -> Reply {
    let mut req = app
        .client()
        .put(app.url(path))
        .insert_header(("Content-Type", content_type));
    if let Some(id) = id {
        req = req.insert_header(("Mdm-Signature", id.sign(body)));
    }
    let mut resp = req.send_body(body.to_vec()).await.expect("request");
    let body = resp.body().limit(16 * 1024 * 1024).await.expect("body");
    Reply {
        status: resp.status().as_u16(),
        body: body.to_vec(),
    }
}

pub fn plist(body: &str) -> Vec<u8> {
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd"><plist version="1.0"><dict>{body}</dict></plist>"#).into_bytes()
}

pub fn status(udid: &str, status: &str, uuid: &str) -> Vec<u8> {
    let uuid = if uuid.is_empty() {
        String::new()
    } else {
        format!("<key>CommandUUID</key><string>{uuid}</string>")
    };
    plist(&format!(
        "<key>UDID</key><string>{udid}</string><key>Status</key><string>{status}</string>{uuid}"
    ))
}

pub fn command(uuid: &str, request_type: &str) -> Vec<u8> {
    plist(&format!(
        "<key>CommandUUID</key><string>{uuid}</string><key>Command</key><dict><key>RequestType</key><string>{request_type}</string></dict>"
    ))
}

/// The `CommandUUID` of a command answered to a report, if any.
fn uuid_of(r: &Reply) -> Option<String> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    if r.body.is_empty() {
        return None;
    }
    let v = plist::Value::from_reader(std::io::Cursor::new(&r.body)).expect("plist");
    v.as_dictionary()
        .and_then(|d| d.get("CommandUUID"))
        .and_then(|u| u.as_string())
        .map(str::to_owned)
}

async fn enqueue(app: &TestApp, ids: &str, query: &str, body: &[u8]) -> Reply {
    app.call_as(
        Method::POST,
        &format!("/v1/enqueue/{ids}{query}"),
        Some(("nanomdm", KEY)),
        body,
    )
    .await
}

async fn enroll(app: &TestApp, id: &Identity) {
    let r = device(
        app,
        "/mdm",
        CHECKIN,
        &fixture("Authenticate.2.plist"),
        Some(id),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "Authenticate");
    let r = device(
        app,
        "/mdm",
        CHECKIN,
        &fixture("TokenUpdate.2.plist"),
        Some(id),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "TokenUpdate");
}

#[actix_web::test]
async fn enrolment_and_the_queue_walkthrough_over_http() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let id = pki.identity("dev1");
    enroll(&app, &id).await;
    let idle = || status(UDID, "Idle", "");
    assert_eq!(
        uuid_of(&device(&app, "/mdm", REPORT, &idle(), Some(&id)).await),
        None
    );

    // The walkthrough of mdm.md 8.5, the commands enqueued as NanoMDM's
    // e2e test does (POST, nopush=1, user nanomdm).
    for c in ["CMD1", "CMD2"] {
        let r = enqueue(&app, UDID, "?nopush=1", &command(c, c)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(
            (
                v["no_push"].as_bool(),
                v["command_uuid"].as_str(),
                v["request_type"].as_str()
            ),
            (Some(true), Some(c), Some(c))
        );
        assert!(
            String::from_utf8_lossy(&r.body).contains("\n\t\""),
            "tab-indented as NanoMDM"
        );
    }
    let rep = |s: &'static str, u: &'static str| status(UDID, s, u);
    assert_eq!(
        uuid_of(&device(&app, "/mdm", REPORT, &idle(), Some(&id)).await).as_deref(),
        Some("CMD1")
    );
    let r = device(
        &app,
        "/mdm",
        REPORT,
        &rep("Acknowledged", "CMD1"),
        Some(&id),
    )
    .await;
    assert_eq!(
        r.body,
        command("CMD2", "CMD2"),
        "the command exactly as enqueued"
    );
    assert_eq!(
        uuid_of(
            &device(
                &app,
                "/mdm",
                REPORT,
                &rep("Acknowledged", "CMD2"),
                Some(&id)
            )
            .await
        ),
        None
    );
    enqueue(&app, UDID, "?nopush=1", &command("CMD3", "CMD3")).await;
    assert_eq!(
        uuid_of(&device(&app, "/mdm", REPORT, &idle(), Some(&id)).await).as_deref(),
        Some("CMD3")
    );
    assert_eq!(
        uuid_of(&device(&app, "/mdm", REPORT, &rep("NotNow", "CMD3"), Some(&id)).await),
        None
    );
    assert_eq!(
        uuid_of(&device(&app, "/mdm", REPORT, &idle(), Some(&id)).await).as_deref(),
        Some("CMD3")
    );
    assert_eq!(
        uuid_of(
            &device(
                &app,
                "/mdm",
                REPORT,
                &rep("Acknowledged", "CMD3"),
                Some(&id)
            )
            .await
        ),
        None
    );

    // Reusing a UUID is refused; one command goes to several IDs, unknown
    // ones failing one by one (207).
    let r = enqueue(&app, UDID, "?nopush=1", &command("CMD3", "X")).await;
    assert_eq!(r.status, 409);
    let r = enqueue(
        &app,
        &format!("{UDID},NOPE"),
        "?nopush=1",
        &command("CMD4", "ProfileList"),
    )
    .await;
    assert_eq!(r.status, 207, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["status"]["NOPE"]["command_error"],
        "unknown enrollment ID"
    );
    // Without nopush: NanoMDM's push errors (no push certificate yet).
    let r = enqueue(&app, UDID, "", &command("CMD5", "ProfileList")).await;
    assert_eq!(r.status, 500);
    let e = r.json()["status"][UDID]["push_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(e.starts_with("retrieving push cert for topic"), "{e}");
    let r = app
        .call_as(Method::GET, "/v1/push/NOPE", Some(("nanomdm", KEY)), b"")
        .await;
    assert_eq!(
        (r.status, r.json()["status"]["NOPE"]["push_error"].as_str()),
        (500, Some("push data missing for id"))
    );
    // Bad commands are clear errors.
    let r = enqueue(
        &app,
        UDID,
        "?nopush=1",
        &plist("<key>CommandUUID</key><string>A</string>"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["command_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Command")
    );
    let r = enqueue(&app, UDID, "?nopush=1", b"").await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn identities_must_sign_and_chain_to_the_ca() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "body_limit = 4096")).await;
    let id = pki.identity("dev1");
    let auth = fixture("Authenticate.2.plist");
    // No signature, a signature over other bytes, another CA's identity.
    assert_eq!(device(&app, "/mdm", CHECKIN, &auth, None).await.status, 400);
    let mut req = app
        .client()
        .put(app.url("/mdm"))
        .insert_header(("Content-Type", CHECKIN));
    req = req.insert_header(("Mdm-Signature", id.sign(b"other bytes")));
    let resp = req.send_body(auth.clone()).await.expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let other_ca = Pki::new();
    let stranger = other_ca.identity("stranger");
    let r = device(&app, "/mdm", CHECKIN, &auth, Some(&stranger)).await;
    assert_eq!((r.status, r.body.as_slice()), (400, &b"Bad Request\n"[..]));
    // Garbage and unknown types are 400; big bodies 413.
    assert_eq!(
        device(&app, "/mdm", CHECKIN, b"not a plist", Some(&id))
            .await
            .status,
        400
    );
    let odd = plist(
        "<key>MessageType</key><string>OldManYellsAtCloud.gif</string><key>UDID</key><string>x</string>",
    );
    assert_eq!(
        device(&app, "/mdm", CHECKIN, &odd, Some(&id)).await.status,
        400
    );
    let big = vec![b' '; 5000];
    assert_eq!(
        device(&app, "/mdm", CHECKIN, &big, Some(&id)).await.status,
        413
    );
    // The same device with a fresh identity: refused (500), nothing changed.
    enroll(&app, &id).await;
    let fresh = pki.identity("fresh");
    let r = device(
        &app,
        "/mdm",
        REPORT,
        &status(UDID, "Idle", ""),
        Some(&fresh),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (500, &b"Internal Server Error\n"[..])
    );
    let r = device(&app, "/mdm", REPORT, &status(UDID, "Idle", ""), Some(&id)).await;
    assert_eq!(r.status, 200, "the bound identity still works");
    // /checkin is off unless configured.
    assert_eq!(
        device(&app, "/checkin", CHECKIN, &auth, Some(&id))
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn a_proxy_header_carries_the_identity() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(
        &pki,
        "cert_header = \"X-Client-Cert\"\ncheckin_endpoint = true",
    ))
    .await;
    let id = pki.identity("dev1");
    let pem = id.pem();
    let escaped: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let der = openssl::x509::X509::from_pem(pem.as_bytes())
        .expect("pem")
        .to_der()
        .expect("der");
    let rfc9440 = format!(":{}:", openssl::base64::encode_block(&der));
    for (n, header) in [escaped, rfc9440].into_iter().enumerate() {
        let path = "/checkin";
        let body = if n == 0 {
            fixture("Authenticate.2.plist")
        } else {
            fixture("TokenUpdate.2.plist")
        };
        let resp = app
            .client()
            .put(app.url(path))
            .insert_header(("Content-Type", CHECKIN))
            .insert_header(("X-Client-Cert", header))
            .send_body(body)
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 200, "form {n}");
    }
    // With checkin_endpoint, /mdm takes reports only: a check-in there is
    // read as a report without Status.
    let resp = app
        .client()
        .put(app.url("/mdm"))
        .insert_header(("Content-Type", CHECKIN))
        .insert_header((
            "X-Client-Cert",
            format!(":{}:", openssl::base64::encode_block(&der)),
        ))
        .send_body(fixture("Authenticate.2.plist"))
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    // No header: 400.
    let resp = app
        .client()
        .put(app.url("/checkin"))
        .send_body(fixture("Authenticate.2.plist"))
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
}

#[actix_web::test]
async fn retro_binds_a_migrated_enrollment_once() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "retro = true\nmigration = true")).await;
    // Migration: raw check-ins with the API key, no identity.
    for f in ["Authenticate.2.plist", "TokenUpdate.2.plist"] {
        let r = app
            .call_as(
                Method::PUT,
                "/migration",
                Some(("nanomdm", KEY)),
                &fixture(f),
            )
            .await;
        assert_eq!(r.status, 200, "{f}");
    }
    let r = app
        .call_as(
            Method::PUT,
            "/migration",
            None,
            &fixture("Authenticate.2.plist"),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = enqueue(&app, UDID, "?nopush=1", &command("M1", "ProfileList")).await;
    assert_eq!(r.status, 200, "migrated enrollment exists");
    let first = pki.identity("first");
    let r = device(
        &app,
        "/mdm",
        REPORT,
        &status(UDID, "Idle", ""),
        Some(&first),
    )
    .await;
    assert_eq!(uuid_of(&r).as_deref(), Some("M1"), "first identity binds");
    let other = pki.identity("other");
    let r = device(
        &app,
        "/mdm",
        REPORT,
        &status(UDID, "Idle", ""),
        Some(&other),
    )
    .await;
    assert_eq!(r.status, 500, "a second identity is re-use");
}

#[actix_web::test]
async fn every_enrollment_id_kind_enrolls_and_takes_commands() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let id = pki.identity("dev");
    let tu = |keys: &str| {
        plist(&format!(
            "<key>MessageType</key><string>TokenUpdate</string>{keys}<key>Topic</key><string>com.apple.mgmt.t</string><key>PushMagic</key><string>M</string><key>Token</key><data>AQID</data>"
        ))
    };
    let auth = |keys: &str| {
        plist(&format!(
            "<key>MessageType</key><string>Authenticate</string>{keys}<key>Topic</key><string>com.apple.mgmt.t</string>"
        ))
    };
    let cases = [
        ("<key>UDID</key><string>D1</string>", "", "D1"),
        (
            "<key>UDID</key><string>D1</string>",
            "<key>UserID</key><string>U1</string>",
            "D1:U1",
        ),
        (
            "<key>UDID</key><string>D1</string>",
            "<key>UserID</key><string>FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF</string><key>UserShortName</key><string>appleid@example.com</string>",
            "D1:appleid@example.com",
        ),
        ("<key>EnrollmentID</key><string>E1</string>", "", "E1"),
        (
            "<key>EnrollmentID</key><string>E1</string>",
            "<key>EnrollmentUserID</key><string>EU1</string>",
            "E1:EU1",
        ),
    ];
    let ue = pki.identity("ue");
    for (device_keys, user_keys, want) in cases {
        let who = if device_keys.contains("E1") { &ue } else { &id };
        if user_keys.is_empty() {
            let r = device(&app, "/mdm", CHECKIN, &auth(device_keys), Some(who)).await;
            assert_eq!(r.status, 200, "{want}: Authenticate");
        }
        let r = device(
            &app,
            "/mdm",
            CHECKIN,
            &tu(&format!("{device_keys}{user_keys}")),
            Some(who),
        )
        .await;
        assert_eq!(r.status, 200, "{want}: TokenUpdate");
        let uuid = format!("C-{want}");
        let r = enqueue(
            &app,
            &want.replace('@', "%40"),
            "?nopush=1",
            &command(&uuid, "ProfileList"),
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{want}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let report = plist(&format!(
            "{device_keys}{user_keys}<key>Status</key><string>Idle</string>"
        ));
        let r = device(&app, "/mdm", REPORT, &report, Some(who)).await;
        assert_eq!(
            uuid_of(&r).as_deref(),
            Some(uuid.as_str()),
            "{want}: queued to its own channel"
        );
    }
    // No identifying key: 400.
    let r = device(
        &app,
        "/mdm",
        REPORT,
        &plist("<key>Status</key><string>Idle</string>"),
        Some(&id),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn bootstrap_tokens_and_user_authenticate() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let id = pki.identity("dev");
    enroll(&app, &id).await;
    let get = plist(&format!(
        "<key>MessageType</key><string>GetBootstrapToken</string><key>UDID</key><string>{UDID}</string>"
    ));
    let r = device(&app, "/mdm", CHECKIN, &get, Some(&id)).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    let token = openssl::base64::encode_block(b"hello world");
    let set = plist(&format!(
        "<key>MessageType</key><string>SetBootstrapToken</string><key>UDID</key><string>{UDID}</string><key>BootstrapToken</key><data>{token}</data>"
    ));
    assert_eq!(
        device(&app, "/mdm", CHECKIN, &set, Some(&id)).await.status,
        200
    );
    let r = device(&app, "/mdm", CHECKIN, &get, Some(&id)).await;
    let v = plist::Value::from_reader(std::io::Cursor::new(&r.body)).expect("plist");
    assert_eq!(
        v.as_dictionary()
            .and_then(|d| d.get("BootstrapToken"))
            .and_then(|t| t.as_data()),
        Some(&b"hello world"[..])
    );
    let ua = plist(&format!(
        "<key>MessageType</key><string>UserAuthenticate</string><key>UDID</key><string>{UDID}</string><key>UserID</key><string>U9</string>"
    ));
    let r = device(&app, "/mdm", CHECKIN, &ua, Some(&id)).await;
    assert_eq!((r.status, r.body.as_slice()), (410, &b"Gone\n"[..]));
    let out = plist(&format!(
        "<key>MessageType</key><string>CheckOut</string><key>UDID</key><string>{UDID}</string>"
    ));
    let r = device(&app, "/mdm", CHECKIN, &out, Some(&id)).await;
    assert_eq!((r.status, r.body.len()), (200, 0), "CheckOut");
    // GetToken for a service depd does not know: 400.
    let gt = plist(&format!(
        "<key>MessageType</key><string>GetToken</string><key>UDID</key><string>{UDID}</string><key>TokenServiceType</key><string>com.apple.watch.pairing</string>"
    ));
    assert_eq!(
        device(&app, "/mdm", CHECKIN, &gt, Some(&id)).await.status,
        400
    );
}

#[actix_web::test]
async fn push_certificates_are_stored_by_topic() {
    let pki = Pki::new();
    let app = TestApp::spawn_with_config(&mdm_config(&pki, "")).await;
    let d = pki.dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "push.key",
            "-out",
            "push.pem",
            "-days",
            "30",
            "-subj",
            "/UID=com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9/CN=APSP:e0bd1eac",
        ],
    );
    let mut body = std::fs::read(d.join("push.pem")).expect("cert");
    body.extend(std::fs::read(d.join("push.key")).expect("key"));
    let r = app
        .call_as(Method::PUT, "/v1/pushcert", Some(("nanomdm", KEY)), &body)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let topic = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9";
    assert_eq!(r.json()["topic"], topic);
    assert!(
        r.json()["not_after"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let r = app.get(&format!("/v1/pushcert?topic={topic}")).await;
    assert_eq!((r.status, r.json()["topic"].as_str()), (200, Some(topic)));
    assert_eq!(app.get("/v1/pushcert").await.status, 400);
    assert_eq!(
        app.get("/v1/pushcert?topic=com.apple.mgmt.other")
            .await
            .status,
        404
    );
    // A certificate without its key, a key that is not its pair, a wrong topic.
    let cert_only = std::fs::read(d.join("push.pem")).expect("cert");
    assert_eq!(
        app.call(Method::PUT, "/v1/pushcert", &cert_only)
            .await
            .status,
        400
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "30",
            "-subj",
            "/UID=com.example.not-mdm",
        ],
    );
    let mut wrong_key = cert_only.clone();
    wrong_key.extend(std::fs::read(d.join("other.key")).expect("key"));
    assert_eq!(
        app.call(Method::PUT, "/v1/pushcert", &wrong_key)
            .await
            .status,
        400
    );
    let mut wrong_topic = std::fs::read(d.join("other.pem")).expect("cert");
    wrong_topic.extend(std::fs::read(d.join("other.key")).expect("key"));
    let r = app.call(Method::PUT, "/v1/pushcert", &wrong_topic).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("com.apple.mgmt")
    );
}

#[actix_web::test]
async fn the_mdm_service_is_off_by_default() {
    let app = TestApp::spawn().await;
    let r = send(
        app.client(),
        Method::PUT,
        &app.url("/mdm"),
        None,
        fixture("Authenticate.2.plist"),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = app
        .call_as(
            Method::PUT,
            "/v1/enqueue/X",
            Some(("nanomdm", KEY)),
            &command("A", "B"),
        )
        .await;
    assert_eq!(r.status, 404);
}
