//! The NanoMDM-compatible MDM service's protocol rules, runtime-free like
//! `dep/` and `sync/`: what devices send and how depd answers, enrollment
//! IDs, the device identity certificate, certificate associations, command
//! queues, the webhook's events and Declarative Management forwarding.
//! Behaviour and wire shapes are documented in `docs/api.md` ("The MDM
//! service") and `docs/operations.md`; NanoMDM's fixtures that pin them are
//! in `integration/testdata/nanomdm/`.

pub mod certauth;
pub mod identity;
pub mod ids;
pub mod message;
pub mod service;
pub mod webhook;
