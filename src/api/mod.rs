//! The HTTP front end (actix-web): routes, authentication, errors. Every
//! request that touches a DEP name is routed to that name's actor through
//! the registry; no handler touches storage.

mod auth;
mod body;
mod error;
mod health;
mod limiter;
mod log;
mod mdm;
mod mdm_api;
mod mdm_authproxy;
mod mdm_dm;
mod mdm_inspect;
mod mdm_push;
mod metrics;
mod names;
mod openapi;
mod pki;
mod profiles;
mod proxy;
mod rules;
mod status;
mod sync;

pub use error::ApiError;
pub use log::request_log;
pub use metrics::request_metrics;

use crate::actors::Registry;
use crate::settings::Settings;
use actix::Addr;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// What the handlers share.
pub struct AppState {
    pub registry: Addr<Registry>,
    /// Running names and their published grants (the proxy's hot path).
    pub directory: crate::actors::Directory,
    /// The settings in effect and the digest of the credentials they
    /// accept, replaced together.
    settings: RwLock<(Arc<Settings>, auth::Digest)>,
    ready: AtomicBool,
    /// Wrong credentials per client address (`limiter.rs`).
    auth_failures: limiter::AuthLimiter,
    /// The MDM service, when `[mdm] enabled` at start.
    pub mdm: Option<Arc<crate::actors::mdm::Mdm>>,
    pub clock: crate::domain::clock::SharedClock,
}

