//! Decoding what devices send (check-ins and command reports) and what
//! operators enqueue (command plists). Apple's property lists, XML or
//! binary, read into [`plist::Value`] and taken apart by key, so unknown
//! keys are ignored and the raw bytes stay the record of what was sent.

use super::ids::Identity;
use plist::{Dictionary, Value};

/// Why a plist was refused (the device gets 400; the API a clear error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the body is not a property list: {0}")]
    NotPlist(String),
    #[error("the property list is not a dictionary")]
    NotDict,
    #[error("{0} is missing or empty")]
    Missing(&'static str),
    #[error("{key} must be {want}")]
    WrongType {
        key: &'static str,
        want: &'static str,
    },
    #[error("unknown check-in MessageType {0:?}")]
    UnknownType(String),
}

/// The check-in message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckinType {
    Authenticate,
    TokenUpdate,
    CheckOut,
    UserAuthenticate,
    SetBootstrapToken,
    GetBootstrapToken,
    DeclarativeManagement,
    GetToken,
}

impl CheckinType {
    pub const ALL: [CheckinType; 8] = [
        CheckinType::Authenticate,
        CheckinType::TokenUpdate,
        CheckinType::CheckOut,
        CheckinType::UserAuthenticate,
        CheckinType::SetBootstrapToken,
        CheckinType::GetBootstrapToken,
        CheckinType::DeclarativeManagement,
        CheckinType::GetToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckinType::Authenticate => "Authenticate",
            CheckinType::TokenUpdate => "TokenUpdate",
            CheckinType::CheckOut => "CheckOut",
            CheckinType::UserAuthenticate => "UserAuthenticate",
            CheckinType::SetBootstrapToken => "SetBootstrapToken",
            CheckinType::GetBootstrapToken => "GetBootstrapToken",
            CheckinType::DeclarativeManagement => "DeclarativeManagement",
            CheckinType::GetToken => "GetToken",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A decoded check-in: the keys depd acts on (empty or `None` when
/// absent).
#[derive(Clone, Default, PartialEq)]
pub struct Checkin {
    pub kind: Option<CheckinType>,
    pub ident: Identity,
    pub topic: String,
    pub serial_number: String,
    /// `Token`: the APNs token's bytes.
    pub token: Option<Vec<u8>>,
    pub push_magic: String,
    pub unlock_token: Option<Vec<u8>>,
    pub bootstrap_token: Option<Vec<u8>>,
    pub awaiting_configuration: bool,
    /// `UserAuthenticate`'s second round carries it.
    pub digest_response: Option<String>,
    /// `DeclarativeManagement`.
    pub endpoint: String,
    pub data: Option<Vec<u8>>,
    /// `GetToken`.
    pub token_service_type: String,
}

impl std::fmt::Debug for Checkin {
    // Push magic, tokens, unlock and bootstrap tokens are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkin")
            .field("kind", &self.kind)
            .field("ident", &self.ident)
            .field("topic", &self.topic)
            .field("serial_number", &self.serial_number)
            .finish_non_exhaustive()
    }
}

impl Checkin {
    pub fn kind(&self) -> CheckinType {
        self.kind.unwrap_or(CheckinType::Authenticate)
    }
}

/// A command report: the device's answer to the last command, or `Idle`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub ident: Identity,
    /// `Idle`, `Acknowledged`, `Error`, `CommandFormatError`, `NotNow`
    /// (other text is kept as is and ends the command like a result).
    pub status: String,
    pub command_uuid: String,
    pub request_type: String,
}

impl Report {
    pub fn is_idle(&self) -> bool {
        self.status == "Idle"
    }
    pub fn is_not_now(&self) -> bool {
        self.status == "NotNow"
    }
}

/// An enqueued command's identifying keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub uuid: String,
    pub request_type: String,
}

fn dict(body: &[u8]) -> Result<Dictionary, MessageError> {
    let value = Value::from_reader(std::io::Cursor::new(body))
        .map_err(|e| MessageError::NotPlist(e.to_string()))?;
    match value {
        Value::Dictionary(d) => Ok(d),
        _ => Err(MessageError::NotDict),
    }
}

fn string(d: &Dictionary, key: &'static str) -> Result<String, MessageError> {
    match d.get(key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(MessageError::WrongType {
            key,
            want: "a string",
        }),
    }
}

