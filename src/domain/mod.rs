//! The domain model, free of runtime and storage: DEP names, OAuth token
//! JSON, the rules for one name's stored state, the rules for its Apple
//! session, and the injected clock they are written against.

pub mod clock;
pub mod name;
pub(crate) mod session_rules;
pub mod state;
pub mod tokens;
