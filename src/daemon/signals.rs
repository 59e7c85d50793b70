//! Every OS signal depd reacts to, mapped in this one place into one enum.
//! signal-hook's iterator runs on its own thread and forwards to the
//! runtime through a channel, so no async code runs in a signal context.

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read and apply the configuration file.
    Reload,
    /// SIGTERM, SIGINT, SIGQUIT: stop gracefully.
    Shutdown,
}

fn map(raw: i32) -> Signal {
    match raw {
        SIGHUP => Signal::Reload,
        _ => Signal::Shutdown,
    }
}

/// Starts listening; signals arrive on the returned channel.
pub fn listen() -> std::io::Result<UnboundedReceiver<Signal>> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGQUIT])?;
    let (tx, rx) = unbounded_channel();
    std::thread::Builder::new()
        .name("depd-signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                if tx.send(map(raw)).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_signal() {
        assert_eq!(map(SIGHUP), Signal::Reload);
        for s in [SIGTERM, SIGINT, SIGQUIT] {
            assert_eq!(map(s), Signal::Shutdown);
        }
    }
}
