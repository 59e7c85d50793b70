//! One push topic's actor: the owner of its push certificate and of the
//! one HTTP/2 connection its pushes share. It opens the connection on
//! demand (once, however many callers wait), reopens it after a failure
//! with a growing pause, and starts a new one when the certificate is
//! replaced; the old connection drains the streams already on it.

use crate::apns::conn::{self, ConnectError, Endpoint, Identity};
use crate::apns::wire::Environment;
use crate::dep::allowlist::Allowlist;
use crate::store::mdm::StoredPushCert;
use actix::prelude::*;
use bytes::Bytes;
use h2::client::SendRequest;
use openssl::x509::X509;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How the topics reach APNs (from `[mdm]`, replaced on reload).
#[derive(Debug, Clone)]
pub struct Transport {
    pub environment: Environment,
    /// `[mdm] apns_base_url`: every topic goes there when set.
    pub base_url: Option<String>,
    pub extra_roots: Vec<X509>,
    pub allow: Arc<Allowlist>,
    pub connect_timeout: Duration,
}

/// A connection handed to a push: the stream opener and which connection
/// it is, so a failure is reported against the right one.
#[derive(Clone)]
pub struct Conn {
    pub sender: SendRequest<Bytes>,
    pub generation: u64,
    /// The base URL requests are addressed to.
    pub base: String,
}

/// What status shows about a topic.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicStatus {
    pub topic: String,
    pub not_after_unix: i64,
    pub environment: &'static str,
    /// `connected`, `idle` (no connection open now) or `failed` (APNs
    /// refused the certificate; pushes fail until it is replaced or a
    /// push succeeds).
    pub state: &'static str,
    pub last_error: Option<String>,
    pub failed_since_unix: Option<i64>,
    /// The concurrent streams APNs allows on the open connection.
    pub max_streams: Option<usize>,
    pub delivered: u64,
    pub failed: u64,
}

pub struct PushTopic {
    topic: String,
    identity: Option<Identity>,
    not_after_unix: i64,
    stale_token: u64,
    environment: Option<Environment>,
    transport: Transport,
    live: Option<(Conn, Arc<AtomicUsize>)>,
    generation: u64,
    connecting: bool,
    waiters: Vec<oneshot::Sender<Result<Conn, ConnectError>>>,
    /// Consecutive connection failures, and when the next try may start.
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<String>,
    failed_since_unix: Option<i64>,
    delivered: u64,
    failed: u64,
}

impl PushTopic {
    pub fn new(topic: String, transport: Transport) -> PushTopic {
        PushTopic {
            topic,
            identity: None,
            not_after_unix: 0,
            stale_token: 0,
            environment: None,
            transport,
            live: None,
            generation: 0,
            connecting: false,
            waiters: Vec::new(),
            failures: 0,
            not_before: None,
            last_error: None,
            failed_since_unix: None,
            delivered: 0,
            failed: 0,
        }
    }

    fn environment(&self) -> Environment {
        self.environment.unwrap_or(self.transport.environment)
    }

    fn base_url(&self) -> String {
        self.transport
            .base_url
            .clone()
            .unwrap_or_else(|| self.environment().base_url().to_owned())
    }

    /// Forgets the open connection (streams on it finish; new pushes get
    /// a new one).
    fn drop_connection(&mut self) {
        self.live = None;
        self.generation += 1;
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting {
            return;
        }
        let Some(identity) = self.identity.clone() else {
            let e = ConnectError::Tls {
                host: self.topic.clone(),
                reason: "no push certificate is stored for this topic".into(),
            };
            for w in self.waiters.drain(..) {
                let _ = w.send(Err(e.clone()));
            }
            return;
        };
        self.connecting = true;
        let base = self.base_url();
        let transport = self.transport.clone();
        let wait = self
            .not_before
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        let generation = self.generation;
        let fut = async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let endpoint = Endpoint::parse(&base)?;
            let opened = conn::open(
                &endpoint,
                &identity,
                &transport.extra_roots,
                &transport.allow,
                transport.connect_timeout,
            )
            .await?;
            Ok::<_, ConnectError>((opened, endpoint.base))
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.connecting = false;
            match result {
                Ok((opened, base)) if act.generation == generation => {
                    act.failures = 0;
                    act.not_before = None;
                    act.generation += 1;
                    let g = act.generation;
                    let conn = Conn {
                        sender: opened.sender,
                        generation: g,
                        base,
                    };
                    act.live = Some((conn.clone(), opened.max_streams));
                    ctx.spawn(opened.driver.into_actor(act).map(move |end, act, _| {
                        if let Some(reason) = end {
                            tracing::info!(topic = %act.topic, reason = %reason, "APNs connection closed");
                        }
                        if act.live.as_ref().is_some_and(|(c, _)| c.generation == g) {
                            act.live = None;
                        }
                    }));
                    for w in act.waiters.drain(..) {
                        let _ = w.send(Ok(conn.clone()));
                    }
                }
                // The certificate changed while connecting: again, with
                // the new one.
                Ok(_) => act.connect(ctx),
                Err(e) => {
                    act.failures += 1;
                    let pause = Duration::from_millis(250 << act.failures.min(7));
                    act.not_before = Some(Instant::now() + pause);
                    act.last_error = Some(e.to_string());
                    tracing::warn!(topic = %act.topic, error = %e, "connecting to APNs failed");
                    for w in act.waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                }
            }
        }));
    }
}

