//! Unit tests of the configuration layers, parsers and validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(args: &[&str], pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec!["raftcast"];
    all.extend_from_slice(args);
    Config::load_from(all, &env(pairs))
}

fn ok(args: &[&str], pairs: &[(&str, &str)]) -> Config {
    match load(args, pairs) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(args: &[&str], pairs: &[(&str, &str)]) -> String {
    match load(args, pairs) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A temporary TOML file, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "raftcast-config-test-{}-{n}.toml",
            std::process::id()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        TempToml(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn defaults_match_default_impl_and_contract() {
    let c = ok(&[], &[]);
    assert_eq!(c, Config::default());
    assert_eq!(c.port, 5000);
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.store_cache_mb, 256);
    assert_eq!(c.node_id, 1);
    assert_eq!(c.peer_port, 6000);
    assert_eq!(c.peer_host, "0.0.0.0");
    assert!(c.peers.is_empty());
    assert!(c.is_single_node());
    assert_eq!(c.advertise_addr, "127.0.0.1:5000");
    assert_eq!(c.backend, Backend::Raft);
    assert_eq!(c.redis_prefix, "raftcast");
    assert_eq!(c.allowed_origins, AllowedOrigins::None);
    assert_eq!(c.ping_interval, Duration::from_millis(25_000));
    assert_eq!(c.ping_timeout, Duration::from_millis(20_000));
    assert_eq!(c.quote_throttle, Duration::from_millis(100));
    assert_eq!(c.history_size, 1000);
    assert_eq!(c.history_ttl, Duration::from_secs(86_400));
    assert_eq!(c.recovery_window, Duration::from_secs(120));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.session_ttl, Duration::from_secs(86_400));
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.max_connections_per_ip, 1000);
    assert_eq!(c.max_event_bytes, 65_536);
    assert_eq!(c.max_body_bytes, 65_536);
    assert_eq!(c.max_attachments, 10);
    assert_eq!(c.subscribe_rate, 10);
    assert_eq!(c.event_rate, 50);
    assert_eq!(c.max_symbols, 50);
    assert_eq!(c.api_rate, 0);
    assert_eq!(c.stats_interval, Duration::from_secs(60));
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.log_level, "info");
    assert!(!c.fault_injection);
    assert_eq!(c.election_timeout, Duration::from_millis(300));
    assert_eq!(c.node_dead_after, Duration::from_secs(3));
    assert_eq!(c.propose_timeout, Duration::from_secs(3));
    assert!(c.cluster_secret.is_none() && c.api_key.is_none() && c.jwt_secret.is_none());
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn process_env_is_not_read_by_load_from() {
    // RUST_LOG / PORT may be set in the test runner's environment; the map rules.
    let c = ok(&[], &[]);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.port, 5000);
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file =
        TempToml::new("port = 7000\nhistory_size = 7\nmax-symbols = 9\nlog-format = \"json\"\n");
    let e = [
        ("RAFTCAST_CONFIG", file.path()),
        ("PORT", "7100"),
        ("RAFTCAST_HISTORY_SIZE", "71"),
    ];
    let c = ok(&["--port", "7200"], &e);
    assert_eq!(c.port, 7200, "flag beats env and file");
    assert_eq!(c.history_size, 71, "env beats file");
    assert_eq!(c.max_symbols, 9, "file beats default");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.event_rate, 50, "default");
    assert_eq!(c.config_file.as_deref(), Some(file.0.as_path()));

    let c = ok(&["--config", file.path()], &[("PORT", "7100")]);
    assert_eq!(c.port, 7100);
    let c = ok(&["--config", file.path()], &[]);
    assert_eq!(c.port, 7000);
    assert_eq!(c.peer_port, 8000, "peer port follows the file's port");
}

