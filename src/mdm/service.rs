//! The MDM core service: what each check-in and report
//! does to the stored state and what the device gets back. Blocking calls
//! on the store, run by the owner of the message's device channel (an
//! enrollment shard) on the blocking pool, one at a time per channel, so
//! each read-decide-commit sequence is alone on its keys.
//!
//! Each request's writes, its certificate binding and its webhook event are
//! one atomic batch, applied here; the caller makes it durable
//! ([`Store::mdm_durable`], shared with the other requests of the moment)
//! before the device is answered: a refused request writes nothing, and an
//! answered one is never lost, nor its event. Later requests on the same
//! channel may read a batch before it is durable; a flush that covers them
//! covers it too, since batches are flushed in the order they were applied.

use super::certauth::{self, Decision, Refusal};
use super::ids::EnrollmentId;
use super::message::{Checkin, CheckinType, Command, Report, answer_plist};
use super::webhook;
use crate::store::mdm::{
    MdmWrite, StoredCommand, StoredEnrollment, StoredMdmDevice, StoredMdmEvent, StoredQueueEntry,
    StoredResult,
};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The settings the service follows.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub retro: bool,
    pub user_authenticate_zero_challenge: bool,
    pub delete_finished_commands: bool,
    /// Queue webhook events (a webhook URL is set).
    pub webhook: bool,
}

/// One request from a device (or `/migration`).
#[derive(Clone)]
pub struct DeviceRequest {
    pub body: Vec<u8>,
    /// The identity's hash; `None` from `/migration`, which skips
    /// certificate authorisation and the webhook.
    pub cert_hash: Option<String>,
    /// The identity certificate, kept as PEM at `Authenticate` only.
    pub identity: Option<openssl::x509::X509>,
    pub url_params: BTreeMap<String, String>,
    pub event_id: String,
    pub now: OffsetDateTime,
}

/// The body holds push magic and tokens: never shown.
impl std::fmt::Debug for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceRequest")
            .field("body_bytes", &self.body.len())
            .field("event_id", &self.event_id)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// What the device gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200, empty body.
    Empty,
    /// 200 with a plist (a command as enqueued, a token, a challenge).
    Plist(Vec<u8>),
    /// 410: `UserAuthenticate` declined.
    Gone,
    /// Authorised and recorded; the answer comes from elsewhere
    /// (Declarative Management, `GetToken`).
    Forward,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The device's request is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// Certificate authorisation refused it (500, as NanoMDM).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    fn bad(m: impl Into<String>) -> Self {
        ServiceError::BadRequest(m.into())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the certificate binding and adds the binding to `w` when the
/// decision is to bind.
fn authorise(
    store: &Store,
    cfg: &Config,
    req: &DeviceRequest,
    id: &EnrollmentId,
    authenticate: bool,
    w: &mut MdmWrite,
) -> Result<(), ServiceError> {
    let Some(hash) = &req.cert_hash else {
        return Ok(());
    };
    let d = id.device_channel();
    match certauth::decide(authenticate, cfg.retro, store.mdm_cert_facts(d, hash)?) {
        Decision::Allow => Ok(()),
        Decision::Associate => {
            w.associate(d, hash);
            Ok(())
        }
        Decision::Refuse(r) => Err(r.into()),
    }
}

fn event(
    store: &Store,
    w: &mut MdmWrite,
    topic: &str,
    body: String,
    req: &DeviceRequest,
) -> Result<(), StoreError> {
    let seq = store.mdm_next_event_seq()?;
    w.put_event(
        seq,
        &StoredMdmEvent {
            event_id: req.event_id.clone(),
            topic: topic.to_owned(),
            created_unix: req.now.unix_timestamp(),
            body,
        },
    );
    Ok(())
}

/// Disables the device channel `d` and its user channels (tallies to 0),
/// and with `clear`, removes their outstanding queue entries.
fn disable_all(
    store: &Store,
    d: &str,
    clear: bool,
    w: &mut MdmWrite,
    now: i64,
) -> Result<(), StoreError> {
    let mut channels = store.mdm_user_enrollments(d)?;
    if let Some(e) = store.mdm_enrollment(d)? {
        channels.push((d.to_owned(), e));
    }
    for (id, mut e) in channels {
        e.enabled = false;
        e.token_update_tally = 0;
        e.last_seen_unix = now;
        w.put_enrollment(&id, &e);
    }
    if clear {
        let mut ids = vec![d.to_owned()];
        ids.extend(store.mdm_user_enrollments(d)?.into_iter().map(|(id, _)| id));
        for id in ids {
            for (seq, entry) in store.mdm_queue(&id)? {
                w.delete_queue_entry(&id, seq);
                w.delete_command_ref(&entry.command_uuid, &id);
            }
        }
    }
    Ok(())
}

