//! The validated DEP name: the one identifier that routes every request to a
//! name's actor and keys every stored record of that name.

use std::fmt;

/// Longest accepted DEP name, in characters (as JSON Schema's `maxLength`
/// counts them, so the API document can state the rule exactly).
pub const MAX_NAME_CHARS: usize = 128;

/// A DEP name that is safe to use as a path segment, a storage key and a
/// log field: non-empty, at most [`MAX_NAME_CHARS`] characters, no `/`, no `\`,
/// no control characters, and not `.` or `..` nor containing `..`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DepName(String);

/// Why a string is not a valid DEP name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("DEP name is empty")]
    Empty,
    #[error("DEP name is longer than {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("DEP name contains a forbidden character ({0:?})")]
    ForbiddenChar(char),
    #[error("DEP name contains \"..\"")]
    DotDot,
}

impl DepName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err(NameError::TooLong);
        }
        if let Some(c) = raw
            .chars()
            .find(|c| *c == '/' || *c == '\\' || c.is_control())
        {
            return Err(NameError::ForbiddenChar(c));
        }
        if raw == "." || raw.contains("..") {
            return Err(NameError::DotDot);
        }
        Ok(DepName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "acme",
            "Acme Prod",
            "école-1",
            "a.b",
            "x_y-z",
            &"n".repeat(128),
            &"é".repeat(128),
            ".a",
            "a.",
        ] {
            assert_eq!(
                DepName::parse(ok).map(|n| n.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        let cases: [(&str, NameError); 8] = [
            ("", NameError::Empty),
            (&"n".repeat(129), NameError::TooLong),
            ("a/b", NameError::ForbiddenChar('/')),
            ("a\\b", NameError::ForbiddenChar('\\')),
            ("a\nb", NameError::ForbiddenChar('\n')),
            ("a\u{7f}", NameError::ForbiddenChar('\u{7f}')),
            ("..", NameError::DotDot),
            ("a..b", NameError::DotDot),
        ];
        for (raw, want) in cases {
            assert_eq!(DepName::parse(raw), Err(want), "{raw:?}");
        }
        assert_eq!(DepName::parse("."), Err(NameError::DotDot));
    }
}
