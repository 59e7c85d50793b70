//! depd: a daemon for Apple's Automated Device Enrollment (DEP) API.
//!
//! See `ARCHITECTURE.md` for the code map, the allowed direction of
//! dependencies and the invariants. In short, from the outside in:
//! `daemon` (life cycle) starts `api` (HTTP) and `actors` (one per DEP
//! name), which drive the runtime-free rules of `sync` and `domain` over
//! `dep` (Apple's protocol) and `store` (storage). `cli` holds the command
//! line's client and offline tools; `sim` is depsim, in default builds only.

pub(crate) mod actors;
pub(crate) mod api;
pub mod apns;
pub mod cli;
pub mod daemon;
pub mod dep;
pub mod domain;

pub(crate) mod mdm;
pub(crate) mod metrics;
pub mod pki;
#[cfg(test)]
mod proptests;
pub mod settings;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub(crate) mod sync;