fn touch(store: &Store, id: &str, w: &mut MdmWrite, now: i64) -> Result<(), StoreError> {
    if let Some(mut e) = store.mdm_enrollment(id)? {
        e.last_seen_unix = now;
        w.put_enrollment(id, &e);
    }
    Ok(())
}

/// Handles a check-in.
pub fn checkin(
    store: &Store,
    cfg: &Config,
    req: &DeviceRequest,
    m: &Checkin,
    id: &EnrollmentId,
) -> Result<Answer, ServiceError> {
    let kind = m.kind();
    let now = req.now.unix_timestamp();
    let mut w = MdmWrite::default();
    authorise(
        store,
        cfg,
        req,
        id,
        kind == CheckinType::Authenticate,
        &mut w,
    )?;
    let d = id.device_channel();
    let mut tally = None;
    let answer = match kind {
        CheckinType::Authenticate => {
            if id.kind.is_user_channel() {
                return Err(ServiceError::bad(
                    "Authenticate is a device-channel message",
                ));
            }
            let old = store.mdm_device(d)?.unwrap_or_default();
            if old.serial_number != m.serial_number && !old.serial_number.is_empty() {
                w.delete_serial(&old.serial_number, d);
            }
            if !m.serial_number.is_empty() {
                w.put_serial(&m.serial_number, d);
            }
            w.put_device(
                d,
                &StoredMdmDevice {
                    identity_pem: req
                        .identity
                        .as_ref()
                        .and_then(|c| c.to_pem().ok())
                        .and_then(|p| String::from_utf8(p).ok()),
                    serial_number: m.serial_number.clone(),
                    authenticate_raw: req.body.clone(),
                    authenticate_unix: now,
                    // The unlock token outlives a re-enrollment (as in
                    // NanoMDM's SQL stores); the bootstrap token does not.
                    unlock_token: old.unlock_token,
                    unlock_token_unix: old.unlock_token_unix,
                    ..StoredMdmDevice::default()
                },
            );
            disable_all(store, d, true, &mut w, now)?;
            Answer::Empty
        }
        CheckinType::TokenUpdate => {
            let token = m.token.as_deref().filter(|t| !t.is_empty());
            let (Some(token), false, false) = (token, m.topic.is_empty(), m.push_magic.is_empty())
            else {
                return Err(ServiceError::bad(
                    "TokenUpdate needs Topic, Token and PushMagic",
                ));
            };
            let mut e = store.mdm_enrollment(&id.id)?.unwrap_or(StoredEnrollment {
                created_unix: now,
                ..StoredEnrollment::default()
            });
            e.device_id = d.to_owned();
            e.user_id = id.user().map(str::to_owned);
            e.kind = id.kind.code();
            e.topic = m.topic.clone();
            e.push_magic = m.push_magic.clone();
            e.token_hex = hex(token);
            e.enabled = true;
            e.last_seen_unix = now;
            e.token_update_tally += 1;
            if e.token_update_tally == 1 {
                e.enrolled_unix = Some(now);
            }
            tally = Some(e.token_update_tally);
            w.put_enrollment(&id.id, &e);
            // Any TokenUpdate makes the channel pushable again.
            w.delete_invalid_token(&id.id);
            if id.kind.is_user_channel() {
                let mut u = store.mdm_user(&id.id)?.unwrap_or_default();
                u.device_id = d.to_owned();
                u.user_short_name = m.ident.user_short_name.clone();
                u.user_long_name = m.ident.user_long_name.clone();
                u.token_update_raw = Some(req.body.clone());
                u.token_update_unix = Some(now);
                w.put_user(&id.id, &u);
            } else {
                let mut dev = store.mdm_device(d)?.unwrap_or_default();
                dev.token_update_raw = Some(req.body.clone());
                dev.token_update_unix = Some(now);
                if let Some(unlock) = &m.unlock_token {
                    dev.unlock_token = Some(unlock.clone());
                    dev.unlock_token_unix = Some(now);
                }
                w.put_device(d, &dev);
            }
            Answer::Empty
        }
        CheckinType::CheckOut => {
            if id.kind.is_user_channel() {
                if let Some(mut e) = store.mdm_enrollment(&id.id)? {
                    e.enabled = false;
                    e.token_update_tally = 0;
                    e.last_seen_unix = now;
                    w.put_enrollment(&id.id, &e);
                }
            } else {
                disable_all(store, d, false, &mut w, now)?;
            }
            Answer::Empty
        }
        CheckinType::UserAuthenticate => {
            if !id.kind.is_user_channel() {
                return Err(ServiceError::bad("UserAuthenticate needs a user channel"));
            }
            if !cfg.user_authenticate_zero_challenge {
                Answer::Gone
            } else {
                let mut u = store.mdm_user(&id.id)?.unwrap_or_default();
                u.device_id = d.to_owned();
                u.user_short_name = m.ident.user_short_name.clone();
                u.user_long_name = m.ident.user_long_name.clone();
                let first = m.digest_response.is_none();
                if first {
                    u.user_authenticate_raw = Some(req.body.clone());
                    u.user_authenticate_unix = Some(now);
                } else {
                    u.user_authenticate_digest_raw = Some(req.body.clone());
                    u.user_authenticate_digest_unix = Some(now);
                }
                w.put_user(&id.id, &u);
                // Not managed until its TokenUpdate.
                if let Some(mut e) = store.mdm_enrollment(&id.id)? {
                    e.enabled = false;
                    e.last_seen_unix = now;
                    w.put_enrollment(&id.id, &e);
                }
                if first {
                    let challenge =
                        answer_plist("DigestChallenge", plist::Value::String(String::new()))
                            .map_err(|e| ServiceError::bad(e.to_string()))?;
                    Answer::Plist(challenge)
                } else {
                    Answer::Empty
                }
            }
        }
        CheckinType::SetBootstrapToken => {
            if id.kind.is_user_channel() {
                return Err(ServiceError::bad(
                    "SetBootstrapToken is a device-channel message",
                ));
            }
            let mut dev = store.mdm_device(d)?.unwrap_or_default();
            dev.bootstrap_token = m.bootstrap_token.clone().filter(|t| !t.is_empty());
            dev.bootstrap_token_unix = Some(now);
            w.put_device(d, &dev);
            touch(store, d, &mut w, now)?;
            Answer::Empty
        }
        CheckinType::GetBootstrapToken => {
            if id.kind.is_user_channel() {
                return Err(ServiceError::bad(
                    "GetBootstrapToken is a device-channel message",
                ));
            }
            touch(store, d, &mut w, now)?;
            match store.mdm_device(d)?.and_then(|dev| dev.bootstrap_token) {
                Some(token) => Answer::Plist(
                    answer_plist("BootstrapToken", plist::Value::Data(token))
                        .map_err(|e| ServiceError::bad(e.to_string()))?,
                ),
                None => Answer::Empty,
            }
        }
        CheckinType::DeclarativeManagement | CheckinType::GetToken => {
            touch(store, &id.id, &mut w, now)?;
            Answer::Forward
        }
    };
    if cfg.webhook && req.cert_hash.is_some() {
        let body =
            webhook::checkin_event(kind.as_str(), &webhook_request(req, &m.ident, id), tally);
        event(store, &mut w, &format!("mdm.{}", kind.as_str()), body, req)?;
    }
    store.mdm_apply(w)?;
    Ok(answer)
}

