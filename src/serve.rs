//! `depd serve`: run the application and react to signals until stopped.

use crate::app::{Application, StartError};
use crate::settings::{self, FlagOverrides, Settings};
use crate::signals::{self, Signal};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
}

/// Serves until SIGTERM/SIGINT; SIGHUP re-reads `config` (with the same
/// environment and flags) and applies it, or keeps the running settings and
/// logs why the new ones are invalid.
pub async fn run(
    settings: Settings,
    config: Option<PathBuf>,
    flags: FlagOverrides,
) -> Result<(), ServeError> {
    let mut signals = signals::listen().map_err(ServeError::Signals)?;
    let app = Application::build(settings).await?;
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        while let Some(signal) = signals.recv().await {
            match signal {
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading configuration");
                    let path = config.clone();
                    let flags = flags.clone();
                    let loaded = tokio::task::spawn_blocking(move || {
                        settings::load(path.as_deref(), std::env::vars(), &flags)
                    })
                    .await;
                    match loaded {
                        Ok(Ok(new)) => {
                            handle.reload(new);
                            tracing::info!("configuration reloaded");
                        }
                        Ok(Err(e)) => tracing::error!(
                            error = %e,
                            "configuration reload failed; still running on the previous configuration"
                        ),
                        Err(e) => tracing::error!(error = %e, "configuration reload task failed"),
                    }
                }
                Signal::Shutdown => {
                    tracing::info!("shutting down");
                    handle.shutdown().await;
                    break;
                }
            }
        }
    });
    app.run_until_stopped().await.map_err(ServeError::Server)
}
