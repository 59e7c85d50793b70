//! The MDM service's owners: enrollment shards (`shard.rs`), each the only
//! writer of the device channels hashed to it, and the webhook deliverer
//! (`webhook.rs`). [`Mdm`] is what the HTTP handlers hold: it routes each
//! request to its channel's shard and carries the settings in effect.

mod shard;
mod webhook;

pub use shard::shard_of;

use crate::domain::clock::SharedClock;
use crate::mdm::identity::Verifier;
use crate::mdm::ids::EnrollmentId;
use crate::mdm::message::{Checkin, Command, Report};
use crate::mdm::service::{self, Answer, Config, DeviceRequest, EnqueueError, ServiceError};
use crate::settings::MdmSettings;
use crate::store::{Store, StoreError};
use crate::sync::webhook::DeliveryPolicy;
use actix::prelude::*;
use shard::{DoClearQueue, DoEnqueue, DoRequest, EnrollmentShard, Inbound};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Enrollment shards. More than cores, so a slow flush of one shard's
/// batch does not hold up the channels of the others.
pub const SHARDS: usize = 64;

/// The settings in effect, replaced together on reload.
pub struct Runtime {
    pub settings: MdmSettings,
    pub verifier: Arc<Verifier>,
}

impl Runtime {
    pub fn config(&self) -> Config {
        Config {
            retro: self.settings.retro,
            user_authenticate_zero_challenge: self.settings.user_authenticate_zero_challenge,
            delete_finished_commands: self.settings.delete_finished_commands,
            webhook: !self.settings.webhook_url.is_empty(),
        }
    }
}

pub struct Mdm {
    /// `[mdm] checkin_endpoint` at start (a route choice: fixed until
    /// restart).
    pub checkin_endpoint: bool,
    shards: Vec<Addr<EnrollmentShard>>,
    webhook: Addr<webhook::MdmWebhook>,
    store: Store,
    runtime: RwLock<Arc<Runtime>>,
    pushes: Arc<super::push::Pushes>,
}

impl std::fmt::Debug for Mdm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdm")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

fn runtime(settings: &MdmSettings) -> Result<Runtime, String> {
    let ca = settings
        .ca_file
        .as_ref()
        .ok_or_else(|| "mdm.ca_file is required when mdm.enabled is true".to_owned())?;
    let intermediate = settings
        .intermediate_file
        .as_ref()
        .map(|p| p.to_string_lossy());
    let verifier = Verifier::from_files(&ca.to_string_lossy(), intermediate.as_deref())
        .map_err(|e| e.to_string())?;
    Ok(Runtime {
        settings: settings.clone(),
        verifier: Arc::new(verifier),
    })
}

fn webhook_target(s: &MdmSettings, delivery: &crate::settings::WebhookSettings) -> webhook::Target {
    webhook::Target {
        url: s.webhook_url.clone(),
        hmac_key: s
            .webhook_hmac_key
            .as_ref()
            .map(|k| k.expose().as_bytes().to_vec()),
        policy: Some(DeliveryPolicy::from_settings(delivery)),
    }
}

impl Mdm {
    /// Starts the shards and the webhook deliverer on the current system.
    pub fn start(
        store: Store,
        settings: &crate::settings::Settings,
        clock: SharedClock,
    ) -> Result<Arc<Mdm>, String> {
        let rt = runtime(&settings.mdm)?;
        let webhook = webhook::MdmWebhook::new(
            store.clone(),
            webhook_target(&settings.mdm, &settings.webhook),
            clock.clone(),
        )
        .start();
        let shards = (0..SHARDS)
            .map(|_| EnrollmentShard::new(store.clone()).start())
            .collect();
        let pushes = super::push::Pushes::start(store.clone(), settings, clock)?;
        Ok(Arc::new(Mdm {
            pushes,
            checkin_endpoint: settings.mdm.checkin_endpoint,
            shards,
            webhook,
            store,
            runtime: RwLock::new(Arc::new(rt)),
        }))
    }

