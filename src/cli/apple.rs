//! Apple's DEP calls through the daemon's authenticating proxy,
//! `/proxy/{name}/…` (NanoDEP's `dep-*` scripts): depd adds the session,
//! so these need only the API key.

use super::admin::read_file;
use super::client::{APPLE_JSON, CliError, Client, encode};
use super::output;
use super::{Connection, NameArg};
use actix_web::http::Method;
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::PathBuf;

/// One proxied call; a JSON body goes with Apple's content type.
async fn call(
    conn: &Connection,
    name: &str,
    method: Method,
    apple_path: &str,
    body: Option<Vec<u8>>,
) -> Result<(), CliError> {
    let client = Client::new(conn)?;
    let path = format!("/proxy/{}{apple_path}", encode(name));
    let answer = client
        .send(method, &path, body.map(|b| (APPLE_JSON, b)))
        .await?;
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(value) => output::print(conn.json, &answer.body, &value),
        // Apple answers some calls with plain text; show it as it came.
        Err(_) => println!("{}", String::from_utf8_lossy(&answer.body).trim_end()),
    }
    Ok(())
}

fn body(value: Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

pub async fn account(name: &str, conn: &Connection) -> Result<(), CliError> {
    call(conn, name, Method::GET, "/account", None).await
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// depd's inventory of synced devices (NanoDEP's cfg-get-devices.sh).
    List(DeviceListArgs),
    /// Apple's details of devices by serial number.
    Details {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "SERIAL", required = true)]
        serials: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn devices(command: DevicesCommand) -> Result<(), CliError> {
    match command {
        DevicesCommand::List(args) => list(args).await,
        DevicesCommand::Details {
            name,
            serials,
            conn,
        } => {
            let request = body(json!({ "devices": serials }));
            call(&conn, &name.name, Method::POST, "/devices", request).await
        }
    }
}

#[derive(clap::Args)]
pub struct DeviceListArgs {
    #[command(flatten)]
    name: NameArg,
    /// Only this serial number.
    #[arg(long)]
    serial: Option<String>,
    /// Only devices with this profile status (empty, assigned, pushed, removed).
    #[arg(long)]
    profile_status: Option<String>,
    /// Only devices whose last event had this op_type (added, modified, deleted).
    #[arg(long)]
    op_type: Option<String>,
    /// Only devices with this profile.
    #[arg(long)]
    profile_uuid: Option<String>,
    /// Devices per page (1-1000) [daemon's default: 100].
    #[arg(long)]
    limit: Option<usize>,
    /// Devices to skip.
    #[arg(long)]
    offset: Option<usize>,
    #[command(flatten)]
    conn: Connection,
}

async fn list(args: DeviceListArgs) -> Result<(), CliError> {
    let client = Client::new(&args.conn)?;
    let filters = [
        ("serial", args.serial),
        ("profile_status", args.profile_status),
        ("op_type", args.op_type),
        ("profile_uuid", args.profile_uuid),
        ("limit", args.limit.map(|n| n.to_string())),
        ("offset", args.offset.map(|n| n.to_string())),
    ];
    let query: Vec<String> = filters
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let path = format!("/v1/devices/{}{query}", encode(&args.name.name));
    let answer = client.get(&path).await?;
    let value = answer.json()?;
    if args.conn.json {
        output::print(true, &answer.body, &value);
        return Ok(());
    }
    let devices = value["devices"].as_array().cloned().unwrap_or_default();
    print!("{}", output::table(&device_rows(&devices)));
    println!("{} of {} devices", devices.len(), value["total"]);
    Ok(())
}

/// The columns an operator looks at; `--json` has everything.
fn device_rows(devices: &[Value]) -> output::Rows {
    let header = [
        "serial",
        "model",
        "os",
        "profile status",
        "profile uuid",
        "assignment",
        "last event",
    ];
    let cell = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("-")
            .to_owned()
    };
    let rows = devices
        .iter()
        .map(|d| {
            vec![
                cell(&d["serial_number"]),
                cell(&d["model"]),
                cell(&d["os"]),
                cell(&d["profile_status"]),
                cell(&d["profile_uuid"]),
                cell(&d["depd"]["assignment"]["result"]),
                cell(&d["depd"]["last_event"]),
            ]
        })
        .collect();
    (header.iter().map(|h| (*h).to_owned()).collect(), rows)
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Define a profile from a JSON file; prints its new UUID.
    Define {
        #[command(flatten)]
        name: NameArg,
        /// The profile JSON as Apple documents it.
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show a profile.
    Get {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "PROFILE_UUID")]
        profile_uuid: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Assign a profile to devices.
    Assign {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "PROFILE_UUID")]
        profile_uuid: String,
        #[arg(value_name = "SERIAL", required = true)]
        serials: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Managed profiles: kept by depd under a name, defined at Apple.
    Managed {
        #[command(subcommand)]
        command: super::rules::ManagedCommand,
    },
    /// Remove the profile of devices.
    Remove {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "SERIAL", required = true)]
        serials: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn profile(command: ProfileCommand) -> Result<(), CliError> {
    match command {
        ProfileCommand::Managed { command } => super::rules::managed(command).await,
        ProfileCommand::Define { name, file, conn } => {
            let profile = read_file(&file)?;
            // Checked here so a typo fails with the file's name, not Apple's code.
            serde_json::from_slice::<Value>(&profile)
                .map_err(|e| CliError::Failed(format!("{}: not JSON: {e}", file.display())))?;
            call(&conn, &name.name, Method::POST, "/profile", Some(profile)).await
        }
        ProfileCommand::Get {
            name,
            profile_uuid,
            conn,
        } => {
            let path = format!("/profile?profile_uuid={}", encode(&profile_uuid));
            call(&conn, &name.name, Method::GET, &path, None).await
        }
        ProfileCommand::Assign {
            name,
            profile_uuid,
            serials,
            conn,
        } => {
            let request = body(json!({ "profile_uuid": profile_uuid, "devices": serials }));
            call(&conn, &name.name, Method::PUT, "/profile/devices", request).await
        }
        ProfileCommand::Remove {
            name,
            serials,
            conn,
        } => {
            let request = body(json!({ "devices": serials }));
            call(
                &conn,
                &name.name,
                Method::DELETE,
                "/profile/devices",
                request,
            )
            .await
        }
    }
}

