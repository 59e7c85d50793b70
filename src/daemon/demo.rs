//! The demo (`[demo]` in the configuration, as in `config/demo.toml`): a
//! depsim started inside depd, and a DEP name whose tokens, base URL and
//! assigner profile point at it, so that `depd serve` shows syncing and
//! assignment at once, without Apple. Never use it in production: the
//! simulator's devices are not real.

use crate::actors::{PutAssigner, PutConfig, PutTokens, Resolve};
use crate::daemon::app::AppHandle;
use crate::dep::client::{DepClient, DirectSession, Target};
use crate::dep::oauth1::Credentials;
use crate::domain::clock::{SharedClock, SystemClock};
use crate::domain::name::DepName;
use crate::settings::DemoSettings;
use crate::sim::{SimConfig, SimHandle, Simulator};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the demo simulator: {0}")]
    Sim(String),
    #[error("setting up the demo DEP name: {0}")]
    Setup(String),
}

/// Starts the simulator and wires `demo.name` to it. The simulator runs
/// until the process ends.
pub async fn start(app: &AppHandle, demo: &DemoSettings) -> Result<SimHandle, DemoError> {
    let sim = Simulator::start(SimConfig {
        devices: demo.devices,
        seed: demo.seed,
        ..SimConfig::default()
    })
    .map_err(|e| DemoError::Sim(e.to_string()))?;
    let setup = |e: String| DemoError::Setup(e);
    let name = DepName::parse(&demo.name).map_err(|e| setup(e.to_string()))?;
    let tokens = crate::domain::tokens::parse(sim.tokens_json().as_bytes())
        .map_err(|e| setup(e.to_string()))?;
    let profile = define_profile(&sim, tokens.clone()).await?;
    let actor = app
        .registry()
        .send(Resolve {
            name: name.clone(),
            create: true,
        })
        .await
        .map_err(|e| setup(e.to_string()))?
        .ok_or_else(|| setup("the registry did not create the name".into()))?;
    actor
        .send(PutConfig {
            base_url: sim.base_url(),
        })
        .await
        .map_err(|e| setup(e.to_string()))?
        .map_err(|e| setup(e.to_string()))?;
    actor
        .send(PutAssigner {
            profile_uuid: profile.clone(),
        })
        .await
        .map_err(|e| setup(e.to_string()))?
        .map_err(|e| setup(e.to_string()))?;
    // Tokens last: they start the name's first sync.
    actor
        .send(PutTokens {
            tokens,
            force: true,
        })
        .await
        .map_err(|e| setup(e.to_string()))?
        .map_err(|e| setup(e.to_string()))?;
    tracing::info!(
        dep_name = %name,
        simulator = %sim.base_url(),
        devices = demo.devices,
        profile_uuid = %profile,
        "demo: DEP name wired to an in-process depsim; it syncs and assigns now"
    );
    Ok(sim)
}

/// The enrollment profile the demo's assigner hands out, defined in the
/// simulator as an MDM would.
async fn define_profile(
    sim: &SimHandle,
    tokens: crate::domain::tokens::Tokens,
) -> Result<String, DemoError> {
    let creds = Credentials::from(&tokens);
    let target = Target {
        base_url: sim.base_url(),
        protocol_version: 10,
        user_agent: crate::settings::DEFAULT_USER_AGENT.into(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        allow: Default::default(),
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let dep = DepClient::new(
        target.clone(),
        DirectSession::new(target, creds, clock.clone()),
        clock,
    );
    let profile = serde_json::json!({
        "profile_name": "depd demo",
        "url": "https://mdm.example.com/enroll",
        "is_supervised": true,
        "is_mandatory": true,
    });
    dep.define_profile(&profile)
        .await
        .map(|p| p.profile_uuid)
        .map_err(|e| DemoError::Setup(format!("defining the demo profile: {e}")))
}
