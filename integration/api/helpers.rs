//! Test harness: the real application in-process on 127.0.0.1:0 with a
//! temporary data directory, and the real `depd` binary as a child process
//! for restart and signal tests.

use actix_web::http::Method;
use depd::daemon::app::Application;
use depd::settings::{self, FlagOverrides, Secret};
use depd::sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;
use tempfile::TempDir;

pub const KEY: &str = "test-api-key";
/// The DEP name the simulator-backed tests use.
pub const NAME: &str = "acme";

/// A generous upper bound for a child process to say something; reaching it
/// fails the test (it is not a timing assumption).
const PATIENCE: Duration = Duration::from_secs(60);

pub struct TestApp {
    pub addr: SocketAddr,
    pub handle: depd::daemon::app::AppHandle,
    client: awc::Client,
    _dir: TempDir,
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The stable error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with_config("").await
    }

    /// Starts the application with `config` as its TOML file.
    pub async fn spawn_with_config(config: &str) -> TestApp {
        TestApp::spawn_with(
            config,
            std::sync::Arc::new(depd::domain::clock::SystemClock),
        )
        .await
    }

    /// Starts the application with `config` and an injected clock. Unless
    /// the config has a `[sync]` table, cycles run only when a test asks
    /// (`sync.auto = false`): no test reaches beyond loopback by accident.
    pub async fn spawn_with(config: &str, clock: depd::domain::clock::SharedClock) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("depd.toml");
        std::fs::write(&file, no_auto_sync(config)).expect("write config");
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().join("data")),
            api_key: Some(Secret::new(KEY)),
            webhook_url: None,
            log_format: None,
        };
        let settings = settings::load(Some(&file), Vec::new(), &flags).expect("settings");
        let app = Application::build_with_clock(settings, clock)
            .await
            .expect("build");
        let addr = app.addr();
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            addr,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Reloads the running application with `config` as its new file, as
    /// SIGHUP does for the daemon, and returns once every actor has the new
    /// settings queued (its next message sees them).
    pub async fn reload_config(&self, config: &str) {
        let file = self._dir.path().join("depd.toml");
        std::fs::write(&file, no_auto_sync(config)).expect("write config");
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(self._dir.path().join("data")),
            api_key: Some(Secret::new(KEY)),
            webhook_url: None,
            log_format: None,
        };
        let settings = settings::load(Some(&file), Vec::new(), &flags).expect("settings");
        self.handle.reload(settings);
        assert!(self.handle.actors_answer(PATIENCE).await, "actors answer");
    }

    /// The test's HTTP client, for requests with custom headers.
    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// depd plus a simulator started with `sim`; DEP name `acme` holds the
    /// simulator's tokens and points at it.
    pub async fn with_sim(sim: SimConfig) -> (TestApp, SimHandle) {
        let sim = Simulator::start(sim).expect("start depsim");
        let app = TestApp::spawn().await;
        app.point(NAME, &sim).await;
        (app, sim)
    }

    /// Stores `sim`'s tokens and base URL for `name`.
    pub async fn point(&self, name: &str, sim: &SimHandle) {
        let r = self
            .put(&format!("/v1/tokens/{name}"), &sim.tokens_json())
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let config = serde_json::json!({ "base_url": sim.base_url() }).to_string();
        let r = self.put(&format!("/v1/config/{name}"), &config).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    /// A request authenticated with the API key.
    pub async fn call(&self, method: Method, path: &str, body: &[u8]) -> Reply {
        self.call_as(method, path, Some(("depserver", KEY)), body)
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, b"").await
    }

    pub async fn put(&self, path: &str, body: &str) -> Reply {
        self.call(Method::PUT, path, body.as_bytes()).await
    }

    pub async fn call_as(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: &[u8],
    ) -> Reply {
        send(&self.client, method, &self.url(path), auth, body.to_vec()).await
    }
}

pub async fn send(
    client: &awc::Client,
    method: Method,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Vec<u8>,
) -> Reply {
    let mut req = client.request(method, url);
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, pass);
    }
    let mut resp = req.send_body(body).await.expect("request");
    let body = resp.body().limit(64 * 1024 * 1024).await.expect("body");
    Reply {
        status: resp.status().as_u16(),
        body: body.to_vec(),
    }
}

pub fn tokens_json(consumer_key: &str) -> String {
    format!(
        r#"{{"consumer_key":"{consumer_key}","consumer_secret":"CS_secret","access_token":"AT_token","access_secret":"AS_secret","access_token_expiry":"2027-06-01T12:00:00Z"}}"#
    )
}

/// The real `depd serve` as a child process with JSON logs on stderr.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every log line read so far, in order.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Starts `depd serve --config <config> --data-dir <data>` on port 0 and
    /// waits for its "listening" log line.
    pub fn start(config: &Path, data: &Path) -> Daemon {
        Daemon::start_with_env(config, data, &[])
    }

    pub fn start_with_env(config: &Path, data: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_depd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env_remove("DEPD_API_KEY")
            .env_remove("DEPD_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn depd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child,
            addr: "0.0.0.0:0".parse().expect("addr"),
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        };
        let line = daemon.wait_for_log("listening");
        let v: Value = serde_json::from_str(&line).expect("JSON log line");
        daemon.addr = v["fields"]["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("listening addr");
        daemon
    }

    /// Reads log lines until one whose message is `message`; returns it.
    pub fn wait_for_log(&mut self, message: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let matches = serde_json::from_str::<Value>(&line)
                        .map(|v| v["fields"]["message"].as_str() == Some(message))
                        .unwrap_or(false);
                    if matches {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no log line {message:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("depd exited before logging {message:?}")
                }
            }
        }
    }

    /// Stops reading depd's log. The reader lets go of the pipe after the
    /// next line depd writes; [`Daemon::log_closed`] waits for that.
    pub fn stop_reading_log(&mut self) {
        let (_, closed) = channel();
        drop(std::mem::replace(&mut self.lines, closed));
    }

    /// After [`Daemon::stop_reading_log`] and one more log line: depd's
    /// standard error is now a pipe nobody reads (as after journald
    /// restarts).
    pub fn log_closed(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait")
    }

    /// SIGKILL: the process dies wherever it is, with no chance to flush.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config file into `dir` and returns its path (with automatic
/// sync off unless `text` has a `[sync]` table).
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("depd.toml");
    let mut f = std::fs::File::create(&path).expect("create config");
    f.write_all(no_auto_sync(text).as_bytes())
        .expect("write config");
    path
}

fn no_auto_sync(config: &str) -> String {
    if config.contains("[sync]") {
        config.to_owned()
    } else {
        format!("{config}\n[sync]\nauto = false\n")
    }
}
