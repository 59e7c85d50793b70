//! `depsim`: a simulator of Apple's DEP service, faithful enough that depd
//! and other DEP clients work against it unchanged.
//!
//! [`Simulator::start`] binds its own listener (port 0 works) and serves on
//! the current actix system; the [`SimHandle`] gives the URL, the OAuth
//! credentials, and in-process control mirroring the admin API
//! (`/_sim/…`, loopback only): faults, runtime events, the clock,
//! request counts and the request log. Time comes from an injected clock
//! plus an adjustable offset, so session expiry and cursor age are tested
//! without sleeping. Everything generated (serials, profile UUIDs,
//! credentials, cursor keys) derives from the seed. See
//! `docs/simulator.md`.

mod admin;
pub mod apns;
pub mod cursor;
pub mod devices;
pub mod faults;
pub mod mdm;
pub mod observe;
mod reply;
mod rng;
mod routes;
pub mod sessions;
pub mod token_file;

use crate::domain::clock::{SharedClock, SystemClock};
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use cursor::CursorCodec;
use devices::{DeviceState, Population, Profile, Refusal};
use faults::{AssignFault, Faults, FaultsView, LatencyFault, RateFault, ResponseFault};
use observe::{LoggedRequest, Observer, Stats};
use rng::Rng;
use serde::{Deserialize, Serialize};
use sessions::{SessionPolicy, Sessions, TokenSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use time::OffsetDateTime;

/// How a simulator starts. `Default` is a loopback listener on a free port,
/// 100 devices, seed 1, one credential set, Apple's timings.
#[derive(Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub devices: usize,
    pub seed: u64,
    /// Number of OAuth credential sets accepted at `/session`.
    pub credential_sets: usize,
    /// A session unused this long is refused with 401 `UNAUTHORIZED`.
    pub session_idle: Duration,
    /// A cursor older than this is refused with 400 `EXPIRED_CURSOR`.
    pub cursor_max_age: Duration,
    /// A new `X-ADM-Auth-Session` on every authenticated response.
    pub rotate_sessions: bool,
    /// How long a rotated-out session token stays valid.
    pub rotation_grace: Duration,
    /// Accepted skew of `oauth_timestamp`; `None` accepts any.
    pub timestamp_window: Option<Duration>,
    /// Serve Apple's endpoints under this path (e.g. `/dep`); empty: root.
    pub path_prefix: String,
    pub workers: usize,
    /// The base clock; the admin API can move the simulator's time ahead of it.
    pub clock: SharedClock,
    /// How many requests the request log keeps.
    pub request_log_size: usize,
    /// Let actix-web stop on SIGINT/SIGTERM (the binary); off in-process.
    pub handle_signals: bool,
    /// Serve the push service (`apns/`) here, over HTTP/2 and TLS;
    /// `None`: no push service.
    pub apns_listen: Option<SocketAddr>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            devices: 100,
            seed: 1,
            credential_sets: 1,
            session_idle: Duration::from_secs(30 * 60),
            cursor_max_age: Duration::from_secs(7 * 86_400),
            rotate_sessions: false,
            rotation_grace: Duration::from_secs(60),
            timestamp_window: Some(Duration::from_secs(600)),
            path_prefix: String::new(),
            workers: 1,
            clock: Arc::new(SystemClock),
            request_log_size: 200,
            handle_signals: false,
            apns_listen: None,
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("listen", &self.listen)
            .field("devices", &self.devices)
            .field("seed", &self.seed)
            .field("credential_sets", &self.credential_sets)
            .field("session_idle", &self.session_idle)
            .field("cursor_max_age", &self.cursor_max_age)
            .field("rotate_sessions", &self.rotate_sessions)
            .field("path_prefix", &self.path_prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("making the push service's certificates: {0}")]
    Apns(openssl::error::ErrorStack),
    #[error("the push service's URL {0:?} holds no address")]
    ApnsAddress(String),
    #[error("path prefix {0:?} must start with '/' and not end with one")]
    Prefix(String),
    #[error("serial {0} is unknown, deleted or disowned")]
    NotAccessible(String),
    #[error("serial {0}: {1}")]
    Refused(String, &'static str),
}

/// The simulator's time: the injected clock plus an offset the admin API
/// and [`SimHandle::advance_clock`] move forward.
pub(crate) struct SimClock {
    base: SharedClock,
    offset_secs: AtomicI64,
}

impl SimClock {
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.base.now() + time::Duration::seconds(self.offset_secs.load(Ordering::Relaxed))
    }

    pub(crate) fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }

    fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

