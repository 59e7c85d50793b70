//! `depsim`: a simulator of Apple's DEP service. Parses the command line
//! and calls `depd::sim`; see `docs/simulator.md`.

use clap::{Args, Parser, Subcommand};
use depd::sim::{SimConfig, Simulator, token_file};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = r#"By hand, with curl (OAuth1 is not something curl does, so the admin API
hands out a session token directly; real clients use GET /session):

  depsim --devices 500 --tokens-file /tmp/depsim.json &
  TOKEN=$(curl -s -X POST http://127.0.0.1:9002/_sim/sessions | sed 's/.*"auth_session_token":"\([^"]*\)".*/\1/')
  H=(-H "X-ADM-Auth-Session: $TOKEN" -H "User-Agent: curl" -H "X-Server-Protocol-Version: 10" \
     -H "Content-Type: application/json;charset=UTF8")
  curl -s "${H[@]}" http://127.0.0.1:9002/account
  curl -s "${H[@]}" -d '{"limit":2}' http://127.0.0.1:9002/server/devices
  curl -s -X POST -d '{"status":503,"body":"","headers":{"Retry-After":"30"}}' \
       http://127.0.0.1:9002/_sim/faults/response
  curl -s http://127.0.0.1:9002/_sim/stats

Use the printed token JSON with depd: PUT /v1/tokens/{name}, base URL = the
printed URL. `depsim p7m --cert cert.pem` makes Apple's .p7m token file."#;

#[derive(Parser)]
#[command(
    name = "depsim",
    version,
    about = "A simulator of Apple's DEP (Automated Device Enrollment) service",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (the admin API answers loopback clients only).
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: SocketAddr,
    /// Number of devices (up to millions).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seed for serials, events, profile UUIDs and credentials.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of OAuth credential sets accepted.
    #[arg(long, default_value_t = 1)]
    credential_sets: usize,
    /// Write the (first) credential set as depd's token JSON to this file.
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Idle time after which a session gets 401 UNAUTHORIZED.
    #[arg(long, default_value_t = 1800)]
    session_idle_secs: u64,
    /// Age after which a cursor gets 400 EXPIRED_CURSOR.
    #[arg(long, default_value_t = 7 * 86_400)]
    cursor_max_age_secs: u64,
    /// Send a new X-ADM-Auth-Session on every authenticated response.
    #[arg(long)]
    rotate_sessions: bool,
    /// How long a rotated-out session token stays valid.
    #[arg(long, default_value_t = 60)]
    rotation_grace_secs: u64,
    /// Accepted oauth_timestamp skew; 0 accepts any.
    #[arg(long, default_value_t = 600)]
    timestamp_window_secs: u64,
    /// Serve Apple's endpoints under this path, e.g. /dep.
    #[arg(long, default_value = "")]
    path_prefix: String,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// How many requests GET /_sim/requests keeps.
    #[arg(long, default_value_t = 200)]
    request_log_size: usize,
    /// Also serve the APNs push service (HTTP/2 over TLS) here; its CA and
    /// push certificates come from /_sim/apns/ca and /_sim/apns/pushcert.
    #[arg(long)]
    apns_listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Write Apple's .p7m token file, encrypted to a certificate (such as
    /// the one depd's GET /v1/tokenpki/{name} returns).
    P7m {
        /// PEM certificate to encrypt to.
        #[arg(long)]
        cert: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Token JSON to encrypt (default: the credentials of --seed).
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// aes-128-cbc (Apple's), aes-192-cbc, aes-256-cbc or des-ede3-cbc.
        #[arg(long, default_value = "aes-128-cbc")]
        cipher: String,
        /// Wrap the JSON over lines of this many characters.
        #[arg(long)]
        wrap: Option<usize>,
        /// DER (definite lengths) instead of Apple's BER (indefinite).
        #[arg(long)]
        der: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::P7m {
            cert,
            out,
            tokens,
            cipher,
            wrap,
            der,
        }) => write_p7m(cli.serve.seed, &cert, out, tokens, &cipher, wrap, der),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("depsim: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_p7m(
    seed: u64,
    cert: &PathBuf,
    out: Option<PathBuf>,
    tokens: Option<PathBuf>,
    cipher: &str,
    wrap: Option<usize>,
    der: bool,
) -> Result<(), String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let json = match tokens {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        None => {
            let set = depd::sim::default_tokens(seed, time::OffsetDateTime::now_utc())
                .ok_or("no credentials")?;
            serde_json::to_string(&set).map_err(|e| e.to_string())?
        }
    };
    let options = token_file::P7mOptions {
        cipher: token_file::cipher_by_name(cipher)
            .ok_or_else(|| format!("unknown cipher {cipher:?}"))?,
        wrap_json: wrap,
        ber: !der,
    };
    let text =
        token_file::token_file_with(&json, &cert_pem, &options).map_err(|e| e.to_string())?;
    match out {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let secs = Duration::from_secs;
    let config = SimConfig {
        listen: args.listen,
        devices: args.devices,
        seed: args.seed,
        credential_sets: args.credential_sets,
        session_idle: secs(args.session_idle_secs),
        cursor_max_age: secs(args.cursor_max_age_secs),
        rotate_sessions: args.rotate_sessions,
        rotation_grace: secs(args.rotation_grace_secs),
        timestamp_window: (args.timestamp_window_secs > 0)
            .then(|| secs(args.timestamp_window_secs)),
        path_prefix: args.path_prefix,
        workers: args.workers,
        request_log_size: args.request_log_size,
        handle_signals: true,
        apns_listen: args.apns_listen,
        ..SimConfig::default()
    };
    let tokens_file = args.tokens_file;
    actix_web::rt::System::new().block_on(async move {
        let sim = Simulator::start(config).map_err(|e| e.to_string())?;
        let tokens = sim.tokens_json();
        if let Some(path) = &tokens_file {
            std::fs::write(path, format!("{tokens}\n"))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        println!("depsim: Apple DEP simulator at {}", sim.base_url());
        println!(
            "depsim: {} devices; admin API at {}",
            sim.device_count(),
            sim.admin_url()
        );
        if let Some(apns) = sim.apns() {
            println!(
                "depsim: APNs push service at {} (CA: {}/apns/ca)",
                apns.url(),
                sim.admin_url()
            );
        }
        for set in sim.credentials() {
            println!(
                "{}",
                serde_json::to_string(&set).map_err(|e| e.to_string())?
            );
        }
        sim.run_until_stopped().await.map_err(|e| e.to_string())
    })
}