/// Handles a command report and answers with the next command.
pub fn report(
    store: &Store,
    cfg: &Config,
    req: &DeviceRequest,
    r: &Report,
    id: &EnrollmentId,
) -> Result<Answer, ServiceError> {
    let now = req.now.unix_timestamp();
    let mut w = MdmWrite::default();
    authorise(store, cfg, req, id, false, &mut w)?;
    touch(store, &id.id, &mut w, now)?;
    let mut finished: Option<&str> = None;
    let mut this: Option<StoredResult> = None;
    if !r.is_idle() {
        let mut result = store
            .mdm_result(&id.id, &r.command_uuid)?
            .unwrap_or(StoredResult {
                status: String::new(),
                raw: Vec::new(),
                not_now_count: 0,
                first_not_now_unix: None,
                updated_unix: now,
            });
        result.status = r.status.clone();
        result.raw = req.body.clone();
        result.updated_unix = now;
        if r.is_not_now() {
            result.not_now_count = result.not_now_count.saturating_add(1);
            result.first_not_now_unix.get_or_insert(now);
        }
        this = Some(result.clone());
        if r.is_not_now() {
            w.put_result(&id.id, &r.command_uuid, &result);
        } else {
            finished = Some(&r.command_uuid);
            if cfg.delete_finished_commands {
                w.delete_result(&id.id, &r.command_uuid);
                w.delete_command_ref(&r.command_uuid, &id.id);
            } else {
                w.put_result(&id.id, &r.command_uuid, &result);
            }
        }
    }
    let mut next = None;
    for (seq, entry) in store.mdm_queue(&id.id)? {
        if finished == Some(entry.command_uuid.as_str()) {
            w.delete_queue_entry(&id.id, seq);
            continue;
        }
        if next.is_some() {
            continue;
        }
        let status = if entry.command_uuid == r.command_uuid && !r.is_idle() {
            this.as_ref().map(|t| t.status.clone())
        } else {
            store
                .mdm_result(&id.id, &entry.command_uuid)?
                .map(|t| t.status)
        };
        let offer = match status.as_deref() {
            None => true,
            // Not offered again in the exchange that deferred it.
            Some("NotNow") => !r.is_not_now(),
            Some(_) => false,
        };
        if offer {
            next = Some(entry.command_uuid);
        }
    }
    if cfg.webhook && req.cert_hash.is_some() {
        let body = webhook::acknowledge_event(
            &r.status,
            &r.command_uuid,
            &webhook_request(req, &r.ident, id),
        );
        event(store, &mut w, "mdm.Connect", body, req)?;
    }
    store.mdm_apply(w)?;
    if let (Some(uuid), true) = (finished, cfg.delete_finished_commands)
        && !store.mdm_command_referenced(uuid)?
    {
        let mut w = MdmWrite::default();
        w.delete_command(uuid);
        store.mdm_apply(w)?;
    }
    let Some(uuid) = next else {
        return Ok(Answer::Empty);
    };
    match store.mdm_command(&uuid)? {
        Some(c) => Ok(Answer::Plist(c.raw)),
        None => Ok(Answer::Empty),
    }
}

