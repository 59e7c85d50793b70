//! Certificate-to-enrollment associations: which device
//! identity may speak for which device channel. The decision is a pure
//! function of three stored facts; the enrollment's owner reads them,
//! decides and writes the association in the same step, so a refused
//! request changes nothing.
//!
//! Storage keeps the latest hash per device channel (NanoMDM's KV
//! semantics): re-enrolling with a new identity replaces the binding, and
//! the old identity no longer speaks for the device.

/// What is stored about a device channel `D` and a certificate hash `h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// `D`'s current binding is `h`.
    pub associated: bool,
    /// `D` is bound to some hash.
    pub device_has_hash: bool,
    /// `h` is, or was, bound to some device channel.
    pub hash_known: bool,
}

/// Why a request was refused (the device gets 500, as from NanoMDM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cert re-use not permitted")]
    ReUse,
    #[error("enrollment not associated with cert")]
    NotAssociated,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Already bound: go on.
    Allow,
    /// Bind `D` to `h`, then go on.
    Associate,
    Refuse(Refusal),
}

/// Decides for an `Authenticate` (a new enrollment) or any other message,
/// with or without the retroactive option.
pub fn decide(authenticate: bool, retro: bool, f: Facts) -> Decision {
    if authenticate {
        return match (f.hash_known, f.associated) {
            (false, _) => Decision::Associate,
            (true, true) => Decision::Allow,
            (true, false) => Decision::Refuse(Refusal::ReUse),
        };
    }
    if f.associated {
        return Decision::Allow;
    }
    if !retro {
        return Decision::Refuse(Refusal::NotAssociated);
    }
    if f.device_has_hash || f.hash_known {
        return Decision::Refuse(Refusal::ReUse);
    }
    Decision::Associate
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Facts = Facts {
        associated: false,
        device_has_hash: false,
        hash_known: false,
    };

    #[test]
    fn authenticate_binds_a_new_identity_and_refuses_anothers() {
        assert_eq!(decide(true, false, NONE), Decision::Associate);
        let same = Facts {
            associated: true,
            device_has_hash: true,
            hash_known: true,
        };
        assert_eq!(decide(true, false, same), Decision::Allow);
        let others = Facts {
            hash_known: true,
            ..NONE
        };
        assert_eq!(
            decide(true, false, others),
            Decision::Refuse(Refusal::ReUse)
        );
        // A device re-enrolling with a new identity gets it bound.
        let new_identity = Facts {
            device_has_hash: true,
            ..NONE
        };
        assert_eq!(decide(true, false, new_identity), Decision::Associate);
    }

    #[test]
    fn other_messages_need_the_binding_unless_retro() {
        assert_eq!(
            decide(false, false, NONE),
            Decision::Refuse(Refusal::NotAssociated)
        );
        let bound = Facts {
            associated: true,
            device_has_hash: true,
            hash_known: true,
        };
        assert_eq!(decide(false, false, bound), Decision::Allow);
        assert_eq!(decide(false, true, bound), Decision::Allow);
        assert_eq!(decide(false, true, NONE), Decision::Associate);
        let swapped = Facts {
            device_has_hash: true,
            ..NONE
        };
        assert_eq!(
            decide(false, true, swapped),
            Decision::Refuse(Refusal::ReUse)
        );
        let taken = Facts {
            hash_known: true,
            ..NONE
        };
        assert_eq!(decide(false, true, taken), Decision::Refuse(Refusal::ReUse));
    }
}