/// A change made "in Apple's portal", producing sync events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SimEvent {
    /// New devices (`added`).
    Add { count: usize },
    /// A new asset tag (`modified`).
    Modify { serial: String },
    /// Released from this server (`deleted`).
    Delete { serial: String },
    /// Moved to another server and back (`modified`, `profile_status` `removed`).
    MoveAwayAndBack { serial: String },
    /// The profile removed in the portal (`modified`, `removed`).
    RemoveProfile { serial: String },
    /// The device enrolled: `profile_status` `pushed` (`modified`).
    PushProfile { serial: String },
}

/// Mutable simulator state, behind one lock: requests are short and the
/// rules need a consistent view (e.g. an assignment and its sync event).
pub(crate) struct State {
    pub(crate) population: Population,
    pub(crate) sessions: Sessions,
    pub(crate) faults: Faults,
    pub(crate) observer: Observer,
    pub(crate) ade_url: Option<String>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) clock: SimClock,
    pub(crate) codec: CursorCodec,
    pub(crate) prefix: String,
    pub(crate) rotate: bool,
    pub(crate) account_json: Vec<u8>,
    pub(crate) beta_json: Vec<u8>,
    /// The simulated MDM devices, once made (`mdm/admin.rs`).
    mdm_fleet: Mutex<Option<Arc<mdm::MdmFleet>>>,
    /// The push service, when it runs.
    apns: Option<Arc<apns::ApnsSim>>,
}

impl Shared {
    pub(crate) fn mdm_fleet(&self) -> Option<Arc<mdm::MdmFleet>> {
        self.mdm_fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn apns(&self) -> Option<Arc<apns::ApnsSim>> {
        self.apns.clone()
    }

    pub(crate) fn set_mdm_fleet(&self, fleet: Arc<mdm::MdmFleet>) {
        *self
            .mdm_fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fleet);
    }

    /// `(serial, model)` of the first `n` devices of the population.
    pub(crate) fn fleet_devices(&self, n: usize) -> Vec<(String, String)> {
        let serials = self.serials(0, n);
        let st = self.lock();
        serials
            .into_iter()
            .map(|serial| {
                let model = st
                    .population
                    .state(&serial)
                    .map(|d| d.model)
                    .unwrap_or_default();
                (serial, model)
            })
            .collect()
    }

