//! Webhook delivery of the outbox, oldest event first, off the actor's
//! mailbox; the order and retry policy are `crate::sync::webhook`'s.

use super::*;

impl DepNameActor {
    /// Delivers the outbox in order until it is empty or a URL fails.
    pub(super) fn kick_delivery(&mut self, ctx: &mut Context<Self>) {
        if self.syncer.delivering {
            return;
        }
        // A failed delivery waits for its retry time (the tick starts it);
        // new events queue behind it rather than hurry it.
        if self.syncer.deliver_at.is_some_and(|t| t > self.clock.now()) {
            self.maybe_notify(ctx);
            return;
        }
        let urls = self.settings.webhook_urls(self.state.name()).to_vec();
        if urls.is_empty() {
            self.syncer.deliver_at = None;
            self.maybe_notify(ctx);
            return;
        }
        self.syncer.delivering = true;
        self.syncer.deliver_at = None;
        let job = DeliverJob {
            store: self.store.clone(),
            name: self.state.name().clone(),
            urls,
            secret: self
                .settings
                .webhook
                .secret
                .as_ref()
                .map(|s| s.expose().as_bytes().to_vec()),
            policy: DeliveryPolicy::from_settings(&self.settings.webhook),
            connect_timeout: self.target().connect_timeout,
            user_agent: self.target().user_agent,
            clock: self.clock.clone(),
        };
        let carried = self.syncer.delivery.take();
        ctx.spawn(async move { job.run(carried).await }.into_actor(self).map(
            |res, act, ctx| {
                act.syncer.delivering = false;
                match res {
                    Ok(out) => {
                        act.syncer.delivery = out.pending;
                        act.syncer.deliver_at = out.retry_at;
                    }
                    Err(e) => {
                        tracing::error!(dep_name = %act.state.name(), error = %e, "webhook delivery could not use the store");
                        act.syncer.deliver_at = Some(act.clock.now() + LOCAL_RETRY);
                    }
                }
                act.maybe_notify(ctx);
            },
        ));
    }
}

/// Delivery of the outbox, oldest first, run off the actor's mailbox.
pub(super) struct DeliverJob {
    store: Store,
    name: DepName,
    urls: Vec<String>,
    secret: Option<Vec<u8>>,
    policy: DeliveryPolicy,
    connect_timeout: Duration,
    user_agent: String,
    clock: SharedClock,
}

pub(super) struct Delivered {
    /// The event still being delivered (which URLs have it).
    pending: Option<Delivery>,
    retry_at: Option<OffsetDateTime>,
}

impl DeliverJob {
    async fn run(self, carried: Option<Delivery>) -> Result<Delivered, StoreError> {
        let mut carried = carried;
        loop {
            let n = self.name.clone();
            let next = self.store.blocking(move |s| s.outbox_peek(&n, 1)).await?;
            let Some((seq, entry)) = next.into_iter().next() else {
                crate::metrics::set_webhook_backlog(self.name.as_str(), 0);
                return Ok(Delivered {
                    pending: None,
                    retry_at: None,
                });
            };
            let mut delivery = match carried.take() {
                Some(d) if d.seq() == seq => d,
                _ => Delivery::new(seq, self.urls.len()),
            };
            for i in delivery.pending() {
                let started = std::time::Instant::now();
                let status = self.post(&self.urls[i], &entry.body).await;
                if !status.is_some_and(webhook::is_delivered) {
                    let answer =
                        status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
                    tracing::warn!(dep_name = %self.name, url = %crate::daemon::redact::url(&self.urls[i]), answer = %answer, event_id = %entry.event_id, "webhook delivery failed");
                }
                crate::metrics::webhook_delivery(
                    self.name.as_str(),
                    status.is_some_and(webhook::is_delivered),
                    started.elapsed(),
                );
                delivery.record(i, status);
            }
            if delivery.is_complete() {
                let n = self.name.clone();
                self.store
                    .blocking(move |s| s.outbox_remove(&n, &[seq]))
                    .await?;
                continue;
            }
            let wait = delivery.retry_in(&self.policy, &mut OsJitter);
            let n = self.name.clone();
            let backlog = self.store.blocking(move |s| s.outbox_backlog(&n)).await?;
            crate::metrics::set_webhook_backlog(self.name.as_str(), backlog);
            return Ok(Delivered {
                pending: Some(delivery),
                retry_at: Some(self.clock.now() + wait),
            });
        }
    }

    /// One POST; the status, or `None` when there was no answer.
    async fn post(&self, url: &str, body: &str) -> Option<u16> {
        let mut req = client::http_client(self.connect_timeout, None)
            .post(url)
            .timeout(self.policy.timeout)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("User-Agent", self.user_agent.as_str()));
        if let Some(secret) = &self.secret {
            match webhook::signature(secret, body.as_bytes()) {
                Ok(sig) => req = req.insert_header((webhook::SIGNATURE_HEADER, sig)),
                Err(e) => {
                    tracing::error!(error = %e, "signing the webhook body failed");
                    return None;
                }
            }
        }
        match req.send_body(body.to_owned()).await {
            Ok(mut resp) => {
                // Drain the answer so the connection can be reused.
                let _ = resp.body().limit(64 * 1024).await;
                Some(resp.status().as_u16())
            }
            Err(e) => {
                // awc's error may quote the URL: it is left out.
                let error = match &e {
                    awc::error::SendRequestError::Timeout => "timed out".to_owned(),
                    awc::error::SendRequestError::Connect(c) => format!("connect: {c}"),
                    _ => "request failed".to_owned(),
                };
                tracing::debug!(url = %crate::daemon::redact::url(url), error = %error, "webhook POST failed");
                None
            }
        }
    }
}
