//! The clap structure: top-level server flags plus the `status` and `chaos` subcommands.
//!
//! Field doc comments are the `--help` text and the "meaning" column of
//! [`options_table`](super::options_table); clap adds the env name and the default.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use super::parse::{
    parse_duration, parse_host, parse_host_port, parse_log_filter, parse_origins, parse_peers,
    parse_secret, OriginList, Peers,
};
use super::Secret;

pub(crate) const DEFAULT_PORT: u16 = 5000;
pub(crate) const DEFAULT_HOST: &str = "0.0.0.0";
pub(crate) const DEFAULT_DATA_DIR: &str = "./data";
pub(crate) const DEFAULT_NODE_ID: u64 = 1;
pub(crate) const PEER_PORT_OFFSET: u16 = 1000;
pub(crate) const DEFAULT_REDIS_PREFIX: &str = "raftcast";
pub(crate) const DEFAULT_PING_INTERVAL_MS: u64 = 25_000;
pub(crate) const DEFAULT_PING_TIMEOUT_MS: u64 = 20_000;
pub(crate) const DEFAULT_QUOTE_THROTTLE_MS: u64 = 100;
pub(crate) const DEFAULT_HISTORY_SIZE: usize = 1000;
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1000;
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 65_536;
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 65_536;
pub(crate) const DEFAULT_MAX_ATTACHMENTS: usize = 10;
pub(crate) const DEFAULT_SUBSCRIBE_RATE: u32 = 10;
pub(crate) const DEFAULT_EVENT_RATE: u32 = 50;
pub(crate) const DEFAULT_MAX_SYMBOLS: usize = 50;
pub(crate) const DEFAULT_API_RATE: u32 = 0;
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
pub(crate) const DEFAULT_ELECTION_TIMEOUT_MS: u64 = 300;
pub(crate) const DEFAULT_STORE_CACHE_MB: u64 = raftcast_raft::store::DEFAULT_CACHE_BYTES >> 20;
pub(crate) const DEFAULT_STATUS_URL: &str = "http://127.0.0.1:5000";

/// Defaults that depend on other options: shown in `--help` and the options table.
pub(crate) const COMPUTED_DEFAULTS: &[(&str, &str)] = &[
    ("advertise_addr", "127.0.0.1:<port>"),
    ("peer_port", "--port + 1000"),
    ("peer_host", "same as --host"),
    ("peers", "none (single node)"),
    ("cluster_secret", "generated, kept in the data dir"),
    ("api_key", "generated, kept in the data dir"),
    ("cors_origin", "none (same-origin only)"),
    ("frontend_url", "none"),
];

const H_SERVER: &str = "Server";
const H_CLUSTER: &str = "Cluster (Raft)";
const H_SECRETS: &str = "Secrets";
const H_BACKEND: &str = "Fan-out backend";
const H_HTTP: &str = "HTTP API and CORS";
const H_SOCKET: &str = "Socket.IO clients";
const H_HISTORY: &str = "History and recovery";
const H_OPS: &str = "Operations";

/// raftcast: a Socket.IO real-time server whose nodes replicate rooms with Raft.
///
/// Every option can also be set by its environment variable or in a TOML file given with
/// --config (keys are the long flag names); precedence is flag > env > file > default.
#[derive(Debug, Clone, Parser)]
#[command(name = "raftcast", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to run; none = the server.
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// Server options.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Subcommands besides the server.
#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Print the cluster status of a running node.
    Status(StatusArgs),
    /// Run a local chaos test against a throw-away cluster.
    Chaos(ChaosArgs),
}

/// `raftcast status`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StatusArgs {
    /// Base URL of the node to ask.
    #[arg(long, env = "RAFTCAST_URL", default_value = DEFAULT_STATUS_URL)]
    pub url: String,
    /// Print the raw JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// API key, for the parts of the status that need one.
    #[arg(long, env = "RAFTCAST_API_KEY", value_parser = parse_secret)]
    pub api_key: Option<Secret>,
}