impl Actor for PushTopic {
    type Context = Context<Self>;
}

/// A connection for pushes: the open one, or one opened for the caller.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<Conn, ConnectError>>")]
pub struct GetConn;

impl Handler<GetConn> for PushTopic {
    type Result = MessageResult<GetConn>;

    fn handle(&mut self, _: GetConn, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match &self.live {
            // A connection that ended was already forgotten by its driver.
            Some((c, _)) => {
                let _ = tx.send(Ok(c.clone()));
            }
            None => {
                self.waiters.push(tx);
                self.connect(ctx);
            }
        }
        MessageResult(rx)
    }
}

/// A push saw its connection fail.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Lost {
    pub generation: u64,
    pub reason: String,
}

impl Handler<Lost> for PushTopic {
    type Result = ();

    fn handle(&mut self, m: Lost, _: &mut Context<Self>) {
        if self
            .live
            .as_ref()
            .is_some_and(|(c, _)| c.generation == m.generation)
        {
            self.live = None;
            self.last_error = Some(m.reason);
        }
    }
}

/// The outcome of a round of pushes: counts, and APNs's refusal of the
/// certificate when there was one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outcomes {
    pub delivered: u64,
    pub failed: u64,
    pub certificate_refused: Option<String>,
    pub now_unix: i64,
}

impl Handler<Outcomes> for PushTopic {
    type Result = ();

    fn handle(&mut self, m: Outcomes, _: &mut Context<Self>) {
        self.delivered += m.delivered;
        self.failed += m.failed;
        if let Some(reason) = m.certificate_refused {
            if self.failed_since_unix.is_none() {
                tracing::error!(topic = %self.topic, reason = %reason, "APNs refused the push certificate");
                self.failed_since_unix = Some(m.now_unix);
            }
            self.last_error = Some(reason);
        } else if m.delivered > 0 {
            self.failed_since_unix = None;
        }
    }
}

/// A stored certificate for the topic (at start, after an upload).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SetCert(pub StoredPushCert);

impl Handler<SetCert> for PushTopic {
    type Result = Result<(), String>;

    fn handle(&mut self, SetCert(c): SetCert, _: &mut Context<Self>) -> Self::Result {
        if self.identity.is_some() && c.stale_token == self.stale_token {
            return Ok(());
        }
        let cert = X509::from_pem(&c.cert_pem).map_err(|e| e.to_string())?;
        let key =
            openssl::pkey::PKey::private_key_from_pem(&c.key_pem).map_err(|e| e.to_string())?;
        self.identity = Some(Identity { cert, key });
        self.not_after_unix = c.not_after_unix;
        self.stale_token = c.stale_token;
        self.environment = c.environment.as_deref().and_then(Environment::parse);
        self.failed_since_unix = None;
        self.failures = 0;
        self.not_before = None;
        self.last_error = None;
        self.drop_connection();
        Ok(())
    }
}

/// New transport settings (a reload): the next connection uses them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTransport(pub Transport);

impl Handler<SetTransport> for PushTopic {
    type Result = ();

    fn handle(&mut self, SetTransport(t): SetTransport, _: &mut Context<Self>) {
        let changed = t.base_url != self.transport.base_url
            || t.environment != self.transport.environment
            || t.extra_roots.len() != self.transport.extra_roots.len();
        self.transport = t;
        if changed {
            self.drop_connection();
        }
    }
}

#[derive(Message)]
#[rtype(result = "TopicStatus")]
pub struct GetTopicStatus;

impl Handler<GetTopicStatus> for PushTopic {
    type Result = MessageResult<GetTopicStatus>;

    fn handle(&mut self, _: GetTopicStatus, _: &mut Context<Self>) -> Self::Result {
        let state = if self.failed_since_unix.is_some() {
            "failed"
        } else if self.live.is_some() {
            "connected"
        } else {
            "idle"
        };
        MessageResult(TopicStatus {
            topic: self.topic.clone(),
            not_after_unix: self.not_after_unix,
            environment: self.environment().as_str(),
            state,
            last_error: self.last_error.clone(),
            failed_since_unix: self.failed_since_unix,
            max_streams: self.live.as_ref().map(|(_, m)| m.load(Ordering::Relaxed)),
            delivered: self.delivered,
            failed: self.failed,
        })
    }
}
