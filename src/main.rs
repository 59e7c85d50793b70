//! The `depd` command line: parses arguments and calls the library.

use clap::{Parser, Subcommand};
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
    /// API key (HTTP Basic password of user "depserver"); also DEPD_API_KEY.
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Log format [default: human].
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
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
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let flags = FlagOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        api_key: args.api_key.map(Secret::new),
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }),
    };
    let config = settings::resolve_config_path(args.config.as_deref());
    let settings = match settings::load(config.as_deref(), std::env::vars(), &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("depd: {e}");
            return ExitCode::from(2);
        }
    };
    depd::logging::init(settings.log_format, &settings.log_level);
    let result = actix_web::rt::System::new().block_on(depd::serve::run(settings, config, flags));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "depd stopped with an error");
            eprintln!("depd: {e}");
            ExitCode::FAILURE
        }
    }
}
