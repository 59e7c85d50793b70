//! `depd mdm …` with the real binary against a real server with the MDM
//! service, every subcommand in text and with `--json`.

use crate::cli::{both, depd_env};
use crate::helpers::{KEY, TestApp};
use crate::mdm::{CHECKIN_TYPE, Pki, REPORT_TYPE, UDID, device, fixture, mdm_config, status};

#[actix_web::test]
async fn mdm_commands() {
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

    // The generator needs no daemon.
    let plist = depd_env(
        &["mdm", "command", "--command", "ProfileList", "--uuid", "G1"],
        &[],
    )
    .await;
    let body = plist.ok().to_owned();
    assert!(body.contains("<string>ProfileList</string>") && body.contains("<string>G1</string>"));
    let bad = depd_env(&["mdm", "command", "--command", "Frobnicate"], &[]).await;
    assert!(bad.failed(2).contains("no generator"));

    // enqueue: generated, text and JSON (each run queues its own UUID).
    let (text, json) = both(
        &app,
        &[
            "mdm",
            "enqueue",
            UDID,
            "--nopush",
            "--command",
            "ProfileList",
        ],
    )
    .await;
    assert!(
        text.ok().contains("command_uuid:") && text.ok().contains("request_type: ProfileList"),
        "{}",
        text.stdout
    );
    assert_eq!(json.json()["no_push"], true);
    // From a file.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cmd.plist");
    std::fs::write(&file, &body).expect("write");
    let (text, _) = both(
        &app,
        &[
            "mdm",
            "enqueue",
            UDID,
            "--nopush",
            "--file",
            file.to_str().expect("path"),
        ],
    )
    .await;
    assert!(text.ok().contains("G1"), "{}", text.stdout);
    // A failed ID makes the command fail, with the answer shown.
    let url = format!("http://{}", app.addr);
    let partial = depd_env(
        &[
            "mdm",
            "enqueue",
            UDID,
            "NOPE",
            "--nopush",
            "--command",
            "SecurityInfo",
            "--url",
            &url,
            "--api-key",
            KEY,
        ],
        &[],
    )
    .await;
    assert_eq!(partial.code, 1);
    assert!(
        partial.stdout.contains("unknown enrollment ID"),
        "{}",
        partial.stdout
    );

    // push: no push certificate is stored for the enrollment's topic.
    let (text, json) = both(&app, &["mdm", "push", UDID]).await;
    assert_eq!((text.code, json.code), (1, 1));
    assert!(json.stdout.contains("push_error"), "{}", json.stdout);
    assert!(
        text.stdout.contains("retrieving push cert for topic"),
        "{}",
        text.stdout
    );

    // enrollments: list and one.
    let (text, json) = both(&app, &["mdm", "enrollments"]).await;
    assert!(text.ok().contains(UDID), "{}", text.stdout);
    assert_eq!(json.json()["total"], 1);
    let (text, json) = both(&app, &["mdm", "enrollments", UDID]).await;
    assert!(text.ok().contains("C02MT66KFLHH"), "{}", text.stdout);
    // Two generated, one from the file, one from the partial enqueue.
    assert_eq!(json.json()["queue_length"], 4);
    let (text, json) = both(&app, &["mdm", "enrollments", "--type", "User"]).await;
    assert!(text.ok().contains("total: 0"), "{}", text.stdout);
    assert_eq!(json.json()["total"], 0);

    // commands: the queue; a device answers one; --raw; --clear.
    let r = device(
        &app,
        "/mdm",
        REPORT_TYPE,
        &status(UDID, "Idle", ""),
        Some(&id),
    )
    .await;
    assert_eq!(r.status, 200);
    let (text, json) = both(&app, &["mdm", "commands", UDID]).await;
    assert!(text.ok().contains("ProfileList"), "{}", text.stdout);
    assert_eq!(json.json()["queue"].as_array().map(Vec::len), Some(4));
    let (_, raw) = both(&app, &["mdm", "commands", UDID, "--raw"]).await;
    assert!(
        raw.json()["queue"][0]["command"]
            .as_str()
            .unwrap_or("")
            .contains("<plist")
    );
    let (text, _) = both(&app, &["mdm", "commands", UDID, "--clear"]).await;
    assert!(text.ok().contains("removed: 4"), "{}", text.stdout);
    let (_, json) = both(&app, &["mdm", "commands", UDID, "--clear"]).await;
    assert_eq!(json.json()["removed"], 0);
    let missing = depd_env(
        &["mdm", "commands", "NOPE", "--url", &url, "--api-key", KEY],
        &[],
    )
    .await;
    assert!(missing.failed(1).contains("unknown-enrollment"));

    // pushcert: put and get.
    let d = dir.path();
    let out = std::process::Command::new("openssl")
        .args([
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
            "/UID=com.apple.mgmt.External.cli-test/CN=APSP:cli",
        ])
        .current_dir(d)
        .output()
        .expect("the openssl command-line tool must be installed for these tests");
    assert!(out.status.success());
    let (cert, key) = (d.join("push.pem"), d.join("push.key"));
    let (text, json) = both(
        &app,
        &[
            "mdm",
            "pushcert",
            "put",
            "--cert",
            cert.to_str().expect("p"),
            "--key",
            key.to_str().expect("p"),
        ],
    )
    .await;
    assert!(
        text.ok()
            .contains("topic: com.apple.mgmt.External.cli-test"),
        "{}",
        text.stdout
    );
    assert_eq!(json.json()["topic"], "com.apple.mgmt.External.cli-test");
    let (text, json) = both(
        &app,
        &[
            "mdm",
            "pushcert",
            "get",
            "--topic",
            "com.apple.mgmt.External.cli-test",
        ],
    )
    .await;
    assert!(text.ok().contains("not_after:"), "{}", text.stdout);
    assert!(json.json()["not_after"].is_string());
    let (text, _) = both(
        &app,
        &["mdm", "pushcert", "get", "--topic", "com.apple.mgmt.none"],
    )
    .await;
    assert_eq!(text.code, 1);

    // The topic and its expiry on status, beside the DEP names; a
    // renewal can pick the sandbox.
    let (text, json) = both(&app, &["status"]).await;
    assert!(text.ok().contains("PUSH TOPIC"), "{}", text.stdout);
    assert!(
        text.stdout.contains("com.apple.mgmt.External.cli-test"),
        "{}",
        text.stdout
    );
    let topic = &json.json()["push_topics"][0];
    assert!(
        (29..=30).contains(&topic["days_left"].as_i64().unwrap_or(0)),
        "{topic}"
    );
    assert_eq!(topic["environment"], "production");
    let (text, _) = both(
        &app,
        &[
            "mdm",
            "pushcert",
            "put",
            "--cert",
            cert.to_str().expect("p"),
            "--key",
            key.to_str().expect("p"),
            "--environment",
            "sandbox",
        ],
    )
    .await;
    text.ok();
    let (_, json) = both(&app, &["status"]).await;
    assert_eq!(json.json()["push_topics"][0]["environment"], "sandbox");
}
