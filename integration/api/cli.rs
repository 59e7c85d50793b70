//! The command-line client: the real `depd` binary against a real server
//! and depsim, every subcommand in text and with `--json`.

use crate::helpers::*;
use actix_web::web;
use depd::sim::SimConfig;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The output of a successful run.
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        assert!(self.stderr.is_empty(), "stderr: {}", self.stderr);
        &self.stdout
    }

    pub(crate) fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// The single stderr line of a failed run, checking the exit status.
    pub(crate) fn failed(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stderr.lines().count(), 1, "{}", self.stderr);
        &self.stderr
    }
}

/// Runs `depd ARGS` with `env` only (none of the caller's DEPD_/NanoDEP
/// variables), on the blocking pool so the test's server keeps serving.
pub(crate) async fn depd_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let out = web::block(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_depd"));
        for var in ["DEPD_URL", "DEPD_API_KEY", "BASE_URL", "APIKEY", "DEP_NAME"] {
            cmd.env_remove(var);
        }
        cmd.args(&args).envs(env).output()
    })
    .await
    .expect("blocking pool")
    .expect("run depd");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `depd ARGS --url … --api-key …` against `app`, text and `--json`.
pub(crate) async fn both(app: &TestApp, args: &[&str]) -> (Run, Run) {
    let url = format!("http://{}", app.addr);
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--url", &url, "--api-key", KEY]);
    let text = depd_env(&full, &[]).await;
    full.push("--json");
    let json = depd_env(&full, &[]).await;
    (text, json)
}

fn write(dir: &Path, file: &str, text: &str) -> String {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 temp path").to_owned()
}

#[actix_web::test]
async fn configuration_commands() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");

    let (text, json) = both(&app, &["names"]).await;
    assert_eq!(text.ok(), "acme\n");
    assert_eq!(json.json(), serde_json::json!({ "dep_names": ["acme"] }));

    let (text, json) = both(&app, &["status"]).await;
    let table = text.ok();
    assert!(
        table.starts_with("NAME  TOKENS  DAYS LEFT  SESSION"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("acme  ok")),
        "{table}"
    );
    assert_eq!(json.json()["dep_names"][0]["dep_name"], "acme");
    let (text, json) = both(&app, &["status", "-n", "acme"]).await;
    assert!(text.ok().contains("token_health: ok\n"), "{}", text.stdout);
    assert_eq!(json.json()["token_health"], "ok");

    let base = sim.base_url();
    let (text, json) = both(&app, &["config", "set", "-n", "acme", &base]).await;
    assert_eq!(text.ok(), format!("base_url: {base}\n"));
    assert_eq!(json.json()["base_url"], base.as_str());
    let (text, json) = both(&app, &["config", "get", "-n", "acme"]).await;
    assert_eq!(text.ok(), format!("base_url: {base}\n"));
    assert_eq!(json.json()["base_url"], base.as_str());

    let (text, json) = both(&app, &["assigner", "set", "-n", "acme", "ABC123"]).await;
    assert!(text.ok().starts_with("modified_at: "), "{}", text.stdout);
    assert!(text.ok().contains("profile_uuid: ABC123\n"));
    assert_eq!(json.json()["profile_uuid"], "ABC123");
    let (text, json) = both(&app, &["assigner", "get", "-n", "acme"]).await;
    assert!(text.ok().contains("profile_uuid: ABC123\n"));
    assert_eq!(json.json()["profile_uuid"], "ABC123");

    let tokens = write(dir.path(), "tokens.json", &sim.tokens_json());
    let (text, json) = both(&app, &["tokens", "upload", "-n", "acme", &tokens]).await;
    let consumer_key: Value = serde_json::from_str(&sim.tokens_json()).expect("tokens");
    let consumer_key = consumer_key["consumer_key"]
        .as_str()
        .expect("ck")
        .to_owned();
    assert!(
        text.ok().starts_with(&format!(
            "tokens stored for acme: consumer key {consumer_key}, "
        )),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("secret"),
        "text output shows no secrets"
    );
    assert_eq!(json.json()["consumer_key"], consumer_key.as_str());
    let other = write(dir.path(), "other.json", &tokens_json("CK_other"));
    let (text, _) = both(&app, &["tokens", "upload", "-n", "acme", &other]).await;
    assert!(
        text.failed(1).contains("consumer-key-mismatch"),
        "{}",
        text.stderr
    );
}

