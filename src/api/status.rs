//! `GET /v1/status` and `GET /v1/status/{name}`: what each DEP name's
//! actor reports about its tokens, session and last error.

use super::AppState;
use super::error::ApiError;
use crate::actors::{GetStatus, ListNames, Resolve};
use crate::domain::name::DepName;
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;

pub async fn one(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = DepName::parse(&path)
        .map_err(|e| ApiError::bad_request("invalid-dep-name", format!("invalid DEP name: {e}")))?;
    let actor = state
        .registry
        .send(Resolve {
            name: name.clone(),
            create: false,
        })
        .await
        .map_err(|e| ApiError::internal("the registry did not answer", &e))?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown-dep-name",
                format!("unknown DEP name {:?}", name.as_str()),
            )
        })?;
    let status = actor
        .send(GetStatus)
        .await
        .map_err(|e| ApiError::internal("the DEP name's actor did not answer", &e))?;
    Ok(HttpResponse::Ok().json(status))
}

/// Every known name's status, in name order. Names whose actor stopped
/// meanwhile (a reload dropped them) are left out.
pub async fn all(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let names = state
        .registry
        .send(ListNames)
        .await
        .map_err(|e| ApiError::internal("the registry did not answer", &e))?;
    let lookups = names.into_iter().map(|name| {
        let registry = state.registry.clone();
        async move {
            let actor = registry
                .send(Resolve {
                    name,
                    create: false,
                })
                .await
                .ok()??;
            actor.send(GetStatus).await.ok()
        }
    });
    let statuses: Vec<_> = join_all(lookups).await.into_iter().flatten().collect();
    let mut body = serde_json::json!({ "dep_names": statuses });
    if let Some(mdm) = &state.mdm {
        let now = state.clock.now().unix_timestamp();
        let topics: Vec<_> = mdm
            .pushes()
            .statuses()
            .await
            .into_iter()
            .map(|t| push_topic_view(t, now))
            .collect();
        body["push_topics"] = serde_json::Value::from(topics);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// A push topic as status shows it: beside the actor's state, the
/// certificate's expiry as a date and as whole days left.
fn push_topic_view(t: crate::actors::push::TopicStatus, now_unix: i64) -> serde_json::Value {
    let fmt = crate::domain::tokens::format_unix;
    serde_json::json!({
        "topic": t.topic,
        "not_after": fmt(t.not_after_unix),
        "days_left": (t.not_after_unix - now_unix).div_euclid(86_400),
        "environment": t.environment,
        "state": t.state,
        "last_error": t.last_error,
        "failed_since": t.failed_since_unix.map(fmt),
        "max_streams": t.max_streams,
        "delivered": t.delivered,
        "failed": t.failed,
    })
}
