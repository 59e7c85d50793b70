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
use crate::settings::{DemoSettings, Settings};
use crate::sim::mdm::MdmFleet;
use crate::sim::{SimConfig, SimHandle, Simulator};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The demo's simulator and, with `mdm_devices`, its simulated MDM
/// devices, made before the daemon starts so its MDM service can trust
/// their CA and push through depsim's push service.
pub struct Prepared {
    sim: SimHandle,
    fleet: Option<Arc<MdmFleet>>,
    /// What the MDM service was pointed at.
    pub mdm: Option<DemoMdm>,
}

/// The demo's overrides of `[mdm]`, kept across reloads of the file.
#[derive(Debug, Clone)]
pub struct DemoMdm {
    /// The simulated devices' CA.
    pub ca_file: PathBuf,
    /// depsim's push service, and its CA.
    pub apns_url: String,
    pub apns_ca_file: PathBuf,
}

/// Starts the simulator and, with `demo.mdm_devices`, makes the fleet
/// (kept in the data directory, so restarts reuse its identities) and
/// turns the MDM service on in `settings`, trusting the fleet's CA.
pub fn prepare(settings: &mut Settings, demo: &DemoSettings) -> Result<Prepared, DemoError> {
    let sim = Simulator::start(SimConfig {
        devices: demo.devices,
        seed: demo.seed,
        apns_listen: (demo.mdm_devices > 0).then(|| ([127, 0, 0, 1], 0).into()),
        ..SimConfig::default()
    })
    .map_err(|e| DemoError::Sim(e.to_string()))?;
    if demo.mdm_devices == 0 {
        return Ok(Prepared {
            sim,
            fleet: None,
            mdm: None,
        });
    }
    let setup = |e: String| DemoError::Setup(e);
    let dir = &settings.data_dir;
    crate::store::fsutil::ensure_private_dir(dir).map_err(|e| setup(e.to_string()))?;
    let fleet = MdmFleet::load_or_generate(
        &dir.join("demo-mdm-fleet.pem"),
        demo.seed,
        &sim.mdm_fleet_devices(demo.mdm_devices),
    )
    .map_err(|e| setup(e.to_string()))?;
    let write = |name: &str, pem: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, pem)
            .map(|()| path.clone())
            .map_err(|e| setup(format!("{}: {e}", path.display())))
    };
    let apns = sim
        .apns()
        .ok_or_else(|| setup("depsim's push service did not start".into()))?;
    let mdm = DemoMdm {
        ca_file: write("demo-mdm-ca.pem", fleet.ca_pem())?,
        apns_url: apns.url(),
        apns_ca_file: write("demo-apns-ca.pem", apns.ca_pem())?,
    };
    apply_mdm(settings, &mdm);
    // The same devices answer depsim's admin API (/_sim/mdm/…) and are
    // woken by its push service.
    let fleet = Arc::new(fleet);
    sim.set_mdm_fleet(fleet.clone());
    Ok(Prepared {
        fleet: Some(fleet),
        sim,
        mdm: Some(mdm),
    })
}

/// The demo's MDM service: on, trusting the simulated devices' CA, and
/// pushing through depsim's push service.
pub fn apply_mdm(settings: &mut Settings, mdm: &DemoMdm) {
    settings.mdm.enabled = true;
    settings.mdm.ca_file = Some(mdm.ca_file.clone());
    settings.mdm.apns_base_url = mdm.apns_url.clone();
    settings.mdm.apns_ca_file = Some(mdm.apns_ca_file.clone());
}

