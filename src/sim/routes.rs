//! Apple's endpoints. One dispatcher sees every request first, so the
//! request log, counts, latency and canned faults cover all paths alike.

use super::cursor::{Cursor, CursorKind};
use super::devices::{DeviceJson, ObjectWriter, format_time};
use super::faults::AssignOutcome;
use super::observe::{BODY_LOG_LIMIT, LoggedRequest};
use super::reply::{JSON, Reply};
use super::sessions::{self, SignedRequest};
use super::{Shared, State, admin};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod device_ops;
use device_ops::*;

const MAX_SERIALS: usize = 1000;
const PAGE_DEFAULT: usize = 100;
const PAGE_MAX: usize = 1000;

pub(super) async fn dispatch(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if req.path().starts_with(super::mdm::admin::PREFIX) {
        if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
            return Reply::code(403, "the admin API answers loopback clients only").into_response();
        }
        let method = req.method().as_str().to_owned();
        return super::mdm::admin::handle(&method, req.path(), &body, &shared)
            .await
            .into_response();
    }
    if req.path().starts_with(super::apns::admin::PREFIX) {
        if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
            return Reply::code(403, "the admin API answers loopback clients only").into_response();
        }
        let method = req.method().as_str().to_owned();
        return super::apns::admin::handle(&method, req.path(), &body, &shared).into_response();
    }
    if admin::is_admin(req.path()) {
        return admin::handle(&req, &body, &shared).into_response();
    }
    let Some(path) = req
        .path()
        .strip_prefix(shared.prefix.as_str())
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
    else {
        return Reply::code(404, "NOT_FOUND").into_response();
    };
    let method = req.method().as_str().to_owned();
    let arrived = std::time::Instant::now();
    let latency = {
        let mut st = shared.lock();
        st.observer.arrived(&path, arrived);
        st.observer.log(logged(&req, &path, &body));
        st.faults.latency(&path)
    };
    if !latency.is_zero() {
        actix_web::rt::time::sleep(latency).await;
    }
    let reply = {
        let mut st = shared.lock();
        let reply = match st.faults.take_response(&method, &path) {
            Some(fault) => {
                let retry_after = fault
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok());
                st.observer
                    .fault_served(&path, retry_after, std::time::Instant::now());
                Reply::fault(fault)
            }
            None => apple(&mut st, &shared, &req, &path, &body),
        };
        st.observer.count(&method, &path, reply.status);
        reply
    };
    reply.into_response()
}

