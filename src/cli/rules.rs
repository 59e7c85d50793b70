//! `depd rules …` (assignment rules) and `depd profile managed …`
//! (managed profiles) through a running daemon; `depd rules check` needs
//! none.

use super::client::{CliError, Client, encode};
use super::{Connection, NameArg, output};
use actix_web::http::Method;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum RulesCommand {
    /// The name's rules.
    Get {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// Replace the name's rules with a JSON file ({"rules", "pins", "exclude"}).
    Set {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Check a rules file without a daemon (managed profile names are
    /// checked when the daemon takes the file).
    Check {
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
    },
    /// What a rules file would choose and move, from the daemon; changes nothing.
    Preview {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Subcommand)]
pub enum ManagedCommand {
    /// The name's managed profiles.
    List {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// One managed profile: definition, UUID, versions.
    Get {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "PROFILE")]
        profile: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Define (or redefine) a managed profile from Apple's profile JSON.
    Set {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "PROFILE")]
        profile: String,
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Forget a managed profile (refused while rules name it).
    Delete {
        #[command(flatten)]
        name: NameArg,
        #[arg(value_name = "PROFILE")]
        profile: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn read(file: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(file).map_err(|e| CliError::Failed(format!("reading {}: {e}", file.display())))
}

/// Checks a rules file offline: its shape, globs, targets and serials.
/// Managed profile names cannot be known here: any name is taken.
fn check(file: &Path) -> Result<String, CliError> {
    use crate::sync::profiles::{ManagedProfile, Profiles};
    use crate::sync::rules::RuleSet;
    let bytes = read(file)?;
    let set: RuleSet = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))?;
    let placeholder = |n: &String| {
        (
            n.clone(),
            ManagedProfile {
                definition: Default::default(),
                profile_uuid: "00000000000000000000000000000000".into(),
                history: Vec::new(),
            },
        )
    };
    let named: Profiles = set
        .rules
        .iter()
        .filter_map(|r| r.profile.as_ref())
        .chain(
            set.pins
                .values()
                .filter(|p| !crate::sync::rules::looks_like_uuid(p)),
        )
        .map(placeholder)
        .collect();
    set.compile_with(None, &named)
        .map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))?;
    Ok(format!(
        "{}: {} rules, {} pins, {} excluded serials: valid\n",
        file.display(),
        set.rules.len(),
        set.pins.len(),
        set.exclude.len()
    ))
}

async fn call(
    conn: &Connection,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(), CliError> {
    let client = Client::new(conn)?;
    let answer = client
        .send(method, path, body.map(|b| ("application/json", b)))
        .await?;
    output::print(conn.json, &answer.body, &answer.json()?);
    Ok(())
}

pub async fn rules(command: RulesCommand) -> Result<(), CliError> {
    match command {
        RulesCommand::Check { file } => {
            print!("{}", check(&file)?);
            Ok(())
        }
        RulesCommand::Get { name, conn } => {
            let path = format!("/v1/rules/{}", encode(&name.name));
            call(&conn, Method::GET, &path, None).await
        }
        RulesCommand::Set { name, file, conn } => {
            let path = format!("/v1/rules/{}", encode(&name.name));
            call(&conn, Method::PUT, &path, Some(read(&file)?)).await
        }
        RulesCommand::Preview { name, file, conn } => {
            let path = format!("/v1/rules/{}/preview", encode(&name.name));
            call(&conn, Method::POST, &path, Some(read(&file)?)).await
        }
    }
}

pub async fn managed(command: ManagedCommand) -> Result<(), CliError> {
    match command {
        ManagedCommand::List { name, conn } => {
            let path = format!("/v1/profiles/{}", encode(&name.name));
            call(&conn, Method::GET, &path, None).await
        }
        ManagedCommand::Get {
            name,
            profile,
            conn,
        } => {
            let path = format!("/v1/profiles/{}/{}", encode(&name.name), encode(&profile));
            call(&conn, Method::GET, &path, None).await
        }
        ManagedCommand::Set {
            name,
            profile,
            file,
            conn,
        } => {
            let path = format!("/v1/profiles/{}/{}", encode(&name.name), encode(&profile));
            call(&conn, Method::PUT, &path, Some(read(&file)?)).await
        }
        ManagedCommand::Delete {
            name,
            profile,
            conn,
        } => {
            let path = format!("/v1/profiles/{}/{}", encode(&name.name), encode(&profile));
            call(&conn, Method::DELETE, &path, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reads_a_file_and_names_the_bad_rule() {
        let dir = tempfile::tempdir().expect("dir");
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"rules": [{"name": "macs", "match": {"device_family": ["Mac"]}, "profile": "macs"}], "pins": {"S1": "lab"}, "exclude": ["S2"]}"#,
        )
        .expect("write");
        assert!(
            check(&good)
                .expect("valid")
                .contains("1 rules, 1 pins, 1 excluded")
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"rules": [{"name": "x", "match": {"model": "[a]"}, "profile": "p"}]}"#,
        )
        .expect("write");
        let e = check(&bad).expect_err("refused").to_string();
        assert!(e.contains("rule \"x\"") && e.contains("bad.json"), "{e}");
        assert!(check(&dir.path().join("none.json")).is_err());
    }
}
