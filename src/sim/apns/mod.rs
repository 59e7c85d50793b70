//! depsim's APNs: an HTTP/2-over-TLS server that answers pushes as Apple's
//! push service does, with a CA of its own that issues its server
//! certificate and the push certificates MDM servers push with.
//!
//! It checks what APNs checks: a client certificate from its CA (403
//! `BadCertificate` otherwise), `apns-topic` against the certificate's
//! topic, the token's form, the body, and the device's topic. Faults are
//! injected per token or for all (`BadDeviceToken`, `Unregistered`, 429
//! with `Retry-After`, 5xx), with a latency. An accepted push to a
//! simulated device (`sim::mdm`) with the right push magic wakes it: the
//! device connects to its MDM server and answers its commands, as a real
//! device does after a push.
//!
//! Admin calls are on depsim's main listener, under `/_sim/apns/`
//! (`admin.rs`); the push service itself is `server.rs`.

pub(in crate::sim) mod admin;
mod server;

pub(in crate::sim) use server::serve;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many pushes the log keeps (counts cover all of them).
const LOG_SIZE: usize = 10_000;

/// A fault: every push (or the pushes to one token) gets this answer,
/// `times` times or until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsFault {
    #[serde(default)]
    pub token: Option<String>,
    pub status: u16,
    /// APNs's `reason`; a 410 also carries a `timestamp`.
    pub reason: String,
    /// `Retry-After` seconds to send with it.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// How many pushes it answers; `None`: until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// One push as the simulator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    pub token: String,
    /// The client certificate's topic.
    pub cert_topic: Option<String>,
    /// The client certificate's serial number (hex).
    pub cert_serial: Option<String>,
    pub apns_topic: Option<String>,
    pub apns_push_type: Option<String>,
    pub apns_priority: Option<String>,
    pub apns_expiration: Option<String>,
    pub body: String,
    pub status: u16,
    pub reason: Option<String>,
    pub apns_id: String,
    pub at_unix_ms: i64,
}

#[derive(Default)]
struct State {
    faults: Vec<ApnsFault>,
    log: VecDeque<PushRecord>,
    /// Pushes accepted per token.
    delivered: HashMap<String, u32>,
}

/// The push service's state, shared by its workers and the admin API.
pub struct ApnsSim {
    ca: X509,
    ca_key: PKey<Private>,
    server_cert: X509,
    server_key: PKey<Private>,
    state: Mutex<State>,
    accepted: AtomicU64,
    refused: AtomicU64,
    woken: AtomicU64,
    wake_failed: AtomicU64,
    latency_ms: AtomicU64,
    wake: AtomicBool,
    url: Mutex<String>,
}

/// Counters of the push service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApnsStats {
    pub accepted: u64,
    pub refused: u64,
    /// Simulated devices woken (a connection to their MDM server done).
    pub woken: u64,
    pub wake_failed: u64,
}

fn name(entries: &[(&str, &str)]) -> Result<openssl::x509::X509Name, openssl::error::ErrorStack> {
    let mut n = X509NameBuilder::new()?;
    for (k, v) in entries {
        n.append_entry_by_text(k, v)?;
    }
    Ok(n.build())
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(63, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

impl ApnsSim {
    /// A CA, and a server certificate for `localhost` and 127.0.0.1.
    pub fn new() -> Result<ApnsSim, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let ca_key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        // A name of its own: two simulators' CAs are told apart by name.
        let mut tag = [0u8; 4];
        openssl::rand::rand_bytes(&mut tag)?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let n = name(&[("CN", &format!("depsim APNs CA {tag}"))])?;
        b.set_subject_name(&n)?;
        b.set_issuer_name(&n)?;
        b.set_pubkey(&ca_key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&ca_key, MessageDigest::sha256())?;
        let ca = b.build();

        let server_key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        b.set_subject_name(&*name(&[("CN", "localhost")])?)?;
        b.set_issuer_name(ca.subject_name())?;
        b.set_pubkey(&server_key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .ip("::1")
            .build(&b.x509v3_context(Some(&ca), None))?;
        b.append_extension(san)?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        b.sign(&ca_key, MessageDigest::sha256())?;
        Ok(ApnsSim {
            ca,
            ca_key,
            server_cert: b.build(),
            server_key,
            state: Mutex::default(),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            woken: AtomicU64::new(0),
            wake_failed: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
            wake: AtomicBool::new(true),
            url: Mutex::default(),
        })
    }

    /// The server's certificate and key (for tests that serve HTTP/2
    /// themselves) and the CA that issued them.
    #[cfg(test)]
    pub(crate) fn server_identity(&self) -> (X509, PKey<Private>, X509) {
        (
            self.server_cert.clone(),
            self.server_key.clone(),
            self.ca.clone(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The CA (PEM): the MDM server's `apns_ca_file`.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca.to_pem().unwrap_or_default()
    }

    /// The push service's base URL (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A push certificate for `topic` from the simulator's CA, valid for
    /// `days` (RSA-2048, as Apple's are): certificate and key, PEM,
    /// ready for `PUT /v1/pushcert`.
    pub fn issue_push_cert(
        &self,
        topic: &str,
        days: u32,
    ) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut b = X509::builder()?;
        b.set_version(2)?;
        b.set_serial_number(&*serial()?)?;
        let id = topic.rsplit('.').next().unwrap_or(topic);
        b.set_subject_name(&*name(&[
            ("UID", topic),
            ("CN", &format!("APSP:{id}")),
            ("C", "US"),
        ])?)?;
        b.set_issuer_name(self.ca.subject_name())?;
        b.set_pubkey(&key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(days)?)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        b.sign(&self.ca_key, MessageDigest::sha256())?;
        Ok((b.build().to_pem()?, key.private_key_to_pem_pkcs8()?))
    }

    pub fn add_fault(&self, fault: ApnsFault) {
        self.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether accepted pushes wake simulated devices (on by default).
    pub fn set_wake(&self, on: bool) {
        self.wake.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ApnsStats {
        ApnsStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            woken: self.woken.load(Ordering::Relaxed),
            wake_failed: self.wake_failed.load(Ordering::Relaxed),
        }
    }

    /// The last pushes (at most 10,000), oldest first.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// How many pushes to `token_hex` were accepted.
    pub fn delivered_to(&self, token_hex: &str) -> u32 {
        self.lock().delivered.get(token_hex).copied().unwrap_or(0)
    }

    /// The fault that answers a push to `token`, if any (used up once).
    fn take_fault(&self, token: &str) -> Option<ApnsFault> {
        let mut st = self.lock();
        let at = st.faults.iter().position(|f| {
            f.token
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(token))
        })?;
        let fault = st.faults[at].clone();
        if let Some(times) = &mut st.faults[at].times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                st.faults.remove(at);
            }
        }
        Some(fault)
    }

    fn record(&self, r: PushRecord) {
        if r.status == 200 {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.lock();
        if r.status == 200 {
            *st.delivered.entry(r.token.clone()).or_default() += 1;
        }
        if st.log.len() >= LOG_SIZE {
            st.log.pop_front();
        }
        st.log.push_back(r);
    }
}