#[actix_web::test]
async fn token_pki_commands() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("acme.pem");
    let pem_arg = pem.to_str().expect("utf-8");

    let (text, json) = both(
        &app,
        &[
            "cert", "-n", "acme", "--cn", "cli-test", "--days", "2", "--out", pem_arg,
        ],
    )
    .await;
    assert!(
        text.ok()
            .starts_with("staging certificate for acme written to ")
    );
    assert_eq!(json.json()["certificate"], pem_arg);
    let (text, json) = both(&app, &["cert", "-n", "acme", "--cn", "cli-test"]).await;
    assert!(text.ok().starts_with("-----BEGIN CERTIFICATE-----"));
    let staged = json.json()["certificate_pem"]
        .as_str()
        .expect("PEM")
        .to_owned();
    let cert = openssl::x509::X509::from_pem(staged.as_bytes()).expect("certificate");
    let cn = cert
        .subject_name()
        .entries()
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned());
    assert_eq!(cn.as_deref(), Some("cli-test"));

    let p7m = dir.path().join("token.p7m");
    std::fs::write(&p7m, crate::pki::p7m_for(&cert, &sim.tokens_json())).expect("p7m");
    let url = format!("http://{}", app.addr);
    let upload = ["upload-token", "-n", "acme", p7m.to_str().expect("utf-8")];
    let run = depd_env(&upload, &[("DEPD_URL", &url), ("DEPD_API_KEY", KEY)]).await;
    assert!(
        run.ok()
            .starts_with("tokens stored for acme: consumer key ")
    );
    // The same file again is addressed to what is now the current
    // certificate: a renewal.
    let run = depd_env(&upload, &[("DEPD_URL", &url), ("DEPD_API_KEY", KEY)]).await;
    assert!(
        run.ok().starts_with("tokens stored for acme"),
        "{}",
        run.stderr
    );
    // A file that is no token file: a clear error and exit 1.
    let bogus = dir.path().join("bogus.p7m");
    std::fs::write(&bogus, "not a token file at all").expect("write");
    let upload = ["upload-token", "-n", "acme", bogus.to_str().expect("utf-8")];
    let run = depd_env(&upload, &[("DEPD_URL", &url), ("DEPD_API_KEY", KEY)]).await;
    assert!(run.failed(1).contains("p7m-"), "{}", run.stderr);
    let json = depd_env(
        &[&upload[..], &["--json"]].concat(),
        &[("DEPD_URL", &url), ("DEPD_API_KEY", KEY)],
    )
    .await;
    assert_eq!(json.code, 1, "--json changes only the output");

    let (text, json) = both(
        &app,
        &["maidjwt", "-n", "acme", "--server-uuid", "ABCD-1234"],
    )
    .await;
    assert_eq!(text.ok().matches('.').count(), 2, "a JWT: {}", text.stdout);
    let v = json.json();
    assert_eq!(v["server_uuid"], "ABCD-1234");
    assert_eq!(v["jwt"].as_str().map(|j| j.split('.').count()), Some(3));
}

#[actix_web::test]
async fn apple_commands_through_the_proxy() {
    let (app, sim) = TestApp::with_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let serials = sim.serials(0, 4);
    let (s0, s1, s2, s3) = (
        serials[0].as_str(),
        serials[1].as_str(),
        serials[2].as_str(),
        serials[3].as_str(),
    );

    let (text, json) = both(&app, &["account", "-n", "acme"]).await;
    let account = json.json();
    let uuid = account["server_uuid"].as_str().expect("server_uuid");
    assert!(
        text.ok().contains(&format!("server_uuid: {uuid}\n")),
        "{}",
        text.stdout
    );

    let (text, json) = both(&app, &["devices", "details", "-n", "acme", s0, s1]).await;
    let table = text.ok();
    // One row per device; the serial is a column of its own.
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0] == "devices:" && lines[1].contains("SERIAL_NUMBER"),
        "{table}"
    );
    assert!(lines[2].ends_with(s0) || lines[3].ends_with(s0), "{table}");
    assert_eq!(json.json()["devices"][s0]["serial_number"], s0);

    let profile = write(
        dir.path(),
        "profile.json",
        r#"{"profile_name":"CLI test","url":"https://mdm.example.com/enroll","is_supervised":true}"#,
    );
    let (text, json) = both(&app, &["profile", "define", "-n", "acme", &profile]).await;
    assert!(text.ok().contains("profile_uuid: "), "{}", text.stdout);
    let profile_uuid = json.json()["profile_uuid"]
        .as_str()
        .expect("profile_uuid")
        .to_owned();
    let bad = write(dir.path(), "bad.json", "{not json");
    let (text, _) = both(&app, &["profile", "define", "-n", "acme", &bad]).await;
    assert!(
        text.failed(1).contains("bad.json: not JSON"),
        "{}",
        text.stderr
    );

    let (text, json) = both(&app, &["profile", "get", "-n", "acme", &profile_uuid]).await;
    assert!(
        text.ok().contains("profile_name: CLI test\n"),
        "{}",
        text.stdout
    );
    assert_eq!(json.json()["profile_name"], "CLI test");

    let (text, json) = both(
        &app,
        &["profile", "assign", "-n", "acme", &profile_uuid, s0, s1],
    )
    .await;
    assert!(
        text.ok().contains(&format!("  {s0}: SUCCESS\n")),
        "{}",
        text.stdout
    );
    assert_eq!(json.json()["devices"][s1], "SUCCESS");

    let (text, json) = both(&app, &["profile", "remove", "-n", "acme", s0]).await;
    assert!(text.ok().contains(&format!("  {s0}: ")), "{}", text.stdout);
    assert!(json.json()["devices"][s0].is_string());

    let lock = [
        "activation-lock",
        "-n",
        "acme",
        s2,
        "--escrow-key",
        "abc",
        "--lost-message",
        "call us",
    ];
    let (text, json) = both(&app, &lock).await;
    assert!(
        text.ok().contains(&format!("serial_number: {s2}\n")),
        "{}",
        text.stdout
    );
    assert_eq!(json.json()["serial_number"], s2);

    let (text, json) = both(&app, &["disown", "-n", "acme", s3]).await;
    assert!(text.ok().contains(&format!("  {s3}: ")), "{}", text.stdout);
    assert!(json.json()["devices"][s3].is_string());

    // NanoDEP's variables work in place of the flags.
    let url = format!("http://{}", app.addr);
    let run = depd_env(
        &["account", "--json"],
        &[("BASE_URL", &url), ("APIKEY", KEY), ("DEP_NAME", "acme")],
    )
    .await;
    assert_eq!(run.json()["server_uuid"], uuid);
}