/// `raftcast chaos`: a throw-away local cluster under load, with faults, checked end to end.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ChaosArgs {
    /// Seed of the fault schedule; random when absent (and printed).
    #[arg(long, env = "RAFTCAST_CHAOS_SEED")]
    pub seed: Option<u64>,
    /// How long to inject faults.
    #[arg(long, env = "RAFTCAST_CHAOS_DURATION", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Number of nodes in the test cluster.
    #[arg(long, env = "RAFTCAST_CHAOS_NODES", default_value_t = 3)]
    pub nodes: usize,
    /// Where to write the report (JSON).
    #[arg(long, env = "RAFTCAST_CHAOS_OUT", default_value = "chaos-report.json")]
    pub out: PathBuf,
    /// Where to write the timeline plot; default: the report's path with `.png`.
    #[arg(long, env = "RAFTCAST_CHAOS_PLOT", value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// The raftcast binary the cluster runs; default: this executable.
    #[arg(long, env = "RAFTCAST_CHAOS_BINARY", value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Socket.IO clients, spread over the nodes and users.
    #[arg(long, env = "RAFTCAST_CHAOS_CLIENTS", default_value_t = 6)]
    pub clients: usize,
    /// Users (rooms `user:<id>`) the publisher emits to, round-robin.
    #[arg(long, env = "RAFTCAST_CHAOS_USERS", default_value_t = 2)]
    pub users: usize,
    /// Durable emits per second (POST /api/emit).
    #[arg(long, env = "RAFTCAST_CHAOS_RATE", default_value_t = 50)]
    pub rate: u32,
    /// Emits per request: 1 posts each to POST /api/emit, more post them together to
    /// POST /api/emit/batch (the rate stays in emits per second).
    #[arg(long, env = "RAFTCAST_CHAOS_BATCH", default_value_t = 1)]
    pub batch: usize,
    /// Volatile quotes per second (POST /api/quotes), 0 = none.
    #[arg(long, env = "RAFTCAST_CHAOS_QUOTE_RATE", default_value_t = 20)]
    pub quote_rate: u32,
    /// Time between the starts of two faults.
    #[arg(long, env = "RAFTCAST_CHAOS_FAULT_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub fault_every: Duration,
    /// How long a fault lasts (down, frozen or partitioned) before it is undone.
    #[arg(long, env = "RAFTCAST_CHAOS_FAULT_HOLD", default_value = "3s", value_parser = parse_duration)]
    pub fault_hold: Duration,
    /// Fault kinds to draw from, comma-separated, or `all`: kill-leader, kill-follower,
    /// kill-client-node, pause-leader, pause-follower, isolate-leader, one-way, slow-link.
    #[arg(long, env = "RAFTCAST_CHAOS_FAULTS", default_value = "all")]
    pub faults: String,
    /// Longest wait, after the last fault, for every client and node to catch up.
    #[arg(long, env = "RAFTCAST_CHAOS_SETTLE", default_value = "30s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Keep the cluster's temp dir (data and node logs) even when the run passes.
    #[arg(long, env = "RAFTCAST_CHAOS_KEEP")]
    pub keep: bool,
    /// How partitions are made: `switch` (the nodes' fault switch, loopback, no root) or
    /// `netns` (a network namespace per node and real link faults; needs root and `ip netns`).
    #[arg(long, env = "RAFTCAST_CHAOS_NET", value_enum, default_value_t = NetMode::Switch)]
    pub net: NetMode,
}

/// Where a chaos run's nodes live and how its partitions are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum NetMode {
    /// Every node on 127.0.0.1; partitions through each node's fault switch.
    #[default]
    Switch,
    /// A network namespace per node behind a bridge; partitions are real network faults.
    Netns,
}

impl NetMode {
    /// The `--net` value.
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Switch => "switch",
            NetMode::Netns => "netns",
        }
    }
}

