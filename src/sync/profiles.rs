//! Managed enrollment profiles: a profile definition kept under a local
//! name, defined at Apple by depd, with the UUID Apple gave each version.
//! Apple's profiles cannot change: a new definition is a new profile and
//! a new UUID, and the devices that had the old one move to it (rules
//! name the local name, so their target changes). Runtime-free: the
//! checks and the stored shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// At most this many managed profiles per DEP name, and versions kept.
pub const MAX_PROFILES: usize = 1_000;
pub const MAX_HISTORY: usize = 100;

/// One version of a managed profile at Apple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileVersion {
    pub profile_uuid: String,
    /// RFC 3339.
    pub defined_at: String,
}

/// A managed profile: the definition as given, and its versions at Apple
/// (the last is current).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedProfile {
    pub definition: Map<String, Value>,
    pub profile_uuid: String,
    pub history: Vec<ProfileVersion>,
}

/// A name's managed profiles by local name (stored as JSON).
pub type Profiles = BTreeMap<String, ManagedProfile>;

/// Why a definition or a local name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProfileError(pub String);

/// A local name: 1 to 64 letters, digits, `.`, `_` or `-`, and not
/// something that looks like a profile UUID (rules could not tell them
/// apart).
pub fn check_local_name(name: &str) -> Result<(), ProfileError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(ProfileError(format!(
            "profile name {name:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        )));
    }
    if super::rules::looks_like_uuid(name) {
        return Err(ProfileError(format!(
            "profile name {name:?} looks like a profile UUID; pick another name"
        )));
    }
    Ok(())
}

/// Checks Apple's profile JSON as `PUT /v1/profiles/{name}/{profile}`
/// takes it: an object with non-empty `profile_name` and `url`, without
/// `devices` (rules decide those). Other keys pass to Apple unchanged.
pub fn check_definition(body: &[u8]) -> Result<Map<String, Value>, ProfileError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ProfileError(format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(ProfileError("the body is not a JSON object".into()));
    };
    for key in ["profile_name", "url"] {
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(ProfileError(format!(
                    "{key} is required (a non-empty string)"
                )));
            }
        }
    }
    if map.contains_key("devices") {
        return Err(ProfileError(
            "devices is not accepted: assignment rules decide which devices get the profile".into(),
        ));
    }
    Ok(map)
}

/// Reads stored profiles; what does not read is none (logged by the
/// caller).
pub fn parse(json: &str) -> Result<Profiles, ProfileError> {
    serde_json::from_str(json).map_err(|e| ProfileError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_and_definitions_are_checked() {
        for ok in ["macs", "lab-2024", "Setup.iPad_v2"] {
            assert!(check_local_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "x/y",
            "9A1C0000000000000000000000000000",
            "9a1c0000-0000-0000-0000-000000000000",
            &"x".repeat(65),
        ] {
            assert!(check_local_name(bad).is_err(), "{bad}");
        }
        let ok = check_definition(
            br#"{"profile_name": "Macs", "url": "https://mdm/e", "is_supervised": true}"#,
        )
        .expect("valid");
        assert_eq!(ok["is_supervised"], Value::Bool(true));
        for (bad, says) in [
            (&br#"{"url": "https://mdm/e"}"#[..], "profile_name"),
            (br#"{"profile_name": "M", "url": ""}"#, "url"),
            (
                br#"{"profile_name": "M", "url": "u", "devices": ["S"]}"#,
                "devices",
            ),
            (br#"[1]"#, "object"),
            (b"nope", "JSON"),
        ] {
            let e = check_definition(bad).expect_err("refused");
            assert!(e.0.contains(says), "{e}");
        }
    }
}
