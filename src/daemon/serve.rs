//! `depd serve`: run the application and react to signals until stopped.

use crate::daemon::app::{AppHandle, Application, StartError};
use crate::daemon::notify::{self, Notifier, NotifyError};
use crate::daemon::signals::{self, Signal};
use crate::settings::{self, FlagOverrides, Settings};
use std::path::PathBuf;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    #[cfg(feature = "sim")]
    Demo(#[from] crate::daemon::demo::DemoError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// Serves until SIGTERM/SIGINT; SIGHUP re-reads `config` (with the same
/// environment and flags) and applies it, or keeps the running settings and
/// logs why the new ones are invalid. Under systemd (`NOTIFY_SOCKET`), it
/// reports readiness, reloads and stopping, and pings the watchdog.
pub async fn run(
    settings: Settings,
    config: Option<PathBuf>,
    flags: FlagOverrides,
) -> Result<(), ServeError> {
    let mut signals = signals::listen().map_err(ServeError::Signals)?;
    // Rc: the signal loop and the watchdog run on this thread's runtime.
    let notifier = Rc::new(Notifier::from_env(std::env::vars())?);
    #[cfg(feature = "sim")]
    let mut settings = settings;
    #[cfg(feature = "sim")]
    let demo = match settings.demo.clone() {
        Some(d) => {
            let prepared = crate::daemon::demo::prepare(&mut settings, &d)?;
            Some((d, prepared))
        }
        None => None,
    };
    // The demo's MDM override outlives reloads of the file.
    #[cfg(feature = "sim")]
    let demo_mdm = demo.as_ref().and_then(|(_, p)| p.mdm.clone());
    let app = Application::build(settings).await?;
    let handle = app.handle();
    // Kept for the life of the process: the demo's simulator serves until then.
    #[cfg(feature = "sim")]
    let _demo_sim = match demo {
        Some((d, prepared)) => {
            let mdm_url = format!("http://{}/mdm", app.addr());
            Some(crate::daemon::demo::start(&handle, &d, prepared, &mdm_url).await?)
        }
        None => None,
    };
    // build() returns once storage is open and the listener is bound.
    notifier.ready();
    if let Some(every) = notify::watchdog_interval(std::env::vars(), std::process::id()) {
        actix_web::rt::spawn(watchdog(notifier.clone(), handle.clone(), every));
    }
    actix_web::rt::spawn(async move {
        while let Some(signal) = signals.recv().await {
            match signal {
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading configuration");
                    notifier.reloading();
                    let path = config.clone();
                    let flags = flags.clone();
                    let loaded = tokio::task::spawn_blocking(move || {
                        settings::load(path.as_deref(), std::env::vars(), &flags)
                    })
                    .await;
                    match loaded {
                        Ok(Ok(new)) => {
                            #[cfg(feature = "sim")]
                            let new = {
                                let mut new = new;
                                if let Some(mdm) = &demo_mdm {
                                    crate::daemon::demo::apply_mdm(&mut new, mdm);
                                }
                                new
                            };
                            handle.reload(new);
                            tracing::info!("configuration reloaded");
                        }
                        Ok(Err(e)) => tracing::error!(
                            error = %e,
                            "configuration reload failed; still running on the previous configuration"
                        ),
                        Err(e) => tracing::error!(error = %e, "configuration reload task failed"),
                    }
                    // Ready again either way: a refused file keeps the old settings.
                    notifier.ready();
                }
                Signal::Shutdown => {
                    tracing::info!("shutting down");
                    notifier.stopping();
                    handle.shutdown().await;
                    break;
                }
            }
        }
    });
    app.run_until_stopped().await.map_err(ServeError::Server)
}

/// Pings systemd's watchdog every `every` (half its timeout) while the
/// actors answer within that time; when they do not, the pings stop and
/// systemd restarts the daemon.
async fn watchdog(notifier: Rc<Notifier>, handle: AppHandle, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if handle.actors_answer(every).await {
            notifier.watchdog();
        } else {
            tracing::warn!("actors did not answer in time; withholding the watchdog ping");
        }
    }
}
