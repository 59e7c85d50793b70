//! The endpoints that act on devices and profiles: details, disown,
//! Activation Lock, profile definition and assignment, removal, and the
//! smaller account endpoints.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SerialsBody {
    devices: Vec<String>,
    profile_uuid: Option<String>,
}

pub(super) fn serials(body: &SerialsBody) -> Result<&[String], Reply> {
    match body.devices.len() {
        0 => Err(bad("DEVICE_ID_REQUIRED")),
        n if n > MAX_SERIALS => Err(bad("DEVICE_ID_LIMIT_EXCEEDED")),
        _ => Ok(&body.devices),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Detail<'a> {
    Found(Box<DeviceJson<'a>>),
    Missing { response_status: &'static str },
}

pub(super) fn details(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: SerialsBody = parse(body)?;
    let pop = &ctx.st.population;
    let devices: BTreeMap<&str, Detail<'_>> = serials(&req)?
        .iter()
        .map(|s| {
            let d = pop.details(s, ctx.protocol).map_or(
                Detail::Missing {
                    response_status: "NOT_FOUND",
                },
                |found| Detail::Found(Box::new(found)),
            );
            (s.as_str(), d)
        })
        .collect();
    Ok(Reply::json(&serde_json::json!({ "devices": devices })))
}

pub(super) fn status_of<E>(r: Result<(), E>) -> &'static str {
    if r.is_ok() {
        "SUCCESS"
    } else {
        "NOT_ACCESSIBLE"
    }
}

pub(super) fn disown(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: SerialsBody = parse(body)?;
    let devices: BTreeMap<&str, &str> = serials(&req)?
        .iter()
        .map(|s| (s.as_str(), status_of(ctx.st.population.disown(s, ctx.now))))
        .collect();
    Ok(Reply::json(&serde_json::json!({ "devices": devices })))
}

/// Apple accepts the lock with or without `escrow_key` and
/// `lost_message`; the simulator only needs the serial.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ActivationLockBody {
    device: String,
}

pub(super) fn activation_lock(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    use crate::sim::devices::Refusal;
    let req: ActivationLockBody = parse(body)?;
    if req.device.is_empty() {
        return Err(bad("DEVICE_ID_REQUIRED"));
    }
    let status = match ctx.st.population.activation_lock(&req.device) {
        Ok(()) => "SUCCESS",
        Err(Refusal::NotAccessible) => "NOT_ACCESSIBLE",
        Err(Refusal::AlreadyLocked) => "DEVICE_ALREADY_LOCKED",
        Err(Refusal::NotSupported) => "DEVICE_NOT_SUPPORTED",
    };
    Ok(Reply::json(&serde_json::json!({
        "serial_number": req.device,
        "response_status": status,
    })))
}

#[derive(Serialize)]
pub(super) struct AssignAnswer {
    profile_uuid: String,
    devices: BTreeMap<String, &'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

/// Assigns `profile` to each serial: forced results from faults first
/// (`THROTTLED` is `FAILED` below protocol 9; `retry_after_seconds` only
/// from 10), else `SUCCESS` or `NOT_ACCESSIBLE`.
pub(super) fn assign_each(
    ctx: &mut Ctx<'_>,
    profile: u32,
    uuid: &str,
    serials: &[String],
) -> AssignAnswer {
    let mut answer = AssignAnswer {
        profile_uuid: uuid.to_owned(),
        devices: BTreeMap::new(),
        retry_after_seconds: None,
    };
    for serial in serials {
        let result = match ctx.st.faults.take_assign(serial) {
            Some((AssignOutcome::Throttled, retry)) if ctx.protocol >= 9 => {
                if ctx.protocol >= 10
                    && let Some(r) = retry
                {
                    answer.retry_after_seconds =
                        Some(answer.retry_after_seconds.map_or(r, |a| a.max(r)));
                }
                "THROTTLED"
            }
            Some(_) => "FAILED",
            None => status_of(ctx.st.population.assign(serial, profile, ctx.now)),
        };
        answer.devices.insert(serial.clone(), result);
    }
    answer
}

pub(super) fn define_profile(mut ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let mut profile: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| bad("MALFORMED_REQUEST_BODY"))?;
    let nonempty = |p: &serde_json::Map<_, serde_json::Value>, key: &str| {
        p.get(key)
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.trim().is_empty())
    };
    if !nonempty(&profile, "profile_name") {
        return Err(bad("CONFIG_NAME_REQUIRED"));
    }
    if !nonempty(&profile, "url") {
        return Err(bad("CONFIG_URL_REQUIRED"));
    }
    let flags = [
        "allow_pairing",
        "is_supervised",
        "is_multi_user",
        "is_mandatory",
        "await_device_configured",
        "is_mdm_removable",
        "auto_advance_setup",
    ];
    if flags
        .iter()
        .any(|f| profile.get(*f).is_some_and(|v| !v.is_boolean()))
    {
        return Err(bad("FLAGS_INVALID"));
    }
    let serials: Vec<String> = match profile.remove("devices") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v).map_err(|_| bad("MALFORMED_REQUEST_BODY"))?,
    };
    if serials.len() > MAX_SERIALS {
        return Err(bad("DEVICE_ID_LIMIT_EXCEEDED"));
    }
    let id = ctx.st.population.define_profile(profile);
    let uuid = ctx
        .st
        .population
        .profile_uuid(id)
        .unwrap_or_default()
        .to_owned();
    let answer = assign_each(&mut ctx, id, &uuid, &serials);
    Ok(Reply::json(&answer))
}