#[derive(clap::Args)]
pub struct ActivationLockArgs {
    #[command(flatten)]
    name: NameArg,
    #[arg(value_name = "SERIAL")]
    serial: String,
    /// The escrow key (hash of a bypass code; see `depd bypasscode`).
    #[arg(long, value_name = "KEY")]
    escrow_key: Option<String>,
    /// A message shown on the locked device.
    #[arg(long, value_name = "TEXT")]
    lost_message: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

pub async fn activation_lock(args: ActivationLockArgs) -> Result<(), CliError> {
    let mut request = json!({ "device": args.serial });
    // Only when given, as NanoDEP's script: Apple treats empty as a value.
    if let Some(key) = args.escrow_key.filter(|k| !k.is_empty()) {
        request["escrow_key"] = Value::String(key);
    }
    if let Some(message) = args.lost_message.filter(|m| !m.is_empty()) {
        request["lost_message"] = Value::String(message);
    }
    call(
        &args.conn,
        &args.name.name,
        Method::POST,
        "/device/activationlock",
        body(request),
    )
    .await
}

#[derive(clap::Args)]
pub struct DisownArgs {
    #[command(flatten)]
    name: NameArg,
    #[arg(value_name = "SERIAL", required = true)]
    serials: Vec<String>,
    #[command(flatten)]
    conn: Connection,
}

pub async fn disown(args: DisownArgs) -> Result<(), CliError> {
    let request = body(json!({ "devices": args.serials }));
    call(
        &args.conn,
        &args.name.name,
        Method::POST,
        "/devices/disown",
        request,
    )
    .await
}
