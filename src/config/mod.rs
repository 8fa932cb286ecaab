//! Configuration: one [`Config`] from flags, environment, a TOML file and defaults.
//!
//! Precedence is flag > env > config file (`--config FILE` / `RAFTCAST_CONFIG`) > default.
//! Every flag has an env twin: the seed's names keep their meaning (`PORT`, `REDIS_URL`,
//! `CORS_ORIGIN`, `FRONTEND_URL`), the log filter is `RUST_LOG`, every other one is
//! `RAFTCAST_` + the flag name in upper snake case. File keys are the long flag names
//! (`data-dir` or `data_dir`); an unknown key is an error. Relative paths are relative to
//! the working directory.
//!
//! [`parse_invocation`] is the binary's entry point (server, `status` or `chaos`);
//! [`Config::load_from`] takes the arguments and an env map, so tests never touch the
//! process environment. [`options_table`] renders every server option as Markdown.

mod cli;
mod docs;
mod error;
mod layer;
mod parse;
mod resolve;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

pub use cli::{BackendChoice, ChaosArgs, Cli, Cmd, LogFormat, NetMode, ServerArgs, StatusArgs};
pub use docs::options_table;
pub use error::ConfigError;
pub use parse::{OriginList, Peers};
pub use types::{AllowedOrigins, Backend, Secret};

use cli::*;

/// Every resolved setting of a server node.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Bind address of the public port.
    pub host: String,
    /// Public port (Socket.IO, HTTP API, health, metrics); 0 = any free port.
    pub port: u16,
    /// State directory (sled, generated secrets).
    pub data_dir: PathBuf,
    /// Most MiB of the Raft store sled keeps in memory.
    pub store_cache_mb: u64,
    /// `host:port` other nodes and status pages show for this node.
    pub advertise_addr: String,
    /// This node's id (≥ 1).
    pub node_id: u64,
    /// Bind address of the peer port.
    pub peer_host: String,
    /// Peer (Raft) port; never equal to `port`.
    pub peer_port: u16,
    /// Voting members: id → peer `host:port`; empty = single node. Contains `node_id` when not empty.
    pub peers: BTreeMap<u64, String>,
    /// Peer address of a member to join through, as a learner.
    pub join: Option<String>,
    /// Authenticates peer traffic; `None` = generate one.
    pub cluster_secret: Option<Secret>,
    /// Guards `/api/`; `None` = generate one.
    pub api_key: Option<Secret>,
    /// HS256 key for client JWTs; `None` = JWT auth off.
    pub jwt_secret: Option<Secret>,
    /// Fan-out backend.
    pub backend: Backend,
    /// Redis URL (may hold a password: `Debug` hides it).
    pub redis_url: Option<String>,
    /// Prefix of Redis channels and keys.
    pub redis_prefix: String,
    /// CORS policy (`--cors-origin` and `--frontend-url` together).
    pub allowed_origins: AllowedOrigins,
    /// Engine.IO ping interval.
    pub ping_interval: Duration,
    /// Engine.IO ping timeout.
    pub ping_timeout: Duration,
    /// quote:update coalescing period.
    pub quote_throttle: Duration,
    /// Durable events kept per room.
    pub history_size: usize,
    /// Age limit of a room's history.
    pub history_ttl: Duration,
    /// Socket.IO connection state recovery window.
    pub recovery_window: Duration,
    /// Graceful shutdown deadline.
    pub shutdown_timeout: Duration,
    /// Session lifetime when POST /api/sessions gives none.
    pub session_ttl: Duration,
    /// Time a client has to send its HTTP request headers.
    pub header_timeout: Duration,
    /// Most client connections on this node.
    pub max_connections: usize,
    /// Most client connections from one IP.
    pub max_connections_per_ip: usize,
    /// Largest inbound Socket.IO message, bytes.
    pub max_event_bytes: usize,
    /// Largest HTTP API body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most binary attachments per inbound packet.
    pub max_attachments: usize,
    /// Subscription operations per socket per second (burst the same).
    pub subscribe_rate: u32,
    /// Client events per socket per second (burst the same).
    pub event_rate: u32,
    /// Most watchlist symbols per socket.
    pub max_symbols: usize,
    /// HTTP API requests per second per key; 0 = unlimited.
    pub api_rate: u32,
    /// Period of the stats log line.
    pub stats_interval: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directive.
    pub log_level: String,
    /// Chaos-testing switch on the peer transport.
    pub fault_injection: bool,
    /// Raft election timeout.
    pub election_timeout: Duration,
    /// A peer silent this long is reported unreachable.
    pub node_dead_after: Duration,
    /// How long a write waits for a commit before NO_QUORUM.
    pub propose_timeout: Duration,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per process
pub enum Invocation {
    /// Run the server (no subcommand).
    Serve(Config),
    /// `raftcast status`.
    Status(StatusArgs),
    /// `raftcast chaos`.
    Chaos(ChaosArgs),
}

/// The clap command with env names, defaults and help as `--help` shows them.
pub fn command() -> clap::Command {
    Cli::command()
        .mut_args(|a| a.hide_env_values(true))
        .mut_subcommands(|s| s.mut_args(|a| a.hide_env_values(true)))
        .mut_args(|a| {
            let computed = COMPUTED_DEFAULTS
                .iter()
                .find(|(id, _)| a.get_id() == *id)
                .map(|(_, text)| *text);
            match (computed, a.get_help().map(ToString::to_string)) {
                (Some(text), Some(help)) => a.help(format!("{help} [default: {text}]")),
                _ => a,
            }
        })
}

/// Parses `std::env::args` and the process environment.
pub fn parse_invocation() -> Result<Invocation, ConfigError> {
    parse_invocation_from(std::env::args_os(), &process_env())
}

/// Parses the given arguments (the first is the program name) with `env` as the
/// environment.
pub fn parse_invocation_from<I, T>(
    args: I,
    env: &HashMap<String, String>,
) -> Result<Invocation, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let full = command();
    let bare = layer::without_env(full.clone());
    let first = match bare.clone().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if is_help_kind(e.kind()) => {
            // Render help from the command that knows the env names (values hidden).
            return Err(full.try_get_matches_from(&args).err().unwrap_or(e).into());
        }
        Err(e) => return Err(e.into()),
    };
    let (extra, config_file) = match first.subcommand() {
        None => {
            let config_file = match first.get_one::<PathBuf>("config") {
                Some(path) => Some(path.clone()),
                None => env
                    .get("RAFTCAST_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            };
            let file = match &config_file {
                Some(path) => Some(layer::read_file(path, &full)?),
                None => None,
            };
            let extra = layer::layered_args(&full, &bare, &first, env, file.as_ref())?;
            (extra, config_file)
        }
        Some((name, sub)) => {
            let (Some(full_sub), Some(bare_sub)) =
                (full.find_subcommand(name), bare.find_subcommand(name))
            else {
                return Err(ConfigError::NotServe(name.to_string()));
            };
            (
                layer::layered_args(full_sub, bare_sub, sub, env, None)?,
                None,
            )
        }
    };
    args.extend(extra);
    let matches = bare.try_get_matches_from(&args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.cmd {
        None => Ok(Invocation::Serve(Config::from_args(
            cli.server,
            config_file,
        )?)),
        Some(Cmd::Status(a)) => Ok(Invocation::Status(a)),
        Some(Cmd::Chaos(a)) => Ok(Invocation::Chaos(a)),
    }
}

fn is_help_kind(kind: clap::error::ErrorKind) -> bool {
    use clap::error::ErrorKind::*;
    matches!(
        kind,
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
    )
}

fn process_env() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