/// Resolved backend choice as given (`auto` resolves in [`Config`](super::Config)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// redis when --redis-url is set, else raft.
    Auto,
    /// Replicate through Raft between the --peers.
    Raft,
    /// Cross-node fan-out through Redis pub/sub (as the seed).
    Redis,
    /// In-memory, this node only (tests, ephemeral use).
    Local,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The server's flags, as given (before defaults that depend on other flags).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML file setting any option below (keys = long flag names, '-' or '_').
    #[arg(long, env = "RAFTCAST_CONFIG", value_name = "FILE", help_heading = H_SERVER)]
    pub config: Option<PathBuf>,

    /// Public port: Socket.IO, HTTP API, health, metrics (0 = any free port).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT, help_heading = H_SERVER)]
    pub port: u16,
    /// Address the public port binds to.
    #[arg(long, env = "RAFTCAST_HOST", default_value = DEFAULT_HOST, value_parser = parse_host, help_heading = H_SERVER)]
    pub host: String,
    /// Directory for the node's state (sled), its latest Raft snapshot (`raft/snapshot.current`), generated secrets and Raft log.
    #[arg(long, env = "RAFTCAST_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR", help_heading = H_SERVER)]
    pub data_dir: PathBuf,
    /// Most MiB of the Raft log and state kept in memory (sled's page cache); the rest is read from disk.
    #[arg(long, env = "RAFTCAST_STORE_CACHE_MB", default_value_t = DEFAULT_STORE_CACHE_MB, value_name = "MIB", help_heading = H_SERVER)]
    pub store_cache_mb: u64,
    /// Public HOST:PORT other nodes and the status pages show for this node.
    #[arg(long, env = "RAFTCAST_ADVERTISE_ADDR", value_name = "HOST:PORT", value_parser = parse_host_port, help_heading = H_SERVER)]
    pub advertise_addr: Option<String>,

    /// This node's id in the cluster (≥ 1).
    #[arg(long, env = "RAFTCAST_NODE_ID", default_value_t = DEFAULT_NODE_ID, help_heading = H_CLUSTER)]
    pub node_id: u64,
    /// Port for peer (Raft) traffic; never the public port.
    #[arg(long, env = "RAFTCAST_PEER_PORT", help_heading = H_CLUSTER)]
    pub peer_port: Option<u16>,
    /// Address the peer port binds to.
    #[arg(long, env = "RAFTCAST_PEER_HOST", value_parser = parse_host, help_heading = H_CLUSTER)]
    pub peer_host: Option<String>,
    /// Voting members as ID=HOST:PORT,... (peer ports), this node included.
    #[arg(long, env = "RAFTCAST_PEERS", value_name = "ID=HOST:PORT,...", value_parser = parse_peers, help_heading = H_CLUSTER)]
    pub peers: Option<Peers>,
    /// Join a running cluster as a non-voting learner through this member's peer address.
    #[arg(long, env = "RAFTCAST_JOIN", value_name = "HOST:PORT", value_parser = parse_host_port, help_heading = H_CLUSTER)]
    pub join: Option<String>,
    /// Raft election timeout in milliseconds.
    #[arg(long, env = "RAFTCAST_ELECTION_TIMEOUT_MS", default_value_t = DEFAULT_ELECTION_TIMEOUT_MS, value_name = "MS", help_heading = H_CLUSTER)]
    pub election_timeout_ms: u64,
    /// A peer silent this long is reported unreachable.
    #[arg(long, env = "RAFTCAST_NODE_DEAD_AFTER", default_value = "3s", value_parser = parse_duration, value_name = "DURATION", help_heading = H_CLUSTER)]
    pub node_dead_after: Duration,
    /// How long a write waits for a Raft commit before answering NO_QUORUM (at most 20s).
    #[arg(long, env = "RAFTCAST_PROPOSE_TIMEOUT", default_value = "3s", value_parser = parse_duration, value_name = "DURATION", help_heading = H_CLUSTER)]
    pub propose_timeout: Duration,
    /// Chaos-testing switch: let `raftcast chaos` inject faults into the peer transport.
    #[arg(long, env = "RAFTCAST_FAULT_INJECTION", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), value_name = "BOOL", help_heading = H_CLUSTER)]
    pub fault_injection: bool,

    /// Secret that authenticates peer traffic.
    #[arg(long, env = "RAFTCAST_CLUSTER_SECRET", value_parser = parse_secret, help_heading = H_SECRETS)]
    pub cluster_secret: Option<Secret>,
    /// Bearer key that guards /api/.
    #[arg(long, env = "RAFTCAST_API_KEY", value_parser = parse_secret, help_heading = H_SECRETS)]
    pub api_key: Option<Secret>,
    /// HS256 secret for client JWTs (auth.token); none = session ids only.
    #[arg(long, env = "RAFTCAST_JWT_SECRET", value_parser = parse_secret, help_heading = H_SECRETS)]
    pub jwt_secret: Option<Secret>,

    /// Cross-node fan-out: auto = redis when --redis-url is set, else raft.
    #[arg(long, env = "RAFTCAST_BACKEND", value_enum, default_value_t = BackendChoice::Auto, help_heading = H_BACKEND)]
    pub backend: BackendChoice,
    /// Redis URL, `redis://[user:pass@]host:port[/db]`; selects the redis backend.
    #[arg(long, env = "REDIS_URL", value_name = "URL", help_heading = H_BACKEND)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis channel and key names.
    #[arg(long, env = "RAFTCAST_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX, help_heading = H_BACKEND)]
    pub redis_prefix: String,

    /// Allowed cross-origin browser origins, comma-separated; `*` = any.
    #[arg(long, env = "CORS_ORIGIN", value_name = "ORIGINS", value_parser = parse_origins, help_heading = H_HTTP)]
    pub cors_origin: Option<OriginList>,
    /// Front-end URL(s) whose origin is allowed too (as in the seed).
    #[arg(long, env = "FRONTEND_URL", value_name = "URLS", value_parser = parse_origins, help_heading = H_HTTP)]
    pub frontend_url: Option<OriginList>,
    /// Largest HTTP API request body in bytes (413 beyond; a batch of emits may be 16 times this).
    #[arg(long, env = "RAFTCAST_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, value_name = "BYTES", help_heading = H_HTTP)]
    pub max_body_bytes: usize,
    /// HTTP API requests per second per API key (0 = unlimited; each event of a batch counts).
    #[arg(long, env = "RAFTCAST_API_RATE", default_value_t = DEFAULT_API_RATE, value_name = "PER_SEC", help_heading = H_HTTP)]
    pub api_rate: u32,
    /// Session lifetime when POST /api/sessions gives no ttlSeconds.
    #[arg(long, env = "RAFTCAST_SESSION_TTL", default_value = "24h", value_parser = parse_duration, value_name = "DURATION", help_heading = H_HTTP)]
    pub session_ttl: Duration,
    /// A client must send its HTTP request headers within this time (slow-header defence).
    #[arg(long, env = "RAFTCAST_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION", help_heading = H_HTTP)]
    pub header_timeout: Duration,

    /// Engine.IO ping interval in milliseconds.
    #[arg(long, env = "RAFTCAST_PING_INTERVAL_MS", default_value_t = DEFAULT_PING_INTERVAL_MS, value_name = "MS", help_heading = H_SOCKET)]
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout in milliseconds.
    #[arg(long, env = "RAFTCAST_PING_TIMEOUT_MS", default_value_t = DEFAULT_PING_TIMEOUT_MS, value_name = "MS", help_heading = H_SOCKET)]
    pub ping_timeout_ms: u64,
    /// Most open client connections on this node.
    #[arg(long, env = "RAFTCAST_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, help_heading = H_SOCKET)]
    pub max_connections: usize,
    /// Most open client connections from one IP address.
    #[arg(long, env = "RAFTCAST_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP, help_heading = H_SOCKET)]
    pub max_connections_per_ip: usize,
    /// Largest inbound Socket.IO message in bytes.
    #[arg(long, env = "RAFTCAST_MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES, value_name = "BYTES", help_heading = H_SOCKET)]
    pub max_event_bytes: usize,
    /// Most binary attachments in one inbound Socket.IO packet.
    #[arg(long, env = "RAFTCAST_MAX_ATTACHMENTS", default_value_t = DEFAULT_MAX_ATTACHMENTS, help_heading = H_SOCKET)]
    pub max_attachments: usize,
    /// Subscribe/unsubscribe operations per socket per second (burst the same).
    #[arg(long, env = "RAFTCAST_SUBSCRIBE_RATE", default_value_t = DEFAULT_SUBSCRIBE_RATE, value_name = "PER_SEC", help_heading = H_SOCKET)]
    pub subscribe_rate: u32,
    /// Client events per socket per second (burst the same).
    #[arg(long, env = "RAFTCAST_EVENT_RATE", default_value_t = DEFAULT_EVENT_RATE, value_name = "PER_SEC", help_heading = H_SOCKET)]
    pub event_rate: u32,
    /// Most watchlist symbols one socket may subscribe to.
    #[arg(long, env = "RAFTCAST_MAX_SYMBOLS", default_value_t = DEFAULT_MAX_SYMBOLS, help_heading = H_SOCKET)]
    pub max_symbols: usize,
    /// quote:update coalescing: latest quote per symbol at most once per this many ms.
    #[arg(long, env = "RAFTCAST_QUOTE_THROTTLE_MS", default_value_t = DEFAULT_QUOTE_THROTTLE_MS, value_name = "MS", help_heading = H_SOCKET)]
    pub quote_throttle_ms: u64,

    /// Durable events kept per room for replay.
    #[arg(long, env = "RAFTCAST_HISTORY_SIZE", default_value_t = DEFAULT_HISTORY_SIZE, value_name = "EVENTS", help_heading = H_HISTORY)]
    pub history_size: usize,
    /// Age beyond which a room's events are dropped from its history.
    #[arg(long, env = "RAFTCAST_HISTORY_TTL", default_value = "24h", value_parser = parse_duration, value_name = "DURATION", help_heading = H_HISTORY)]
    pub history_ttl: Duration,
    /// Socket.IO connection state recovery window.
    #[arg(long, env = "RAFTCAST_RECOVERY_WINDOW", default_value = "2m", value_parser = parse_duration, value_name = "DURATION", help_heading = H_HISTORY)]
    pub recovery_window: Duration,

    /// Longest a graceful shutdown (SIGTERM/SIGINT) may take.
    #[arg(long, env = "RAFTCAST_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION", help_heading = H_OPS)]
    pub shutdown_timeout: Duration,
    /// Period of the stats log line.
    #[arg(long, env = "RAFTCAST_STATS_INTERVAL", default_value = "60s", value_parser = parse_duration, value_name = "DURATION", help_heading = H_OPS)]
    pub stats_interval: Duration,
    /// Log line format.
    #[arg(long, env = "RAFTCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = H_OPS)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `raftcast=debug,openraft=warn`.
    #[arg(long, env = "RUST_LOG", default_value = DEFAULT_LOG_LEVEL, value_parser = parse_log_filter, value_name = "FILTER", help_heading = H_OPS)]
    pub log_level: String,
}
