//! `depd mdm …`: the MDM service through a running daemon's API (NanoMDM's
//! `/v1/enqueue`, `/v1/push`, `/v1/pushcert`, and depd's enrollment
//! inspection), and `depd mdm command`, a generator of common command
//! plists in the spirit of NanoMDM's `cmdr.py`.

use super::Connection;
use super::client::{CliError, Client, encode};
use super::output;
use actix_web::http::Method;
use clap::Subcommand;
use plist::{Dictionary, Value as Plist};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MdmCommand {
    /// Queue a command for enrollments: generated (--command) or a plist file.
    Enqueue(EnqueueArgs),
    /// Push (wake) enrollments: one APNs push each.
    Push {
        /// Enrollment IDs.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Store the APNs push certificate and key, or show a stored one.
    Pushcert {
        #[command(subcommand)]
        command: PushcertCommand,
    },
    /// List enrollments, or show one with its device, identity and DEP link.
    Enrollments(EnrollmentsArgs),
    /// An enrollment's queue and results; --clear drops the queue.
    Commands {
        /// The enrollment ID.
        #[arg(value_name = "ID")]
        id: String,
        /// Include the command and result plists.
        #[arg(long)]
        raw: bool,
        /// Drop the outstanding commands (results stay).
        #[arg(long, conflicts_with = "raw")]
        clear: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Print a command plist (no daemon needed).
    Command(GenerateArgs),
}

#[derive(Subcommand)]
pub enum PushcertCommand {
    /// Upload a certificate and its unencrypted key (PEM).
    Put {
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// APNs service for this topic (default: `[mdm] apns_environment`).
        #[arg(long, value_parser = ["production", "sandbox"])]
        environment: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a stored topic's expiry.
    Get {
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(clap::Args)]
pub struct EnrollmentsArgs {
    /// One enrollment's details instead of a list.
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// Device, User, "User Enrollment (Device)", "User Enrollment", "Shared iPad".
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    #[arg(long)]
    enabled: Option<bool>,
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[arg(long, default_value_t = 0)]
    offset: usize,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args)]
pub struct EnqueueArgs {
    /// Enrollment IDs.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// A command plist file (`-`: standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "request_type")]
    file: Option<PathBuf>,
    #[command(flatten)]
    generate: GenerateArgs,
    /// Do not push after queueing.
    #[arg(long)]
    nopush: bool,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args, Clone)]
pub struct GenerateArgs {
    /// The RequestType: DeviceInformation, ProfileList, InstalledApplicationList,
    /// SecurityInfo, CertificateList, ProvisioningProfileList, RestartDevice,
    /// ShutDownDevice, DeviceConfigured, ScheduleOSUpdateScan, DeviceLock,
    /// EraseDevice, InstallProfile, RemoveProfile.
    #[arg(long = "command", value_name = "REQUEST_TYPE")]
    request_type: Option<String>,
    /// The CommandUUID [default: a random UUID].
    #[arg(long)]
    uuid: Option<String>,
    /// DeviceInformation: the queries [default: a common set].
    #[arg(long = "query", value_name = "KEY")]
    queries: Vec<String>,
    /// DeviceLock, EraseDevice: the six-digit PIN (macOS).
    #[arg(long)]
    pin: Option<String>,
    /// DeviceLock: the message on the lock screen.
    #[arg(long)]
    message: Option<String>,
    /// InstallProfile: the .mobileconfig file.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// RemoveProfile: the profile's PayloadIdentifier.
    #[arg(long)]
    identifier: Option<String>,
}

/// The queries of `DeviceInformation` when none are given.
const DEFAULT_QUERIES: &[&str] = &[
    "DeviceName",
    "Model",
    "ModelName",
    "OSVersion",
    "BuildVersion",
    "SerialNumber",
    "UDID",
    "ProductName",
    "DeviceCapacity",
    "AvailableDeviceCapacity",
    "IsSupervised",
];

fn bad(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

/// Builds the command plist `args` describe.
pub fn generate(args: &GenerateArgs) -> Result<Vec<u8>, CliError> {
    let request_type = args
        .request_type
        .as_deref()
        .ok_or_else(|| bad("--command REQUEST_TYPE is required"))?;
    let mut cmd = Dictionary::new();
    cmd.insert("RequestType".into(), Plist::String(request_type.to_owned()));
    let need = |v: &Option<String>, flag: &str| -> Result<String, CliError> {
        v.clone()
            .ok_or_else(|| bad(format!("{request_type} needs {flag}")))
    };
    match request_type {
        "DeviceInformation" => {
            let queries: Vec<Plist> = if args.queries.is_empty() {
                DEFAULT_QUERIES
                    .iter()
                    .map(|q| Plist::String((*q).to_owned()))
                    .collect()
            } else {
                args.queries
                    .iter()
                    .map(|q| Plist::String(q.clone()))
                    .collect()
            };
            cmd.insert("Queries".into(), Plist::Array(queries));
        }
        "ProfileList"
        | "InstalledApplicationList"
        | "SecurityInfo"
        | "CertificateList"
        | "ProvisioningProfileList"
        | "RestartDevice"
        | "ShutDownDevice"
        | "DeviceConfigured"
        | "ScheduleOSUpdateScan" => {}
        "DeviceLock" => {
            if let Some(pin) = &args.pin {
                cmd.insert("PIN".into(), Plist::String(pin.clone()));
            }
            if let Some(m) = &args.message {
                cmd.insert("Message".into(), Plist::String(m.clone()));
            }
        }
        "EraseDevice" => {
            if let Some(pin) = &args.pin {
                cmd.insert("PIN".into(), Plist::String(pin.clone()));
            }
        }
        "InstallProfile" => {
            let path = args
                .profile
                .as_ref()
                .ok_or_else(|| bad("InstallProfile needs --profile FILE"))?;
            let payload = std::fs::read(path)
                .map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display())))?;
            cmd.insert("Payload".into(), Plist::Data(payload));
        }
        "RemoveProfile" => {
            cmd.insert(
                "Identifier".into(),
                Plist::String(need(&args.identifier, "--identifier")?),
            );
        }
        other => {
            return Err(bad(format!(
                "no generator for RequestType {other:?}; write the plist and pass --file"
            )));
        }
    }
    let uuid = match &args.uuid {
        Some(u) => u.clone(),
        None => crate::pki::jwt::random_uuid().map_err(|e| CliError::Failed(e.to_string()))?,
    };
    let mut top = Dictionary::new();
    top.insert("Command".into(), Plist::Dictionary(cmd));
    top.insert("CommandUUID".into(), Plist::String(uuid));
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Plist::Dictionary(top))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

