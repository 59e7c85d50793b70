//! depd: a daemon for Apple's Automated Device Enrollment (DEP) API.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

pub(crate) mod actors;
pub(crate) mod api;
pub mod app;
pub(crate) mod bypass;
pub mod cli;
pub mod clock;
#[cfg(feature = "sim")]
pub(crate) mod demo;
pub mod dep;
pub mod fsutil;
pub mod heap;
pub mod import;
pub(crate) mod jwt;
pub mod logging;
pub(crate) mod metrics;
pub mod name;
pub(crate) mod notify;
pub(crate) mod oneshot;
pub mod pki;
#[cfg(test)]
mod proptests;
pub(crate) mod redact;
pub mod serve;
pub(crate) mod session;
pub mod settings;
pub(crate) mod signals;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state;
pub mod store;
pub(crate) mod sync;
pub mod tokens;
pub mod tools;
