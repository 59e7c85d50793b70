//! APNs push delivery: one [`PushTopic`] actor per push certificate's
//! topic, on an arbiter of their own, and [`Pushes`], the handle the API
//! holds. A call to push many enrollments reads their push info, groups
//! them by topic and sends each topic's pushes as streams on its one
//! connection, a bounded number at a time; the answer comes when all are
//! done or at the deadline, and pushes still in flight then finish in the
//! background.

mod topic;

pub use topic::{TopicStatus, Transport};

use crate::apns::wire::{self, PushHeaders, Verdict};
use crate::domain::clock::SharedClock;
use crate::settings::MdmSettings;
use crate::store::mdm::{MdmWrite, StoredInvalidToken, StoredPushCert};
use crate::store::{Store, StoreError};
use actix::prelude::*;
use futures_util::StreamExt;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use topic::{Conn, GetConn, GetTopicStatus, Lost, Outcomes, PushTopic, SetCert, SetTransport};

/// Throttles and server faults are tried this many more times.
const MAX_RETRIES: u32 = 3;
/// A lost connection is tried this many more times.
const MAX_RECONNECTS: u32 = 3;
/// The longest pause before a retry, whatever `Retry-After` says.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// What happened to one enrollment's push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOutcome {
    Delivered {
        apns_id: String,
    },
    /// `apns_id` when APNs answered with one (NanoMDM shows both).
    Failed {
        apns_id: Option<String>,
        error: String,
    },
}

/// The answer to a push of many IDs.
#[derive(Debug, Default)]
pub struct PushAnswer {
    pub outcomes: BTreeMap<String, IdOutcome>,
    /// IDs still in flight at the deadline (they finish in the background).
    pub pending: Vec<String>,
}

/// The per-call settings of `[mdm]`.
#[derive(Debug, Clone, Copy)]
struct Policy {
    expiration_secs: Option<u64>,
    concurrency: usize,
    deadline: Duration,
}

fn policy(s: &MdmSettings) -> Policy {
    Policy {
        expiration_secs: (s.apns_expiration_secs > 0).then_some(s.apns_expiration_secs),
        concurrency: s.push_concurrency.max(1),
        deadline: Duration::from_secs(s.push_deadline_secs.max(1)),
    }
}

fn transport(
    s: &MdmSettings,
    allow: Arc<crate::dep::allowlist::Allowlist>,
) -> Result<Transport, String> {
    let extra_roots = match s
        .apns_ca_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(p) => {
            crate::settings::read_pem_roots(p).map_err(|e| format!("mdm.apns_ca_file: {e}"))?
        }
        None => Vec::new(),
    };
    Ok(Transport {
        environment: wire::Environment::parse(&s.apns_environment).unwrap_or_default(),
        base_url: (!s.apns_base_url.is_empty()).then(|| s.apns_base_url.clone()),
        extra_roots,
        allow,
        connect_timeout: Duration::from_secs(10),
    })
}

/// One enrollment to wake.
struct Target {
    id: String,
    token_hex: String,
    magic: String,
}

/// Push delivery for every topic.
pub struct Pushes {
    arbiter: ArbiterHandle,
    topics: Mutex<HashMap<String, Addr<PushTopic>>>,
    store: Store,
    clock: SharedClock,
    transport: RwLock<Transport>,
    policy: RwLock<Policy>,
}

impl std::fmt::Debug for Pushes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushes").finish_non_exhaustive()
    }
}

impl Pushes {
    /// Starts an actor for every stored push certificate, on an arbiter of
    /// their own.
    pub fn start(
        store: Store,
        settings: &crate::settings::Settings,
        clock: SharedClock,
    ) -> Result<Arc<Pushes>, String> {
        let transport = transport(&settings.mdm, settings.apple.allow.clone())?;
        let arbiter = Arbiter::new().handle();
        let pushes = Arc::new(Pushes {
            arbiter,
            topics: Mutex::default(),
            store: store.clone(),
            clock,
            transport: RwLock::new(transport),
            policy: RwLock::new(policy(&settings.mdm)),
        });
        let stored = store
            .mdm_push_certs()
            .map_err(|e| format!("reading the push certificates: {e}"))?;
        for (topic, cert) in stored {
            pushes.cert_stored(&topic, cert);
        }
        Ok(pushes)
    }