fn data(d: &Dictionary, key: &'static str) -> Result<Option<Vec<u8>>, MessageError> {
    match d.get(key) {
        None => Ok(None),
        Some(Value::Data(b)) => Ok(Some(b.clone())),
        Some(_) => Err(MessageError::WrongType { key, want: "data" }),
    }
}

fn boolean(d: &Dictionary, key: &'static str) -> Result<bool, MessageError> {
    match d.get(key) {
        None => Ok(false),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(MessageError::WrongType {
            key,
            want: "a boolean",
        }),
    }
}

fn identity(d: &Dictionary) -> Result<Identity, MessageError> {
    Ok(Identity {
        udid: string(d, "UDID")?,
        user_id: string(d, "UserID")?,
        user_short_name: string(d, "UserShortName")?,
        user_long_name: string(d, "UserLongName")?,
        enrollment_id: string(d, "EnrollmentID")?,
        enrollment_user_id: string(d, "EnrollmentUserID")?,
    })
}

/// Decodes a check-in. An unknown `MessageType` is an error.
pub fn parse_checkin(body: &[u8]) -> Result<Checkin, MessageError> {
    let d = dict(body)?;
    let message_type = string(&d, "MessageType")?;
    if message_type.is_empty() {
        return Err(MessageError::Missing("MessageType"));
    }
    let kind = CheckinType::parse(&message_type).ok_or(MessageError::UnknownType(message_type))?;
    let digest_response = match d.get("DigestResponse") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(MessageError::WrongType {
                key: "DigestResponse",
                want: "a string",
            });
        }
    };
    Ok(Checkin {
        kind: Some(kind),
        ident: identity(&d)?,
        topic: string(&d, "Topic")?,
        serial_number: string(&d, "SerialNumber")?,
        token: data(&d, "Token")?,
        push_magic: string(&d, "PushMagic")?,
        unlock_token: data(&d, "UnlockToken")?,
        bootstrap_token: data(&d, "BootstrapToken")?,
        awaiting_configuration: boolean(&d, "AwaitingConfiguration")?,
        digest_response,
        endpoint: string(&d, "Endpoint")?,
        data: data(&d, "Data")?,
        token_service_type: string(&d, "TokenServiceType")?,
    })
}

/// Decodes a command report. `Status` is required; a result other than
/// `Idle` needs its `CommandUUID`.
pub fn parse_report(body: &[u8]) -> Result<Report, MessageError> {
    let d = dict(body)?;
    let report = Report {
        ident: identity(&d)?,
        status: string(&d, "Status")?,
        command_uuid: string(&d, "CommandUUID")?,
        request_type: string(&d, "RequestType")?,
    };
    if report.status.is_empty() {
        return Err(MessageError::Missing("Status"));
    }
    if !report.is_idle() && report.command_uuid.is_empty() {
        return Err(MessageError::Missing("CommandUUID"));
    }
    Ok(report)
}

/// Checks a command plist as enqueued: `CommandUUID` and
/// `Command.RequestType`, both non-empty strings.
pub fn parse_command(body: &[u8]) -> Result<Command, MessageError> {
    let d = dict(body)?;
    let uuid = string(&d, "CommandUUID")?;
    if uuid.is_empty() {
        return Err(MessageError::Missing("CommandUUID"));
    }
    let command = match d.get("Command") {
        Some(Value::Dictionary(c)) => c,
        None => return Err(MessageError::Missing("Command")),
        Some(_) => {
            return Err(MessageError::WrongType {
                key: "Command",
                want: "a dictionary",
            });
        }
    };
    let request_type = string(command, "RequestType")?;
    if request_type.is_empty() {
        return Err(MessageError::Missing("Command.RequestType"));
    }
    Ok(Command { uuid, request_type })
}

/// A plist dictionary of one data value, as `GetBootstrapToken` and
/// `GetToken` answer (`{BootstrapToken: <data>}`, `{TokenData: <data>}`),
/// or of one string (the zero-length `DigestChallenge`).
pub fn answer_plist(key: &str, value: Value) -> Result<Vec<u8>, MessageError> {
    let mut d = Dictionary::new();
    d.insert(key.to_owned(), value);
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(d))
        .map_err(|e| MessageError::NotPlist(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
