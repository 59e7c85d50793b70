//! The real `depd` binary for the benches: `depd serve` on a free port,
//! configured by a TOML text, its data in `dir/data`. Shared by the benches
//! so each measures depd alone, in its own process.

use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// Starts depd with `config` written to `dir/depd.toml` and returns once it
/// listens: the child, its base URL, and the rest of its log (JSON lines),
/// which the caller must keep reading so depd never blocks on a full pipe.
pub fn serve(dir: &Path, config: &str) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let path = dir.join("depd.toml");
    std::fs::write(&path, config).expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(["serve", "--log-format", "json", "--listen", &addr])
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("DEPD_API_KEY")
        .env_remove("DEPD_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn depd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut listening = false;
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("\"listening\"") {
            listening = true;
            break;
        }
        eprintln!("{line}");
    }
    assert!(listening, "depd did not start");
    (child, format!("http://{addr}"), lines)
}

/// Reads and drops the rest of a log. (Not every bench uses it.)
#[allow(dead_code)]
pub fn drain(lines: Lines<BufReader<ChildStderr>>) {
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
}

/// A count from the environment (`name`), else `default`.
#[allow(dead_code)]
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, VmHWM) of a process, MiB.
#[allow(dead_code)]
pub fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}
