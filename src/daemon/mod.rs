//! The daemon's life cycle: building the application (storage, actors,
//! HTTP server), serving until a signal, reloading on SIGHUP, systemd's
//! notify protocol and watchdog, logging, heap tuning, private files, and
//! the in-process demo.

pub mod app;
#[cfg(feature = "sim")]
pub(crate) mod demo;
pub mod heap;
pub mod logging;
pub(crate) mod notify;
pub(crate) mod redact;
pub mod serve;
pub(crate) mod signals;
