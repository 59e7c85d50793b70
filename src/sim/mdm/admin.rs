//! The admin API of the simulated MDM devices, under `/_sim/mdm/`
//! (loopback only, like the rest of `/_sim/`). A fleet is made from the
//! first N devices of depsim's DEP population; its devices act when told.
//!
//! | call | does |
//! |---|---|
//! | `POST /_sim/mdm/fleet` `{"devices": N, "seed"?: S}` | makes the fleet (replacing any); answers its CA |
//! | `GET /_sim/mdm/ca` | the CA certificate (PEM): the MDM server's `ca_file` |
//! | `GET /_sim/mdm/devices` | each device: UDID, serial, state |
//! | `POST /_sim/mdm/enroll` `{"udid"?: U, "url"?: URL}` | enrolls one device or all, at the URL of their assigned profile unless `url` |
//! | `POST /_sim/mdm/connect` `{"udid"?: U}` | one device or all connect and answer their commands |
//! | `POST /_sim/mdm/checkout` `{"udid": U}` | the device checks out |
//! | `PUT /_sim/mdm/not_now` `{"percent": P}` | share of commands first answered NotNow |

use super::MdmFleet;
use crate::sim::Shared;
use crate::sim::reply::Reply;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(in crate::sim) const PREFIX: &str = "/_sim/mdm";

#[derive(Deserialize)]
struct FleetBody {
    devices: usize,
    #[serde(default = "one")]
    seed: u64,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize, Default)]
struct Target {
    udid: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct NotNow {
    percent: u8,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| Reply::code(400, &format!("invalid JSON body: {e}")))
}

fn fleet(shared: &Shared) -> Result<Arc<MdmFleet>, Reply> {
    shared
        .mdm_fleet()
        .ok_or_else(|| Reply::code(409, "no fleet: POST /_sim/mdm/fleet first"))
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

/// Which devices a call is about: one, or all.
fn targets(fleet: &MdmFleet, udid: Option<&str>) -> Result<Vec<String>, Reply> {
    match udid {
        Some(u) if fleet.device(u).is_some() => Ok(vec![u.to_owned()]),
        Some(u) => Err(Reply::code(404, &format!("no simulated device {u:?}"))),
        None => Ok(fleet.devices().iter().map(|d| d.udid.clone()).collect()),
    }
}

pub(in crate::sim) async fn handle(
    method: &str,
    path: &str,
    body: &[u8],
    shared: &Shared,
) -> Reply {
    match (method, path.strip_prefix(PREFIX).unwrap_or("")) {
        ("POST", "/fleet") => {
            let b: FleetBody = match parse(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let devices = shared.fleet_devices(b.devices);
            match MdmFleet::generate(b.seed, &devices) {
                Ok(f) => {
                    let ca = String::from_utf8_lossy(&f.ca_pem()).into_owned();
                    shared.set_mdm_fleet(Arc::new(f));
                    Reply::json(&json!({ "devices": devices.len(), "ca_pem": ca }))
                }
                Err(e) => Reply::code(500, &e.to_string()),
            }
        }
        ("GET", "/ca") => match fleet(shared) {
            Ok(f) => Reply::json(&json!({ "ca_pem": String::from_utf8_lossy(&f.ca_pem()) })),
            Err(r) => r,
        },
        ("GET", "/devices") => match fleet(shared) {
            Ok(f) => Reply::json(&json!({ "devices": f.devices().iter().map(|d| {
                let st = d.state();
                json!({
                    "udid": d.udid, "serial_number": d.serial_number, "model": d.model,
                    "enrolled": st.enrolled, "checked_out": st.checked_out,
                    "server_url": st.server_url, "commands_answered": st.commands_answered,
                    "not_now_answered": st.not_now_answered,
                })
            }).collect::<Vec<_>>() })),
            Err(r) => r,
        },
        ("PUT", "/not_now") => {
            let b: NotNow = match parse(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            match fleet(shared) {
                Ok(f) => {
                    f.set_not_now_percent(b.percent);
                    Reply::json(&json!({ "ok": true }))
                }
                Err(r) => r,
            }
        }
        ("POST", op @ ("/enroll" | "/connect" | "/checkout")) => {
            let t: Target = if body.is_empty() {
                Target::default()
            } else {
                match parse(body) {
                    Ok(t) => t,
                    Err(r) => return r,
                }
            };
            let f = match fleet(shared) {
                Ok(f) => f,
                Err(r) => return r,
            };
            if op == "/checkout" && t.udid.is_none() {
                return Reply::code(400, "checkout needs a udid");
            }
            let ids = match targets(&f, t.udid.as_deref()) {
                Ok(ids) => ids,
                Err(r) => return r,
            };
            let client = client();
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for u in ids {
                let outcome = match op {
                    "/enroll" => {
                        let serial = f
                            .device(&u)
                            .map(|d| d.serial_number.clone())
                            .unwrap_or_default();
                        let url = t.url.clone().or_else(|| shared.profile_url(&serial));
                        match url {
                            Some(url) => f
                                .enroll(&client, &u, &url)
                                .await
                                .map(|()| json!({ "udid": u })),
                            None => {
                                failed.push(json!({ "udid": u, "error": "no enrollment profile assigned and no url given" }));
                                continue;
                            }
                        }
                    }
                    "/connect" => f.connect(&client, &u).await.map(
                        |r| json!({ "udid": u, "answered": r.answered, "not_now": r.not_now }),
                    ),
                    _ => f
                        .check_out(&client, &u)
                        .await
                        .map(|()| json!({ "udid": u })),
                };
                match outcome {
                    Ok(v) => done.push(v),
                    Err(e) => failed.push(json!({ "udid": u, "error": e.to_string() })),
                }
            }
            Reply::json(&json!({ "done": done, "failed": failed }))
        }
        _ => Reply::code(404, "no such /_sim/mdm call"),
    }
}