fn logged(req: &HttpRequest, path: &str, body: &[u8]) -> LoggedRequest {
    LoggedRequest {
        method: req.method().as_str().to_owned(),
        path: path.to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body[..body.len().min(BODY_LOG_LIMIT)]).into_owned(),
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn apple(st: &mut State, sh: &Shared, req: &HttpRequest, path: &str, body: &[u8]) -> Reply {
    if header(req, "user-agent").is_none_or(|ua| ua.trim().is_empty()) {
        return Reply::code(400, "USER_AGENT_MISSING");
    }
    let protocol = header(req, "x-server-protocol-version")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let now = sh.clock.unix();
    let method = req.method().as_str();
    if path == "/session" {
        if method != "GET" {
            return Reply::code(405, "METHOD_NOT_ALLOWED");
        }
        return open_session(st, req, now);
    }
    let Some(token) = header(req, "x-adm-auth-session").filter(|t| !t.is_empty()) else {
        return Reply::reject(sessions::UNAUTHORIZED);
    };
    if let Err(r) = st.sessions.check(token, now) {
        return Reply::reject(r);
    }
    let ctx = Ctx {
        st: &mut *st,
        sh,
        protocol,
        now,
    };
    let mut reply = route(ctx, method, path, req.query_string(), body);
    if sh.rotate {
        match new_token() {
            Some(fresh) => {
                st.sessions.rotate(token, fresh.clone(), now);
                reply.headers.push(("X-ADM-Auth-Session".into(), fresh));
            }
            None => return Reply::code(500, "INTERNAL_ERROR"),
        }
    }
    reply
}

pub(super) fn new_token() -> Option<String> {
    let mut bytes = [0u8; 24];
    openssl::rand::rand_bytes(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

fn open_session(st: &mut State, req: &HttpRequest, now: i64) -> Reply {
    if header(req, "content-type") != Some(JSON) {
        return Reply::code(400, "INVALID_CONTENT_TYPE");
    }
    let conn = req.connection_info();
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}://{}{}", conn.scheme(), conn.host(), path_and_query);
    let signed = SignedRequest {
        method: req.method().as_str(),
        url: &url,
        authorization: header(req, "authorization"),
    };
    if let Err(r) = st.sessions.verify(&signed, now) {
        return Reply::reject(r);
    }
    let Some(token) = new_token() else {
        return Reply::code(500, "INTERNAL_ERROR");
    };
    st.sessions.issue(token.clone(), now);
    Reply::json(&serde_json::json!({ "auth_session_token": token }))
}

struct Ctx<'a> {
    st: &'a mut State,
    sh: &'a Shared,
    protocol: u32,
    now: i64,
}

fn route(ctx: Ctx<'_>, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
    let result = match (method, path) {
        ("GET", "/account") => Ok(Reply::raw_json(ctx.sh.account_json.clone())),
        ("POST", "/server/devices") => fetch(ctx, body),
        ("POST", "/devices/sync") => sync(ctx, body),
        ("POST", "/devices") => details(ctx, body),
        ("POST", "/devices/disown") => disown(ctx, body),
        ("POST", "/device/activationlock") => activation_lock(ctx, body),
        ("POST", "/profile") => define_profile(ctx, body),
        ("GET", "/profile") => get_profile(ctx, query),
        ("POST" | "PUT", "/profile/devices") => assign(ctx, body),
        ("DELETE", "/profile/devices") => remove_profile(ctx, body),
        ("GET", "/os-beta-enrollment/tokens") => Ok(beta_tokens(ctx)),
        ("GET" | "POST" | "DELETE", "/account-driven-enrollment/profile") => {
            ade_profile(ctx, method, body)
        }
        (
            _,
            "/account"
            | "/server/devices"
            | "/devices/sync"
            | "/devices"
            | "/devices/disown"
            | "/device/activationlock"
            | "/profile"
            | "/profile/devices"
            | "/os-beta-enrollment/tokens"
            | "/account-driven-enrollment/profile",
        ) => Err(Reply::code(405, "METHOD_NOT_ALLOWED")),
        _ => Err(Reply::code(404, "NOT_FOUND")),
    };
    result.unwrap_or_else(|e| e)
}

type Answer = Result<Reply, Reply>;

fn bad(code: &str) -> Reply {
    Reply::code(400, code)
}

/// An absent or blank body reads as `{}`.
fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| bad("MALFORMED_REQUEST_BODY"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CursorBody {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// Apple's default page is 100; above the maximum it clamps to 1000.
fn page_limit(limit: Option<i64>) -> usize {
    match limit {
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(PAGE_MAX).min(PAGE_MAX),
        _ => PAGE_DEFAULT,
    }
}

/// A fetch or sync page, written directly: the same bytes serde would
/// write for `{cursor, devices, fetched_until, more_to_follow}`, without
/// its string escaper, at about 300 bytes a device.
fn page(cursor: &str, devices: &[DeviceJson<'_>], now: i64, more_to_follow: bool) -> Reply {
    let mut body = Vec::with_capacity(128 + devices.len() * 400);
    let mut w = ObjectWriter::new(&mut body);
    w.str("cursor", cursor);
    w.raw("devices", |out| {
        out.push(b'[');
        for (i, d) in devices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            d.write_json(out);
        }
        out.push(b']');
    });
    w.str("fetched_until", format_time(now).as_str());
    w.raw("more_to_follow", |out| {
        out.extend_from_slice(if more_to_follow { b"true" } else { b"false" });
    });
    w.end();
    Reply::raw_json(body)
}

/// The answer of the repeated-cursor fault: no progress, more to follow.
fn repeated(cursor: String, now: i64) -> Reply {
    page(&cursor, &[], now, true)
}

fn fetch(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: CursorBody = parse(body)?;
    let codec = &ctx.sh.codec;
    let given = codec
        .for_fetch(req.cursor.as_deref(), ctx.now)
        .map_err(|e| bad(e.code()))?;
    let pop = &ctx.st.population;
    let start = given.unwrap_or(Cursor {
        kind: CursorKind::Fetch,
        position: 0,
        seq: pop.event_count(),
        issued: ctx.now,
    });
    if ctx.st.faults.take_repeat_cursor() {
        let cursor = req.cursor.clone().unwrap_or_else(|| codec.encode(&start));
        return Ok(repeated(cursor, ctx.now));
    }
    let pop = &ctx.st.population;
    let (devices, next) = pop.fetch_page(start.position, page_limit(req.limit), ctx.protocol);
    let more = next < pop.len() as u64;
    // The last page hands out a sync cursor: events since the fetch began.
    let cursor = Cursor {
        kind: if more {
            CursorKind::Fetch
        } else {
            CursorKind::Sync
        },
        position: next,
        seq: start.seq,
        issued: ctx.now,
    };
    Ok(page(&codec.encode(&cursor), &devices, ctx.now, more))
}

fn sync(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: CursorBody = parse(body)?;
    let codec = &ctx.sh.codec;
    let given = codec
        .for_sync(req.cursor.as_deref(), ctx.now)
        .map_err(|e| bad(e.code()))?;
    if ctx.st.faults.take_repeat_cursor() {
        return Ok(repeated(req.cursor.unwrap_or_default(), ctx.now));
    }
    let pop = &ctx.st.population;
    let (devices, next) = pop.sync_page(given.seq, page_limit(req.limit), ctx.protocol);
    let cursor = Cursor {
        kind: CursorKind::Sync,
        position: 0,
        seq: next,
        issued: ctx.now,
    };
    Ok(page(
        &codec.encode(&cursor),
        &devices,
        ctx.now,
        next < pop.event_count(),
    ))
}

#[cfg(test)]
mod tests;