#[derive(Debug, Deserialize)]
pub(super) struct ProfileQuery {
    profile_uuid: Option<String>,
}

pub(super) fn get_profile(ctx: Ctx<'_>, query: &str) -> Answer {
    let q = web::Query::<ProfileQuery>::from_query(query).map_err(|_| bad("MALFORMED_REQUEST"))?;
    let uuid = q
        .profile_uuid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("PROFILE_UUID_REQUIRED"))?;
    let profile = ctx
        .st
        .population
        .profile(uuid)
        .ok_or_else(|| Reply::code(404, "NOT_FOUND"))?;
    Ok(Reply::json(&profile.body))
}

pub(super) fn assign(mut ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: SerialsBody = parse(body)?;
    let uuid = req
        .profile_uuid
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| bad("PROFILE_UUID_REQUIRED"))?;
    let list = serials(&req)?;
    let id = ctx
        .st
        .population
        .profile_id(uuid)
        .ok_or_else(|| bad("PROFILE_NOT_FOUND"))?;
    let answer = assign_each(&mut ctx, id, uuid, list);
    Ok(Reply::json(&answer))
}

pub(super) fn remove_profile(ctx: Ctx<'_>, body: &[u8]) -> Answer {
    let req: SerialsBody = parse(body)?;
    let devices: BTreeMap<&str, &str> = serials(&req)?
        .iter()
        .map(|s| {
            (
                s.as_str(),
                status_of(ctx.st.population.remove_profile(s, ctx.now)),
            )
        })
        .collect();
    Ok(Reply::json(&serde_json::json!({ "devices": devices })))
}

pub(super) fn beta_tokens(ctx: Ctx<'_>) -> Reply {
    if ctx.st.faults.beta_enrollment_off() {
        return Reply::code(403, "APPLE_SEED_FOR_IT_TURNED_OFF");
    }
    Reply::raw_json(ctx.sh.beta_json.clone())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AdeBody {
    mdm_service_discovery_url: String,
}

pub(super) fn ade_profile(ctx: Ctx<'_>, method: &str, body: &[u8]) -> Answer {
    match method {
        "POST" => {
            let req: AdeBody = parse(body)?;
            if req.mdm_service_discovery_url.trim().is_empty() {
                return Err(bad("MDM_SERVICE_DISCOVERY_URL_REQUIRED"));
            }
            ctx.st.ade_url = Some(req.mdm_service_discovery_url.clone());
            Ok(Reply::json(&serde_json::json!({
                "mdm_service_discovery_url": req.mdm_service_discovery_url
            })))
        }
        "DELETE" => {
            ctx.st.ade_url = None;
            Ok(Reply::json(&serde_json::json!({})))
        }
        _ => Ok(match &ctx.st.ade_url {
            Some(url) => Reply::json(&serde_json::json!({ "mdm_service_discovery_url": url })),
            None => Reply::json(&serde_json::json!({})),
        }),
    }
}
