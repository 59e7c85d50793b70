//! systemd's notify protocol, observed on a socket the test provides:
//! READY=1 at start, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around
//! a SIGHUP, watchdog pings, STOPPING=1 at SIGTERM.

use crate::helpers::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Receives the next datagram that is not a watchdog ping; counts pings.
fn next_non_ping(socket: &UnixDatagram, pings: &mut usize) -> String {
    let mut buf = [0u8; 1024];
    loop {
        let len = socket.recv(&mut buf).expect("a notify message");
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text == "WATCHDOG=1" {
            *pings += 1;
        } else {
            return text;
        }
    }
}

#[test]
fn ready_reload_watchdog_and_stopping_are_notified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "api_key = \"test-api-key\"\n");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    // Generous: reaching it fails the test, it is not a timing assumption.
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let socket_env = path.to_str().expect("utf-8 temp path");
    let mut d = Daemon::start_with_env(
        &config,
        &dir.path().join("data"),
        &[("NOTIFY_SOCKET", socket_env), ("WATCHDOG_USEC", "200000")],
    );
    let mut pings = 0;
    assert_eq!(next_non_ping(&socket, &mut pings), "READY=1");

    // Pings every 100 ms (half of WATCHDOG_USEC) while the actors answer.
    let mut buf = [0u8; 64];
    while pings < 3 {
        let len = socket.recv(&mut buf).expect("a watchdog ping");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        pings += 1;
    }

    d.signal("HUP");
    let reloading = next_non_ping(&socket, &mut pings);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("not a reload message: {reloading:?}"));
    assert!(usec.parse::<u64>().expect("microseconds") > 0);
    assert_eq!(next_non_ping(&socket, &mut pings), "READY=1");
    d.wait_for_log("configuration reloaded");

    d.signal("TERM");
    assert_eq!(next_non_ping(&socket, &mut pings), "STOPPING=1");
    assert!(d.wait().success());
}

#[test]
fn nothing_is_sent_without_notify_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "api_key = \"test-api-key\"\n");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut d = Daemon::start_with_env(
        &config,
        &dir.path().join("data"),
        &[("WATCHDOG_USEC", "200000")],
    );
    d.signal("HUP");
    d.wait_for_log("configuration reloaded");
    d.signal("TERM");
    assert!(d.wait().success());
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "a message arrived");
}