#[test]
fn file_accepts_arrays_tables_and_bools() {
    let file = TempToml::new(
        "node-id = 2\nfault_injection = true\ncors-origin = [\"https://a.example\", \"https://b.example/\"]\n\
         [peers]\n1 = \"127.0.0.1:6000\"\n2 = \"127.0.0.1:6001\"\n",
    );
    let c = ok(&["--config", file.path(), "--peer-port", "6001"], &[]);
    assert_eq!(c.node_id, 2);
    assert!(c.fault_injection);
    assert_eq!(c.peers.len(), 2);
    assert_eq!(
        c.allowed_origins,
        AllowedOrigins::List(vec!["https://a.example".into(), "https://b.example".into()])
    );
}

#[test]
fn unknown_file_key_is_named() {
    let file = TempToml::new("port = 5000\ndata-dri = \"x\"\n");
    let msg = err(&["--config", file.path()], &[]);
    assert!(msg.contains("unknown key `data-dri`"), "{msg}");
    assert!(msg.contains("did you mean `data-dir`"), "{msg}");
    let file = TempToml::new("config = \"other.toml\"\n");
    assert!(err(&["--config", file.path()], &[]).contains("unknown key `config`"));
}

#[test]
fn propose_timeout_is_bounded_by_the_dedup_window() {
    let msg = err(&["--propose-timeout", "21s"], &[]);
    assert!(msg.contains("--propose-timeout"), "{msg}");
    assert!(msg.contains("must be at most 20s"), "{msg}");
    let c = ok(&["--propose-timeout", "20s"], &[]);
    assert_eq!(c.propose_timeout, Duration::from_secs(20));
}

#[test]
fn bad_file_value_names_the_key() {
    let file = TempToml::new("ping_interval_ms = \"soon\"\n");
    let msg = err(&["--config", file.path()], &[]);
    assert!(msg.contains("key `ping_interval_ms`"), "{msg}");
    assert!(msg.contains("--ping-interval-ms"), "{msg}");
    assert!(msg.contains("soon"), "{msg}");
    let file = TempToml::new("port = [[1]]\n");
    assert!(err(&["--config", file.path()], &[]).contains("key `port`"));
    let msg = err(&["--config", "/nonexistent/raftcast.toml"], &[]);
    assert!(
        msg.contains("cannot read config file /nonexistent/raftcast.toml"),
        "{msg}"
    );
    let file = TempToml::new("port = \n");
    assert!(err(&["--config", file.path()], &[]).contains("not valid TOML"));
}

#[test]
fn seed_env_names() {
    let c = ok(
        &[],
        &[
            ("PORT", "8080"),
            ("REDIS_URL", "redis://default:pw@redis:6379"),
            ("CORS_ORIGIN", "https://app.example.com"),
            ("FRONTEND_URL", "http://localhost:3000/"),
            ("RUST_LOG", "raftcast=debug,info"),
        ],
    );
    assert_eq!(c.port, 8080);
    assert_eq!(
        c.backend,
        Backend::Redis,
        "auto picks redis when REDIS_URL is set"
    );
    assert_eq!(
        c.redis_url.as_deref(),
        Some("redis://default:pw@redis:6379")
    );
    assert_eq!(
        c.allowed_origins,
        AllowedOrigins::List(vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into()
        ])
    );
    assert!(c.allowed_origins.allows("http://localhost:3000"));
    assert!(!c.allowed_origins.allows("https://evil.example"));
    assert_eq!(c.log_level, "raftcast=debug,info");
    assert!(
        !format!("{c:?}").contains("pw"),
        "redis password must not be in Debug"
    );
}

