//! The webhook: NanoDEP-compatible events built from a page as Apple sent
//! it, their optional HMAC-SHA256 signature, and the delivery retry policy.
//!
//! Event body (what NanoDEP's `depsyncer` posts):
//!
//! ```json
//! {"topic": "dep.FetchDevices", "event_id": "…", "created_at": "2024-05-01T10:00:00Z",
//!  "device_response_event": {"dep_name": "acme",
//!    "device_response": {"cursor": "…", "devices": […], "fetched_until": "…", "more_to_follow": false}}}
//! ```
//!
//! Signature: with a secret configured, every delivery carries
//! [`SIGNATURE_HEADER`]` = sha256=<lowercase hex HMAC-SHA256 of the body>`
//! (GitHub's convention, which many receivers already verify).

use super::backoff::{Jitter, full_jitter};
use crate::dep::wire::DevicePage;
use crate::domain::name::DepName;
use crate::settings::WebhookSettings;
use crate::store::{EventBody, OutboxEntry, SyncPhase};
use openssl::error::ErrorStack;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("building the webhook event: {0}")]
    Encode(String),
    #[error("webhook cryptography: {0}")]
    Crypto(#[from] ErrorStack),
}

/// The event topic of a page: which request produced it.
pub fn topic(phase: SyncPhase) -> &'static str {
    match phase {
        SyncPhase::Fetch => "dep.FetchDevices",
        SyncPhase::Sync => "dep.SyncDevices",
    }
}

/// A unique event id: 16 random bytes, hex.
pub fn new_event_id() -> Result<String, WebhookError> {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(hex(&bytes))
}

/// The outbox entry of a page: NanoDEP's envelope around the page as Apple
/// sent it (`raw`, its text, unknown keys included). With the text, the
/// entry holds only the envelope ([`EventBody::AroundPage`]) and the store
/// puts the page's text in it, which it keeps once for the inventory and
/// the event; without, the page is encoded here.
pub fn event(
    name: &DepName,
    phase: SyncPhase,
    page: &DevicePage,
    raw: Option<&[u8]>,
    event_id: String,
    created_at: OffsetDateTime,
) -> Result<OutboxEntry, WebhookError> {
    let topic = topic(phase);
    let created_at = created_at
        .format(&Rfc3339)
        .map_err(|e| WebhookError::Encode(e.to_string()))?;
    let encode = |e: serde_json::Error| WebhookError::Encode(e.to_string());
    let head = format!(
        r#"{{"topic":{},"event_id":{},"created_at":{},"device_response_event":{{"dep_name":{},"device_response":"#,
        serde_json::to_string(topic).map_err(encode)?,
        serde_json::to_string(&event_id).map_err(encode)?,
        serde_json::to_string(&created_at).map_err(encode)?,
        serde_json::to_string(name.as_str()).map_err(encode)?,
    );
    let tail = "}}".to_owned();
    // Apple's text of the page, when at hand (it parsed, so it is JSON):
    // no second encoding of a page of a thousand devices.
    let body = match raw.map(std::str::from_utf8) {
        Some(Ok(_)) => EventBody::AroundPage { head, tail },
        Some(Err(_)) | None => {
            EventBody::Whole(format!("{head}{}{tail}", page_text(page).map_err(encode)?))
        }
    };
    Ok(OutboxEntry {
        event_id,
        topic: topic.to_owned(),
        body,
    })
}

/// A page's JSON without Apple's text of the whole page: each device as
/// Apple sent it when its text is known, encoded from its fields otherwise.
fn page_text(page: &DevicePage) -> Result<String, serde_json::Error> {
    let mut devices = String::from("[");
    for (i, d) in page.devices.iter().enumerate() {
        if i > 0 {
            devices.push(',');
        }
        match &d.raw {
            Some(raw) => devices.push_str(raw),
            None => devices.push_str(&serde_json::to_string(d)?),
        }
    }
    devices.push(']');
    Ok(format!(
        r#"{{"cursor":{},"devices":{devices},"fetched_until":{},"more_to_follow":{}}}"#,
        serde_json::to_string(&page.cursor)?,
        serde_json::to_string(&page.fetched_until)?,
        page.more_to_follow
    ))
}

