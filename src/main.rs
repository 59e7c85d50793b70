//! The `depd` command line: parses arguments and calls the library.

use clap::{CommandFactory as _, Parser, Subcommand};
use depd::settings::{self, FlagOverrides, LogFormat, Secret};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "depd",
    version,
    about = "A daemon for Apple's Automated Device Enrollment (DEP) API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Offline token-PKI tools (like NanoDEP's deptokens).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Make or convert an Activation Lock bypass code: prints raw, code and hash.
    Bypasscode(BypassArgs),
    /// Import a NanoDEP filekv storage directory into a stopped daemon's store.
    ImportNanodep(ImportArgs),
    /// The key that seals secrets at rest in a stopped daemon's store.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    #[command(flatten)]
    Client(depd::cli::Command),
    /// Print a shell completion script (e.g. `depd completions bash > /etc/bash_completion.d/depd`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Write a new RSA key and self-signed certificate for Apple's portal.
    Keypair(KeypairArgs),
    /// Decrypt a .p7m token file from Apple's portal; prints the token JSON.
    Decrypt(DecryptArgs),
    /// Upload raw OAuth token JSON to a running daemon.
    Upload(depd::cli::TokensUploadArgs),
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Seal every stored secret again under a new key. Without
    /// --new-key-file, a new random key replaces the key file in use.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
