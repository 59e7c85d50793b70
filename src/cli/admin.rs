//! depd's own state through `/v1`: names, status, sync, the assigner, the
//! base URL and raw OAuth tokens (NanoDEP's `cfg-*` scripts).

use super::client::{CliError, Client, encode};
use super::output::{self, Rows};
use super::{Connection, NameArg};
use actix_web::http::Method;
use clap::Subcommand;
use serde_json::Value;
use std::path::PathBuf;

/// `/v1/dep_names` pages hold at most this many names.
const PAGE: usize = 1000;

pub async fn names(conn: &Connection) -> Result<(), CliError> {
    let client = Client::new(conn)?;
    let mut all: Vec<Value> = Vec::new();
    loop {
        let answer = client
            .get(&format!("/v1/dep_names?limit={PAGE}&offset={}", all.len()))
            .await?
            .json()?;
        let page = answer["dep_names"].as_array().cloned().unwrap_or_default();
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            break;
        }
    }
    if conn.json {
        println!("{}", serde_json::json!({ "dep_names": all }));
    } else {
        for name in &all {
            println!("{}", name.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

pub async fn status(name: Option<&str>, conn: &Connection) -> Result<(), CliError> {
    let client = Client::new(conn)?;
    let path = match name {
        Some(name) => format!("/v1/status/{}", encode(name)),
        None => "/v1/status".to_owned(),
    };
    let answer = client.get(&path).await?;
    let value = answer.json()?;
    match (&value["dep_names"], conn.json) {
        (Value::Array(all), false) => {
            print!("{}", output::table(&status_rows(all)));
            if let Value::Array(topics) = &value["push_topics"]
                && !topics.is_empty()
            {
                println!();
                print!("{}", output::table(&push_topic_rows(topics)));
            }
        }
        _ => output::print(conn.json, &answer.body, &value),
    }
    Ok(())
}

/// One line per push certificate: its expiry beside the tokens', since a
/// lapsed push certificate cuts off every device silently.
fn push_topic_rows(topics: &[Value]) -> Rows {
    let header = [
        "push topic",
        "expires",
        "days left",
        "environment",
        "state",
        "last error",
    ];
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows = topics
        .iter()
        .map(|t| {
            vec![
                text(&t["topic"]),
                text(&t["not_after"]),
                text(&t["days_left"]),
                text(&t["environment"]),
                text(&t["state"]),
                text(&t["last_error"]),
            ]
        })
        .collect();
    (header.iter().map(|h| (*h).to_owned()).collect(), rows)
}

/// One line per name: what an operator scans for.
fn status_rows(all: &[Value]) -> Rows {
    let header = [
        "name",
        "tokens",
        "days left",
        "session",
        "devices",
        "last sync",
        "last error",
    ];
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows = all
        .iter()
        .map(|s| {
            let error = match (&s["last_error"]["apple_code"], &s["last_error"]["message"]) {
                (Value::String(code), _) => code.clone(),
                (_, message) => text(message),
            };
            vec![
                text(&s["dep_name"]),
                text(&s["token_health"]),
                text(&s["tokens"]["days_left"]),
                text(&s["session"]["state"]),
                text(&s["devices"]["total"]),
                text(&s["sync"]["last_cycle"]["result"]),
                error,
            ]
        })
        .collect();
    (header.iter().map(|h| (*h).to_owned()).collect(), rows)
}

pub async fn sync(
    name: Option<&str>,
    all: bool,
    wait: bool,
    conn: &Connection,
) -> Result<(), CliError> {
    let path = match (name, all) {
        (_, true) => "/v1/sync".to_owned(),
        (Some(name), false) => format!("/v1/sync/{}", encode(name)),
        (None, false) => {
            return Err(CliError::Usage(
                "give a DEP name (-n NAME or DEP_NAME) or --all".into(),
            ));
        }
    };
    post_and_print(conn, &path, wait).await
}

pub async fn resync(name: &str, wait: bool, conn: &Connection) -> Result<(), CliError> {
    post_and_print(conn, &format!("/v1/resync/{}", encode(name)), wait).await
}

async fn post_and_print(conn: &Connection, path: &str, wait: bool) -> Result<(), CliError> {
    let client = Client::new(conn)?;
    let path = if wait {
        format!("{path}?wait=1")
    } else {
        path.to_owned()
    };
    let answer = client.send(Method::POST, &path, None).await?;
    output::print(conn.json, &answer.body, &answer.json()?);
    Ok(())
}

#[derive(Subcommand)]
pub enum AssignerCommand {
    /// The profile the assigner gives new devices.
    Get {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set the profile the assigner gives new devices.
    Set {
        #[command(flatten)]
        name: NameArg,
        /// The profile UUID (from `depd profile define`).
        #[arg(value_name = "PROFILE_UUID")]
        profile_uuid: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn assigner(command: AssignerCommand) -> Result<(), CliError> {
    let (name, conn, method, query) = match &command {
        AssignerCommand::Get { name, conn } => (name, conn, Method::GET, String::new()),
        AssignerCommand::Set {
            name,
            profile_uuid,
            conn,
        } => (
            name,
            conn,
            Method::PUT,
            format!("?profile_uuid={}", encode(profile_uuid)),
        ),
    };
    let client = Client::new(conn)?;
    let path = format!("/v1/assigner/{}{query}", encode(&name.name));
    let answer = client.send(method, &path, None).await?;
    output::print(conn.json, &answer.body, &answer.json()?);
    Ok(())
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// The Apple base URL in effect for the name.
    Get {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// Store the name's Apple base URL; an empty URL returns to the default.
    Set {
        #[command(flatten)]
        name: NameArg,
        /// e.g. https://mdmenrollment.apple.com
        #[arg(value_name = "BASE_URL")]
        base_url: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn config(command: ConfigCommand) -> Result<(), CliError> {
    let (name, conn, body) = match &command {
        ConfigCommand::Get { name, conn } => (name, conn, None),
        ConfigCommand::Set {
            name,
            base_url,
            conn,
        } => (
            name,
            conn,
            Some(serde_json::json!({ "base_url": base_url }).to_string()),
        ),
    };
    let client = Client::new(conn)?;
    let path = format!("/v1/config/{}", encode(&name.name));
    let answer = match body {
        None => client.get(&path).await?,
        Some(body) => {
            client
                .send(
                    Method::PUT,
                    &path,
                    Some(("application/json", body.into_bytes())),
                )
                .await?
        }
    };
    output::print(conn.json, &answer.body, &answer.json()?);
    Ok(())
}

/// `depd tokens upload`: raw OAuth tokens, e.g. from `depd tokens decrypt`.
#[derive(clap::Args)]
pub struct TokensUploadArgs {
    #[command(flatten)]
    name: NameArg,
    /// The token JSON (consumer_key, consumer_secret, access_token,
    /// access_secret, access_token_expiry).
    #[arg(value_name = "FILE.json")]
    file: PathBuf,
    /// Replace tokens of a different consumer key (another MDM server).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    conn: Connection,
}

pub async fn tokens_upload(args: TokensUploadArgs) -> Result<(), CliError> {
    put_token_file(
        "/v1/tokens",
        "application/json",
        &args.name.name,
        &args.file,
        args.force,
        &args.conn,
    )
    .await
}

/// PUTs a token file (raw token JSON or Apple's `.p7m`) to `endpoint/{name}`
/// and prints the tokens the daemon stored.
pub async fn put_token_file(
    endpoint: &str,
    content_type: &'static str,
    name: &str,
    file: &std::path::Path,
    force: bool,
    conn: &Connection,
) -> Result<(), CliError> {
    let body = read_file(file)?;
    let client = Client::new(conn)?;
    let force = if force { "?force=1" } else { "" };
    let path = format!("{endpoint}/{}{force}", encode(name));
    let answer = client
        .send(Method::PUT, &path, Some((content_type, body)))
        .await?;
    print_tokens(name, conn.json, &answer.body, &answer.json()?);
    Ok(())
}

/// Stored tokens, without their secrets unless `--json` asks for the raw
/// answer.
pub fn print_tokens(name: &str, json: bool, raw: &[u8], value: &Value) {
    if json {
        output::print(true, raw, value);
    } else {
        println!(
            "tokens stored for {name}: consumer key {}, access token expires {}",
            value["consumer_key"].as_str().unwrap_or("-"),
            value["access_token_expiry"].as_str().unwrap_or("-")
        );
    }
}

pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
}
