//! The application: storage, actors and the HTTP server, built from
//! settings. `build` binds the listener (port 0 works) so tests run the real
//! server; `run_until_stopped` serves until `AppHandle::shutdown`.

use crate::actors::{Ping, Registry, Reload};
use crate::api::{self, AppState};
use crate::domain::clock::{SharedClock, SystemClock};
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use actix::Actor;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// How long a graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening storage in {dir}: {source}")]
    Store {
        dir: String,
        #[source]
        source: StoreError,
    },
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the MDM service: {0}")]
    Mdm(String),
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
    handle: AppHandle,
}

/// Controls a running application: reload settings, shut down.
#[derive(Clone)]
pub struct AppHandle {
    state: web::Data<AppState>,
    server: ServerHandle,
    store: Store,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let dir = settings.data_dir.clone();
        let store_err = |source| StartError::Store {
            dir: dir.display().to_string(),
            source,
        };
        let (store, stored) = crate::store::open_and_load(&settings)
            .await
            .map_err(store_err)?;
        tracing::info!(names = stored.len(), dir = %dir.display(), "storage open");

        let settings = Arc::new(settings);
        let registry = Registry::new(store.clone(), settings.clone(), clock.clone(), stored);
        let directory = registry.directory();
        let registry = registry.start();
        let mdm = if settings.mdm.enabled {
            let mdm = crate::actors::mdm::Mdm::start(store.clone(), &settings, clock.clone())
                .map_err(StartError::Mdm)?;
            tracing::info!(
                checkin_endpoint = settings.mdm.checkin_endpoint,
                "MDM service enabled"
            );
            Some(mdm)
        } else {
            None
        };
        let mut app_state = AppState::new(registry, directory, settings.clone(), clock);
        app_state.mdm = mdm;
        let state = web::Data::new(app_state);

        let listener = TcpListener::bind(settings.listen).map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(from_fn(api::request_log))
                .wrap(from_fn(api::request_metrics))
                .configure(api::configure)
        })
        .listen(listener)
        .map_err(|source| StartError::Bind { addr, source })?
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .run();
        state.set_ready(true);
        tracing::info!(addr = %addr, "listening");
        let handle = AppHandle {
            state,
            server: server.handle(),
            store,
        };
        Ok(Application {
            server,
            addr,
            handle,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// Serves until shut down, then flushes storage: when this returns,
    /// everything acknowledged is on disk.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let store = self.handle.store.clone();
        if let Err(e) = store.blocking(Store::flush).await {
            tracing::error!(error = %e, "flushing storage at shutdown failed");
            return Err(std::io::Error::other(e));
        }
        tracing::info!("stopped");
        served
    }
}

impl AppHandle {
    /// Applies validated new settings to the running daemon. The listen
    /// address and data directory are fixed for the life of the process.
    pub fn reload(&self, new: Settings) {
        let old = self.state.settings();
        if new.listen != old.listen {
            tracing::warn!(running = %old.listen, configured = %new.listen, "a new listen address takes effect at the next restart");
        }
        if new.data_dir != old.data_dir {
            tracing::warn!(running = %old.data_dir.display(), configured = %new.data_dir.display(), "a new data_dir takes effect at the next restart");
        }
        let new = Arc::new(Settings {
            listen: old.listen,
            data_dir: old.data_dir.clone(),
            ..new
        });
        if new.mdm.enabled != old.mdm.enabled
            || new.mdm.checkin_endpoint != old.mdm.checkin_endpoint
        {
            tracing::warn!("mdm.enabled and mdm.checkin_endpoint take effect at the next restart");
        }
        if let Some(mdm) = &self.state.mdm
            && let Err(e) = mdm.reload(&new)
        {
            tracing::error!(error = %e, "the MDM settings were not applied");
        }
        self.state.set_settings(new.clone());
        self.state.registry.do_send(Reload(new));
    }

    /// Whether the actors answer within `within` (the systemd watchdog's
    /// health check: a stuck registry means a stuck daemon).
    pub async fn actors_answer(&self, within: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.state.registry.send(Ping)).await,
            Ok(Ok(()))
        )
    }

    /// The MDM service, when it is on (the demo stores its push
    /// certificate through it).
    #[cfg(feature = "sim")]
    pub(crate) fn mdm(&self) -> Option<std::sync::Arc<crate::actors::mdm::Mdm>> {
        self.state.mdm.clone()
    }

    /// The registry of DEP-name actors.
    pub fn registry(&self) -> &actix::Addr<Registry> {
        &self.state.registry
    }

    /// Makes every DEP-name actor look at its schedule now (the actors do
    /// so every second by themselves); answers how many started a cycle.
    /// Tests move an injected clock, then tick.
    pub async fn tick(&self) -> usize {
        let names = self
            .state
            .registry
            .send(crate::actors::ListNames)
            .await
            .unwrap_or_default();
        let mut started = 0;
        for name in names {
            let addr = self
                .state
                .registry
                .send(crate::actors::Resolve {
                    name,
                    create: false,
                })
                .await
                .ok()
                .flatten();
            if let Some(addr) = addr
                && addr.send(crate::actors::Tick).await.unwrap_or(false)
            {
                started += 1;
            }
        }
        started
    }

    /// Stops accepting and lets in-flight requests finish; `run_until_stopped`
    /// then flushes storage and returns.
    pub async fn shutdown(&self) {
        self.state.set_ready(false);
        self.server.stop(true).await;
    }
}
