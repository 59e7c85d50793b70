//! Apple's DEP JSON, as it travels. Every field is optional on input
//! (`#[serde(default)]`) and unknown keys are ignored, so a field Apple adds
//! or omits never breaks depd. The devices of a page also keep their JSON
//! text exactly as Apple sent it ([`Device::raw`]), so nothing Apple sends
//! is lost from the inventory (and the webhook passes the page's text on).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Account {
    pub server_name: String,
    pub server_uuid: String,
    pub admin_id: String,
    pub facilitator_id: Option<String>,
    pub org_name: String,
    pub org_email: String,
    pub org_phone: String,
    pub org_address: String,
    pub org_type: Option<String>,
    pub org_version: Option<String>,
    pub org_id: Option<String>,
    pub org_id_hash: Option<String>,
    pub urls: Vec<AccountUrl>,
}

impl Account {
    /// The page-size maximum Apple advertises for an endpoint, if any.
    pub fn limit_maximum(&self, uri: &str) -> Option<u32> {
        self.urls
            .iter()
            .find(|u| u.uri == uri)
            .and_then(|u| u.limit.as_ref())
            .map(|l| l.maximum)
            .filter(|m| *m > 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountUrl {
    pub uri: String,
    pub http_method: Vec<String>,
    pub limit: Option<Limit>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limit {
    pub default: u32,
    pub maximum: u32,
}

/// Body of `POST /server/devices` and `POST /devices/sync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CursorRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One page of fetched or synced devices. Read from JSON, each device
/// carries its own text as sent ([`Device::raw`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, try_from = "PageWire")]
pub struct DevicePage {
    pub cursor: String,
    pub devices: Vec<Device>,
    pub fetched_until: String,
    pub more_to_follow: bool,
}

/// A page as read: each device first as its JSON text, then parsed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PageWire {
    cursor: String,
    devices: Vec<Box<RawValue>>,
    fetched_until: String,
    more_to_follow: bool,
}

impl PageWire {
    /// The page, each device read from its text by `parse`.
    fn into_page(
        self,
        parse: impl Fn(&str) -> Result<Device, serde_json::Error>,
    ) -> Result<DevicePage, serde_json::Error> {
        let devices = self
            .devices
            .into_iter()
            .map(|raw| {
                // A struct also reads from a JSON array; a device is an object.
                if !raw.get().starts_with('{') {
                    return Err(serde::de::Error::custom(format!(
                        "a device is not a JSON object: {:.40}",
                        raw.get()
                    )));
                }
                let mut device = parse(raw.get())?;
                device.raw = Some(raw.into());
                Ok(device)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(DevicePage {
            cursor: self.cursor,
            devices,
            fetched_until: self.fetched_until,
            more_to_follow: self.more_to_follow,
        })
    }
}

impl TryFrom<PageWire> for DevicePage {
    type Error = serde_json::Error;

    fn try_from(wire: PageWire) -> Result<Self, Self::Error> {
        wire.into_page(|text| serde_json::from_str::<Device>(text))
    }
}

/// A [`DevicePage`] whose devices have only the fields depd's sync reads
/// (`serial_number`, `op_type`, `op_date`, `profile_status`,
/// `profile_uuid`) parsed, and where each device's text sits in the page's
/// text ([`Device::span`]): the inventory and the webhook use the text, so
/// the dozen other strings per device (about 40 % of the allocator's work
/// in a 10,000-name cycle), and a copy of each device's text, were made
/// for nothing. Other fields are not checked either.
#[derive(Debug, Default)]
pub struct SyncPage(pub DevicePage);

/// A page as sync reads it: each device borrowed from the page's text.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SyncPageWire<'a> {
    cursor: String,
    #[serde(borrow)]
    devices: Vec<&'a RawValue>,
    fetched_until: String,
    more_to_follow: bool,
}

impl SyncPage {
    /// Reads a fetch or sync page from its text.
    pub fn parse(text: &str) -> Result<SyncPage, serde_json::Error> {
        let wire: SyncPageWire<'_> = serde_json::from_str(text)?;
        let base = text.as_ptr() as usize;
        let devices = wire
            .devices
            .into_iter()
            .map(|raw| {
                let own = raw.get();
                // A struct also reads from a JSON array; a device is an object.
                if !own.starts_with('{') {
                    return Err(serde::de::Error::custom(format!(
                        "a device is not a JSON object: {own:.40}"
                    )));
                }
                // `own` is a slice of `text` (a borrowed raw value).
                let span = u32::try_from(own.as_ptr() as usize - base)
                    .ok()
                    .zip(u32::try_from(own.len()).ok())
                    .filter(|(start, len)| start.checked_add(*len).is_some())
                    .ok_or_else(|| serde::de::Error::custom("a page over 4 GiB"))?;
                let f: SyncFields = serde_json::from_str(own)?;
                Ok(Device {
                    serial_number: f.serial_number,
                    op_type: f.op_type,
                    op_date: f.op_date,
                    profile_status: f.profile_status,
                    profile_uuid: f.profile_uuid,
                    span: Some(span),
                    ..Device::default()
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(SyncPage(DevicePage {
            cursor: wire.cursor,
            devices,
            fetched_until: wire.fetched_until,
            more_to_follow: wire.more_to_follow,
        }))
    }
}

/// The fields of a device that sync reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SyncFields {
    serial_number: String,
    op_type: Option<String>,
    op_date: Option<String>,
    profile_status: Option<String>,
    profile_uuid: Option<String>,
}

/// A device as Apple describes it (fetch, sync and details). Keys depd
/// does not know are not fields; they are kept in [`Device::raw`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Device {
    pub serial_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_assign_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_push_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_assigned_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_assigned_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdm_migration_deadline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<String>,
    /// The device's JSON object exactly as Apple sent it, keys this
    /// version of depd does not know included, when the device came in a
    /// [`DevicePage`]. Not part of the device's own JSON: serialising a
    /// `Device` writes its fields.
    #[serde(skip)]
    pub raw: Option<Box<str>>,
    /// Where the device's JSON object sits in its page's text (start and
    /// length in bytes), when it was read with [`SyncPage::parse`], which
    /// does not copy it into [`Device::raw`].
    #[serde(skip)]
    pub span: Option<(u32, u32)>,
}

impl Device {
    /// The device's JSON text as Apple sent it, when known: its own
    /// ([`Device::raw`]) or its span of `page`, the text of the page it
    /// came in.
    pub fn text<'a>(&'a self, page: Option<&'a str>) -> Option<&'a str> {
        if let Some(raw) = &self.raw {
            return Some(raw);
        }
        let (start, len) = self.span?;
        page?.get(start as usize..(start as usize).checked_add(len as usize)?)
    }
}

/// `POST /devices` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SerialsRequest {
    pub devices: Vec<String>,
}

/// `POST /devices` answer: details per serial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceDetails {
    pub devices: BTreeMap<String, Device>,
}

/// Answers that give one status per serial (disown, remove profile).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceStatuses {
    pub devices: BTreeMap<String, String>,
}

/// `POST /device/activationlock` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivationLockRequest {
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escrow_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationLockResponse {
    pub serial_number: String,
    pub response_status: String,
}

/// `POST /profile` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DefineProfileResponse {
    pub profile_uuid: String,
    pub devices: BTreeMap<String, String>,
}

/// `POST /profile/devices` request (assign).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssignRequest {
    pub profile_uuid: String,
    pub devices: Vec<String>,
}

/// `POST /profile/devices` answer: per serial `SUCCESS`, `NOT_ACCESSIBLE`,
/// `FAILED` or (protocol 9+) `THROTTLED`, with `retry_after_seconds`
/// (protocol 10+).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AssignResponse {
    pub profile_uuid: String,
    pub devices: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// `/session` answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SessionResponse {
    pub auth_session_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_kept_on_devices_and_ignored_elsewhere() {
        let page: DevicePage = serde_json::from_str(
            r#"{"cursor":"c1","more_to_follow":true,"future":1,
                "devices":[{"serial_number":"C02X","op_type":"added","new_field":{"a":1}}]}"#,
        )
        .expect("page");
        assert_eq!(page.cursor, "c1");
        assert!(page.more_to_follow);
        assert_eq!(page.fetched_until, "");
        let d = &page.devices[0];
        assert_eq!(d.op_type.as_deref(), Some("added"));
        assert_eq!(d.model, None);
        assert_eq!(
            d.raw.as_deref(),
            Some(r#"{"serial_number":"C02X","op_type":"added","new_field":{"a":1}}"#)
        );
        let back = serde_json::to_value(d).expect("json");
        assert_eq!(back["serial_number"], "C02X");
        assert!(back.get("model").is_none());
        assert!(back.get("new_field").is_none());
        // A device read on its own (device details) has no page text.
        let alone: Device = serde_json::from_str(r#"{"serial_number":"C02Y"}"#).expect("device");
        assert_eq!(alone.raw, None);
        // A device that is not an object is refused with the page.
        for devices in ["[1]", r#"[["A","added"]]"#, "[[]]", "[null]"] {
            let text = format!(r#"{{"cursor":"c","devices":{devices}}}"#);
            let err = serde_json::from_str::<DevicePage>(&text).expect_err(devices);
            assert!(err.to_string().contains("not a JSON object"), "{err}");
        }
        // Whitespace around a device is not part of its text.
        let page: DevicePage =
            serde_json::from_str("{\"devices\":[ \n {\"serial_number\":\"A\"} \n]}").expect("page");
        assert_eq!(
            page.devices[0].raw.as_deref(),
            Some(r#"{"serial_number":"A"}"#)
        );
    }

    #[test]
    fn sync_pages_parse_what_sync_reads_and_keep_the_text() {
        let device = r#"{"serial_number":"C0\u0032X","model":"Mac","op_type":"modified","op_date":"2026-11-24T10:00:00Z","profile_status":"removed","profile_uuid":"P1","color":5,"new_field":[1]}"#;
        let text = format!(
            r#"{{"cursor":"c2","devices":[{device}],"fetched_until":"t","more_to_follow":true}}"#
        );
        let SyncPage(page) = SyncPage::parse(&text).expect("page");
        assert_eq!((page.cursor.as_str(), page.more_to_follow), ("c2", true));
        assert_eq!(page.fetched_until, "t");
        let d = &page.devices[0];
        // Escapes are decoded.
        assert_eq!(d.serial_number, "C02X");
        assert_eq!(d.op_type.as_deref(), Some("modified"));
        assert_eq!(d.op_date.as_deref(), Some("2026-11-24T10:00:00Z"));
        assert_eq!(d.profile_status.as_deref(), Some("removed"));
        assert_eq!(d.profile_uuid.as_deref(), Some("P1"));
        // The rest is only in the text, which is Apple's, unchecked, and
        // stays in the page's text.
        assert_eq!(d.model, None);
        assert_eq!(d.raw, None);
        assert_eq!(d.text(Some(&text)), Some(device));
        assert_eq!(d.text(None), None);
        // The typed page checks every field it knows.
        assert!(serde_json::from_str::<DevicePage>(&text).is_err());
        // Absent fields are fine; a device that is not an object, or a
        // field sync reads with the wrong type, fails the page.
        let SyncPage(page) =
            SyncPage::parse(r#"{"devices":[{"serial_number":"A"}]}"#).expect("page");
        assert_eq!(page.devices[0].op_type, None);
        for devices in ["[1]", "[[]]", r#"[{"serial_number":"A","op_type":3}]"#] {
            let text = format!(r#"{{"cursor":"c","devices":{devices}}}"#);
            assert!(SyncPage::parse(&text).is_err(), "{devices}");
        }
        // Spans of devices among whitespace, escapes and other devices.
        let text = "{\"devices\":[ \n {\"serial_number\":\"A\\\"\"} ,{\"serial_number\":\"B\",\"x\":[{}]}\n],\"cursor\":\"c\"}";
        let SyncPage(page) = SyncPage::parse(text).expect("page");
        assert_eq!(page.devices[0].serial_number, "A\"");
        assert_eq!(
            page.devices[0].text(Some(text)),
            Some(r#"{"serial_number":"A\""}"#)
        );
        assert_eq!(
            page.devices[1].text(Some(text)),
            Some(r#"{"serial_number":"B","x":[{}]}"#)
        );
    }

    #[test]
    fn account_limits() {
        let a: Account = serde_json::from_str(
            r#"{"server_uuid":"U","urls":[{"uri":"/server/devices","http_method":["POST"],"limit":{"default":100,"maximum":1000}},{"uri":"/devices"}]}"#,
        )
        .expect("account");
        assert_eq!(a.limit_maximum("/server/devices"), Some(1000));
        assert_eq!(a.limit_maximum("/devices"), None);
        assert_eq!(a.limit_maximum("/nope"), None);
    }

    #[test]
    fn assign_response_with_and_without_retry() {
        let r: AssignResponse = serde_json::from_str(
            r#"{"profile_uuid":"P","devices":{"A":"SUCCESS","B":"THROTTLED"},"retry_after_seconds":60}"#,
        )
        .expect("assign");
        assert_eq!(r.devices["B"], "THROTTLED");
        assert_eq!(r.retry_after_seconds, Some(60));
        let r: AssignResponse = serde_json::from_str(r#"{"devices":{}}"#).expect("assign");
        assert_eq!(r.retry_after_seconds, None);
    }
}
