//! Delivery of the MDM service's webhook events (`[mdm] webhook_url`):
//! the durable outbox in order, oldest first, each event retried with the
//! same policy as the DEP events (full-jitter backoff, 2xx delivers) until
//! the receiver takes it. Signed as NanoMDM signs: `X-Hmac-Signature`,
//! base64 HMAC-SHA256 of the body.

use crate::domain::clock::SharedClock;
use crate::store::Store;
use crate::sync::backoff::OsJitter;
use crate::sync::webhook::{Delivery, DeliveryPolicy, is_delivered};
use actix::prelude::*;
use std::time::Duration;

/// The target and signing key, replaced on reload.
#[derive(Clone, Default)]
pub struct Target {
    pub url: String,
    pub hmac_key: Option<Vec<u8>>,
    pub policy: Option<DeliveryPolicy>,
}

pub struct MdmWebhook {
    store: Store,
    target: Target,
    clock: SharedClock,
    delivering: bool,
    /// The head event's attempts, kept across retries.
    delivery: Option<Delivery>,
    retry: Option<SpawnHandle>,
}

impl MdmWebhook {
    pub fn new(store: Store, target: Target, clock: SharedClock) -> Self {
        MdmWebhook {
            store,
            target,
            clock,
            delivering: false,
            delivery: None,
            retry: None,
        }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.delivering || self.retry.is_some() || self.target.url.is_empty() {
            return;
        }
        self.delivering = true;
        let store = self.store.clone();
        let target = self.target.clone();
        let carried = self.delivery.take();
        ctx.spawn(
            async move { deliver(store, target, carried).await }
                .into_actor(self)
                .map(|out, act, ctx| {
                    act.delivering = false;
                    match out {
                        Ok(None) => {}
                        Ok(Some((delivery, wait))) => {
                            act.delivery = Some(delivery);
                            act.retry = Some(ctx.run_later(wait, |act, ctx| {
                                act.retry = None;
                                act.kick(ctx);
                            }));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "MDM webhook delivery could not use the store");
                            act.retry = Some(ctx.run_later(Duration::from_secs(5), |act, ctx| {
                                act.retry = None;
                                act.kick(ctx);
                            }));
                        }
                    }
                }),
        );
        let _ = &self.clock;
    }
}

impl Actor for MdmWebhook {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        // Events left from before a restart go out first.
        self.kick(ctx);
    }
}

/// A request queued an event: deliver unless already delivering or
/// waiting for a retry.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

impl Handler<Kick> for MdmWebhook {
    type Result = ();
    fn handle(&mut self, _: Kick, ctx: &mut Self::Context) {
        self.kick(ctx);
    }
}

/// The configuration changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTarget(pub Target);

impl Handler<SetTarget> for MdmWebhook {
    type Result = ();
    fn handle(&mut self, msg: SetTarget, ctx: &mut Self::Context) {
        self.target = msg.0;
        self.kick(ctx);
    }
}

/// Delivers events in order until the outbox is empty (`None`) or one
/// fails (its attempts and the wait before the next).
async fn deliver(
    store: Store,
    target: Target,
    mut carried: Option<Delivery>,
) -> Result<Option<(Delivery, Duration)>, crate::store::StoreError> {
    let policy = target.policy.clone().unwrap_or(DeliveryPolicy {
        timeout: Duration::from_secs(30),
        first_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(900),
    });
    let client = crate::dep::client::http_client(Duration::from_secs(10), None);
    loop {
        let head = store.blocking(|s| s.mdm_outbox_peek(1)).await?;
        let Some((seq, event)) = head.into_iter().next() else {
            return Ok(None);
        };
        let mut delivery = match carried.take() {
            Some(d) if d.seq() == seq => d,
            _ => Delivery::new(seq, 1),
        };
        let mut req = client
            .post(&target.url)
            .timeout(policy.timeout)
            .insert_header(("Content-Type", "application/json; charset=utf-8"));
        if let Some(key) = &target.hmac_key {
            match crate::mdm::webhook::signature(key, event.body.as_bytes()) {
                Ok(sig) => req = req.insert_header(("X-Hmac-Signature", sig)),
                Err(e) => tracing::error!(error = %e, "signing an MDM webhook body failed"),
            }
        }
        let status = match req.send_body(event.body.clone()).await {
            Ok(mut resp) => {
                let _ = resp.body().limit(64 * 1024).await;
                Some(resp.status().as_u16())
            }
            Err(_) => None,
        };
        crate::metrics::mdm_webhook_delivery(status.is_some_and(is_delivered));
        delivery.record(0, status);
        if delivery.is_complete() {
            store.blocking(move |s| s.mdm_outbox_remove(&[seq])).await?;
            continue;
        }
        tracing::warn!(
            url = %crate::daemon::redact::url(&target.url),
            answer = %status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")),
            event_id = %event.event_id,
            topic = %event.topic,
            "MDM webhook delivery failed"
        );
        let wait = delivery.retry_in(&policy, &mut OsJitter);
        return Ok(Some((delivery, wait)));
    }
}
