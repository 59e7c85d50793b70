//! What a DEP name's actor reports about itself for `GET /v1/status`.

use super::dep_name::DepNameActor;
use crate::session::SessionState;
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
pub struct NameStatus {
    pub dep_name: String,
    pub base_url: String,
    pub token_health: TokenHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenStatus>,
    pub session: SessionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The name's status now.
#[derive(Message)]
#[rtype(result = "NameStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for DepNameActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl DepNameActor {
    pub(super) fn status(&self) -> NameStatus {
        let now = self.clock.now();
        let data = self.state.data();
        let tokens = data.tokens.as_ref().map(|t| TokenStatus {
            consumer_key: t.consumer_key.clone(),
            access_token_expiry: crate::tokens::format_unix(t.access_token_expiry_unix),
            days_left: (t.access_token_expiry_unix - now.unix_timestamp()).div_euclid(86_400),
        });
        let failure = self.session.failure();
        let token_health = match (&tokens, failure.map(|f| &f.error)) {
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
        }
    }
}
