//! systemd's notify protocol (`sd_notify`): readiness, reload, stop and
//! watchdog messages sent as datagrams to the socket named by
//! `NOTIFY_SOCKET`. Written by hand on std's `UnixDatagram` because the
//! protocol is one datagram of `KEY=value` lines; a crate would add more
//! than it gives. Without `NOTIFY_SOCKET` (not under systemd, or
//! `Type=simple`) every call does nothing.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go; a no-op when systemd gave no socket.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an abstract @name")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET: {0}")]
    Io(#[from] std::io::Error),
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET` as found in `env`.
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, NotifyError> {
        let socket = env
            .into_iter()
            .find(|(k, _)| k == "NOTIFY_SOCKET")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty());
        let Some(socket) = socket else {
            return Ok(Notifier { target: None });
        };
        let addr = parse_address(&socket)?;
        Ok(Notifier {
            target: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    /// Whether systemd listens (`NOTIFY_SOCKET` was set).
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message. A failure is logged, never fatal: systemd going
    /// away must not stop the daemon.
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send(READY);
    }

    /// Tells systemd a reload started (before re-reading the configuration).
    pub fn reloading(&self) {
        if self.is_active() {
            match monotonic_usec() {
                Ok(usec) => self.send(&reloading_message(usec)),
                Err(e) => tracing::warn!(error = %e, "reading CLOCK_MONOTONIC failed"),
            }
        }
    }

    pub fn stopping(&self) {
        self.send(STOPPING);
    }

    pub fn watchdog(&self) {
        self.send(WATCHDOG);
    }
}

pub const READY: &str = "READY=1";
pub const STOPPING: &str = "STOPPING=1";
pub const WATCHDOG: &str = "WATCHDOG=1";

/// `RELOADING=1` with the monotonic time systemd needs (since v253) to
/// match the later `READY=1` to this reload.
pub fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

/// `@name` is a Linux abstract socket; anything else must be a path.
fn parse_address(raw: &str) -> Result<SocketAddr, NotifyError> {
    if let Some(name) = raw.strip_prefix('@') {
        Ok(SocketAddr::from_abstract_name(name.as_bytes())?)
    } else if raw.starts_with('/') {
        Ok(SocketAddr::from_pathname(OsStr::from_bytes(
            raw.as_bytes(),
        ))?)
    } else {
        Err(NotifyError::BadAddress(raw.to_owned()))
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as systemd
/// recommends, when it is set for this process (`WATCHDOG_PID` absent or
/// ours).
pub fn watchdog_interval(
    env: impl IntoIterator<Item = (String, String)>,
    pid: u32,
) -> Option<Duration> {
    let mut usec = None;
    let mut for_us = true;
    for (key, value) in env {
        match key.as_str() {
            "WATCHDOG_USEC" => usec = value.trim().parse::<u64>().ok().filter(|u| *u > 0),
            "WATCHDOG_PID" => for_us = value.trim().parse::<u32>().ok() == Some(pid),
            _ => {}
        }
    }
    usec.filter(|_| for_us)
        .map(|u| Duration::from_micros(u / 2))
}

/// CLOCK_MONOTONIC in microseconds. `std::time::Instant` reads the same
/// clock but does not expose its absolute value, which systemd compares
/// with its own reading.
fn monotonic_usec() -> std::io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    #[allow(unsafe_code)] // reviewed: writes only into `ts`, on the stack
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).map_err(std::io::Error::other)?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(std::io::Error::other)?;
    Ok(secs * 1_000_000 + nanos / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn messages_are_systemd_key_value_lines() {
        assert_eq!(READY, "READY=1");
        assert_eq!(STOPPING, "STOPPING=1");
        assert_eq!(WATCHDOG, "WATCHDOG=1");
        assert_eq!(
            reloading_message(1_234_567),
            "RELOADING=1\nMONOTONIC_USEC=1234567"
        );
    }

    #[test]
    fn monotonic_clock_is_read_and_moves_forward() {
        let a = monotonic_usec().expect("clock");
        let b = monotonic_usec().expect("clock");
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn watchdog_is_half_the_interval_and_only_for_our_pid() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(
            watchdog_interval(env(&[("WATCHDOG_USEC", "200000")]), 7),
            half
        );
        assert_eq!(
            watchdog_interval(
                env(&[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "7")]),
                7
            ),
            half
        );
        assert_eq!(
            watchdog_interval(
                env(&[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "8")]),
                7
            ),
            None
        );
        assert_eq!(watchdog_interval(env(&[("WATCHDOG_USEC", "0")]), 7), None);
        assert_eq!(watchdog_interval(env(&[("WATCHDOG_USEC", "x")]), 7), None);
        assert_eq!(watchdog_interval(env(&[]), 7), None);
    }

    #[test]
    fn without_socket_nothing_is_sent_and_addresses_are_checked() {
        let n = Notifier::from_env(env(&[])).expect("notifier");
        assert!(!n.is_active());
        n.ready();
        assert!(matches!(
            Notifier::from_env(env(&[("NOTIFY_SOCKET", "relative")])),
            Err(NotifyError::BadAddress(_))
        ));
    }

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::from_env(env(&[(
            "NOTIFY_SOCKET",
            path.to_str().expect("utf-8 path"),
        )]))
        .expect("notifier");
        n.ready();
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf).expect("recv");
        let text = std::str::from_utf8(&buf[..len]).expect("utf-8");
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");

        let name = format!("depd-notify-test-{}", std::process::id());
        let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&abstract_addr).expect("bind abstract");
        let n =
            Notifier::from_env(env(&[("NOTIFY_SOCKET", &format!("@{name}"))])).expect("notifier");
        n.stopping();
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
