//! The MDM service's stored records (versioned like every record). Those
//! holding push magic, unlock or bootstrap tokens, or a push certificate's
//! key are sealed with the secrets key.

use crate::store::record::{self, Record, RecordError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A device channel (`md/<D>`): its last `Authenticate`, identity and
/// tokens. Sealed.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredMdmDevice {
    /// The identity certificate of its last `Authenticate`, PEM.
    pub identity_pem: Option<String>,
    pub serial_number: String,
    pub authenticate_raw: Vec<u8>,
    pub authenticate_unix: i64,
    pub token_update_raw: Option<Vec<u8>>,
    pub token_update_unix: Option<i64>,
    pub unlock_token: Option<Vec<u8>>,
    pub unlock_token_unix: Option<i64>,
    pub bootstrap_token: Option<Vec<u8>>,
    pub bootstrap_token_unix: Option<i64>,
}

impl Record for StoredMdmDevice {
    const VERSION: u8 = 1;
}

impl fmt::Debug for StoredMdmDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMdmDevice")
            .field("serial_number", &self.serial_number)
            .field("authenticate_unix", &self.authenticate_unix)
            .field("has_unlock_token", &self.unlock_token.is_some())
            .field("has_bootstrap_token", &self.bootstrap_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A user channel's own messages (`mu/<id>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredMdmUser {
    pub device_id: String,
    pub user_short_name: String,
    pub user_long_name: String,
    pub token_update_raw: Option<Vec<u8>>,
    pub token_update_unix: Option<i64>,
    pub user_authenticate_raw: Option<Vec<u8>>,
    pub user_authenticate_unix: Option<i64>,
    pub user_authenticate_digest_raw: Option<Vec<u8>>,
    pub user_authenticate_digest_unix: Option<i64>,
}

impl Record for StoredMdmUser {
    const VERSION: u8 = 1;
}

/// An enrollment: one channel that sent a `TokenUpdate` (`me/<id>`).
/// Sealed (push magic).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredEnrollment {
    pub device_id: String,
    /// The user part, for user channels.
    pub user_id: Option<String>,
    /// [`crate::mdm::ids::EnrollType::code`].
    pub kind: u8,
    pub topic: String,
    pub push_magic: String,
    /// The APNs token, lowercase hex.
    pub token_hex: String,
    pub enabled: bool,
    pub token_update_tally: u64,
    pub last_seen_unix: i64,
    pub enrolled_unix: Option<i64>,
    pub created_unix: i64,
    /// The next queue sequence number of this enrollment.
    pub next_seq: u64,
}

impl Record for StoredEnrollment {
    const VERSION: u8 = 1;
}

impl fmt::Debug for StoredEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEnrollment")
            .field("device_id", &self.device_id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("topic", &self.topic)
            .field("enabled", &self.enabled)
            .field("token_update_tally", &self.token_update_tally)
            .finish_non_exhaustive()
    }
}

/// A command as enqueued, stored once however many targets (`mc/<uuid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCommand {
    pub request_type: String,
    /// The plist exactly as enqueued: sent to devices unchanged.
    pub raw: Vec<u8>,
    pub created_unix: i64,
}

impl Record for StoredCommand {
    const VERSION: u8 = 1;
}

/// An outstanding queue entry (`mq/<id>\0<seq>`): removed when the
/// command ends for this enrollment or the queue is cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredQueueEntry {
    pub command_uuid: String,
    pub created_unix: i64,
}

impl Record for StoredQueueEntry {
    const VERSION: u8 = 1;
}

/// The latest report for (enrollment, command) (`mr/<id>\0<uuid>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    pub status: String,
    pub raw: Vec<u8>,
    pub not_now_count: u32,
    pub first_not_now_unix: Option<i64>,
    pub updated_unix: i64,
}

impl Record for StoredResult {
    const VERSION: u8 = 1;
}

/// A push certificate and its key (`mp/<topic>`). Sealed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPushCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub not_after_unix: i64,
    /// Changes on every store, so holders of the old pair see it is stale.
    pub stale_token: u64,
    /// The APNs environment chosen at upload (`production`, `sandbox`);
    /// `None`: `[mdm] apns_environment`.
    pub environment: Option<String>,
}

/// Version 1: before the per-topic environment.
#[derive(Deserialize)]
struct StoredPushCertV1 {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    not_after_unix: i64,
    stale_token: u64,
}

impl Record for StoredPushCert {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, RecordError> {
        match version {
            1 => {
                let v1: StoredPushCertV1 = record::decode_body(body)?;
                Ok(StoredPushCert {
                    cert_pem: v1.cert_pem,
                    key_pem: v1.key_pem,
                    not_after_unix: v1.not_after_unix,
                    stale_token: v1.stale_token,
                    environment: None,
                })
            }
            found => Err(RecordError::UnknownVersion {
                found,
                known: Self::VERSION,
            }),
        }
    }
}

/// A push token APNs refused for good (`mi/<id>`): 400 `BadDeviceToken`
/// or 410 `Unregistered`. It holds for `token_hex` only, so a newer
/// `TokenUpdate` makes the enrollment pushable again without anyone
/// deleting this record first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInvalidToken {
    pub token_hex: String,
    /// APNs's reason (`Unregistered`, `BadDeviceToken`).
    pub reason: String,
    pub at_unix: i64,
}

impl Record for StoredInvalidToken {
    const VERSION: u8 = 1;
}

impl fmt::Debug for StoredPushCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPushCert")
            .field("not_after_unix", &self.not_after_unix)
            .field("stale_token", &self.stale_token)
            .finish_non_exhaustive()
    }
}

/// A webhook event of the MDM service waiting for delivery (`mo/<seq>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMdmEvent {
    pub event_id: String,
    pub topic: String,
    pub created_unix: i64,
    pub body: String,
}

impl Record for StoredMdmEvent {
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_push_certificate_reads_with_the_default_environment() {
        #[derive(Serialize)]
        struct V1 {
            cert_pem: Vec<u8>,
            key_pem: Vec<u8>,
            not_after_unix: i64,
            stale_token: u64,
        }
        let mut bytes = vec![1u8];
        bytes.extend(
            bincode::serde::encode_to_vec(
                V1 {
                    cert_pem: b"C".to_vec(),
                    key_pem: b"K".to_vec(),
                    not_after_unix: 7,
                    stale_token: 3,
                },
                bincode::config::standard(),
            )
            .expect("encode"),
        );
        let read: StoredPushCert = record::decode(&bytes).expect("migrated");
        assert_eq!(
            read,
            StoredPushCert {
                cert_pem: b"C".to_vec(),
                key_pem: b"K".to_vec(),
                not_after_unix: 7,
                stale_token: 3,
                environment: None,
            }
        );
        let again: StoredPushCert = record::decode(&record::encode(&read)).expect("v2");
        assert_eq!(again, read);
    }
}