/// Enrolls each simulated device once depsim's DEP side has assigned it
/// the demo profile (whose url is depd's /mdm), then has every enrolled
/// device check in every `every`, answering what was enqueued for it.
async fn run_devices(sim: Arc<SimHandle>, fleet: Arc<MdmFleet>, every: Duration) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut enrolled = std::collections::HashSet::new();
    loop {
        for d in fleet.devices() {
            if enrolled.contains(&d.udid) {
                match fleet.connect(&client, &d.udid).await {
                    Ok(r) if !r.answered.is_empty() || !r.not_now.is_empty() => tracing::info!(
                        udid = %d.udid,
                        answered = ?r.answered,
                        not_now = ?r.not_now,
                        "demo: a simulated device answered its commands"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(udid = %d.udid, error = %e, "demo: a simulated device could not connect")
                    }
                }
            } else if let Some(url) = sim.mdm_server_url(&d.serial_number) {
                match fleet.enroll(&client, &d.udid, &url).await {
                    Ok(()) => {
                        enrolled.insert(d.udid.clone());
                    }
                    Err(e) => {
                        tracing::debug!(udid = %d.udid, error = %e, "demo: a simulated device could not enroll")
                    }
                }
            }
        }
        actix_web::rt::time::sleep(every).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the demo simulator: {0}")]
    Sim(String),
    #[error("setting up the demo DEP name: {0}")]
    Setup(String),
}

/// Wires `demo.name` to the prepared simulator and, with simulated MDM
/// devices, lets them enroll at `mdm_url` once assigned. The simulator
/// runs until the process ends.
pub async fn start(
    app: &AppHandle,
    demo: &DemoSettings,
    prepared: Prepared,
    mdm_url: &str,
) -> Result<Arc<SimHandle>, DemoError> {
    let Prepared { sim, fleet, .. } = prepared;
    let sim = Arc::new(sim);
    let setup = |e: String| DemoError::Setup(e);
    let name = DepName::parse(&demo.name).map_err(|e| setup(e.to_string()))?;
    let tokens = crate::domain::tokens::parse(sim.tokens_json().as_bytes())
        .map_err(|e| setup(e.to_string()))?;
    let enroll_url = if fleet.is_some() {
        mdm_url.to_owned()
    } else {
        "https://mdm.example.com/enroll".to_owned()
    };
    let profile = define_profile(&sim, tokens.clone(), &enroll_url).await?;
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
    if let Some(fleet) = fleet {
        upload_push_cert(app, &sim, &fleet).await?;
        tracing::info!(
            devices = fleet.devices().len(),
            mdm_url,
            "demo: simulated devices enroll in the MDM service once assigned, wake on pushes, and check in every {} s",
            demo.mdm_checkin_secs
        );
        actix_web::rt::spawn(run_devices(
            sim.clone(),
            fleet,
            Duration::from_secs(demo.mdm_checkin_secs),
        ));
    }
    Ok(sim)
}

/// A push certificate for the fleet's topic from depsim's push service,
/// stored as `PUT /v1/pushcert` stores one.
async fn upload_push_cert(
    app: &AppHandle,
    sim: &SimHandle,
    fleet: &MdmFleet,
) -> Result<(), DemoError> {
    let setup = |e: String| DemoError::Setup(e);
    let (Some(apns), Some(mdm)) = (sim.apns(), app.mdm()) else {
        return Ok(());
    };
    let (cert, key) = apns
        .issue_push_cert(fleet.topic(), 365)
        .map_err(|e| setup(e.to_string()))?;
    let pair = crate::apns::cert::parse_pair(&[cert, key].concat()).map_err(setup)?;
    mdm.pushes()
        .store_cert(pair, None)
        .await
        .map_err(|e| setup(e.to_string()))?;
    tracing::info!(topic = fleet.topic(), apns = %apns.url(), "demo: push certificate stored; pushes go to depsim's push service");
    Ok(())
}

/// The enrollment profile the demo's assigner hands out, defined in the
/// simulator as an MDM would.
async fn define_profile(
    sim: &SimHandle,
    tokens: crate::domain::tokens::Tokens,
    url: &str,
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
        "url": url,
        "is_supervised": true,
        "is_mandatory": true,
    });
    dep.define_profile(&profile)
        .await
        .map(|p| p.profile_uuid)
        .map_err(|e| DemoError::Setup(format!("defining the demo profile: {e}")))
}
