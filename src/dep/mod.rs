//! Talking to Apple's DEP API: wire types, typed errors, OAuth1 signing and
//! the client.

pub mod allowlist;
pub mod client;
pub mod error;
pub mod oauth1;
pub mod retry_after;
pub mod wire;

pub use error::DepError;