    /// The `url` of the enrollment profile assigned to `serial`, if any.
    pub(crate) fn profile_url(&self, serial: &str) -> Option<String> {
        let st = self.lock();
        let uuid = st.population.state(serial)?.profile_uuid;
        if uuid.is_empty() {
            return None;
        }
        st.population
            .profiles()
            .iter()
            .find(|p| p.profile_uuid == uuid)
            .and_then(|p| p.body.get("url"))
            .and_then(|u| u.as_str())
            .map(str::to_owned)
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn apply(&self, event: &SimEvent) -> Result<Vec<String>, SimError> {
        let now = self.clock.unix();
        let mut st = self.lock();
        let p = &mut st.population;
        let (serial, result) = match event {
            SimEvent::Add { count } => return Ok(p.add_devices(*count, now)),
            SimEvent::Modify { serial } => (serial, p.modify(serial, now)),
            SimEvent::Delete { serial } => (serial, p.delete(serial, now)),
            SimEvent::MoveAwayAndBack { serial } => (serial, p.move_away_and_back(serial, now)),
            SimEvent::RemoveProfile { serial } => (serial, p.remove_profile(serial, now)),
            SimEvent::PushProfile { serial } => (serial, p.push_profile(serial, now)),
        };
        match result {
            Ok(()) => Ok(vec![serial.clone()]),
            Err(Refusal::NotAccessible) => Err(SimError::NotAccessible(serial.clone())),
            Err(Refusal::AlreadyLocked) => Err(SimError::Refused(serial.clone(), "already locked")),
            Err(Refusal::NotSupported) => Err(SimError::Refused(serial.clone(), "not supported")),
        }
    }

    /// A session token issued without OAuth (for curl users and tests of
    /// later calls).
    pub(crate) fn issue_session(&self) -> Option<String> {
        let token = routes::new_token()?;
        let now = self.clock.unix();
        self.lock().sessions.issue(token.clone(), now);
        Some(token)
    }

    pub(crate) fn serials(&self, offset: usize, limit: usize) -> Vec<String> {
        let st = self.lock();
        (offset..offset.saturating_add(limit).min(st.population.len()))
            .filter_map(|i| st.population.serial_at(i).map(str::to_owned))
            .collect()
    }
}

fn hex(bytes: impl IntoIterator<Item = u8>) -> String {
    bytes.into_iter().map(|b| format!("{b:02x}")).collect()
}

fn credentials(seed: u64, sets: usize, now: i64) -> Vec<(TokenSet, i64)> {
    let mut rng = Rng::new(seed ^ 0x0A11_7E57_0000_0001);
    let expiry = now + 365 * 86_400;
    let mut random = |len: usize| hex((0..len).map(|_| rng.next_u64() as u8));
    (0..sets.max(1))
        .map(|_| {
            let set = TokenSet {
                consumer_key: format!("CK_{}", random(24)),
                consumer_secret: format!("CS_{}", random(20)),
                access_token: format!("AT_O{}", random(24)),
                access_secret: format!("AS_{}", random(20)),
                access_token_expiry: devices::format_time(expiry),
            };
            (set, expiry)
        })
        .collect()
}

/// The first credential set a simulator with `seed` accepts, its expiry a
/// year after `now` (what `depsim` prints and `--tokens-file` writes).
pub fn default_tokens(seed: u64, now: OffsetDateTime) -> Option<TokenSet> {
    credentials(seed, 1, now.unix_timestamp())
        .into_iter()
        .next()
        .map(|(set, _)| set)
}

fn account_json(seed: u64, prefix: &str) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0xACC0_0000_0000_0002);
    let uuid_hex = format!("{:016X}{:016X}", rng.next_u64(), rng.next_u64());
    let server_uuid = format!(
        "{}-{}-{}-{}-{}",
        &uuid_hex[..8],
        &uuid_hex[8..12],
        &uuid_hex[12..16],
        &uuid_hex[16..20],
        &uuid_hex[20..]
    );
    let paging = serde_json::json!({"default": 100, "maximum": 1000});
    let batch = serde_json::json!({"default": 1000, "maximum": 1000});
    let url = |uri: &str, methods: &[&str], limit: Option<&serde_json::Value>| {
        let mut u = serde_json::json!({"uri": format!("{prefix}{uri}"), "http_method": methods});
        if let Some(l) = limit {
            u["limit"] = l.clone();
        }
        u
    };
    let account = serde_json::json!({
        "server_name": "depsim",
        "server_uuid": server_uuid,
        "admin_id": "depsim-admin@example.com",
        "facilitator_id": "depsim-admin@example.com",
        "org_name": "Example Organisation (depsim)",
        "org_email": "it@example.com",
        "org_phone": "+1 555 0100",
        "org_address": "1 Example Way, Cupertino CA 95014, US",
        "org_type": "org",
        "org_version": "v2",
        "org_id": format!("{}", 1_000_000 + rng.below(9_000_000)),
        "org_id_hash": hex((0..32).map(|_| rng.next_u64() as u8)),
        "urls": [
            url("/account", &["GET"], None),
            url("/server/devices", &["POST"], Some(&paging)),
            url("/devices/sync", &["POST"], Some(&paging)),
            url("/devices", &["POST"], Some(&batch)),
            url("/devices/disown", &["POST"], Some(&batch)),
            url("/device/activationlock", &["POST"], None),
            url("/profile", &["GET", "POST"], None),
            url("/profile/devices", &["POST", "PUT", "DELETE"], Some(&batch)),
            url("/os-beta-enrollment/tokens", &["GET"], None),
            url("/account-driven-enrollment/profile", &["GET", "POST", "DELETE"], None),
        ],
    });
    serde_json::to_vec(&account).unwrap_or_default()
}

