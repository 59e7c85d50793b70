//! `depd sync --once [NAME…]`: one cycle per name without a daemon, on the
//! store of a stopped one (see `crate::cli::sync_once`).

use super::client::CliError;
use super::output;
use crate::domain::name::DepName;
use crate::settings::{self, FlagOverrides};
use std::path::PathBuf;

/// Where the stopped daemon's configuration and store are.
#[derive(clap::Args, Clone)]
pub struct LocalArgs {
    /// With --once: the daemon's configuration file (default:
    /// /etc/depd/depd.toml when it exists) [env: DEPD_CONFIG].
    #[arg(long, env = "DEPD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --once: the sled directory (overrides the configuration's).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --once: deliver the cycle's events to this URL instead of the
    /// configured webhook URLs (as NanoDEP's depsyncer -webhook-url).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
}

pub async fn sync_once(names: Vec<String>, local: LocalArgs, json: bool) -> Result<(), CliError> {
    let names = names
        .iter()
        .map(|n| DepName::parse(n).map_err(|e| CliError::Usage(format!("DEP name {n:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let flags = FlagOverrides {
        data_dir: local.data_dir,
        webhook_url: local.webhook_url,
        ..FlagOverrides::default()
    };
    let config = settings::resolve_config_path(local.config.as_deref());
    let settings = settings::load_offline(config.as_deref(), std::env::vars(), &flags)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let reports = crate::cli::sync_once::sync_once(settings, names)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if json {
        let text = serde_json::to_string(&reports).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        let header = [
            "NAME", "OUTCOME", "PAGES", "DEVICES", "ASSIGNED", "BACKLOG", "ERROR",
        ];
        let rows = reports
            .iter()
            .map(|r| {
                vec![
                    r.dep_name.clone(),
                    r.outcome.as_str().to_owned(),
                    r.pages.to_string(),
                    r.devices.values().sum::<u64>().to_string(),
                    r.assignments
                        .get("SUCCESS")
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                    r.webhook_backlog.to_string(),
                    r.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&(header.iter().map(|h| (*h).to_owned()).collect(), rows))
        );
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.dep_name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "sync failed for {}",
            failed.join(", ")
        )))
    }
}