    /// Applies reloaded settings (routes stay as they were at start).
    pub fn reload(&self, settings: &crate::settings::Settings) -> Result<(), String> {
        let rt = runtime(&settings.mdm)?;
        self.pushes.reload(settings)?;
        *self.runtime.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rt);
        self.webhook.do_send(webhook::SetTarget(webhook_target(
            &settings.mdm,
            &settings.webhook,
        )));
        Ok(())
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Push delivery (one actor per push topic).
    pub fn pushes(&self) -> &super::push::Pushes {
        &self.pushes
    }

    fn shard(&self, device_channel: &str) -> &Addr<EnrollmentShard> {
        &self.shards[shard_of(device_channel, self.shards.len())]
    }

    pub async fn checkin(
        &self,
        req: DeviceRequest,
        message: Checkin,
        id: EnrollmentId,
    ) -> Result<Answer, ServiceError> {
        self.request(req, Inbound::Checkin(message), id).await
    }

    pub async fn report(
        &self,
        req: DeviceRequest,
        report: Report,
        id: EnrollmentId,
    ) -> Result<Answer, ServiceError> {
        self.request(req, Inbound::Report(report), id).await
    }

    /// A device's request, handled by its channel's shard, answered once
    /// durable.
    async fn request(
        &self,
        req: DeviceRequest,
        inbound: Inbound,
        id: EnrollmentId,
    ) -> Result<Answer, ServiceError> {
        let cfg = self.runtime().config();
        let event = cfg.webhook && req.cert_hash.is_some();
        let answer = self
            .shard(id.device_channel())
            .send(DoRequest {
                cfg,
                req,
                inbound,
                id,
            })
            .await
            .map_err(|e| ServiceError::Store(StoreError::Task(e.to_string())))??;
        self.durable(event).await?;
        Ok(answer)
    }

    /// Waits until the request's batch is durable (its flush shared with
    /// the other requests of the moment), then wakes the webhook deliverer
    /// if it queued an event.
    async fn durable(&self, event: bool) -> Result<(), StoreError> {
        self.store.mdm_durable_async().await?;
        if event {
            self.webhook.do_send(webhook::Kick);
        }
        Ok(())
    }

    /// Stores the command and queues it for every ID, each on the shard
    /// owning it. `Err` when the command could not be stored (UUID taken,
    /// storage); per-ID refusals otherwise.
    pub async fn enqueue(
        &self,
        ids: &[String],
        cmd: &Command,
        raw: Vec<u8>,
        now_unix: i64,
    ) -> Result<BTreeMap<String, EnqueueError>, EnqueueFailure> {
        let c = cmd.clone();
        let stored = self
            .store
            .blocking(move |s| service::store_command(s, &c, &raw, now_unix))
            .await
            .map_err(EnqueueFailure::Store)?;
        if !stored {
            return Err(EnqueueFailure::Duplicate(cmd.uuid.clone()));
        }
        let mut by_shard: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for id in ids {
            // A user channel belongs to its device channel's shard.
            let device = crate::mdm::ids::device_channel_of(id);
            by_shard
                .entry(shard_of(device, self.shards.len()))
                .or_default()
                .push(id.clone());
        }
        // Every shard queues its IDs at once; one flush covers them all.
        let answers = futures_util::future::join_all(by_shard.into_iter().map(|(shard, ids)| {
            self.shards[shard].send(DoEnqueue {
                ids,
                uuid: cmd.uuid.clone(),
                now_unix,
            })
        }))
        .await;
        let mut errors = BTreeMap::new();
        for answer in answers {
            let answer = answer
                .map_err(|e| EnqueueFailure::Store(StoreError::Task(e.to_string())))?
                .map_err(EnqueueFailure::Store)?;
            errors.extend(answer);
        }
        self.durable(false).await.map_err(EnqueueFailure::Store)?;
        Ok(errors)
    }
}

impl Mdm {
    /// Drops a channel's outstanding commands, through its owner; `None`
    /// for an unknown channel.
    pub async fn clear_queue(&self, id: &str) -> Result<Option<usize>, StoreError> {
        let device = crate::mdm::ids::device_channel_of(id);
        let removed = self
            .shard(device)
            .send(DoClearQueue(id.to_owned()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        self.durable(false).await?;
        Ok(removed)
    }
}

/// Why an enqueue failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueFailure {
    #[error("command UUID {0:?} was enqueued before")]
    Duplicate(String),
    #[error(transparent)]
    Store(StoreError),
}