fn ids_path(ids: &[String]) -> String {
    ids.iter().map(|i| encode(i)).collect::<Vec<_>>().join(",")
}

/// NanoMDM's API answers failures with its result JSON and 207/500: print
/// it either way, and fail when an ID (or everything) failed.
fn print_result(conn: &Connection, status: u16, body: &[u8]) -> Result<(), CliError> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    output::print(conn.json, body, &value);
    if (200..300).contains(&status) && status != 207 {
        Ok(())
    } else {
        Err(CliError::Failed(format!("depd answered HTTP {status}")))
    }
}

pub async fn run(command: MdmCommand) -> Result<(), CliError> {
    match command {
        MdmCommand::Command(args) => {
            let body = generate(&args)?;
            print!("{}", String::from_utf8_lossy(&body));
            Ok(())
        }
        MdmCommand::Enqueue(args) => {
            let body = match &args.file {
                Some(p) if p.as_os_str() == "-" => {
                    let mut b = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                        .map_err(|e| CliError::Failed(format!("reading standard input: {e}")))?;
                    b
                }
                Some(p) => std::fs::read(p)
                    .map_err(|e| CliError::Failed(format!("reading {}: {e}", p.display())))?,
                None => generate(&args.generate)?,
            };
            let client = Client::new(&args.conn)?;
            let query = if args.nopush { "?nopush=1" } else { "" };
            let (status, answer) = client
                .send_any(
                    Method::PUT,
                    &format!("/v1/enqueue/{}{query}", ids_path(&args.ids)),
                    Some(("application/xml", body)),
                )
                .await?;
            print_result(&args.conn, status, &answer.body)
        }
        MdmCommand::Push { ids, conn } => {
            // The JSON body takes any number of IDs (the URL form stops
            // at 48 KiB).
            let client = Client::new(&conn)?;
            let body = serde_json::to_vec(&serde_json::json!({ "ids": ids }))
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let (status, answer) = client
                .send_any(Method::POST, "/v1/push", Some(("application/json", body)))
                .await?;
            print_result(&conn, status, &answer.body)
        }
        MdmCommand::Pushcert { command } => match command {
            PushcertCommand::Put {
                cert,
                key,
                environment,
                conn,
            } => {
                let mut body = std::fs::read(&cert)
                    .map_err(|e| CliError::Failed(format!("reading {}: {e}", cert.display())))?;
                body.push(b'\n');
                body.extend(
                    std::fs::read(&key)
                        .map_err(|e| CliError::Failed(format!("reading {}: {e}", key.display())))?,
                );
                let client = Client::new(&conn)?;
                let path = match &environment {
                    Some(e) => format!("/v1/pushcert?environment={e}"),
                    None => "/v1/pushcert".to_owned(),
                };
                let (status, answer) = client
                    .send_any(Method::PUT, &path, Some(("application/x-pem-file", body)))
                    .await?;
                print_result(&conn, status, &answer.body)
            }
            PushcertCommand::Get { topic, conn } => {
                let client = Client::new(&conn)?;
                let (status, answer) = client
                    .send_any(
                        Method::GET,
                        &format!("/v1/pushcert?topic={}", encode(&topic)),
                        None,
                    )
                    .await?;
                print_result(&conn, status, &answer.body)
            }
        },
        MdmCommand::Enrollments(args) => {
            let client = Client::new(&args.conn)?;
            let path = match &args.id {
                Some(id) => format!("/v1/enrollments/{}", encode(id)),
                None => {
                    let mut q = format!(
                        "/v1/enrollments?limit={}&offset={}",
                        args.limit, args.offset
                    );
                    if let Some(t) = &args.kind {
                        q.push_str(&format!("&type={}", encode(t)));
                    }
                    if let Some(e) = args.enabled {
                        q.push_str(&format!("&enabled={e}"));
                    }
                    if let Some(t) = &args.topic {
                        q.push_str(&format!("&topic={}", encode(t)));
                    }
                    q
                }
            };
            let answer = client.get(&path).await?;
            output::print(args.conn.json, &answer.body, &answer.json()?);
            Ok(())
        }
        MdmCommand::Commands {
            id,
            raw,
            clear,
            conn,
        } => {
            let client = Client::new(&conn)?;
            let path = format!("/v1/enrollments/{}/", encode(&id));
            let answer = if clear {
                client
                    .send(Method::DELETE, &format!("{path}queue"), None)
                    .await?
            } else {
                let q = if raw { "?raw=1" } else { "" };
                client.get(&format!("{path}commands{q}")).await?
            };
            output::print(conn.json, &answer.body, &answer.json()?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        g: GenerateArgs,
    }

    fn gen_args(args: &[&str]) -> GenerateArgs {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::parse_from(all).g
    }

    #[test]
    fn generated_commands_are_valid_command_plists() {
        for (args, request_type) in [
            (vec!["--command", "DeviceInformation"], "DeviceInformation"),
            (
                vec!["--command", "ProfileList", "--uuid", "U1"],
                "ProfileList",
            ),
            (
                vec![
                    "--command",
                    "DeviceLock",
                    "--pin",
                    "123456",
                    "--message",
                    "hi",
                ],
                "DeviceLock",
            ),
            (
                vec![
                    "--command",
                    "RemoveProfile",
                    "--identifier",
                    "com.example.p",
                ],
                "RemoveProfile",
            ),
        ] {
            let body = generate(&gen_args(&args)).expect("generates");
            let cmd = crate::mdm::message::parse_command(&body).expect("a command plist");
            assert_eq!(cmd.request_type, request_type);
            assert!(!cmd.uuid.is_empty());
        }
        let body =
            generate(&gen_args(&["--command", "ProfileList", "--uuid", "U1"])).expect("plist");
        assert_eq!(
            crate::mdm::message::parse_command(&body).expect("cmd").uuid,
            "U1"
        );
        let info = generate(&gen_args(&[
            "--command",
            "DeviceInformation",
            "--query",
            "UDID",
        ]))
        .expect("plist");
        let text = String::from_utf8_lossy(&info);
        assert!(text.contains("<string>UDID</string>") && !text.contains("DeviceName"));
    }

    #[test]
    fn missing_arguments_and_unknown_types_are_usage_errors() {
        assert!(matches!(generate(&gen_args(&[])), Err(CliError::Usage(_))));
        assert!(matches!(
            generate(&gen_args(&["--command", "RemoveProfile"])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            generate(&gen_args(&["--command", "InstallProfile"])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            generate(&gen_args(&["--command", "Frobnicate"])),
            Err(CliError::Usage(_))
        ));
    }
}
