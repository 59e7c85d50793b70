//! Token PKI through the daemon: the staging certificate for Apple's
//! portal, the `.p7m` token file it gives back, and the MAID JWT
//! (NanoDEP's `cfg-get-cert.sh`, `cfg-decrypt-tokens.sh`, `cfg-maidjwt.sh`).

use super::admin::put_token_file;
use super::client::{CliError, Client, encode};
use super::{Connection, NameArg};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CertArgs {
    #[command(flatten)]
    name: NameArg,
    /// Certificate common name [daemon's default: depserver].
    #[arg(long)]
    cn: Option<String>,
    /// Validity in days [daemon's default: 1].
    #[arg(long)]
    days: Option<u32>,
    /// Write the PEM certificate here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

pub async fn cert(args: CertArgs) -> Result<(), CliError> {
    let client = Client::new(&args.conn)?;
    let mut query = Vec::new();
    if let Some(cn) = &args.cn {
        query.push(format!("cn={}", encode(cn)));
    }
    if let Some(days) = args.days {
        query.push(format!("validity_days={days}"));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let path = format!("/v1/tokenpki/{}{query}", encode(&args.name.name));
    let answer = client.get(&path).await?;
    match &args.out {
        Some(out) => {
            std::fs::write(out, &answer.body)
                .map_err(|e| CliError::Failed(format!("{}: {e}", out.display())))?;
            if args.conn.json {
                let file = out.display().to_string();
                println!(
                    "{}",
                    serde_json::json!({ "dep_name": args.name.name, "certificate": file })
                );
            } else {
                println!(
                    "staging certificate for {} written to {}; upload it to the MDM server in Apple Business/School Manager, then run depd upload-token",
                    args.name.name,
                    out.display()
                );
            }
        }
        None if args.conn.json => println!(
            "{}",
            serde_json::json!({
                "dep_name": args.name.name,
                "certificate_pem": String::from_utf8_lossy(&answer.body),
            })
        ),
        None => print!("{}", String::from_utf8_lossy(&answer.body)),
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct UploadTokenArgs {
    #[command(flatten)]
    name: NameArg,
    /// The token file downloaded from Apple's portal.
    #[arg(value_name = "FILE.p7m")]
    file: PathBuf,
    /// Replace tokens of a different consumer key (another MDM server).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    conn: Connection,
}

pub async fn upload_token(args: UploadTokenArgs) -> Result<(), CliError> {
    put_token_file(
        "/v1/tokenpki",
        "application/pkcs7-mime",
        &args.name.name,
        &args.file,
        args.force,
        &args.conn,
    )
    .await
}

#[derive(clap::Args)]
pub struct MaidJwtArgs {
    #[command(flatten)]
    name: NameArg,
    /// The server UUID to sign for [default: the one Apple's /account gives].
    #[arg(long, value_name = "UUID")]
    server_uuid: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

pub async fn maidjwt(args: MaidJwtArgs) -> Result<(), CliError> {
    let client = Client::new(&args.conn)?;
    let query = args
        .server_uuid
        .as_deref()
        .map(|u| format!("?server_uuid={}", encode(u)))
        .unwrap_or_default();
    let path = format!("/v1/maidjwt/{}{query}", encode(&args.name.name));
    let answer = client.get(&path).await?;
    let jwt = String::from_utf8_lossy(&answer.body).trim().to_owned();
    if args.conn.json {
        println!(
            "{}",
            serde_json::json!({
                "jwt": jwt,
                "server_uuid": answer.header("X-Server-Uuid"),
                "jti": answer.header("X-Jwt-Jti"),
            })
        );
    } else {
        println!("{jwt}");
    }
    Ok(())
}