fn beta_json(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ 0xBE7A_0000_0000_0003);
    let mut token = || hex((0..20).map(|_| rng.next_u64() as u8));
    let tokens: Vec<_> = [
        ("iOS", "iOS 18 Beta"),
        ("macOS", "macOS 15 Beta"),
        ("iPadOS", "iPadOS 18 Beta"),
    ]
    .into_iter()
    .map(|(os, title)| serde_json::json!({"os": os, "title": title, "token": token()}))
    .collect();
    serde_json::to_vec(&serde_json::json!({"betaEnrollmentTokens": tokens})).unwrap_or_default()
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Generates the population, binds the listener and starts serving on
    /// the current actix system (call from inside one).
    pub fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let prefix = config.path_prefix.clone();
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
            return Err(SimError::Prefix(prefix));
        }
        let clock = SimClock {
            base: config.clock.clone(),
            offset_secs: AtomicI64::new(0),
        };
        let now = clock.unix();
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let key = openssl::sha::sha256(format!("depsim cursor key {}", config.seed).as_bytes());
        let creds = credentials(config.seed, config.credential_sets, now);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                population: Population::generate(config.devices, config.seed, now),
                sessions: Sessions::new(
                    creds,
                    SessionPolicy {
                        idle_secs: secs(config.session_idle),
                        timestamp_window_secs: config.timestamp_window.map(secs),
                        rotation_grace_secs: secs(config.rotation_grace),
                    },
                ),
                faults: Faults::default(),
                observer: Observer::new(config.request_log_size),
                ade_url: None,
            }),
            clock,
            codec: CursorCodec::new(key, secs(config.cursor_max_age)),
            account_json: account_json(config.seed, &prefix),
            beta_json: beta_json(config.seed),
            mdm_fleet: Mutex::default(),
            apns: match config.apns_listen {
                Some(_) => Some(Arc::new(apns::ApnsSim::new().map_err(SimError::Apns)?)),
                None => None,
            },
            prefix,
            rotate: config.rotate_sessions,
        });
        let bind_err = |source| SimError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(4 << 20))
                .default_service(web::to(routes::dispatch))
        })
        .workers(config.workers.max(1))
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(bind_err)?;
        let server = if config.handle_signals {
            server
        } else {
            server.disable_signals()
        }
        .run();
        let handle = server.handle();
        let join = actix_web::rt::spawn(server);
        let apns_server = match (config.apns_listen, shared.apns()) {
            (Some(at), Some(sim)) => {
                let bind_err = |source| SimError::Bind { addr: at, source };
                let listener = TcpListener::bind(at).map_err(bind_err)?;
                let server =
                    apns::serve(sim, shared.clone(), listener, config.workers).map_err(bind_err)?;
                let h = server.handle();
                actix_web::rt::spawn(server);
                Some(h)
            }
            _ => None,
        };
        Ok(SimHandle {
            shared,
            addr,
            server: handle,
            apns_server: Mutex::new(apns_server),
            apns_workers: config.workers,
            join,
        })
    }
}