/// The value of [`SIGNATURE_HEADER`] for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> Result<String, WebhookError> {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let key = PKey::hmac(secret)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key)?;
    Ok(format!(
        "sha256={}",
        hex(&signer.sign_oneshot_to_vec(body)?)
    ))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Only a 2xx answer delivers an event.
pub fn is_delivered(status: u16) -> bool {
    (200..300).contains(&status)
}

/// How webhook deliveries are timed (from the `[webhook]` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Limit of one POST, connection to end of answer.
    pub timeout: Duration,
    /// Ceiling of the wait after the first failed attempt; doubled per
    /// further failure, the wait drawn at random below it (full jitter).
    pub first_retry: Duration,
    pub max_retry: Duration,
}

/// Delivery of the oldest outbox event of a name to every configured URL.
/// Events go out in order, so the next one waits until this one reached
/// every URL; a URL that already took it is not sent it again (a restart
/// may still repeat it: delivery is at least once).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    seq: u64,
    delivered: Vec<bool>,
    failures: u32,
}

impl DeliveryPolicy {
    pub fn from_settings(s: &WebhookSettings) -> Self {
        DeliveryPolicy {
            timeout: Duration::from_secs(s.timeout_secs),
            first_retry: Duration::from_secs(s.retry_first_secs),
            max_retry: Duration::from_secs(s.retry_max_secs),
        }
    }
}

impl Delivery {
    pub fn new(seq: u64, urls: usize) -> Self {
        Delivery {
            seq,
            delivered: vec![false; urls],
            failures: 0,
        }
    }