fn webhook_request<'a>(
    req: &'a DeviceRequest,
    ident: &'a super::ids::Identity,
    id: &'a EnrollmentId,
) -> webhook::Request<'a> {
    webhook::Request {
        ident,
        id: Some(id),
        raw: &req.body,
        url_params: &req.url_params,
        event_id: &req.event_id,
        created_at: req.now,
    }
}

/// Drops channel `id`'s outstanding commands (results stay); `None` when
/// the channel is unknown.
pub fn clear_queue(store: &Store, id: &str) -> Result<Option<usize>, StoreError> {
    let d = super::ids::device_channel_of(id);
    if store.mdm_enrollment(id)?.is_none() && store.mdm_device(d)?.is_none() {
        return Ok(None);
    }
    let mut w = MdmWrite::default();
    let queue = store.mdm_queue(id)?;
    for (seq, entry) in &queue {
        w.delete_queue_entry(id, *seq);
        w.delete_command_ref(&entry.command_uuid, id);
    }
    store.mdm_apply(w)?;
    Ok(Some(queue.len()))
}

/// Why one target of an enqueue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("unknown enrollment ID")]
    Unknown,
    #[error("command UUID {0:?} is already in this enrollment's queue")]
    Duplicate(String),
}

/// Stores a command once (before its targets are queued): refused when
/// the UUID is taken.
pub fn store_command(
    store: &Store,
    cmd: &Command,
    raw: &[u8],
    now: i64,
) -> Result<bool, StoreError> {
    if store.mdm_command(&cmd.uuid)?.is_some() {
        return Ok(false);
    }
    let mut w = MdmWrite::default();
    w.put_command(
        &cmd.uuid,
        &StoredCommand {
            request_type: cmd.request_type.clone(),
            raw: raw.to_vec(),
            created_unix: now,
        },
    );
    store.mdm_commit(w)?;
    Ok(true)
}

/// Queues the stored command `uuid` for each of `ids` (all owned by the
/// caller's shard), in one batch; per-ID refusals for unknown IDs.
pub fn enqueue(
    store: &Store,
    ids: &[String],
    uuid: &str,
    now: i64,
) -> Result<BTreeMap<String, EnqueueError>, StoreError> {
    let mut w = MdmWrite::default();
    let mut errors = BTreeMap::new();
    for id in ids {
        let Some(mut e) = store.mdm_enrollment(id)? else {
            errors.insert(id.clone(), EnqueueError::Unknown);
            continue;
        };
        if store
            .mdm_queue(id)?
            .iter()
            .any(|(_, q)| q.command_uuid == uuid)
        {
            errors.insert(id.clone(), EnqueueError::Duplicate(uuid.to_owned()));
            continue;
        }
        let seq = e.next_seq;
        e.next_seq += 1;
        w.put_enrollment(id, &e);
        w.put_queue_entry(
            id,
            seq,
            &StoredQueueEntry {
                command_uuid: uuid.to_owned(),
                created_unix: now,
            },
        );
        w.put_command_ref(uuid, id);
    }
    store.mdm_apply(w)?;
    Ok(errors)
}
