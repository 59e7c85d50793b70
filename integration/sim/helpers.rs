//! The test client: a simulator on a loopback port with a manual clock,
//! and requests built by hand. The OAuth1 signer here is deliberately
//! independent of `depd::dep::oauth1`, so the simulator's verification is
//! checked against a second implementation rather than against itself.

use awc::http::header::HeaderMap;
use depd::domain::clock::ManualClock;
use depd::sim::sessions::TokenSet;
use depd::sim::{SimConfig, SimHandle, Simulator};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

pub const JSON: &str = "application/json;charset=UTF8";

pub struct TestSim {
    pub sim: SimHandle,
    pub clock: ManualClock,
    pub client: awc::Client,
    pub creds: TokenSet,
    nonce: AtomicU64,
}

/// A simulator with `devices` devices and seed 7, adjusted by `tweak`.
pub fn spawn_with(devices: usize, tweak: impl FnOnce(&mut SimConfig)) -> TestSim {
    let start = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp())
        .expect("now");
    let clock = ManualClock::new(start);
    let mut config = SimConfig {
        devices,
        seed: 7,
        clock: Arc::new(clock.clone()),
        ..SimConfig::default()
    };
    tweak(&mut config);
    let sim = Simulator::start(config).expect("start simulator");
    let creds = sim.credentials().into_iter().next().expect("credentials");
    TestSim {
        sim,
        clock,
        client: awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish(),
        creds,
        nonce: AtomicU64::new(0),
    }
}

pub fn spawn(devices: usize) -> TestSim {
    spawn_with(devices, |_| {})
}

/// RFC 3986 unreserved characters stay, everything else is `%XX`.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `Authorization: OAuth …` for `GET url` (no query), RFC 5849 HMAC-SHA1.
pub fn oauth_header(
    url: &str,
    creds: &TokenSet,
    consumer_secret: &str,
    ts: i64,
    nonce: &str,
) -> String {
    let mut params = [
        ("oauth_consumer_key", creds.consumer_key.as_str()),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", &ts.to_string()),
        ("oauth_token", creds.access_token.as_str()),
        ("oauth_version", "1.0"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    params.sort();
    let joined = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!("GET&{}&{}", enc(url), enc(&joined));
    let key = format!("{}&{}", enc(consumer_secret), enc(&creds.access_secret));
    let pkey = PKey::hmac(key.as_bytes()).expect("hmac key");
    let mut signer = Signer::new(MessageDigest::sha1(), &pkey).expect("signer");
    signer.update(base.as_bytes()).expect("sign");
    let sig = openssl::base64::encode_block(&signer.sign_to_vec().expect("sign"));
    let fields = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", enc(v)))
        .chain([format!("oauth_signature=\"{}\"", enc(&sig))])
        .collect::<Vec<_>>()
        .join(", ");
    format!("OAuth realm=\"ADM\", {fields}")
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts an Apple error: status and bare code.
    pub fn is_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.text().as_str()), (status, code));
    }
}

async fn send(req: awc::ClientRequest, body: Option<&Value>) -> Answer {
    let mut resp = match body {
        Some(b) => req.send_body(serde_json::to_vec(b).expect("json")).await,
        None => req.send().await,
    }
    .expect("request");
    let body = resp.body().limit(64 << 20).await.expect("body").to_vec();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body,
    }
}

impl TestSim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub fn now(&self) -> i64 {
        self.sim.now().unix_timestamp()
    }

    pub fn fresh_nonce(&self) -> String {
        format!("nonce-{}", self.nonce.fetch_add(1, Ordering::Relaxed))
    }

    /// `GET /session` with a given Authorization and Content-Type.
    pub async fn session_raw(&self, authorization: &str, content_type: Option<&str>) -> Answer {
        let mut req = self
            .client
            .get(self.url("/session"))
            .insert_header(("User-Agent", "sim-test/1"))
            .insert_header(("X-Server-Protocol-Version", "10"))
            .insert_header(("Authorization", authorization));
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        send(req, None).await
    }

    /// A correctly signed `/session` call.
    pub async fn session_answer(&self) -> Answer {
        let h = oauth_header(
            &self.url("/session"),
            &self.creds,
            &self.creds.consumer_secret,
            self.now(),
            &self.fresh_nonce(),
        );
        self.session_raw(&h, Some(JSON)).await
    }

    /// A new session token.
    pub async fn session(&self) -> String {
        let a = self.session_answer().await;
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()["auth_session_token"]
            .as_str()
            .expect("auth_session_token")
            .to_owned()
    }

    /// An Apple call with session, user agent and protocol version.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        protocol: u32,
        body: Option<&Value>,
    ) -> Answer {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, self.url(path))
            .insert_header(("User-Agent", "sim-test/1"))
            .insert_header(("X-Server-Protocol-Version", protocol.to_string()))
            .insert_header(("X-ADM-Auth-Session", token));
        if body.is_some() {
            req = req.insert_header(("Content-Type", JSON));
        }
        send(req, body).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, token, 10, Some(&body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, token, 10, None).await
    }

    /// An admin API call.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let req = self
            .client
            .request(method, format!("{}{path}", self.sim.admin_url()));
        send(req, body.as_ref()).await
    }

    /// Every page of a fetch from scratch: (serials, final cursor).
    pub async fn fetch_all(&self, token: &str, limit: u32) -> (Vec<String>, String) {
        let mut serials = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = serde_json::json!({"limit": limit});
            if let Some(c) = &cursor {
                body["cursor"] = Value::String(c.clone());
            }
            let a = self.post("/server/devices", token, body).await;
            assert_eq!(a.status, 200, "{}", a.text());
            let page = a.json();
            for d in page["devices"].as_array().expect("devices") {
                assert!(d.get("op_type").is_none(), "op_type on fetch: {d}");
                serials.push(d["serial_number"].as_str().expect("serial").to_owned());
            }
            cursor = Some(page["cursor"].as_str().expect("cursor").to_owned());
            if !page["more_to_follow"].as_bool().expect("more_to_follow") {
                return (serials, cursor.unwrap_or_default());
            }
        }
    }
}
