//! The admin API under `/_sim/` (a prefix Apple's clients never use),
//! answered only to loopback peers. It mirrors the in-process methods of
//! [`super::SimHandle`]; `docs/simulator.md` is its reference.

use super::faults::{AssignFault, LatencyFault, RateFault, ResponseFault};
use super::reply::Reply;
use super::token_file::{self, P7mOptions};
use super::{Shared, SimEvent};
use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web;
use openssl::symm::Cipher;
use serde::Deserialize;

const PREFIX: &str = "/_sim";

pub(super) fn is_admin(path: &str) -> bool {
    path == PREFIX || path.starts_with("/_sim/")
}

fn bad(message: impl std::fmt::Display) -> Reply {
    Reply::code(400, &message.to_string())
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(bytes).map_err(|e| bad(format_args!("invalid JSON body: {e}")))
}

fn ok() -> Reply {
    Reply::json(&serde_json::json!({"ok": true}))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "hundred")]
    limit: usize,
}

fn hundred() -> usize {
    100
}

#[derive(Deserialize)]
struct Count {
    count: u32,
}

#[derive(Deserialize)]
struct Off {
    off: bool,
}

#[derive(Deserialize)]
struct Advance {
    advance_seconds: i64,
}

#[derive(Deserialize)]
struct P7mQuery {
    #[serde(default)]
    cipher: Option<String>,
    #[serde(default)]
    wrap: Option<usize>,
    #[serde(default)]
    der: bool,
    /// Which credential set (default the first).
    #[serde(default)]
    set: usize,
}

pub(super) fn handle(req: &HttpRequest, bytes: &[u8], sh: &Shared) -> Reply {
    if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
        return Reply::code(403, "the admin API answers loopback clients only");
    }
    let path = req.path().strip_prefix(PREFIX).unwrap_or_default();
    let method = req.method().as_str();
    let query = req.query_string();
    let result = match (method, path) {
        ("GET", "/stats") => Ok(Reply::json(&sh.lock().observer.stats())),
        ("POST", "/stats/reset") => {
            sh.lock().observer.reset();
            Ok(ok())
        }
        ("GET", "/requests") => Ok(Reply::json(&sh.lock().observer.requests())),
        ("GET", "/devices") => web::Query::<Page>::from_query(query).map_err(bad).map(|p| {
            let st = sh.lock();
            let end = p
                .offset
                .saturating_add(p.limit.min(10_000))
                .min(st.population.len());
            let states: Vec<_> = (p.offset..end)
                .filter_map(|i| st.population.serial_at(i))
                .filter_map(|s| st.population.state(s))
                .collect();
            Reply::json(&serde_json::json!({
                "total": st.population.len(),
                "devices": states,
            }))
        }),
        ("GET", p) if p.starts_with("/devices/") => {
            let serial = &p["/devices/".len()..];
            sh.lock()
                .population
                .state(serial)
                .map(|s| Reply::json(&s))
                .ok_or_else(|| Reply::code(404, "unknown serial"))
        }
        ("GET", "/profiles") => Ok(Reply::json(&sh.lock().population.profiles())),
        ("GET", "/faults") => Ok(Reply::json(&sh.lock().faults.view())),
        ("DELETE", "/faults") => {
            sh.lock().faults.clear();
            Ok(ok())
        }
        ("POST", "/faults/response") => body::<ResponseFault>(bytes).and_then(|f| {
            let headers_ok = f.headers.iter().all(|(k, v)| {
                HeaderName::from_bytes(k.as_bytes()).is_ok() && HeaderValue::from_str(v).is_ok()
            });
            if !headers_ok {
                return Err(bad("invalid header name or value"));
            }
            if !(100..=999).contains(&f.status) {
                return Err(bad("status must be 100-999"));
            }
            sh.lock().faults.add_response(f);
            Ok(ok())
        }),
        ("POST", "/faults/rate") => body::<RateFault>(bytes).and_then(|f| {
            let headers_ok = f.headers.iter().all(|(k, v)| {
                HeaderName::from_bytes(k.as_bytes()).is_ok() && HeaderValue::from_str(v).is_ok()
            });
            if !headers_ok {
                return Err(bad("invalid header name or value"));
            }
            if !(100..=999).contains(&f.status) || f.percent > 100 {
                return Err(bad("status must be 100-999 and percent 0-100"));
            }
            sh.lock().faults.set_rate(f);
            Ok(ok())
        }),
        ("POST", "/faults/assign") => body::<AssignFault>(bytes).map(|f| {
            sh.lock().faults.add_assign(f);
            ok()
        }),
        ("POST", "/faults/latency") => body::<LatencyFault>(bytes).map(|f| {
            sh.lock().faults.set_latency(f);
            ok()
        }),
        ("POST", "/faults/repeat-cursor") => body::<Count>(bytes).map(|c| {
            sh.lock().faults.repeat_cursor(c.count);
            ok()
        }),
        ("POST", "/faults/beta-enrollment") => body::<Off>(bytes).map(|o| {
            sh.lock().faults.set_beta_enrollment_off(o.off);
            ok()
        }),
        ("POST", "/sessions") => match sh.issue_session() {
            Some(token) => Ok(Reply::json(
                &serde_json::json!({ "auth_session_token": token }),
            )),
            None => Err(Reply::code(500, "no randomness for a session token")),
        },
        ("POST", "/sessions/expire") => {
            sh.lock().sessions.expire_all();
            Ok(ok())
        }
        ("POST", "/events") => body::<SimEvent>(bytes).and_then(|e| {
            sh.apply(&e)
                .map(|serials| Reply::json(&serde_json::json!({ "serials": serials })))
                .map_err(bad)
        }),
        ("GET", "/clock") => Ok(clock(sh)),
        ("POST", "/clock") => body::<Advance>(bytes).and_then(|a| {
            if a.advance_seconds < 0 {
                return Err(bad("the clock only moves forward"));
            }
            sh.clock.advance(a.advance_seconds);
            Ok(clock(sh))
        }),
        ("GET", "/tokens") => {
            let sets: Vec<_> = sh.lock().sessions.credentials().cloned().collect();
            Ok(Reply::json(&sets))
        }
        ("POST", "/p7m") => make_p7m(sh, query, bytes),
        _ => Err(Reply::code(
            404,
            "unknown admin endpoint (see docs/simulator.md)",
        )),
    };
    result.unwrap_or_else(|e| e)
}

fn clock(sh: &Shared) -> Reply {
    Reply::json(&serde_json::json!({
        "now": super::devices::format_time(sh.clock.unix()),
        "unix": sh.clock.unix(),
    }))
}

fn make_p7m(sh: &Shared, query: &str, cert_pem: &[u8]) -> Result<Reply, Reply> {
    let q = web::Query::<P7mQuery>::from_query(query).map_err(bad)?;
    let cipher = match q.cipher.as_deref() {
        Some(name) => token_file::cipher_by_name(name).ok_or_else(|| {
            bad("unknown cipher (aes-128-cbc, aes-192-cbc, aes-256-cbc, des-ede3-cbc)")
        })?,
        None => Cipher::aes_128_cbc(),
    };
    let json = {
        let st = sh.lock();
        let set = st
            .sessions
            .credentials()
            .nth(q.set)
            .cloned()
            .ok_or_else(|| bad("no such credential set"))?;
        serde_json::to_string(&set).map_err(bad)?
    };
    let options = P7mOptions {
        cipher,
        wrap_json: q.wrap,
        ber: !q.der,
    };
    let text = token_file::token_file_with(&json, cert_pem, &options).map_err(bad)?;
    Ok(Reply::text(text, "application/pkcs7-mime"))
}