#[actix_web::test]
async fn sync_commands() {
    let (app, _sim) = TestApp::with_sim(SimConfig::default()).await;

    let (text, json) = both(&app, &["sync", "-n", "acme", "--wait"]).await;
    assert!(text.ok().contains("outcome: complete\n"), "{}", text.stdout);
    let report = json.json();
    assert_eq!(
        (report["dep_name"].as_str(), report["outcome"].as_str()),
        (Some("acme"), Some("complete"))
    );

    let (text, json) = both(&app, &["resync", "-n", "acme", "--wait"]).await;
    assert!(text.ok().contains("dep_name: acme\n"), "{}", text.stdout);
    assert_eq!(json.json()["outcome"], "complete");

    let (text, json) = both(&app, &["sync", "--all"]).await;
    assert!(text.ok().contains("started: acme\n"), "{}", text.stdout);
    assert_eq!(json.json()["started"][0], "acme");

    let (text, json) = both(&app, &["devices", "list", "-n", "acme", "--limit", "3"]).await;
    let lines: Vec<&str> = text.ok().lines().collect();
    assert!(lines[0].starts_with("SERIAL  "), "{}", text.stdout);
    assert_eq!(
        (lines.len(), lines[4]),
        (5, "3 of 100 devices"),
        "{}",
        text.stdout
    );
    let list = json.json();
    assert_eq!(list["total"], 100);
    let serial = list["devices"][0]["serial_number"]
        .as_str()
        .expect("serial")
        .to_owned();
    let (text, _) = both(
        &app,
        &["devices", "list", "-n", "acme", "--serial", &serial],
    )
    .await;
    assert!(
        text.ok()
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&serial)),
        "{}",
        text.stdout
    );

    let (text, json) = both(&app, &["status"]).await;
    let row = text.ok().lines().nth(1).unwrap_or_default().to_owned();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.get(4..6), Some(&["100", "complete"][..]), "{row}");
    assert_eq!(json.json()["dep_names"][0]["devices"]["total"], 100);
}

#[actix_web::test]
async fn errors_are_one_line_with_the_right_status() {
    let (app, _sim) = TestApp::with_sim(SimConfig::default()).await;
    let url = format!("http://{}", app.addr);

    let run = depd_env(&["names", "--url", &url], &[]).await;
    assert!(run.failed(2).contains("no API key"), "{}", run.stderr);
    let run = depd_env(&["names", "--url", &url, "--api-key", "wrong"], &[]).await;
    assert!(run.failed(1).contains("unauthorized"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("wrong"),
        "the API key is never printed"
    );
    let (text, json) = both(&app, &["account", "-n", "nobody"]).await;
    assert!(
        text.failed(1).contains("unknown-dep-name"),
        "{}",
        text.stderr
    );
    assert!(json.failed(1).contains("unknown-dep-name"));
    let run = depd_env(&["sync", "--url", &url, "--api-key", KEY], &[]).await;
    assert!(run.failed(2).contains("--all"), "{}", run.stderr);
    let run = depd_env(&["account", "--api-key", KEY], &[]).await;
    assert_eq!(
        run.code, 2,
        "a missing name is a usage error: {}",
        run.stderr
    );
    let run = depd_env(
        &["names", "--url", "http://127.0.0.1:1", "--api-key", KEY],
        &[],
    )
    .await;
    assert!(
        run.failed(1).contains("cannot reach depd"),
        "{}",
        run.stderr
    );
}

#[actix_web::test]
async fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = depd_env(&["completions", shell], &[]).await;
        let script = run.ok();
        assert!(
            script.contains("upload-token") && script.contains("activation-lock"),
            "{shell}"
        );
    }
}
