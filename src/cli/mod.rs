//! The command-line client: `depd` subcommands that talk to a running
//! daemon over its HTTP API (`/v1/…` for depd's own state, `/proxy/{name}/…`
//! for Apple's DEP API), covering everything NanoDEP's `cfg-*` and `dep-*`
//! scripts do. `main.rs` only parses and dispatches; each area has a file:
//! `admin.rs` (names, status, sync, config, assigner, tokens), `pki.rs`
//! (certificate, token file, MAID JWT), `apple.rs` (proxied Apple calls),
//! `mdm.rs` (the MDM service and the command generator).
//! `client.rs` is the HTTP client and `output.rs` turns JSON into text.

mod admin;
mod apple;
mod client;
pub mod import;
mod mdm;
mod once_output;
mod output;
mod pki;
mod rules;
pub(crate) mod sync_once;
pub mod tools;

pub use admin::{AssignerCommand, ConfigCommand, TokensUploadArgs};
pub use apple::{DevicesCommand, ProfileCommand};
pub use client::{CliError, Client, Target};
pub use mdm::MdmCommand;

use clap::Subcommand;

/// Where the daemon is and how to print its answers; every client command
/// takes these.
#[derive(clap::Args, Clone)]
pub struct Connection {
    /// depd's URL [env: DEPD_URL, else NanoDEP's BASE_URL] [default: http://127.0.0.1:9001].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The API key [env: DEPD_API_KEY, else NanoDEP's APIKEY].
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Print the daemon's raw JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The DEP name a command works on.
#[derive(clap::Args, Clone)]
pub struct NameArg {
    /// The DEP name (DEP_NAME, as in NanoDEP's scripts).
    #[arg(short = 'n', long = "name", env = "DEP_NAME", value_name = "NAME")]
    pub name: String,
}

/// The client commands, flattened into `depd`'s top level.
#[derive(Subcommand)]
pub enum Command {
    /// List the DEP names the daemon knows.
    Names {
        #[command(flatten)]
        conn: Connection,
    },
    /// Token health, session and last error of one name (-n) or of all.
    Status {
        /// Only this DEP name.
        #[arg(short = 'n', long = "name", env = "DEP_NAME", value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Run a sync cycle now for one name (-n) or for every name (--all).
    Sync {
        /// The DEP name.
        #[arg(short = 'n', long = "name", env = "DEP_NAME", value_name = "NAME")]
        name: Option<String>,
        /// Every name.
        #[arg(long)]
        all: bool,
        /// Wait for the cycle to finish and print its report.
        #[arg(long)]
        wait: bool,
        /// No daemon: run one cycle per name on a stopped daemon's store
        /// (like NanoDEP's depsyncer -duration 0), wait for its assignments
        /// and webhook deliveries, exit 1 if any name failed.
        #[arg(long)]
        once: bool,
        /// With --once: the names (default: every name with tokens).
        #[arg(value_name = "NAME", requires = "once")]
        names: Vec<String>,
        #[command(flatten)]
        local: once_output::LocalArgs,
        #[command(flatten)]
        conn: Connection,
    },
    /// Forget the sync cursor and fetch every device again.
    Resync {
        #[command(flatten)]
        name: NameArg,
        /// Wait for the cycle to finish and print its report.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Get the assigner profile, or set it.
    Assigner {
        #[command(subcommand)]
        command: AssignerCommand,
    },
    /// Get the Apple base URL of a name, or set it.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Make a new staging certificate to upload to Apple's portal.
    Cert(pki::CertArgs),
    /// Upload the .p7m token file from Apple's portal (promotes the certificate).
    UploadToken(pki::UploadTokenArgs),
    /// A MAID JWT signed with the name's current key.
    Maidjwt(pki::MaidJwtArgs),
    /// Apple's account details of the name's MDM server.
    Account {
        #[command(flatten)]
        name: NameArg,
        #[command(flatten)]
        conn: Connection,
    },
    /// Apple's device calls.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Define, get, assign and remove enrollment profiles; `managed`:
    /// profiles depd keeps by name.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Assignment rules: get, set, check a file offline, preview.
    Rules {
        #[command(subcommand)]
        command: rules::RulesCommand,
    },
    /// Activation-lock a device.
    ActivationLock(apple::ActivationLockArgs),
    /// Disown devices (irreversible: they leave the organization).
    Disown(apple::DisownArgs),
    /// The MDM service: enqueue, push, pushcert, enrollments, commands, and
    /// a command-plist generator.
    Mdm {
        #[command(subcommand)]
        command: MdmCommand,
    },
}

/// Runs a client command on its own actix runtime (awc needs one).
pub fn run(command: Command) -> Result<(), CliError> {
    actix_web::rt::System::new().block_on(dispatch(command))
}

/// Runs `depd tokens upload`.
pub fn run_tokens_upload(args: TokensUploadArgs) -> Result<(), CliError> {
    actix_web::rt::System::new().block_on(admin::tokens_upload(args))
}

async fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Names { conn } => admin::names(&conn).await,
        Command::Status { name, conn } => admin::status(name.as_deref(), &conn).await,
        Command::Sync {
            once: true,
            names,
            local,
            conn,
            ..
        } => once_output::sync_once(names, local, conn.json).await,
        Command::Sync {
            name,
            all,
            wait,
            conn,
            ..
        } => admin::sync(name.as_deref(), all, wait, &conn).await,
        Command::Resync { name, wait, conn } => admin::resync(&name.name, wait, &conn).await,
        Command::Assigner { command } => admin::assigner(command).await,
        Command::Config { command } => admin::config(command).await,
        Command::Cert(args) => pki::cert(args).await,
        Command::UploadToken(args) => pki::upload_token(args).await,
        Command::Maidjwt(args) => pki::maidjwt(args).await,
        Command::Account { name, conn } => apple::account(&name.name, &conn).await,
        Command::Devices { command } => apple::devices(command).await,
        Command::Profile { command } => apple::profile(command).await,
        Command::Rules { command } => rules::rules(command).await,
        Command::ActivationLock(args) => apple::activation_lock(args).await,
        Command::Disown(args) => apple::disown(args).await,
        Command::Mdm { command } => mdm::run(command).await,
    }
}
