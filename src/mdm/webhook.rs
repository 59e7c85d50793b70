//! The MicroMDM-compatible webhook events of the MDM service:
//! `checkin_event`s for check-ins, `acknowledge_event`s (topic
//! `mdm.Connect`) for every report. Encoded as NanoMDM encodes them (Go's
//! `encoding/json`: keys in order, no whitespace, `<`, `>` and `&` escaped,
//! RFC 3339 times with trailing zeros dropped) so consumers, and the
//! known answers of NanoMDM's tests, see the same bytes. Signed with
//! `X-Hmac-Signature`: base64 HMAC-SHA256 of the body.

use super::ids::{EnrollType, EnrollmentId, Identity};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

#[derive(Serialize)]
struct Ids<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct CheckinEvent<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    enrollment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<Ids<'a>>,
    raw_payload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_update_tally: Option<u64>,
    #[serde(skip_serializing_if = "str::is_empty")]
    udid: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    url_params: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct AcknowledgeEvent<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    command_uuid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    enrollment_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ids: Option<Ids<'a>>,
    raw_payload: String,
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    udid: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    url_params: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    acknowledge_event: Option<AcknowledgeEvent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkin_event: Option<CheckinEvent<'a>>,
    created_at: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    event_id: &'a str,
    topic: &'a str,
}

/// What an event says about the request it reports.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub ident: &'a Identity,
    /// The resolved enrollment ID, when the message had one.
    pub id: Option<&'a EnrollmentId>,
    /// The exact request body.
    pub raw: &'a [u8],
    /// The query parameters of the device's URL (first value per key).
    pub url_params: &'a BTreeMap<String, String>,
    pub event_id: &'a str,
    pub created_at: OffsetDateTime,
}

fn ids(id: Option<&EnrollmentId>) -> Option<Ids<'_>> {
    id.map(|id| Ids {
        id: &id.id,
        parent_id: id.parent.as_deref(),
        kind: EnrollType::as_str(id.kind),
    })
}

/// The event of a check-in of `message_type` (topic `mdm.<type>`);
/// `tally` only for `TokenUpdate`.
pub fn checkin_event(message_type: &str, req: &Request<'_>, tally: Option<u64>) -> String {
    let topic = format!("mdm.{message_type}");
    let env = Envelope {
        acknowledge_event: None,
        checkin_event: Some(CheckinEvent {
            enrollment_id: &req.ident.enrollment_id,
            ids: ids(req.id),
            raw_payload: openssl::base64::encode_block(req.raw),
            token_update_tally: tally,
            udid: &req.ident.udid,
            url_params: req.url_params,
        }),
        created_at: go_time(req.created_at),
        event_id: req.event_id,
        topic: &topic,
    };
    go_json(&env)
}

/// The `mdm.Connect` event of a report.
pub fn acknowledge_event(status: &str, command_uuid: &str, req: &Request<'_>) -> String {
    let env = Envelope {
        acknowledge_event: Some(AcknowledgeEvent {
            command_uuid,
            enrollment_id: &req.ident.enrollment_id,
            ids: ids(req.id),
            raw_payload: openssl::base64::encode_block(req.raw),
            status,
            udid: &req.ident.udid,
            url_params: req.url_params,
        }),
        checkin_event: None,
        created_at: go_time(req.created_at),
        event_id: req.event_id,
        topic: "mdm.Connect",
    };
    go_json(&env)
}

/// JSON as Go's `encoding/json` writes it: serde's compact form with the
/// characters Go escapes for HTML safety escaped. They can only occur
/// inside strings, so replacing them everywhere is exact.
fn go_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A time as Go's `time.Time` marshals it in UTC (RFC 3339 with
/// nanoseconds, trailing zeros dropped). `None`-like zero times are
/// depd's own and never sent; tests use [`ZERO_TIME`].
pub fn go_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// `X-Hmac-Signature`: base64 of HMAC-SHA256(key, body).
pub fn signature(key: &[u8], body: &[u8]) -> Result<String, openssl::error::ErrorStack> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
    signer.update(body)?;
    Ok(openssl::base64::encode_block(&signer.sign_to_vec()?))
}

#[cfg(test)]
mod tests;
