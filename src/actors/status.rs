//! What a DEP name's actor reports about itself for `GET /v1/status`.

use super::dep_name::DepNameActor;
use crate::domain::session_rules::SessionState;
use actix::prelude::*;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How the name's OAuth token stands with Apple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenHealth {
    /// No tokens stored yet.
    Missing,
    Ok,
    /// The organisation must accept new terms in Apple's portal.
    TermsNotSigned,
    /// Apple refused the OAuth token: download a new one.
    TokenRejected,
    /// `access_token_expiry` has passed: download a new token.
    Expired,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    pub consumer_key: String,
    pub access_token_expiry: String,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    /// `none`, `opening`, `active` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Sessions opened since depd started.
    pub opened: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apple_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apple_code: Option<String>,
    /// No new `/session` call before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleStatus {
    pub started: String,
    pub ended: String,
    /// `complete`, `repeated_cursor` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub pages: u64,
    /// Devices by `op_type` (`none` on fetch).
    pub devices: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    /// Cycles run on the timer (`sync.auto`).
    pub auto: bool,
    /// `fetch` or `sync`: what the next cycle starts with.
    pub phase: &'static str,
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_age_secs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_cycle: Option<CycleStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_sync: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The name's own requests to Apple sent again after a transient
    /// failure, since start.
    pub retries: u64,
    /// The last of the name's own requests that failed (retried or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upstream_error: Option<UpstreamError>,
    /// Milliseconds the name's own requests waited before being sent (for
    /// a retry, or behind Apple's `Retry-After`), by endpoint, since start.
    pub retry_waits_ms: std::collections::BTreeMap<String, u64>,
}