    /// The outbox sequence number of the event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Indexes of the URLs still to be sent the event.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.delivered.len())
            .filter(|i| !self.delivered[*i])
            .collect()
    }

    /// Records one attempt: `status` is the HTTP answer, `None` when there
    /// was none (connection error, timeout).
    pub fn record(&mut self, url: usize, status: Option<u16>) {
        if let Some(done) = self.delivered.get_mut(url)
            && status.is_some_and(is_delivered)
        {
            *done = true;
        }
    }

    /// Every URL has the event: remove it from the outbox.
    pub fn is_complete(&self) -> bool {
        self.delivered.iter().all(|d| *d)
    }

    /// Called after a round of attempts left URLs pending: counts the
    /// failure and returns the wait before the next round.
    pub fn retry_in(&mut self, policy: &DeliveryPolicy, rng: &mut dyn Jitter) -> Duration {
        self.failures = self.failures.saturating_add(1);
        full_jitter(policy.first_retry, policy.max_retry, self.failures, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> DevicePage {
        serde_json::from_str(
            r#"{"cursor":"c9","fetched_until":"2024-05-01T10:00:00Z","more_to_follow":true,
                "devices":[{"serial_number":"C02X","op_type":"added","future_key":{"x":[1,2]}}]}"#,
        )
        .expect("page")
    }

    #[test]
    fn event_is_nanodep_shaped_and_keeps_unknown_keys() {
        let name = DepName::parse("acme").expect("name");
        let at = OffsetDateTime::from_unix_timestamp(1_714_557_600).expect("time");
        let e = event(&name, SyncPhase::Sync, &page(), None, "id-1".into(), at).expect("event");
        assert_eq!(
            (e.topic.as_str(), e.event_id.as_str()),
            ("dep.SyncDevices", "id-1")
        );
        let body = e.body.complete(None).expect("whole");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["topic"], "dep.SyncDevices");
        assert_eq!(v["event_id"], "id-1");
        assert_eq!(v["created_at"], "2024-05-01T10:00:00Z");
        let r = &v["device_response_event"];
        assert_eq!(r["dep_name"], "acme");
        let d = &r["device_response"];
        assert_eq!(d["cursor"], "c9");
        assert_eq!(d["fetched_until"], "2024-05-01T10:00:00Z");
        assert_eq!(d["more_to_follow"], true);
        assert_eq!(d["devices"][0]["serial_number"], "C02X");
        assert_eq!(d["devices"][0]["future_key"]["x"][1], 2);
        let f = event(
            &name,
            SyncPhase::Fetch,
            &DevicePage::default(),
            None,
            "id-2".into(),
            at,
        )
        .expect("event");
        assert_eq!(f.topic, "dep.FetchDevices");
        let body = f.body.complete(None).expect("whole");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v["device_response_event"]["device_response"]["devices"],
            serde_json::json!([])
        );
    }

    #[test]
    fn the_page_goes_out_as_apple_sent_it() {
        let name = DepName::parse("acme").expect("name");
        let at = OffsetDateTime::from_unix_timestamp(1_714_557_600).expect("time");
        // A page made in code (no text of Apple's): encoded by depd, then
        // passed as Apple's text, gives the same body.
        let mut p = page();
        p.devices[0].raw = None;
        let encoded = serde_json::to_string(&p).expect("encode");
        let a = event(&name, SyncPhase::Sync, &p, None, "id".into(), at).expect("event");
        let b = event(
            &name,
            SyncPhase::Sync,
            &p,
            Some(encoded.as_bytes()),
            "id".into(),
            at,
        )
        .expect("event");
        // With the page's text the event leaves room for it, which the
        // store fills with the text it keeps.
        assert!(matches!(b.body, EventBody::AroundPage { .. }));
        assert_eq!(a.body.complete(None), b.body.complete(Some(&encoded)));
        // Page-level keys depd does not know are kept, byte for byte.
        let apple = r#"{"cursor":"c9", "more_to_follow":false, "devices":[], "new_page_key":7}
"#;
        let c = event(
            &name,
            SyncPhase::Sync,
            &p,
            Some(apple.as_bytes()),
            "id".into(),
            at,
        )
        .expect("event");
        let body = c.body.complete(Some(apple)).expect("body");
        assert!(
            body.ends_with(
                r#""device_response":{"cursor":"c9", "more_to_follow":false, "devices":[], "new_page_key":7}}}"#
            ),
            "{body}"
        );
        // Text that is not UTF-8 cannot be the page's: encoded instead.
        let d = event(&name, SyncPhase::Sync, &p, Some(b"\xff"), "id".into(), at).expect("event");
        assert_eq!(d.body.complete(None), a.body.complete(None));
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v["device_response_event"]["device_response"]["new_page_key"],
            7
        );
        assert_eq!(v["event_id"], "id");
    }

    #[test]
    fn event_ids_are_unique() {
        let a = new_event_id().expect("id");
        let b = new_event_id().expect("id");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn signature_matches_rfc_4231_and_the_openssl_tool() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?").expect("hmac"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"topic":"dep.SyncDevices","event_id":"e"}"#;
        let ours = signature(b"s3cret", body).expect("hmac");
        let tool = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", "s3cret"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(body)?;
                }
                child.wait_with_output()
            });
        match tool {
            Ok(out) => {
                // "HMAC-SHA2-256(stdin)= <hex>" (wording varies by version).
                let text = String::from_utf8_lossy(&out.stdout);
                let hex = text.rsplit("= ").next().unwrap_or_default().trim();
                assert_eq!(ours, format!("sha256={hex}"), "openssl said {text:?}");
            }
            Err(e) => panic!(
                "this test needs the openssl command-line tool ({e}): install the openssl package"
            ),
        }
    }

    #[test]
    fn policy_from_default_settings() {
        let p = DeliveryPolicy::from_settings(&WebhookSettings::default());
        assert_eq!(
            (
                p.timeout.as_secs(),
                p.first_retry.as_secs(),
                p.max_retry.as_secs()
            ),
            (30, 1, 900)
        );
    }

    #[test]
    fn only_2xx_delivers() {
        assert!(is_delivered(200) && is_delivered(204) && is_delivered(299));
        assert!(!is_delivered(199) && !is_delivered(301) && !is_delivered(500));
    }

    #[test]
    fn delivery_to_every_url_with_backoff() {
        let policy = DeliveryPolicy {
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(60),
        };
        let mut rng = || 1.0;
        let mut d = Delivery::new(7, 2);
        assert_eq!(d.seq(), 7);
        assert_eq!(d.pending(), [0, 1]);
        d.record(0, Some(200));
        d.record(1, Some(500));
        d.record(5, Some(200));
        assert_eq!(d.pending(), [1]);
        assert!(!d.is_complete());
        let waits: Vec<u64> = (0..6)
            .map(|_| d.retry_in(&policy, &mut rng).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        d.record(1, None);
        d.record(1, Some(302));
        assert!(!d.is_complete());
        d.record(1, Some(202));
        assert!(d.is_complete());
        assert!(d.pending().is_empty());
        assert!(Delivery::new(1, 0).is_complete());
    }
}
