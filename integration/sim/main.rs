//! Integration tests of `depsim`, driven by a minimal independent client
//! (awc and hand-built requests, its own OAuth1 signer).

mod cursors;
mod determinism;
mod endpoints;
mod faults;
mod helpers;
mod p7m;
mod session;
