//! The device side of the MDM protocol, as a simulated device speaks it:
//! signed check-ins and reports, and realistic answers to commands.

use super::{MdmFleet, SimMdmDevice};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use plist::{Dictionary, Value};

const CHECKIN: &str = "application/x-apple-aspen-mdm-checkin";
const REPORT: &str = "application/x-apple-aspen-mdm";

#[derive(Debug, thiserror::Error)]
pub enum MdmSimError {
    #[error("no simulated device {0:?}")]
    UnknownDevice(String),
    #[error("device {0} is not enrolled")]
    NotEnrolled(String),
    #[error("signing: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("the MDM server did not answer: {0}")]
    Network(String),
    #[error("the MDM server answered HTTP {status} to {what}")]
    Refused { what: &'static str, status: u16 },
    #[error("the MDM server sent something that is not a command: {0}")]
    BadCommand(String),
}

/// What one connection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnectReport {
    /// Commands answered with a result (Acknowledged or Error).
    pub answered: Vec<String>,
    /// Commands answered `NotNow` (offered again at the next connection).
    pub not_now: Vec<String>,
}

fn xml(d: Dictionary) -> Vec<u8> {
    let mut out = Vec::new();
    // A dictionary of plain values always serialises.
    let _ = plist::to_writer_xml(&mut out, &Value::Dictionary(d));
    out
}

fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Dictionary {
    let mut d = Dictionary::new();
    for (k, v) in pairs {
        d.insert(k.to_owned(), v);
    }
    d
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

impl SimMdmDevice {
    fn lock(&self) -> std::sync::MutexGuard<'_, super::DeviceState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `body` to `url`, signed with the device's identity.
    async fn send(
        &self,
        client: &awc::Client,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        what: &'static str,
    ) -> Result<Vec<u8>, MdmSimError> {
        let none = Stack::new()?;
        let p7 = Pkcs7::sign(
            &self.cert,
            &self.key,
            &none,
            &body,
            Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY,
        )?;
        let sig = openssl::base64::encode_block(&p7.to_der()?);
        let mut resp = client
            .put(url)
            .insert_header(("Content-Type", content_type))
            .insert_header(("User-Agent", "MDM/1.0"))
            .insert_header(("Mdm-Signature", sig))
            .send_body(body)
            .await
            .map_err(|e| MdmSimError::Network(e.to_string()))?;
        let answer = resp
            .body()
            .limit(16 << 20)
            .await
            .map_err(|e| MdmSimError::Network(e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(MdmSimError::Refused { what, status });
        }
        Ok(answer.to_vec())
    }

    fn url(&self) -> Result<String, MdmSimError> {
        let st = self.lock();
        match (&st.server_url, st.enrolled) {
            (Some(u), true) => Ok(u.clone()),
            _ => Err(MdmSimError::NotEnrolled(self.udid.clone())),
        }
    }

    /// The answer to one command: its report plist and whether it was
    /// `NotNow`.
    fn answer(&self, fleet: &MdmFleet, command: &Dictionary, uuid: &str) -> (Vec<u8>, bool) {
        let request_type = command
            .get("RequestType")
            .and_then(Value::as_string)
            .unwrap_or("")
            .to_owned();
        let mut st = self.lock();
        // NotNow at most once per command, for the configured share.
        let h = openssl::sha::sha256(format!("{} {uuid}", self.udid).as_bytes());
        let not_now = u16::from(h[0]) * 100 / 256 < u16::from(fleet.not_now_percent());
        let mut report = dict([("UDID", s(&self.udid)), ("CommandUUID", s(uuid))]);
        if not_now && !st.profiles.iter().any(|p| p == &format!("notnow:{uuid}")) {
            st.profiles.push(format!("notnow:{uuid}"));
            st.not_now_answered += 1;
            report.insert("Status".into(), s("NotNow"));
            return (xml(report), true);
        }
        st.commands_answered += 1;
        let mut status = "Acknowledged";
        match request_type.as_str() {
            "DeviceInformation" => {
                let mut responses = Dictionary::new();
                let queries = command
                    .get("Queries")
                    .and_then(Value::as_array)
                    .cloned()
                    .filter(|q| !q.is_empty())
                    // Without Queries (Apple requires them; the simulator
                    // is lenient), a common set.
                    .unwrap_or_else(|| {
                        ["UDID", "SerialNumber", "Model", "DeviceName", "OSVersion"]
                            .iter()
                            .map(|q| s(q))
                            .collect()
                    });
                for q in queries.iter().filter_map(Value::as_string) {
                    let v = match q {
                        "UDID" => s(&self.udid),
                        "SerialNumber" => s(&self.serial_number),
                        "Model" | "ProductName" => s(&self.model),
                        "ModelName" => s(if self.model.starts_with("iPad") {
                            "iPad"
                        } else if self.model.starts_with("iPhone") {
                            "iPhone"
                        } else {
                            "Mac"
                        }),
                        "DeviceName" => s(&format!("depsim {}", &self.serial_number)),
                        "OSVersion" => s("17.4"),
                        "BuildVersion" => s("21E219"),
                        "DeviceCapacity" => Value::Real(128.0),
                        "AvailableDeviceCapacity" => Value::Real(71.5),
                        "IsSupervised" => Value::Boolean(true),
                        _ => continue,
                    };
                    responses.insert(q.to_owned(), v);
                }
                report.insert("QueryResponses".into(), Value::Dictionary(responses));
            }
            "ProfileList" => {
                let mut list = vec![Value::Dictionary(dict([
                    ("PayloadIdentifier", s("com.example.mdm")),
                    ("PayloadDisplayName", s("MDM Profile")),
                    ("IsManaged", Value::Boolean(true)),
                ]))];
                list.extend(
                    st.profiles
                        .iter()
                        .filter(|p| !p.starts_with("notnow:"))
                        .map(|p| {
                            Value::Dictionary(dict([
                                ("PayloadIdentifier", s(p)),
                                ("IsManaged", Value::Boolean(true)),
                            ]))
                        }),
                );
                report.insert("ProfileList".into(), Value::Array(list));
            }
            "InstalledApplicationList" => {
                let apps = [
                    ("com.apple.Keynote", "Keynote", "14.0"),
                    ("com.example.app", "Example", "2.3.1"),
                ];
                report.insert(
                    "InstalledApplicationList".into(),
                    Value::Array(
                        apps.iter()
                            .map(|(id, name, v)| {
                                Value::Dictionary(dict([
                                    ("Identifier", s(id)),
                                    ("Name", s(name)),
                                    ("ShortVersion", s(v)),
                                    ("BundleSize", Value::Integer(48_000_000.into())),
                                ]))
                            })
                            .collect(),
                    ),
                );
            }
            "SecurityInfo" => {
                report.insert(
                    "SecurityInfo".into(),
                    Value::Dictionary(dict([
                        ("HardwareEncryptionCaps", Value::Integer(3.into())),
                        ("PasscodePresent", Value::Boolean(true)),
                        ("PasscodeCompliant", Value::Boolean(true)),
                        ("PasscodeCompliantWithProfiles", Value::Boolean(true)),
                    ])),
                );
            }
            "CertificateList" => {
                report.insert(
                    "CertificateList".into(),
                    Value::Array(vec![Value::Dictionary(dict([
                        ("CommonName", s(&self.udid)),
                        ("Data", Value::Data(self.cert.to_der().unwrap_or_default())),
                        ("IsIdentity", Value::Boolean(true)),
                    ]))]),
                );
            }
            "InstallProfile" => st.profiles.push(format!("profile.{uuid}")),
            "RemoveProfile" => {
                let id = command
                    .get("Identifier")
                    .and_then(Value::as_string)
                    .unwrap_or("");
                st.profiles.retain(|p| p != id);
            }
            _ => {
                status = "Error";
                report.insert(
                    "ErrorChain".into(),
                    Value::Array(vec![Value::Dictionary(dict([
                        ("ErrorCode", Value::Integer(12021.into())),
                        ("ErrorDomain", s("MCMDMErrorDomain")),
                        (
                            "LocalizedDescription",
                            s(&format!("Unknown command: {request_type}")),
                        ),
                        (
                            "USEnglishDescription",
                            s(&format!("Unknown command: {request_type}")),
                        ),
                    ]))]),
                );
            }
        }
        report.insert("Status".into(), s(status));
        (xml(report), false)
    }
}

impl MdmFleet {
    fn find(&self, udid: &str) -> Result<&SimMdmDevice, MdmSimError> {
        self.device(udid)
            .ok_or_else(|| MdmSimError::UnknownDevice(udid.to_owned()))
    }

    /// Enrolls device `udid` in the MDM server at `server_url`
    /// (`…/mdm`): Authenticate, then TokenUpdate with a push token, push
    /// magic and the fleet's topic.
    pub async fn enroll(
        &self,
        client: &awc::Client,
        udid: &str,
        server_url: &str,
    ) -> Result<(), MdmSimError> {
        let d = self.find(udid)?;
        let auth = dict([
            ("MessageType", s("Authenticate")),
            ("UDID", s(&d.udid)),
            ("SerialNumber", s(&d.serial_number)),
            ("Model", s(&d.model)),
            ("ProductName", s(&d.model)),
            ("OSVersion", s("17.4")),
            ("BuildVersion", s("21E219")),
            ("Topic", s(&self.topic)),
        ]);
        d.send(client, server_url, CHECKIN, xml(auth), "Authenticate")
            .await?;
        let token = d.push_token();
        let magic = d.push_magic();
        let tu = dict([
            ("MessageType", s("TokenUpdate")),
            ("UDID", s(&d.udid)),
            ("Topic", s(&self.topic)),
            ("PushMagic", s(&magic)),
            ("Token", Value::Data(token.to_vec())),
            ("AwaitingConfiguration", Value::Boolean(false)),
        ]);
        d.send(client, server_url, CHECKIN, xml(tu), "TokenUpdate")
            .await?;
        let mut st = d.lock();
        st.server_url = Some(server_url.to_owned());
        st.enrolled = true;
        st.checked_out = false;
        Ok(())
    }

    /// Connects as a woken device does: `Idle`, then one answer per
    /// command until the server has nothing more.
    pub async fn connect(
        &self,
        client: &awc::Client,
        udid: &str,
    ) -> Result<ConnectReport, MdmSimError> {
        let d = self.find(udid)?;
        let url = d.url()?;
        let mut report = ConnectReport::default();
        let idle = xml(dict([("UDID", s(&d.udid)), ("Status", s("Idle"))]));
        let mut answer = d.send(client, &url, REPORT, idle, "Idle").await?;
        // Bounded: a server that keeps sending commands cannot hold the
        // device forever.
        for _ in 0..10_000 {
            if answer.is_empty() {
                return Ok(report);
            }
            let cmd = Value::from_reader(std::io::Cursor::new(&answer))
                .map_err(|e| MdmSimError::BadCommand(e.to_string()))?;
            let top = cmd
                .as_dictionary()
                .ok_or_else(|| MdmSimError::BadCommand("not a dictionary".into()))?;
            let uuid = top
                .get("CommandUUID")
                .and_then(Value::as_string)
                .ok_or_else(|| MdmSimError::BadCommand("no CommandUUID".into()))?
                .to_owned();
            let command = top
                .get("Command")
                .and_then(Value::as_dictionary)
                .cloned()
                .unwrap_or_default();
            let (body, not_now) = d.answer(self, &command, &uuid);
            if not_now {
                report.not_now.push(uuid);
            } else {
                report.answered.push(uuid);
            }
            answer = d
                .send(client, &url, REPORT, body, "a command report")
                .await?;
        }
        Ok(report)
    }

    /// Sends `CheckOut` (the profile was removed).
    pub async fn check_out(&self, client: &awc::Client, udid: &str) -> Result<(), MdmSimError> {
        let d = self.find(udid)?;
        let url = d.url()?;
        let out = xml(dict([("MessageType", s("CheckOut")), ("UDID", s(&d.udid))]));
        d.send(client, &url, CHECKIN, out, "CheckOut").await?;
        let mut st = d.lock();
        st.enrolled = false;
        st.checked_out = true;
        Ok(())
    }
}