    /// Applies reloaded `[mdm]` settings.
    pub fn reload(&self, settings: &crate::settings::Settings) -> Result<(), String> {
        let t = transport(&settings.mdm, settings.apple.allow.clone())?;
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy(&settings.mdm);
        *self
            .transport
            .write()
            .unwrap_or_else(PoisonError::into_inner) = t.clone();
        for addr in self.lock().values() {
            addr.do_send(SetTransport(t.clone()));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Addr<PushTopic>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A certificate was stored for `topic`: its actor (started now if
    /// new) takes it; pushes already queued keep going.
    pub fn cert_stored(&self, topic: &str, cert: StoredPushCert) {
        let days = (cert.not_after_unix - self.clock.now().unix_timestamp()).div_euclid(86_400);
        crate::metrics::set_push_cert_days_left(topic, days);
        let addr = self.actor(topic);
        addr.do_send(SetCert(cert));
    }

    /// Stores a checked pair for its topic (replacing any, with a new
    /// staleness token) and hands it to the topic's actor.
    pub async fn store_cert(
        &self,
        pair: crate::apns::cert::PushPair,
        environment: Option<String>,
    ) -> Result<StoredPushCert, StoreError> {
        let topic = pair.topic.clone();
        let record = self
            .store
            .blocking(move |s| {
                let stale_token = s
                    .mdm_push_cert(&pair.topic)?
                    .map_or(1, |old| old.stale_token + 1);
                let record = StoredPushCert {
                    cert_pem: pair.cert_pem,
                    key_pem: pair.key_pem,
                    not_after_unix: pair.not_after_unix,
                    stale_token,
                    environment,
                };
                let mut w = MdmWrite::default();
                w.put_push_cert(&pair.topic, &record);
                s.mdm_commit(w)?;
                Ok(record)
            })
            .await?;
        self.cert_stored(&topic, record.clone());
        Ok(record)
    }

    fn actor(&self, topic: &str) -> Addr<PushTopic> {
        let mut topics = self.lock();
        if let Some(a) = topics.get(topic) {
            return a.clone();
        }
        let transport = self
            .transport
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let t = topic.to_owned();
        let addr =
            PushTopic::start_in_arbiter(&self.arbiter, move |_| PushTopic::new(t, transport));
        topics.insert(topic.to_owned(), addr.clone());
        addr
    }

    /// Every topic's state, by topic; refreshes the expiry gauges.
    pub async fn statuses(&self) -> Vec<TopicStatus> {
        let addrs: Vec<_> = self.lock().values().cloned().collect();
        let now = self.clock.now().unix_timestamp();
        let mut out: Vec<TopicStatus> =
            futures_util::future::join_all(addrs.iter().map(|a| a.send(GetTopicStatus)))
                .await
                .into_iter()
                .flatten()
                .collect();
        for s in &out {
            crate::metrics::set_push_cert_days_left(
                &s.topic,
                (s.not_after_unix - now).div_euclid(86_400),
            );
        }
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// Pushes to every ID once (duplicates are dropped), and answers when
    /// all are done or at the deadline.
    pub async fn push(&self, ids: &[String]) -> Result<PushAnswer, StoreError> {
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect();
        let now = self.clock.now().unix_timestamp();
        let (by_topic, mut answer) = self.store.blocking(move |s| read_targets(s, ids)).await?;
        let policy = *self.policy.read().unwrap_or_else(PoisonError::into_inner);
        let deadline = tokio::time::Instant::now() + policy.deadline;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut waiting: HashSet<String> = HashSet::new();
        for (topic, targets) in by_topic {
            if !self.lock().contains_key(&topic) {
                let t = topic.clone();
                match self.store.blocking(move |s| s.mdm_push_cert(&t)).await? {
                    Some(cert) => self.cert_stored(&topic, cert),
                    None => {
                        for t in targets {
                            answer.outcomes.insert(
                                t.id,
                                IdOutcome::Failed {
                                    apns_id: None,
                                    error: format!(
                                        "retrieving push cert for topic {topic:?}: no push certificate is stored for this topic"
                                    ),
                                },
                            );
                        }
                        continue;
                    }
                }
            }
            waiting.extend(targets.iter().map(|t| t.id.clone()));
            let job = TopicJob {
                addr: self.actor(&topic),
                topic,
                policy,
                clock: self.clock.clone(),
                store: self.store.clone(),
                now_unix: now,
            };
            actix::spawn(job.run(targets, tx.clone()));
        }
        drop(tx);
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((id, outcome))) => {
                    waiting.remove(&id);
                    answer.outcomes.insert(id, outcome);
                }
                Ok(None) | Err(_) => break,
            }
        }
        answer.pending = waiting.into_iter().collect();
        answer.pending.sort();
        Ok(answer)
    }
}

/// Reads the push info of `ids`: the pushable ones by topic, and an
/// outcome for each that cannot be pushed.
fn read_targets(
    s: &Store,
    ids: Vec<String>,
) -> Result<(BTreeMap<String, Vec<Target>>, PushAnswer), StoreError> {
    let mut by_topic: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    let mut answer = PushAnswer::default();
    let fail = |error: String| IdOutcome::Failed {
        apns_id: None,
        error,
    };
    for id in ids {
        let e = match s.mdm_enrollment(&id)? {
            Some(e) if !e.token_hex.is_empty() && !e.topic.is_empty() => e,
            _ => {
                answer
                    .outcomes
                    .insert(id, fail("push data missing for id".into()));
                continue;
            }
        };
        if !e.enabled {
            answer.outcomes.insert(
                id,
                fail("enrollment is checked out; no push until it enrolls again".into()),
            );
            continue;
        }
        if let Some(bad) = s.mdm_invalid_token(&id, &e.token_hex)? {
            answer.outcomes.insert(
                id,
                fail(format!(
                    "push token invalid: APNs answered {} (no push until the device sends a new TokenUpdate)",
                    bad.reason
                )),
            );
            continue;
        }
        by_topic.entry(e.topic).or_default().push(Target {
            id,
            token_hex: e.token_hex,
            magic: e.push_magic,
        });
    }
    Ok((by_topic, answer))
}

/// One topic's share of a push call.
struct TopicJob {
    addr: Addr<PushTopic>,
    topic: String,
    policy: Policy,
    clock: SharedClock,
    store: Store,
    now_unix: i64,
}

/// What one push ended with, for the topic's tally.
struct Sent {
    id: String,
    outcome: IdOutcome,
    certificate_refused: Option<String>,
}

impl TopicJob {
    async fn run(self, targets: Vec<Target>, tx: mpsc::UnboundedSender<(String, IdOutcome)>) {
        let job = Rc::new(self);
        let cache: Rc<RefCell<Option<Conn>>> = Rc::default();
        let headers = Rc::new(PushHeaders {
            topic: job.topic.clone(),
            expiration_unix: job.policy.expiration_secs.map(|s| {
                job.now_unix
                    .saturating_add(i64::try_from(s).unwrap_or(i64::MAX))
            }),
        });
        let (mut delivered, mut failed, mut refused) = (0u64, 0u64, None);
        let mut results = futures_util::stream::iter(targets)
            .map(|t| {
                let (job, cache, headers) = (job.clone(), cache.clone(), headers.clone());
                async move { job.push_one(t, &cache, &headers).await }
            })
            .buffer_unordered(job.policy.concurrency);
        while let Some(sent) = results.next().await {
            match &sent.outcome {
                IdOutcome::Delivered { .. } => delivered += 1,
                IdOutcome::Failed { .. } => failed += 1,
            }
            if sent.certificate_refused.is_some() {
                refused = sent.certificate_refused;
            }
            let _ = tx.send((sent.id, sent.outcome));
        }
        job.addr.do_send(Outcomes {
            delivered,
            failed,
            certificate_refused: refused,
            now_unix: job.clock.now().unix_timestamp(),
        });
    }

