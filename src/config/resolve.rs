//! Turning parsed flags into a [`Config`]: dependent defaults, validation, warnings.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::cli::*;
use super::parse::{self, OriginList};
use super::{
    parse_invocation_from, process_env, AllowedOrigins, Backend, Config, ConfigError, Invocation,
};

/// Upper bound of `--store-cache-mb` (1 TiB): beyond it the byte count is not meaningful.
const MAX_STORE_CACHE_MB: u64 = 1 << 20;

impl Config {
    /// Loads the server configuration from `std::env::args` and the process environment.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(std::env::args_os(), &process_env())
    }

    /// Loads the server configuration from these arguments (the first is the program
    /// name) and this environment; validates it.
    pub fn load_from<I, T>(args: I, env: &HashMap<String, String>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        match parse_invocation_from(args, env)? {
            Invocation::Serve(config) => Ok(config),
            Invocation::Status(_) => Err(ConfigError::NotServe("status".into())),
            Invocation::Chaos(_) => Err(ConfigError::NotServe("chaos".into())),
        }
    }

    /// Resolves the flags' dependent defaults and validates the result.
    pub fn from_args(
        args: ServerArgs,
        config_file: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let peer_port = match args.peer_port {
            Some(p) => p,
            None if args.port == 0 => 0,
            None => args.port.checked_add(PEER_PORT_OFFSET).ok_or_else(|| {
                ConfigError::invalid(
                    "peer-port",
                    format!(
                        "the default --port + {PEER_PORT_OFFSET} = {} is above 65535; set --peer-port",
                        u32::from(args.port) + u32::from(PEER_PORT_OFFSET)
                    ),
                )
            })?,
        };
        let backend = match args.backend {
            BackendChoice::Auto if args.redis_url.is_some() => Backend::Redis,
            BackendChoice::Auto | BackendChoice::Raft => Backend::Raft,
            BackendChoice::Redis => Backend::Redis,
            BackendChoice::Local => Backend::Local,
        };
        let config = Config {
            config_file,
            peer_host: args.peer_host.unwrap_or_else(|| args.host.clone()),
            advertise_addr: args
                .advertise_addr
                .unwrap_or_else(|| format!("127.0.0.1:{}", args.port)),
            host: args.host,
            port: args.port,
            data_dir: args.data_dir,
            store_cache_mb: args.store_cache_mb,
            node_id: args.node_id,
            peer_port,
            peers: args.peers.map(|p| p.0).unwrap_or_default(),
            join: args.join,
            cluster_secret: args.cluster_secret,
            api_key: args.api_key,
            jwt_secret: args.jwt_secret,
            backend,
            redis_url: args.redis_url,
            redis_prefix: args.redis_prefix,
            allowed_origins: merge_origins(args.cors_origin, args.frontend_url),
            ping_interval: Duration::from_millis(args.ping_interval_ms),
            ping_timeout: Duration::from_millis(args.ping_timeout_ms),
            quote_throttle: Duration::from_millis(args.quote_throttle_ms),
            history_size: args.history_size,
            history_ttl: args.history_ttl,
            recovery_window: args.recovery_window,
            shutdown_timeout: args.shutdown_timeout,
            session_ttl: args.session_ttl,
            header_timeout: args.header_timeout,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_event_bytes: args.max_event_bytes,
            max_body_bytes: args.max_body_bytes,
            max_attachments: args.max_attachments,
            subscribe_rate: args.subscribe_rate,
            event_rate: args.event_rate,
            max_symbols: args.max_symbols,
            api_rate: args.api_rate,
            stats_interval: args.stats_interval,
            log_format: args.log_format,
            log_level: args.log_level,
            fault_injection: args.fault_injection,
            election_timeout: Duration::from_millis(args.election_timeout_ms),
            node_dead_after: args.node_dead_after,
            propose_timeout: args.propose_timeout,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and that the options fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |long: &str, reason: String| Err(ConfigError::invalid(long, reason));
        if self.host.trim().is_empty() {
            return bad("host", "must not be empty".into());
        }
        if self.peer_host.trim().is_empty() {
            return bad("peer-host", "must not be empty".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data-dir", "must not be empty".into());
        }
        if self.store_cache_mb > MAX_STORE_CACHE_MB {
            return bad(
                "store-cache-mb",
                format!("must be at most {MAX_STORE_CACHE_MB} (1 TiB)"),
            );
        }
        if self.node_id == 0 {
            return bad("node-id", "node ids start at 1".into());
        }
        if self.peer_port == self.port && self.port != 0 {
            return bad(
                "peer-port",
                format!(
                    "{} is also --port; peer traffic needs its own port",
                    self.port
                ),
            );
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            return bad(
                "peers",
                format!(
                    "this node's --node-id {} is not in the list (ids: {}); list every voting member, this one included",
                    self.node_id,
                    self.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if self.join.is_some() && !self.peers.is_empty() {
            return bad(
                "join",
                "a node either is a voting member (--peers) or joins as a learner (--join), not both".into(),
            );
        }
        match self.backend {
            Backend::Redis if self.redis_url.is_none() => {
                return bad("backend", "redis needs --redis-url / REDIS_URL".into())
            }
            Backend::Redis | Backend::Local => {
                let why = if self.backend == Backend::Redis {
                    "redis (chosen automatically when --redis-url / REDIS_URL is set)"
                } else {
                    "local"
                };
                if !self.peers.is_empty() {
                    return bad("peers", format!("only the raft backend uses peers, but the backend is {why}; pass --backend raft or drop --peers"));
                }
                if self.join.is_some() {
                    return bad(
                        "join",
                        format!("only the raft backend joins a cluster, but the backend is {why}"),
                    );
                }
            }
            Backend::Raft => {}
        }
        if let Some(url) = &self.redis_url {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
                return bad(
                    "redis-url",
                    "expected redis://[user:password@]host:port[/db] (or rediss://, unix://)"
                        .into(),
                );
            }
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return bad(
                "redis-prefix",
                "must be non-empty and without spaces".into(),
            );
        }
        let positive_durations = [
            ("ping-interval-ms", self.ping_interval),
            ("ping-timeout-ms", self.ping_timeout),
            ("quote-throttle-ms", self.quote_throttle),
            ("history-ttl", self.history_ttl),
            ("recovery-window", self.recovery_window),
            ("shutdown-timeout", self.shutdown_timeout),
            ("session-ttl", self.session_ttl),
            ("header-timeout", self.header_timeout),
            ("stats-interval", self.stats_interval),
            ("election-timeout-ms", self.election_timeout),
            ("node-dead-after", self.node_dead_after),
            ("propose-timeout", self.propose_timeout),
        ];
        for (long, d) in positive_durations {
            if d.is_zero() {
                return bad(long, "must be greater than zero".into());
            }
        }
        let max_propose = Duration::from_millis(raftcast_raft::state::MAX_PROPOSE_TIMEOUT_MS);
        if self.propose_timeout > max_propose {
            return bad(
                "propose-timeout",
                format!(
                    "must be at most {}s: a write retried after a lost leader is recognised as a \
                     duplicate only within {}s of its first attempt",
                    max_propose.as_secs(),
                    raftcast_raft::state::DEDUP_WINDOW_MS / 1000
                ),
            );
        }
        let positive_counts = [
            ("history-size", self.history_size),
            ("max-connections", self.max_connections),
            ("max-connections-per-ip", self.max_connections_per_ip),
            ("max-event-bytes", self.max_event_bytes),
            ("max-body-bytes", self.max_body_bytes),
            ("subscribe-rate", self.subscribe_rate as usize),
            ("event-rate", self.event_rate as usize),
            ("max-symbols", self.max_symbols),
            (
                "store-cache-mb",
                usize::try_from(self.store_cache_mb).unwrap_or(usize::MAX),
            ),
        ];
        for (long, n) in positive_counts {
            if n == 0 {
                return bad(long, "must be at least 1".into());
            }
        }
        // With --port 0 the default advertise address has port 0 until the listener binds.
        parse::parse_addr(&self.advertise_addr, self.port == 0)
            .map_err(|e| ConfigError::invalid("advertise-addr", e))?;
        parse::parse_log_filter(&self.log_level)
            .map_err(|e| ConfigError::invalid("log-level", e))?;
        Ok(())
    }

    /// Legal but suspicious settings, for the caller to log once logging is up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(addr) = self.peers.get(&self.node_id) {
            let listed_port = addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            if self.peer_port != 0 && listed_port != Some(self.peer_port) {
                out.push(format!("--peers lists this node ({}) at {addr} but --peer-port is {}; other nodes dial {addr}", self.node_id, self.peer_port));
            }
        }
        if self.redis_url.is_some() && self.backend != Backend::Redis {
            out.push(format!(
                "--redis-url is set but the backend is {}; Redis is not used",
                self.backend
            ));
        }
        if self.join.is_some() && self.node_id == 1 {
            out.push(
                "--join with --node-id 1: make sure no member of the cluster already uses id 1"
                    .into(),
            );
        }
        if self.node_dead_after <= self.election_timeout {
            out.push("--node-dead-after is not longer than the election timeout; peers will flap between reachable and unreachable".into());
        }
        for (flag, secret) in [
            ("--cluster-secret", &self.cluster_secret),
            ("--api-key", &self.api_key),
            ("--jwt-secret", &self.jwt_secret),
        ] {
            if secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
                out.push(format!("{flag} is shorter than 16 characters"));
            }
        }
        out
    }

    /// `host:port` of the public listener (IPv6 hosts in brackets).
    pub fn listen_addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// `host:port` of the peer listener.
    pub fn peer_listen_addr(&self) -> String {
        join_host_port(&self.peer_host, self.peer_port)
    }

    /// True when this node runs alone: no other voting member and nothing to join.
    pub fn is_single_node(&self) -> bool {
        self.join.is_none() && self.peers.keys().all(|id| *id == self.node_id)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn merge_origins(a: Option<OriginList>, b: Option<OriginList>) -> AllowedOrigins {
    let mut list = Vec::new();
    for origins in [a, b].into_iter().flatten() {
        match origins {
            OriginList::Any => return AllowedOrigins::Any,
            OriginList::List(l) => {
                for o in l {
                    if !list.contains(&o) {
                        list.push(o);
                    }
                }
            }
        }
    }
    if list.is_empty() {
        AllowedOrigins::None
    } else {
        AllowedOrigins::List(list)
    }
}

/// Hides the password of a URL such as `redis://user:pass@host:6379`.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => "***".to_string(),
    }
}