#[test]
fn raftcast_env_names() {
    let c = ok(
        &[],
        &[
            ("RAFTCAST_DATA_DIR", "/var/lib/raftcast"),
            ("RAFTCAST_NODE_ID", "3"),
            (
                "RAFTCAST_PEERS",
                "1=10.0.0.1:6000,2=10.0.0.2:6000,3=10.0.0.3:6000",
            ),
            ("RAFTCAST_PEER_PORT", "6000"),
            ("RAFTCAST_API_KEY", "k"),
            ("RAFTCAST_HISTORY_TTL", "1h 30m"),
            ("RAFTCAST_FAULT_INJECTION", "1"),
            ("RAFTCAST_LOG_FORMAT", "json"),
            ("RAFTCAST_MAX_CONNECTIONS_PER_IP", "5"),
        ],
    );
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/raftcast"));
    assert_eq!(c.node_id, 3);
    assert_eq!(c.peers[&2], "10.0.0.2:6000");
    assert!(!c.is_single_node());
    assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("k"));
    assert_eq!(c.history_ttl, Duration::from_secs(5400));
    assert!(c.fault_injection);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.max_connections_per_ip, 5);
    // Empty env values count as unset.
    assert_eq!(ok(&[], &[("PORT", "")]).port, 5000);
}

#[test]
fn cors_star_only_when_given() {
    assert_eq!(
        ok(&["--cors-origin", "*"], &[]).allowed_origins,
        AllowedOrigins::Any
    );
    assert_eq!(
        ok(&[], &[("FRONTEND_URL", "*")]).allowed_origins,
        AllowedOrigins::Any
    );
    assert!(err(&["--cors-origin", "app.example.com"], &[]).contains("--cors-origin"));
}

#[test]
fn peer_port_default_follows_port_from_any_layer() {
    assert_eq!(ok(&["--port", "7000"], &[]).peer_port, 8000);
    let c = ok(&[], &[("PORT", "7000")]);
    assert_eq!(c.peer_port, 8000);
    assert_eq!(c.advertise_addr, "127.0.0.1:7000");
    assert_eq!(
        ok(&["--port", "7000", "--peer-port", "9000"], &[]).peer_port,
        9000
    );
    assert_eq!(
        ok(&["--port", "0"], &[]).peer_port,
        0,
        "ephemeral stays ephemeral"
    );
    let msg = err(&["--port", "65000"], &[]);
    assert!(
        msg.contains("--peer-port") && msg.contains("65535"),
        "{msg}"
    );
    let msg = err(&["--port", "7000", "--peer-port", "7000"], &[]);
    assert!(msg.contains("--peer-port"), "{msg}");
}

#[test]
fn peers_parse() {
    let c = ok(
        &[
            "--node-id",
            "2",
            "--peer-port",
            "6001",
            "--peers",
            " 1=127.0.0.1:6000, 2=127.0.0.1:6001,3=[::1]:6002,",
        ],
        &[],
    );
    assert_eq!(c.peers.len(), 3);
    assert_eq!(c.peers[&3], "[::1]:6002");
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // Empty list = single node.
    assert!(ok(&["--peers", ""], &[]).peers.is_empty());
}

#[test]
fn peers_errors() {
    let cases: &[(&str, &str)] = &[
        ("1=127.0.0.1:6000,1=127.0.0.1:6001", "more than once"),
        ("0=127.0.0.1:6000", "start at 1"),
        ("x=127.0.0.1:6000", "not a positive integer"),
        ("1:127.0.0.1:6000", "ID=HOST:PORT"),
        ("1=127.0.0.1", "HOST:PORT"),
        ("1=127.0.0.1:0", "not a port"),
        ("1=::1:6000", "brackets"),
        ("1=127.0.0.1:6000,2=127.0.0.1:6000", "both use"),
    ];
    for (peers, expected) in cases {
        let msg = err(&["--peers", peers], &[]);
        assert!(msg.contains("--peers"), "{peers}: {msg}");
        assert!(msg.contains(expected), "{peers}: {msg}");
    }
    let msg = err(&["--node-id", "4", "--peers", "1=a:6000,2=b:6000"], &[]);
    assert!(msg.contains("--node-id 4 is not in the list"), "{msg}");
    let msg = err(&[], &[("RAFTCAST_PEERS", "1=a")]);
    assert!(msg.contains("environment variable RAFTCAST_PEERS"), "{msg}");
    assert!(msg.contains("--peers"), "{msg}");
}

