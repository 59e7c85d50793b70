//! Simulated MDM devices: a fleet of devices with identity certificates
//! from a test CA that depsim makes, which enroll in an MDM server
//! (Authenticate, TokenUpdate), check in, answer commands with realistic
//! result plists, answer `NotNow` at a configurable rate, and check out.
//! They act when told to: through [`MdmFleet`]'s methods in process, or
//! depsim's admin API (`/_sim/mdm/…`).
//!
//! Identities are EC P-256 keys: making one takes a fraction of a
//! millisecond where RSA-2048 takes tens (10,000 identities: about a second
//! instead of minutes), and Apple devices do hold EC identities (the ACME
//! payload's hardware-bound keys). The MDM server's work is the same for
//! either key type. A fleet can be saved to a file and loaded again, so
//! repeated runs make no keys at all.

pub(in crate::sim) mod admin;
mod device;

pub use device::{ConnectReport, MdmSimError};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};
use std::path::Path;
use std::sync::Mutex;

/// One simulated device.
pub struct SimMdmDevice {
    pub udid: String,
    pub serial_number: String,
    pub model: String,
    key: PKey<Private>,
    cert: X509,
    state: Mutex<DeviceState>,
}

/// What a device remembers between its requests.
#[derive(Debug, Clone, Default)]
pub struct DeviceState {
    /// The MDM server's URL (`…/mdm`); set at enrollment.
    pub server_url: Option<String>,
    pub enrolled: bool,
    pub checked_out: bool,
    /// Identifiers of the profiles `InstallProfile` put on it.
    pub profiles: Vec<String>,
    pub commands_answered: u64,
    pub not_now_answered: u64,
}

impl SimMdmDevice {
    pub fn state(&self) -> DeviceState {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The device's identity certificate (PEM).
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap_or_default()
    }

    /// The APNs token the device sends in `TokenUpdate`.
    pub fn push_token(&self) -> [u8; 32] {
        openssl::sha::sha256(format!("token {}", self.udid).as_bytes())
    }