impl Default for Config {
    /// The configuration of `raftcast` started with no flags, env or file.
    fn default() -> Self {
        Config {
            config_file: None,
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            data_dir: DEFAULT_DATA_DIR.into(),
            store_cache_mb: DEFAULT_STORE_CACHE_MB,
            advertise_addr: format!("127.0.0.1:{DEFAULT_PORT}"),
            node_id: DEFAULT_NODE_ID,
            peer_host: DEFAULT_HOST.into(),
            peer_port: DEFAULT_PORT + PEER_PORT_OFFSET,
            peers: BTreeMap::new(),
            join: None,
            cluster_secret: None,
            api_key: None,
            jwt_secret: None,
            backend: Backend::Raft,
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.into(),
            allowed_origins: AllowedOrigins::None,
            ping_interval: Duration::from_millis(DEFAULT_PING_INTERVAL_MS),
            ping_timeout: Duration::from_millis(DEFAULT_PING_TIMEOUT_MS),
            quote_throttle: Duration::from_millis(DEFAULT_QUOTE_THROTTLE_MS),
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: Duration::from_secs(24 * 3600),
            recovery_window: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(10),
            session_ttl: Duration::from_secs(24 * 3600),
            header_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            subscribe_rate: DEFAULT_SUBSCRIBE_RATE,
            event_rate: DEFAULT_EVENT_RATE,
            max_symbols: DEFAULT_MAX_SYMBOLS,
            api_rate: DEFAULT_API_RATE,
            stats_interval: Duration::from_secs(60),
            log_format: LogFormat::Text,
            log_level: DEFAULT_LOG_LEVEL.into(),
            fault_injection: false,
            election_timeout: Duration::from_millis(DEFAULT_ELECTION_TIMEOUT_MS),
            node_dead_after: Duration::from_secs(3),
            propose_timeout: Duration::from_secs(3),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("config_file", &self.config_file)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("store_cache_mb", &self.store_cache_mb)
            .field("advertise_addr", &self.advertise_addr)
            .field("node_id", &self.node_id)
            .field("peer_host", &self.peer_host)
            .field("peer_port", &self.peer_port)
            .field("peers", &self.peers)
            .field("join", &self.join)
            .field("cluster_secret", &self.cluster_secret)
            .field("api_key", &self.api_key)
            .field("jwt_secret", &self.jwt_secret)
            .field("backend", &self.backend)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("allowed_origins", &self.allowed_origins)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("quote_throttle", &self.quote_throttle)
            .field("history_size", &self.history_size)
            .field("history_ttl", &self.history_ttl)
            .field("recovery_window", &self.recovery_window)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("session_ttl", &self.session_ttl)
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_attachments", &self.max_attachments)
            .field("subscribe_rate", &self.subscribe_rate)
            .field("event_rate", &self.event_rate)
            .field("max_symbols", &self.max_symbols)
            .field("api_rate", &self.api_rate)
            .field("stats_interval", &self.stats_interval)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("fault_injection", &self.fault_injection)
            .field("election_timeout", &self.election_timeout)
            .field("node_dead_after", &self.node_dead_after)
            .field("propose_timeout", &self.propose_timeout)
            .finish()
    }
}