    async fn conn(&self, cache: &RefCell<Option<Conn>>) -> Result<Conn, String> {
        if let Some(c) = cache.borrow().as_ref() {
            return Ok(c.clone());
        }
        let rx = self
            .addr
            .send(GetConn)
            .await
            .map_err(|e| format!("the push topic's actor did not answer: {e}"))?;
        let conn = rx
            .await
            .map_err(|_| "the push topic's actor stopped".to_owned())?
            .map_err(|e| format!("connecting to APNs: {e}"))?;
        *cache.borrow_mut() = Some(conn.clone());
        Ok(conn)
    }

    async fn push_one(
        &self,
        t: Target,
        cache: &RefCell<Option<Conn>>,
        headers: &PushHeaders,
    ) -> Sent {
        let body = wire::body(&t.magic);
        let (mut reconnects, mut retries) = (0, 0);
        let sent = |outcome, refused| Sent {
            id: t.id.clone(),
            outcome,
            certificate_refused: refused,
        };
        let failed = |apns_id, error| IdOutcome::Failed { apns_id, error };
        loop {
            let conn = match self.conn(cache).await {
                Ok(c) => c,
                Err(e) => {
                    crate::metrics::push(&self.topic, "transport", Duration::ZERO);
                    return sent(failed(None, e), None);
                }
            };
            let request = match wire::request(&conn.base, &t.token_hex, headers) {
                Ok(r) => r,
                Err(e) => return sent(failed(None, e.to_string()), None),
            };
            let started = Instant::now();
            let answer = match crate::apns::conn::send(
                &conn.sender,
                request,
                body.clone(),
                self.clock.now(),
            )
            .await
            {
                Ok(a) => a,
                Err(e) => {
                    crate::metrics::push(&self.topic, "transport", started.elapsed());
                    // A reset stream (REFUSED_STREAM, …) leaves the
                    // connection usable; anything else ends it.
                    if !e.is_reset() {
                        let stale = cache
                            .borrow()
                            .as_ref()
                            .is_some_and(|c| c.generation == conn.generation);
                        if stale {
                            *cache.borrow_mut() = None;
                        }
                        self.addr.do_send(Lost {
                            generation: conn.generation,
                            reason: e.to_string(),
                        });
                    }
                    if reconnects >= MAX_RECONNECTS {
                        return sent(failed(None, format!("push transport error: {e}")), None);
                    }
                    reconnects += 1;
                    crate::metrics::push_retry(&self.topic);
                    continue;
                }
            };
            crate::metrics::push(&self.topic, &answer.label(), started.elapsed());
            let apns_id = answer.apns_id.clone();
            let error = || answer.error_text().unwrap_or_default();
            match answer.verdict() {
                Verdict::Delivered => {
                    return sent(
                        IdOutcome::Delivered {
                            apns_id: apns_id.unwrap_or_default(),
                        },
                        None,
                    );
                }
                Verdict::Retry if retries < MAX_RETRIES => {
                    retries += 1;
                    let backoff = Duration::from_millis(500 << retries);
                    let wait = answer.retry_after.unwrap_or(backoff).min(MAX_RETRY_WAIT);
                    crate::metrics::push_retry(&self.topic);
                    tokio::time::sleep(wait).await;
                }
                Verdict::TokenInvalid => {
                    let mark = StoredInvalidToken {
                        token_hex: t.token_hex.clone(),
                        reason: answer
                            .reason()
                            .unwrap_or_else(|| format!("HTTP {}", answer.status)),
                        at_unix: self.clock.now().unix_timestamp(),
                    };
                    let id = t.id.clone();
                    let stored = self
                        .store
                        .blocking(move |s| s.mdm_mark_tokens_invalid(&[(id, mark)]))
                        .await;
                    if let Err(e) = stored {
                        tracing::error!(error = %e, "recording a refused push token failed");
                    }
                    return sent(failed(apns_id, error()), None);
                }
                Verdict::Certificate => {
                    let text = error();
                    return sent(failed(apns_id, text.clone()), Some(text));
                }
                Verdict::Retry | Verdict::Failed => return sent(failed(apns_id, error()), None),
            }
        }
    }
}