    /// [`Self::push_token`] as the MDM server stores it (lowercase hex).
    pub fn push_token_hex(&self) -> String {
        self.push_token()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The push magic the device sends in `TokenUpdate` and expects in
    /// the pushes that wake it.
    pub fn push_magic(&self) -> String {
        uuid_of(&format!("magic {}", self.udid))
    }
}

/// A fleet of simulated devices and the CA of their identities.
pub struct MdmFleet {
    ca_cert: X509,
    devices: Vec<SimMdmDevice>,
    /// Percentage of commands first answered `NotNow` (0-100).
    not_now_percent: Mutex<u8>,
    topic: String,
    /// Device index by push token (hex), made on first use.
    by_token: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("making identities: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("identities file {path}: {reason}")]
    File { path: String, reason: String },
}

fn name(cn: &str) -> Result<openssl::x509::X509Name, openssl::error::ErrorStack> {
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_text("CN", cn)?;
    Ok(n.build())
}

fn ec_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn make_ca() -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let key = ec_key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    let n = name("depsim device CA")?;
    b.set_subject_name(&n)?;
    b.set_issuer_name(&n)?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

fn identity(
    ca: &X509,
    ca_key: &PKey<Private>,
    serial: u32,
    udid: &str,
) -> Result<(PKey<Private>, X509), openssl::error::ErrorStack> {
    let key = ec_key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(serial)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    let subject = name(udid)?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok((key, b.build()))
}

/// The UDID of device `i` of a fleet made with `seed`.
fn udid_of(seed: u64, i: usize) -> String {
    uuid_of(&format!("depsim mdm {seed} {i}"))
}

/// A UUID-shaped text (upper-case hex, 8-4-4-4-12) derived from `seed`.
fn uuid_of(seed: &str) -> String {
    let h = openssl::sha::sha256(seed.as_bytes());
    let hex: String = h[..16].iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl MdmFleet {
    /// A fleet of one device per serial number (`(serial, model)`), with
    /// new identities from a new CA.
    pub fn generate(seed: u64, serials: &[(String, String)]) -> Result<MdmFleet, FleetError> {
        let (ca_cert, ca_key) = make_ca()?;
        let mut devices = Vec::with_capacity(serials.len());
        for (i, (serial, model)) in serials.iter().enumerate() {
            let udid = udid_of(seed, i);
            let (key, cert) = identity(
                &ca_cert,
                &ca_key,
                u32::try_from(i + 2).unwrap_or(u32::MAX),
                &udid,
            )?;
            devices.push(SimMdmDevice {
                udid,
                serial_number: serial.clone(),
                model: model.clone(),
                key,
                cert,
                state: Mutex::default(),
            });
        }
        Ok(MdmFleet {
            ca_cert,
            devices,
            not_now_percent: Mutex::new(0),
            topic: format!("com.apple.mgmt.External.depsim-{seed}"),
            by_token: std::sync::OnceLock::new(),
        })
    }

    /// Loads a fleet saved with [`MdmFleet::save`] when `path` exists and
    /// holds `serials.len()` devices; otherwise generates one and saves it.
    pub fn load_or_generate(
        path: &Path,
        seed: u64,
        serials: &[(String, String)],
    ) -> Result<MdmFleet, FleetError> {
        if let Ok(text) = std::fs::read(path)
            && let Ok(fleet) = Self::parse(&text, seed, serials)
        {
            return Ok(fleet);
        }
        let fleet = Self::generate(seed, serials)?;
        fleet.save(path)?;
        Ok(fleet)
    }

    fn parse(text: &[u8], seed: u64, serials: &[(String, String)]) -> Result<MdmFleet, FleetError> {
        let bad = |reason: &str| FleetError::File {
            path: String::new(),
            reason: reason.to_owned(),
        };
        let certs = X509::stack_from_pem(text)?;
        let mut keys = Vec::new();
        let s = String::from_utf8_lossy(text);
        for block in s.split("-----BEGIN PRIVATE KEY-----").skip(1) {
            let end = block
                .find("-----END PRIVATE KEY-----")
                .ok_or_else(|| bad("a key block is cut"))?;
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----{}-----END PRIVATE KEY-----\n",
                &block[..end]
            );
            keys.push(PKey::private_key_from_pem(pem.as_bytes())?);
        }
        let (ca_cert, rest) = certs
            .split_first()
            .ok_or_else(|| bad("no CA certificate"))?;
        if rest.len() != serials.len() || keys.len() != serials.len() {
            return Err(bad("another fleet size"));
        }
        let devices = rest
            .iter()
            .zip(keys)
            .zip(serials)
            .enumerate()
            .map(|(i, ((cert, key), (serial, model)))| SimMdmDevice {
                udid: udid_of(seed, i),
                serial_number: serial.clone(),
                model: model.clone(),
                key,
                cert: cert.clone(),
                state: Mutex::default(),
            })
            .collect();
        Ok(MdmFleet {
            ca_cert: ca_cert.clone(),
            devices,
            not_now_percent: Mutex::new(0),
            topic: format!("com.apple.mgmt.External.depsim-{seed}"),
            by_token: std::sync::OnceLock::new(),
        })
    }

    /// Saves the CA certificate, then each device's certificate and key
    /// (the CA's key is not kept: a loaded fleet issues no identities).
    pub fn save(&self, path: &Path) -> Result<(), FleetError> {
        let mut out = self.ca_cert.to_pem()?;
        for d in &self.devices {
            out.extend(d.cert.to_pem()?);
        }
        for d in &self.devices {
            out.extend(d.key.private_key_to_pem_pkcs8()?);
        }
        std::fs::write(path, out).map_err(|e| FleetError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The CA that issued the identities, PEM: the MDM server's `ca_file`.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_cert.to_pem().unwrap_or_default()
    }

    pub fn devices(&self) -> &[SimMdmDevice] {
        &self.devices
    }

    pub fn device(&self, udid: &str) -> Option<&SimMdmDevice> {
        self.devices.iter().find(|d| d.udid == udid)
    }

    /// The device whose push token is `token_hex` (lowercase hex).
    pub fn device_by_token(&self, token_hex: &str) -> Option<&SimMdmDevice> {
        let index = self.by_token.get_or_init(|| {
            self.devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.push_token_hex(), i))
                .collect()
        });
        index.get(token_hex).and_then(|&i| self.devices.get(i))
    }

    /// The push topic the devices report in `TokenUpdate`.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sets the share of commands first answered `NotNow`, 0-100.
    pub fn set_not_now_percent(&self, percent: u8) {
        *self
            .not_now_percent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = percent.min(100);
    }

    fn not_now_percent(&self) -> u8 {
        *self
            .not_now_percent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