/// A running simulator.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: ServerHandle,
    /// The push service's server, and its worker count (for a restart).
    apns_server: Mutex<Option<ServerHandle>>,
    apns_workers: usize,
    join: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What a client uses as Apple's base URL (prefix included).
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.shared.prefix)
    }

    /// The admin API's root.
    pub fn admin_url(&self) -> String {
        format!("http://{}/_sim", self.addr)
    }

    pub fn credentials(&self) -> Vec<TokenSet> {
        self.shared.lock().sessions.credentials().cloned().collect()
    }

    /// The first credential set as token JSON (`PUT /v1/tokens/{name}`).
    pub fn tokens_json(&self) -> String {
        self.credentials()
            .first()
            .and_then(|t| serde_json::to_string(t).ok())
            .unwrap_or_default()
    }

    /// The simulator's current time.
    pub fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    /// Moves the simulator's time forward (on top of the injected clock).
    pub fn advance_clock(&self, by: Duration) {
        self.shared
            .clock
            .advance(i64::try_from(by.as_secs()).unwrap_or(i64::MAX));
    }

    pub fn add_fault(&self, fault: ResponseFault) {
        self.shared.lock().faults.add_response(fault);
    }

    /// Answers a share of requests with a fault (percent 0 removes it).
    pub fn set_rate_fault(&self, fault: RateFault) {
        self.shared.lock().faults.set_rate(fault);
    }

    pub fn add_assign_fault(&self, fault: AssignFault) {
        self.shared.lock().faults.add_assign(fault);
    }

    pub fn set_latency(&self, fault: LatencyFault) {
        self.shared.lock().faults.set_latency(fault);
    }

    /// The next `count` fetch/sync calls repeat the cursor they were given
    /// with `more_to_follow` true and no devices.
    pub fn repeat_cursor(&self, count: u32) {
        self.shared.lock().faults.repeat_cursor(count);
    }

    /// `/os-beta-enrollment/tokens` answers 403 `APPLE_SEED_FOR_IT_TURNED_OFF`.
    pub fn set_beta_enrollment_off(&self, off: bool) {
        self.shared.lock().faults.set_beta_enrollment_off(off);
    }

    pub fn faults(&self) -> FaultsView {
        self.shared.lock().faults.view()
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// A valid session token, issued without the OAuth exchange.
    pub fn issue_session(&self) -> Option<String> {
        self.shared.issue_session()
    }

    /// Every session token issued so far now gets 401 `UNAUTHORIZED`.
    pub fn expire_sessions(&self) {
        self.shared.lock().sessions.expire_all();
    }

    /// Applies a portal-side change; returns the serials concerned.
    pub fn event(&self, event: &SimEvent) -> Result<Vec<String>, SimError> {
        self.shared.apply(event)
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().observer.stats()
    }

    /// The last requests received (oldest first).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().observer.requests()
    }

    /// Resets request counts and the request log.
    pub fn reset_stats(&self) {
        self.shared.lock().observer.reset();
    }

    pub fn device(&self, serial: &str) -> Option<DeviceState> {
        self.shared.lock().population.state(serial)
    }

    /// Serials in population order (deleted and disowned ones included).
    pub fn serials(&self, offset: usize, limit: usize) -> Vec<String> {
        self.shared.serials(offset, limit)
    }

    pub fn device_count(&self) -> usize {
        self.shared.lock().population.len()
    }

    pub fn profiles(&self) -> Vec<Profile> {
        self.shared.lock().population.profiles().to_vec()
    }

    /// The MDM server a device would enroll in: the `url` of the
    /// enrollment profile assigned to it, if any. A real device fetches the
    /// enrollment profile from there; simulated devices take it as their
    /// MDM server's URL.
    pub fn mdm_server_url(&self, serial: &str) -> Option<String> {
        self.shared.profile_url(serial)
    }

    /// `(serial, model)` of the first `n` devices, for an MDM fleet.
    pub fn mdm_fleet_devices(&self, n: usize) -> Vec<(String, String)> {
        self.shared.fleet_devices(n)
    }

    /// Makes the fleet the admin API's `/_sim/mdm/…` calls work on.
    pub fn set_mdm_fleet(&self, fleet: Arc<mdm::MdmFleet>) {
        self.shared.set_mdm_fleet(fleet);
    }

    /// The push service, when it runs (`SimConfig::apns_listen`).
    pub fn apns(&self) -> Option<Arc<apns::ApnsSim>> {
        self.shared.apns()
    }

    /// Restarts the push service on the same address: every connection to
    /// it is closed, as when APNs drops one (clients must reconnect).
    pub async fn restart_apns(&self) -> Result<(), SimError> {
        let Some(sim) = self.shared.apns() else {
            return Ok(());
        };
        let old = self
            .apns_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = old {
            h.stop(false).await;
        }
        let at: SocketAddr = sim
            .url()
            .trim_start_matches("https://")
            .parse()
            .map_err(|_| SimError::ApnsAddress(sim.url()))?;
        let bind_err = |source| SimError::Bind { addr: at, source };
        let listener = TcpListener::bind(at).map_err(bind_err)?;
        let server =
            apns::serve(sim, self.shared.clone(), listener, self.apns_workers).map_err(bind_err)?;
        *self
            .apns_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(server.handle());
        actix_web::rt::spawn(server);
        Ok(())
    }

    /// Stops serving (in-flight requests finish).
    pub async fn stop(&self) {
        let apns = self
            .apns_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(a) = apns {
            a.stop(true).await;
        }
        self.server.stop(true).await;
    }

    /// Waits until the server stops (a signal with `handle_signals`, or
    /// [`SimHandle::stop`] elsewhere).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.join.await.map_err(std::io::Error::other)?
    }
}
