//! The push service's admin API, on depsim's main listener under
//! `/_sim/apns/` (loopback only, like the rest of `/_sim/`).
//!
//! | call | does |
//! |---|---|
//! | `GET /_sim/apns` | the push service's URL, its CA and counters |
//! | `GET /_sim/apns/ca` | the CA (PEM): the MDM server's `apns_ca_file` |
//! | `POST /_sim/apns/pushcert` `{"topic"?: T, "days"?: N}` | a push certificate and key for `T` (default: the fleet's topic), from the CA |
//! | `POST /_sim/apns/faults` `{"token"?, "status", "reason", "retry_after"?, "times"?}` | adds a fault |
//! | `DELETE /_sim/apns/faults` | clears the faults |
//! | `PUT /_sim/apns/latency` `{"ms": N}` | delays every answer |
//! | `PUT /_sim/apns/wake` `{"on": bool}` | whether accepted pushes wake simulated devices |
//! | `GET /_sim/apns/pushes` | the last pushes (headers, answer) and the counters |

use super::{ApnsFault, ApnsSim};
use crate::sim::Shared;
use crate::sim::reply::Reply;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(in crate::sim) const PREFIX: &str = "/_sim/apns";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CertBody {
    topic: Option<String>,
    days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wake {
    on: bool,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| Reply::code(400, &format!("invalid JSON body: {e}")))
}

fn sim(shared: &Shared) -> Result<Arc<ApnsSim>, Reply> {
    shared.apns().ok_or_else(|| {
        Reply::code(
            409,
            "the push service is not running (depsim --apns-listen)",
        )
    })
}

pub(in crate::sim) fn handle(method: &str, path: &str, body: &[u8], shared: &Shared) -> Reply {
    let apns = match sim(shared) {
        Ok(a) => a,
        Err(r) => return r,
    };
    match (method, path.strip_prefix(PREFIX).unwrap_or("")) {
        ("GET", "" | "/") => Reply::json(&json!({
            "url": apns.url(),
            "ca_pem": String::from_utf8_lossy(&apns.ca_pem()),
            "stats": apns.stats(),
        })),
        ("GET", "/ca") => {
            Reply::json(&json!({ "ca_pem": String::from_utf8_lossy(&apns.ca_pem()) }))
        }
        ("POST", "/pushcert") => {
            let b: CertBody = if body.is_empty() {
                CertBody::default()
            } else {
                match parse(body) {
                    Ok(b) => b,
                    Err(r) => return r,
                }
            };
            let Some(topic) = b
                .topic
                .or_else(|| shared.mdm_fleet().map(|f| f.topic().to_owned()))
            else {
                return Reply::code(400, "no topic given and no fleet to take it from");
            };
            if !topic.starts_with("com.apple.mgmt") {
                return Reply::code(400, "an MDM push topic starts with com.apple.mgmt");
            }
            match apns.issue_push_cert(&topic, b.days.unwrap_or(365).clamp(1, 3650)) {
                Ok((cert, key)) => Reply::json(&json!({
                    "topic": topic,
                    "cert_pem": String::from_utf8_lossy(&cert),
                    "key_pem": String::from_utf8_lossy(&key),
                })),
                Err(e) => Reply::code(500, &e.to_string()),
            }
        }
        ("POST", "/faults") => match parse::<ApnsFault>(body) {
            Ok(f) if (400..=599).contains(&f.status) => {
                apns.add_fault(f);
                Reply::json(&json!({ "ok": true }))
            }
            Ok(_) => Reply::code(400, "a fault's status is from 400 to 599"),
            Err(r) => r,
        },
        ("DELETE", "/faults") => {
            apns.clear_faults();
            Reply::json(&json!({ "ok": true }))
        }
        ("PUT", "/latency") => match parse::<Latency>(body) {
            Ok(l) => {
                apns.set_latency_ms(l.ms.min(60_000));
                Reply::json(&json!({ "ok": true }))
            }
            Err(r) => r,
        },
        ("PUT", "/wake") => match parse::<Wake>(body) {
            Ok(w) => {
                apns.set_wake(w.on);
                Reply::json(&json!({ "ok": true }))
            }
            Err(r) => r,
        },
        ("GET", "/pushes") => Reply::json(&json!({
            "pushes": apns.pushes(),
            "stats": apns.stats(),
        })),
        _ => Reply::code(404, "no such /_sim/apns call"),
    }
}