impl AppState {
    pub fn new(
        registry: Addr<Registry>,
        directory: crate::actors::Directory,
        settings: Arc<Settings>,
        clock: crate::domain::clock::SharedClock,
    ) -> Self {
        AppState {
            registry,
            directory,
            settings: RwLock::new(with_credentials(settings)),
            ready: AtomicBool::new(false),
            auth_failures: limiter::AuthLimiter::new(clock.clone()),
            mdm: None,
            clock,
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// The digest valid `Authorization` credentials hash to.
    pub(crate) fn credentials(&self) -> auth::Digest {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }

    pub fn set_settings(&self, settings: Arc<Settings>) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = with_credentials(settings);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn with_credentials(settings: Arc<Settings>) -> (Arc<Settings>, auth::Digest) {
    let digest = auth::expected(settings.api_key.expose());
    (settings, digest)
}

/// Every route `configure` registers: the path pattern (OpenAPI style) and
/// its methods. The OpenAPI document is built from this table, and a test
/// in `openapi.rs` checks it against `configure` in both directions.
pub(crate) const ROUTES: &[(&str, &[&str])] = &[
    ("/version", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/v1/dep_names", &["GET"]),
    ("/v1/status", &["GET"]),
    ("/v1/status/{name}", &["GET"]),
    ("/v1/sync", &["POST"]),
    ("/v1/sync/{name}", &["POST"]),
    ("/v1/resync/{name}", &["POST"]),
    ("/v1/devices/{name}", &["GET"]),
    ("/v1/assignments/{name}", &["GET"]),
    ("/v1/tokens/{name}", &["GET", "PUT"]),
    ("/v1/config/{name}", &["GET", "PUT"]),
    ("/v1/assigner/{name}", &["GET", "PUT"]),
    ("/v1/tokenpki/{name}", &["GET", "PUT"]),
    ("/v1/maidjwt/{name}", &["GET"]),
    ("/v1/bypasscode", &["GET"]),
    ("/v1/profiles/{name}", &["GET"]),
    ("/v1/profiles/{name}/{profile}", &["GET", "PUT", "DELETE"]),
    ("/v1/rules/{name}", &["GET", "PUT"]),
    ("/v1/rules/{name}/preview", &["POST"]),
    ("/v1/enqueue/{ids}", ANY),
    ("/v1/push", &["POST"]),
    ("/v1/push/{ids}", ANY),
    ("/v1/pushcert", &["GET", "PUT"]),
    ("/v1/enrollments", &["GET"]),
    ("/v1/enrollments/{id}", &["GET"]),
    ("/v1/enrollments/{id}/commands", &["GET"]),
    ("/v1/enrollments/{id}/queue", &["DELETE"]),
    ("/mdm", DEVICE),
    ("/checkin", DEVICE),
    ("/migration", &["PUT", "POST"]),
    ("/authproxy/{path}", ANY),
    (
        "/proxy/{name}/{path}",
        &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"],
    ),
];

/// The methods of NanoMDM's endpoints that take any method.
const ANY: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Devices PUT; NanoMDM takes POST too.
const DEVICE: &[&str] = &["PUT", "POST"];

/// Registers every route (those of `ROUTES`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("", "/version").route(web::get().to(health::version)))
        .service(resource("", "/healthz").route(web::get().to(health::healthz)))
        .service(resource("", "/readyz").route(web::get().to(health::readyz)))
        .service(resource("", "/metrics").route(web::get().to(metrics::render)))
        .service(resource("", "/openapi.json").route(web::get().to(openapi::serve)))
        .service(
            web::scope("/v1")
                .wrap(from_fn(auth::require))
                .service(resource("/v1", "/dep_names").route(web::get().to(names::list)))
                .service(resource("/v1", "/status").route(web::get().to(status::all)))
                .service(resource("/v1", "/status/{name}").route(web::get().to(status::one)))
                .service(resource("/v1", "/sync").route(web::post().to(sync::sync_all)))
                .service(resource("/v1", "/sync/{name}").route(web::post().to(sync::sync_one)))
                .service(resource("/v1", "/resync/{name}").route(web::post().to(sync::resync)))
                .service(resource("/v1", "/devices/{name}").route(web::get().to(sync::devices)))
                .service(
                    resource("/v1", "/assignments/{name}").route(web::get().to(sync::assignments)),
                )
                .service(
                    resource("/v1", "/tokens/{name}")
                        .route(web::get().to(names::get_tokens))
                        .route(web::put().to(names::put_tokens)),
                )
                .service(
                    resource("/v1", "/config/{name}")
                        .route(web::get().to(names::get_config))
                        .route(web::put().to(names::put_config)),
                )
                .service(
                    resource("/v1", "/assigner/{name}")
                        .route(web::get().to(names::get_assigner))
                        .route(web::put().to(names::put_assigner)),
                )
                .service(
                    resource("/v1", "/tokenpki/{name}")
                        .route(web::get().to(pki::get_tokenpki))
                        .route(web::put().to(pki::put_tokenpki)),
                )
                .service(resource("/v1", "/maidjwt/{name}").route(web::get().to(pki::get_maidjwt)))
                .service(resource("/v1", "/bypasscode").route(web::get().to(pki::get_bypasscode)))
                .service(resource("/v1", "/profiles/{name}").route(web::get().to(profiles::list)))
                .service(
                    resource("/v1", "/profiles/{name}/{profile}")
                        .route(web::get().to(profiles::get))
                        .route(web::put().to(profiles::put))
                        .route(web::delete().to(profiles::delete)),
                )
                .service(
                    resource("/v1", "/rules/{name}")
                        .route(web::get().to(rules::get))
                        .route(web::put().to(rules::put)),
                )
                .service(
                    resource("/v1", "/rules/{name}/preview").route(web::post().to(rules::preview)),
                )
                .service(any(
                    resource("/v1", "/enqueue/{ids}"),
                    ANY,
                    mdm_api::enqueue,
                ))
                .service(resource("/v1", "/push").route(web::post().to(mdm_push::push_body)))
                .service(any(resource("/v1", "/push/{ids}"), ANY, mdm_push::push_ids))
                .service(resource("/v1", "/enrollments").route(web::get().to(mdm_inspect::list)))
                .service(
                    resource("/v1", "/enrollments/{id}").route(web::get().to(mdm_inspect::get)),
                )
                .service(
                    resource("/v1", "/enrollments/{id}/commands")
                        .route(web::get().to(mdm_inspect::commands)),
                )
                .service(
                    resource("/v1", "/enrollments/{id}/queue")
                        .route(web::delete().to(mdm_inspect::clear_queue)),
                )
                .service(
                    resource("/v1", "/pushcert")
                        .route(web::get().to(mdm_push::get_pushcert))
                        .route(web::put().to(mdm_push::put_pushcert)),
                )
                .default_service(web::to(not_found)),
        )
        .service(any(resource("", "/mdm"), DEVICE, mdm::mdm))
        .service(any(resource("", "/checkin"), DEVICE, mdm::checkin))
        .service(
            web::scope("/migration")
                .wrap(from_fn(auth::require))
                .service(any(
                    resource("/migration", ""),
                    &["PUT", "POST"],
                    mdm_api::migration,
                )),
        )
        .service(
            web::scope("/authproxy")
                .service(any(
                    web::resource("/{path:.*}")
                        .default_service(web::to(|| async { method_not_allowed(ANY.join(", ")) })),
                    ANY,
                    mdm_authproxy::forward,
                ))
                .default_service(web::to(not_found)),
        )
        .service(
            web::scope("/proxy")
                .wrap(from_fn(auth::require))
                .route("/{name}/{path:.*}", web::to(proxy::forward))
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// `resource` answering each of `methods` with `handler`.
fn any<F, Args>(mut r: actix_web::Resource, methods: &[&str], handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    for m in methods {
        if let Ok(method) = actix_web::http::Method::from_bytes(m.as_bytes()) {
            r = r.route(web::method(method).to(handler.clone()));
        }
    }
    r
}

/// A resource at `path` inside the scope `scope`, answering other methods
/// than its routes' with 405 and the `Allow` header from `ROUTES`.
fn resource(scope: &str, path: &str) -> actix_web::Resource {
    let full = format!("{scope}{path}");
    let allow = ROUTES
        .iter()
        .find(|(pattern, _)| *pattern == full)
        .map(|(_, methods)| methods.join(", "))
        .unwrap_or_default();
    web::resource(path).default_service(web::to(move || {
        let allow = allow.clone();
        async move { method_not_allowed(allow) }
    }))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not-found", "no such endpoint"))
}

fn method_not_allowed(allow: String) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("this endpoint accepts only {allow}"),
    )
    .header("Allow", allow))
}