#[test]
fn backend_consistency() {
    let msg = err(&["--backend", "redis"], &[]);
    assert!(msg.contains("--redis-url"), "{msg}");
    let msg = err(&["--peers", "1=a:6000"], &[("REDIS_URL", "redis://r:6379")]);
    assert!(msg.contains("--backend raft"), "{msg}");
    let c = ok(
        &["--backend", "raft", "--peers", "1=a:6000"],
        &[("REDIS_URL", "redis://r:6379")],
    );
    assert_eq!(c.backend, Backend::Raft);
    assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
    assert!(err(&["--backend", "local", "--join", "a:6000"], &[]).contains("--join"));
    assert!(err(&["--redis-url", "http://r"], &[]).contains("--redis-url"));
    assert!(err(&["--join", "a:6000", "--peers", "1=b:6000"], &[]).contains("--join"));
    let msg = err(&[], &[("RAFTCAST_BACKEND", "etcd")]);
    assert!(
        msg.contains("RAFTCAST_BACKEND") && msg.contains("raft, redis, local"),
        "{msg}"
    );
}

#[test]
fn zero_intervals_and_limits_are_rejected() {
    for (flag, value) in [
        ("--ping-interval-ms", "0"),
        ("--history-ttl", "0s"),
        ("--shutdown-timeout", "0s"),
        ("--election-timeout-ms", "0"),
        ("--max-connections", "0"),
        ("--subscribe-rate", "0"),
        ("--max-symbols", "0"),
    ] {
        let msg = err(&[flag, value], &[]);
        assert!(msg.contains(flag), "{flag}: {msg}");
    }
    assert_eq!(ok(&["--api-rate", "0"], &[]).api_rate, 0);
}

#[test]
fn invalid_values_name_the_flag() {
    let msg = err(&["--port", "abc"], &[]);
    assert!(msg.contains("--port"), "{msg}");
    let msg = err(&["--history-ttl", "soon"], &[]);
    assert!(
        msg.contains("--history-ttl") && msg.contains("24h"),
        "{msg}"
    );
    let msg = err(&[], &[("PORT", "99999")]);
    assert!(
        msg.contains("environment variable PORT") && msg.contains("99999"),
        "{msg}"
    );
    let msg = err(&["--log-format", "xml"], &[]);
    assert!(msg.contains("--log-format"), "{msg}");
    let msg = err(&["--node-id", "0"], &[]);
    assert!(
        msg.contains("--node-id") && msg.contains("RAFTCAST_NODE_ID"),
        "{msg}"
    );
    let msg = err(&["--host", "not a host"], &[]);
    assert!(msg.contains("--host"), "{msg}");
    let msg = err(&["--store-cache-mb", "0"], &[]);
    assert!(
        msg.contains("--store-cache-mb") && msg.contains("at least 1"),
        "{msg}"
    );
    let msg = err(&[], &[("RAFTCAST_STORE_CACHE_MB", "2000000")]);
    assert!(
        msg.contains("--store-cache-mb") && msg.contains("at most"),
        "{msg}"
    );
    assert_eq!(
        ok(&[], &[("RAFTCAST_STORE_CACHE_MB", "64")]).store_cache_mb,
        64
    );
    let msg = err(&[], &[("RUST_LOG", "info,=[")]);
    assert!(
        msg.contains("RUST_LOG") && msg.contains("--log-level"),
        "{msg}"
    );
    // Blanks before a directive with a non-ASCII character made tracing-subscriber panic
    // (found by tests/prop_decoders.rs); trimmed, each is an ordinary filter.
    for (given, kept) in [(" A¡=", "A¡="), ("info, A¡=", "info,A¡="), ("\té=", "é=")] {
        assert_eq!(
            ok(&["--log-level", given], &[]).log_level,
            kept,
            "{given:?}"
        );
    }
    assert_eq!(
        ok(&["--log-level", " raftcast=debug , info "], &[]).log_level,
        "raftcast=debug,info"
    );
}