/// A failed request to Apple, as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamError {
    pub at: String,
    /// Apple's path, e.g. `/server/devices`.
    pub endpoint: String,
    pub message: String,
    /// Consecutive failures of that request.
    pub failures: u32,
    /// When it is sent again; absent when it was given up (or went through).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InventoryStatus {
    pub total: u64,
    pub deleted: u64,
    pub by_op_type: std::collections::BTreeMap<String, u64>,
    pub by_profile_status: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AssignmentStatus {
    pub by_result: std::collections::BTreeMap<String, u64>,
    /// Serials waiting for a retry time (FAILED or THROTTLED cooldowns).
    pub cooling_down: u64,
    /// Serials that failed too often: no more automatic attempts.
    pub gave_up: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_pass: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookStatus {
    pub urls: usize,
    pub backlog: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameStatus {
    pub dep_name: String,
    pub base_url: String,
    pub token_health: TokenHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenStatus>,
    pub session: SessionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    pub sync: SyncStatus,
    pub devices: InventoryStatus,
    pub assignments: AssignmentStatus,
    pub webhook: WebhookStatus,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The name's status now.
#[derive(Message)]
#[rtype(result = "NameStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for DepNameActor {
    type Result = ResponseActFuture<Self, NameStatus>;

    /// What the actor knows, plus the counts read from the store (which
    /// walk the name's records: fine for status, not for a hot path).
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let mut status = self.status();
        let (store, name) = (self.store.clone(), self.state.name().clone());
        let now = self.clock.now().unix_timestamp();
        Box::pin(
            async move {
                store
                    .blocking(move |s| {
                        Ok((
                            s.device_counts(&name)?,
                            s.assignment_counts(&name, now)?,
                            s.outbox_backlog(&name)?,
                        ))
                    })
                    .await
            }
            .into_actor(self)
            .map(move |counts, act, _| {
                match counts {
                    Ok((d, a, backlog)) => {
                        status.devices = InventoryStatus {
                            total: d.total,
                            deleted: d.deleted,
                            by_op_type: d.by_op_type,
                            by_profile_status: d.by_profile_status,
                        };
                        status.assignments.by_result = a
                            .by_result
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect();
                        status.assignments.cooling_down = a.cooling_down;
                        status.assignments.gave_up = a.gave_up;
                        status.webhook.backlog = backlog;
                    }
                    Err(e) => {
                        tracing::error!(dep_name = %act.state.name(), error = %e, "reading counts for status failed");
                    }
                }
                status
            }),
        )
    }
}

impl DepNameActor {
    pub(super) fn status(&self) -> NameStatus {
        let now = self.clock.now();
        let tokens = self.state.tokens().map(|t| TokenStatus {
            consumer_key: t.consumer_key,
            access_token_expiry: crate::domain::tokens::format_unix(t.access_token_expiry_unix),
            days_left: (t.access_token_expiry_unix - now.unix_timestamp()).div_euclid(86_400),
        });
        let failure = self.session.failure();
        // A refusal only a person can fix shows whether it came from
        // `/session` or from a sync request.
        let refusal = failure.map(|f| &f.error).or_else(|| {
            self.syncer
                .last_failure
                .as_ref()
                .map(|f| &f.error)
                .filter(|e| crate::sync::backoff::needs_a_person(e))
        });
        let token_health = match (&tokens, refusal) {
            (None, _) => TokenHealth::Missing,
            (Some(t), _) if t.days_left < 0 => TokenHealth::Expired,
            (Some(_), Some(crate::dep::DepError::TermsNotSigned)) => TokenHealth::TermsNotSigned,
            (Some(_), Some(crate::dep::DepError::TokenRejected { .. })) => {
                TokenHealth::TokenRejected
            }
            (Some(_), _) => TokenHealth::Ok,
        };
        let state = self.session.state();
        let since = match &state {
            SessionState::Active { since } => Some(rfc3339(*since)),
            _ => None,
        };
        NameStatus {
            dep_name: self.state.name().as_str().to_owned(),
            base_url: self.state.base_url(&self.settings).to_owned(),
            token_health,
            tokens,
            session: SessionStatus {
                state: state.as_str(),
                since,
                opened: self.session.opened_count(),
            },
            last_error: failure.map(|f| LastError {
                at: rfc3339(f.at),
                message: f.error.to_string(),
                apple_status: f.error.apple_status(),
                apple_code: f.error.apple_code().map(str::to_owned),
                retry_at: Some(rfc3339(f.retry_at)),
            }),
            sync: self.sync_status(now),
            devices: InventoryStatus::default(),
            assignments: AssignmentStatus {
                next_pass: self.syncer.assign_at.map(rfc3339),
                ..AssignmentStatus::default()
            },
            webhook: WebhookStatus {
                urls: self.settings.webhook_urls(self.state.name()).len(),
                backlog: 0,
                next_retry: self.syncer.deliver_at.map(rfc3339),
            },
        }
    }

    fn sync_status(&self, now: OffsetDateTime) -> SyncStatus {
        let stored = self.syncer.cycle.state();
        let unix = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map(rfc3339)
                .unwrap_or_default()
        };
        SyncStatus {
            auto: self.settings.sync.auto,
            phase: match stored.phase {
                crate::store::SyncPhase::Fetch => "fetch",
                crate::store::SyncPhase::Sync => "sync",
            },
            running: self.syncer.cycle.is_running(),
            cursor_age_secs: stored.cursor_unix.map(|t| now.unix_timestamp() - t),
            last_cycle: stored.last_cycle.as_ref().map(|c| CycleStatus {
                started: unix(c.started_unix),
                ended: unix(c.ended_unix),
                result: super::syncer::Outcome::from(c.outcome).as_str(),
                error: c.error.clone(),
                pages: c.pages,
                devices: c.counts.clone(),
            }),
            next_sync: self.syncer.next_at.map(rfc3339),
            last_error: self.syncer.last_failure.as_ref().map(|f| LastError {
                at: rfc3339(f.at),
                message: f.error.to_string(),
                apple_status: f.error.apple_status(),
                apple_code: f.error.apple_code().map(str::to_owned),
                retry_at: self.syncer.next_at.map(rfc3339),
            }),
            retries: self.syncer.retry_log.retries(),
            retry_waits_ms: self
                .syncer
                .retry_log
                .waited()
                .into_iter()
                .map(|(k, v)| (k, u64::try_from(v.as_millis()).unwrap_or(u64::MAX)))
                .collect(),
            last_upstream_error: self.syncer.retry_log.last_failure().map(|f| UpstreamError {
                at: rfc3339(f.at),
                endpoint: f.endpoint,
                message: f.error,
                failures: f.failures,
                next_attempt_at: f.next_attempt_at.map(rfc3339),
            }),
        }
    }
}
