//! The actors: a [`Registry`] that owns one [`DepNameActor`] per DEP name.
//! The DEP-name actor is the only writer of its name's state; HTTP handlers
//! send it messages. The rules live in plain structs (`crate::domain::state`); the
//! actors only wire them to mailboxes, storage and time.

mod apple_session;
mod dep_name;
mod grant;
pub mod mdm;
pub mod push;
mod registry;
mod rules;
mod status;
mod sync;
mod syncer;

pub use apple_session::{ServerUuid, ServerUuidError, Session, SessionRotated};
pub use dep_name::{AcceptTokenFile, GetPki, Now, PkiOpError, PkiSlot, PutStagingPki};
pub use dep_name::{
    DepNameActor, GetAssigner, GetConfig, GetTokens, NameOpError, PutAssigner, PutConfig, PutTokens,
};
pub use grant::{Grant, SessionError};
pub use registry::{Create, Directory, ListNames, Ping, Registry, Reload, Resolve};
pub use rules::{
    DefineProfile, DeleteProfile, GetProfiles, GetRules, PreviewRules, ProfileOpError, PutRules,
    RulesError,
};
pub use status::GetStatus;
pub use sync::{
    CycleReport, ListAssignments, Outcome, QueryDevices, RecordRemovals, SyncNow, SyncRefused, Tick,
};