struct RotateArgs {
    /// depd's storage directory [default: data_dir of the configuration].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// Take data_dir and secrets_key_file from this configuration file [default: /etc/depd/depd.toml when it exists].
    #[arg(long, env = "DEPD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The key in use, when not the configuration's, the systemd
    /// credential or the data directory's secrets.key.
    #[arg(long, env = "DEPD_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
    /// The new key (64 hex digits, e.g. from `openssl rand -hex 32`);
    /// depd must then be started with it.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct KeypairArgs {
    /// Certificate file to write (PEM).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Private key file to write (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Certificate common name.
    #[arg(long, default_value = "depserver")]
    cn: String,
    /// Validity in days.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Encrypt the key with this password (AES-256-CBC).
    #[arg(long, env = "DEPD_KEY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct DecryptArgs {
    /// The .p7m token file.
    #[arg(long, value_name = "FILE")]
    token: PathBuf,
    /// The certificate the token file was encrypted to (PEM).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Password of an encrypted key.
    #[arg(long, env = "DEPD_KEY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

#[derive(clap::Args)]
struct BypassArgs {
    /// The raw code, 32 hex digits.
    #[arg(long, conflicts_with = "code")]
    raw: Option<String>,
    /// The dashed code (5-5-4-4-4-4 symbols), e.g. 3UM43-PUYVY-QYD1-UVCC-HEHJ-FKA4.
    #[arg(long)]
    code: Option<String>,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// NanoDEP's storage directory (the one holding dep_names/).
    #[arg(long, value_name = "DIR")]
    filekv: PathBuf,
    /// depd's storage directory [default: data_dir of the configuration].
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    /// Take data_dir from this configuration file [default: /etc/depd/depd.toml when it exists].
    #[arg(long, env = "DEPD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Report what would be imported; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The key that seals secrets at rest [default: secrets_key_file of the
    /// configuration, else the systemd credential or the data directory's
    /// secrets.key].
    #[arg(long, env = "DEPD_SECRETS_KEY_FILE", value_name = "FILE")]
    secrets_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Default: /etc/depd/depd.toml when it exists.
    #[arg(long, env = "DEPD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9001].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Storage directory (sled) [default: /var/lib/depd].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// API key (HTTP Basic password of user "depserver"). Prefer api_key_file
    /// or DEPD_API_KEY: other users can read this flag in the process list.
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Webhook URL for every DEP name's sync events (as NanoDEP's depsyncer
    /// -webhook-url); replaces webhook.urls of the configuration.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Tokens {
            command: TokensCommand::Keypair(args),
        } => tool(depd::cli::tools::tokens_keypair(
            &depd::cli::tools::KeypairFiles {
                cert: &args.cert,
                key: &args.key,
                cn: &args.cn,
                days: args.days,
                password: args.password.as_deref(),
                force: args.force,
            },
            time::OffsetDateTime::now_utc(),
        )),
        Command::Tokens {
            command: TokensCommand::Decrypt(args),
        } => tool(
            depd::cli::tools::tokens_decrypt(
                &args.token,
                &args.cert,
                &args.key,
                args.password.as_deref(),
            )
            .map(|json| println!("{json}")),
        ),
        Command::Bypasscode(args) => tool(
            depd::cli::tools::bypasscode(args.raw.as_deref(), args.code.as_deref())
                .map(|text| println!("{text}")),
        ),
        Command::Tokens {
            command: TokensCommand::Upload(args),
        } => client(depd::cli::run_tokens_upload(args)),
        Command::ImportNanodep(args) => import_nanodep(args),
        Command::Secrets {
            command: SecretsCommand::Rotate(args),
        } => rotate_secrets(args),
        Command::Client(command) => client(depd::cli::run(command)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "depd", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// A client command's outcome: one line on stderr when it failed, exit
/// status 2 for usage errors and 1 for failures.
fn client(result: Result<(), depd::cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("depd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// An offline tool's outcome: one line on stderr when it failed.
fn tool(result: Result<(), depd::cli::tools::ToolError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("depd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rotate_secrets(args: RotateArgs) -> ExitCode {
    depd::store::fsutil::private_umask();
    let dirs = match args.data_dir {
        Some(dir) => Ok((dir, None)),
        None => depd::cli::import::data_dir_from_config(args.config.as_deref()),
    };
    let result = dirs
        .map_err(|e| e.to_string())
        .and_then(|(dir, configured)| {
            let key_file = args.secrets_key_file.clone().or(configured);
            depd::store::rotate(&dir, key_file.as_deref(), args.new_key_file.as_deref())
                .map_err(|e| format!("{}: {e}", dir.display()))
        });
    match result {
        Ok(r) => {
            println!(
                "sealed {} records again: key {} replaced by key {}",
                r.records, r.old_id, r.new_id
            );
            if r.reconfigure {
                println!(
                    "start depd with {} as its key (secrets_key_file, or the credential {}); the old key no longer opens the data",
                    r.key_file.display(),
                    depd::store::secrets::CREDENTIAL_NAME
                );
            } else {
                println!("the new key is in {}", r.key_file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("depd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_nanodep(args: ImportArgs) -> ExitCode {
    depd::store::fsutil::private_umask();
    let dirs = match args.data_dir {
        Some(dir) => Ok((dir, None)),
        None => depd::cli::import::data_dir_from_config(args.config.as_deref()),
    };
    let report = dirs.and_then(|(dir, configured_key)| {
        let key_file = args.secrets_key_file.clone().or(configured_key);
        depd::cli::import::import_nanodep(
            &args.filekv,
            &dir,
            key_file.as_deref(),
            args.dry_run,
            time::OffsetDateTime::now_utc(),
        )
    });
    match report {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("depd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    depd::daemon::heap::tune();
    let flags = FlagOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        api_key: args.api_key.map(Secret::new),
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }),
        webhook_url: args.webhook_url,
    };
    let config = settings::resolve_config_path(args.config.as_deref());
    let settings = match settings::load(config.as_deref(), std::env::vars(), &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("depd: {e}");
            return ExitCode::from(2);
        }
    };
    depd::daemon::logging::init(settings.log_format, &settings.log_level);
    depd::store::fsutil::private_umask();
    settings::warn_ignored_env(&settings);
    settings::warn_security(&settings);
    let result =
        actix_web::rt::System::new().block_on(depd::daemon::serve::run(settings, config, flags));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "depd stopped with an error");
            eprintln!("depd: {e}");
            ExitCode::FAILURE
        }
    }
}
