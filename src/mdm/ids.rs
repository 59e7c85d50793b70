//! Enrollment IDs: the one string that names a channel of an MDM
//! enrollment, resolved from a message's identifying keys exactly as
//! NanoMDM resolves them (the table in `docs/api.md`), so IDs, webhooks and
//! API targets match a NanoMDM deployment's.

use std::fmt;

/// The identifying keys of a check-in or report (empty when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub udid: String,
    pub user_id: String,
    pub user_short_name: String,
    pub user_long_name: String,
    pub enrollment_id: String,
    pub enrollment_user_id: String,
}

/// The `UserID` a Shared iPad's user channel carries.
pub const SHARED_IPAD_USER_ID: &str = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF";

/// The kind of channel an enrollment ID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrollType {
    Device,
    User,
    UserEnrollmentDevice,
    UserEnrollment,
    SharedIpad,
}

impl EnrollType {
    pub const ALL: [EnrollType; 5] = [
        EnrollType::Device,
        EnrollType::User,
        EnrollType::UserEnrollmentDevice,
        EnrollType::UserEnrollment,
        EnrollType::SharedIpad,
    ];

    /// The type string of NanoMDM's webhook and DM headers.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollType::Device => "Device",
            EnrollType::User => "User",
            EnrollType::UserEnrollmentDevice => "User Enrollment (Device)",
            EnrollType::UserEnrollment => "User Enrollment",
            EnrollType::SharedIpad => "Shared iPad",
        }
    }

    /// NanoMDM's numeric code (stored; also the order of [`Self::ALL`]).
    pub fn code(self) -> u8 {
        match self {
            EnrollType::Device => 1,
            EnrollType::User => 2,
            EnrollType::UserEnrollmentDevice => 3,
            EnrollType::UserEnrollment => 4,
            EnrollType::SharedIpad => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Parses the type string (as the API's filters take it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether this is a user channel (it has a parent device channel).
    pub fn is_user_channel(self) -> bool {
        matches!(
            self,
            EnrollType::User | EnrollType::UserEnrollment | EnrollType::SharedIpad
        )
    }
}

impl fmt::Display for EnrollType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolved channel: its ID, its device channel's ID when it is a user
/// channel, and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnrollmentId {
    pub id: String,
    pub parent: Option<String>,
    pub kind: EnrollType,
}

impl EnrollmentId {
    /// The device channel's ID: the key of certificate associations and
    /// of the owner of this enrollment's state.
    pub fn device_channel(&self) -> &str {
        self.parent.as_deref().unwrap_or(&self.id)
    }

    /// A user channel's user part (what follows `<device>:`).
    pub fn user(&self) -> Option<&str> {
        let parent = self.parent.as_deref()?;
        self.id.strip_prefix(parent)?.strip_prefix(':')
    }
}

/// The device channel of an enrollment ID given as text (the API's and the
/// queue's form): the part before the first `:`, or the whole ID.
pub fn device_channel_of(id: &str) -> &str {
    id.split_once(':').map_or(id, |(d, _)| d)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message has neither a UDID nor an EnrollmentID")]
pub struct Unresolvable;

/// Resolves the enrollment ID of a message (§5.2): `UDID` first, then
/// `EnrollmentID`; a user part makes it a user channel.
pub fn resolve(ident: &Identity) -> Result<EnrollmentId, Unresolvable> {
    if !ident.udid.is_empty() {
        let device = ident.udid.clone();
        if ident.user_id.is_empty() {
            return Ok(EnrollmentId {
                id: device,
                parent: None,
                kind: EnrollType::Device,
            });
        }
        let (kind, user) = if ident.user_id == SHARED_IPAD_USER_ID {
            (EnrollType::SharedIpad, &ident.user_short_name)
        } else {
            (EnrollType::User, &ident.user_id)
        };
        return Ok(EnrollmentId {
            id: format!("{device}:{user}"),
            parent: Some(device),
            kind,
        });
    }
    if !ident.enrollment_id.is_empty() {
        let device = ident.enrollment_id.clone();
        if ident.enrollment_user_id.is_empty() {
            return Ok(EnrollmentId {
                id: device,
                parent: None,
                kind: EnrollType::UserEnrollmentDevice,
            });
        }
        return Ok(EnrollmentId {
            id: format!("{device}:{}", ident.enrollment_user_id),
            parent: Some(device),
            kind: EnrollType::UserEnrollment,
        });
    }
    Err(Unresolvable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(udid: &str, user: &str, short: &str, eid: &str, euid: &str) -> Identity {
        Identity {
            udid: udid.into(),
            user_id: user.into(),
            user_short_name: short.into(),
            enrollment_id: eid.into(),
            enrollment_user_id: euid.into(),
            ..Identity::default()
        }
    }

    #[test]
    fn resolution_table() {
        let cases = [
            (ident("a", "", "", "", ""), "a", None, EnrollType::Device),
            (
                ident("a", "b", "", "", ""),
                "a:b",
                Some("a"),
                EnrollType::User,
            ),
            (
                ident("a", SHARED_IPAD_USER_ID, "appleid@example.com", "", ""),
                "a:appleid@example.com",
                Some("a"),
                EnrollType::SharedIpad,
            ),
            (
                ident("", "", "", "c", ""),
                "c",
                None,
                EnrollType::UserEnrollmentDevice,
            ),
            (
                ident("", "", "", "c", "d"),
                "c:d",
                Some("c"),
                EnrollType::UserEnrollment,
            ),
            // UDID wins over EnrollmentID.
            (ident("a", "", "", "c", "d"), "a", None, EnrollType::Device),
        ];
        for (ident, id, parent, kind) in cases {
            let got = resolve(&ident).expect("resolves");
            assert_eq!(got.id, id);
            assert_eq!(got.parent.as_deref(), parent);
            assert_eq!(got.kind, kind);
            assert_eq!(got.device_channel(), parent.unwrap_or(id));
            assert_eq!(device_channel_of(&got.id), got.device_channel());
            assert_eq!(
                got.user(),
                parent.map(|p| &id[p.len() + 1..]),
                "the user part of {id}"
            );
        }
        assert_eq!(resolve(&Identity::default()), Err(Unresolvable));
    }

    #[test]
    fn type_strings_and_codes_round_trip() {
        for t in EnrollType::ALL {
            assert_eq!(EnrollType::parse(t.as_str()), Some(t));
            assert_eq!(EnrollType::from_code(t.code()), Some(t));
        }
        assert_eq!(
            EnrollType::UserEnrollmentDevice.as_str(),
            "User Enrollment (Device)"
        );
        assert!(EnrollType::SharedIpad.is_user_channel());
        assert!(!EnrollType::UserEnrollmentDevice.is_user_channel());
    }
}