#[test]
fn secrets_never_show() {
    let c = ok(
        &[
            "--cluster-secret",
            "hunter2-cluster",
            "--jwt-secret",
            "hunter2-jwt",
        ],
        &[("RAFTCAST_API_KEY", "hunter2-key")],
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"));
    assert_eq!(format!("{}", Secret::new("x")), "***");
    assert_eq!(
        c.cluster_secret.as_ref().map(Secret::expose),
        Some("hunter2-cluster")
    );
    assert!(err(&["--api-key", ""], &[]).contains("--api-key"));
}

#[test]
fn fault_injection_flag_forms() {
    assert!(ok(&["--fault-injection"], &[]).fault_injection);
    assert!(
        !ok(
            &["--fault-injection=false"],
            &[("RAFTCAST_FAULT_INJECTION", "true")]
        )
        .fault_injection
    );
    assert!(ok(&["--fault-injection", "--port", "5001"], &[]).fault_injection);
}

#[test]
fn subcommands() {
    let e = env(&[
        ("RAFTCAST_API_KEY", "k"),
        ("RAFTCAST_URL", "http://n2:5000"),
    ]);
    match parse_invocation_from(["raftcast", "status", "--json"], &e) {
        Ok(Invocation::Status(s)) => {
            assert!(s.json);
            assert_eq!(s.url, "http://n2:5000");
            assert_eq!(s.api_key.as_ref().map(Secret::expose), Some("k"));
        }
        other => panic!("{other:?}"),
    }
    match parse_invocation_from(["raftcast", "status"], &HashMap::new()) {
        Ok(Invocation::Status(s)) => assert_eq!(s.url, "http://127.0.0.1:5000"),
        other => panic!("{other:?}"),
    }
    match parse_invocation_from(
        ["raftcast", "chaos", "--seed", "7", "--duration", "5m"],
        &HashMap::new(),
    ) {
        Ok(Invocation::Chaos(c)) => {
            assert_eq!(c.seed, Some(7));
            assert_eq!(c.duration, Duration::from_secs(300));
            assert_eq!(c.nodes, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_invocation_from(["raftcast"], &HashMap::new()),
        Ok(Invocation::Serve(_))
    ));
    assert!(matches!(
        load(&["status"], &[]),
        Err(ConfigError::NotServe(_))
    ));
}

#[test]
fn help_lists_every_flag_with_env_and_default() {
    let e = match load(&["--help"], &[]) {
        Err(e) => e,
        Ok(c) => panic!("{c:?}"),
    };
    assert!(e.is_help());
    let help = e.to_string();
    for arg in command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        assert!(
            help.contains(&format!("--{long}")),
            "--{long} missing from help"
        );
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(
                help.contains(&format!("[env: {env}]")),
                "{env} missing from help"
            );
        }
    }
    assert!(help.contains("[default: 5000]"));
    assert!(help.contains("[default: --port + 1000]"));
}

#[test]
fn options_table_covers_every_option() {
    let table = options_table();
    assert!(table.starts_with("| flag | env | default | meaning |"));
    for long in [
        "--port",
        "--peers",
        "--redis-url",
        "--log-level",
        "--config",
        "--session-ttl",
    ] {
        assert!(table.contains(&format!("`{long}`")), "{long}");
    }
    assert!(table.contains("| `--port` | `PORT` | `5000` |"), "{table}");
    assert!(
        table.contains("| `--log-level` | `RUST_LOG` | `info` |"),
        "{table}"
    );
    assert!(!table.contains("--help"));
    // Every new flag's env twin is RAFTCAST_ + upper snake, except the seed's names.
    let seed = [
        ("port", "PORT"),
        ("redis-url", "REDIS_URL"),
        ("cors-origin", "CORS_ORIGIN"),
        ("frontend-url", "FRONTEND_URL"),
        ("log-level", "RUST_LOG"),
    ];
    for arg in command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let expected = seed
            .iter()
            .find(|(l, _)| *l == long)
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| format!("RAFTCAST_{}", long.replace('-', "_").to_uppercase()));
        assert_eq!(env.as_deref(), Some(expected.as_str()), "--{long}");
    }
}
