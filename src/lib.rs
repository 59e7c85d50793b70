//! depd: a daemon for Apple's Automated Device Enrollment (DEP) API.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

pub mod actors;
pub mod api;
pub mod app;
pub mod bypass;
pub mod cli;
pub mod clock;
#[cfg(feature = "sim")]
pub mod demo;
pub mod dep;
pub mod fsutil;
pub mod heap;
pub mod import;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod notify;
pub mod oneshot;
pub mod pki;
#[cfg(test)]
mod proptests;
pub mod redact;
pub mod serve;
pub mod session;
pub mod settings;
pub mod signals;
#[cfg(feature = "sim")]
pub mod sim;
pub mod state;
pub mod store;
pub mod sync;
pub mod tokens;
pub mod tools;
