//! depd: a daemon for Apple's Automated Device Enrollment (DEP) API.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants.

pub mod clock;
pub mod name;
pub mod settings;
pub mod store;
