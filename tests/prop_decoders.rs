//! Property tests of the decoders we own (no server): Engine.IO packets and polling payloads,
//! Socket.IO packets, the stored event payload, the client-input validators, and the
//! configuration (flags, env, file). Any input gives a value or an error, never a panic;
//! what we encode decodes back to the same thing.
//!
//! Cases: `PROPTEST_CASES` (default 512). Failures are kept in `tests/regressions/` and
//! replayed first on every run.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use raftcast::fanout::Payload;
use raftcast::gateway::validate;
use raftcast::socketio::engine_packet::{encode_binary_for_polling, EnginePacket};
use raftcast::socketio::packet::{encode, Packet, PacketType};
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// Cases as given; failures are kept in `tests/regressions/prop_decoders.txt` and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/regressions/prop_decoders.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON values, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // dyadic fractions: exact in binary and short in decimal, so they round-trip
        (any::<i32>(), 0i32..20).prop_map(|(m, e)| Value::from(f64::from(m) / 2f64.powi(e))),
        ".{0,20}".prop_map(Value::String),
        Just(serde_json::json!({"_placeholder": true, "num": 0})),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text built from the pieces of the Socket.IO grammar, to reach deeper than random bytes.
fn packetish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("0".to_owned()),
        Just("2".to_owned()),
        Just("3".to_owned()),
        Just("5".to_owned()),
        Just("6".to_owned()),
        Just("1-".to_owned()),
        Just("99999999-".to_owned()),
        Just("/".to_owned()),
        Just("/admin,".to_owned()),
        Just(",".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\"".to_owned()),
        Just("\"_placeholder\":true,\"num\":".to_owned()),
        Just("12345678901234567890".to_owned()),
        Just("-1".to_owned()),
        Just("é".to_owned()),
        Just("\u{0}".to_owned()),
        json().prop_map(|v| v.to_string()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn engine_text_any_string(s in ".{0,200}") {
        let _ = EnginePacket::decode_text(&s);
    }

    #[test]
    fn engine_payload_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..20) {
        if let Ok(packets) = EnginePacket::decode_payload(&b, max) {
            prop_assert!(packets.len() <= max);
        }
    }

    #[test]
    fn engine_packets_round_trip(kind in 0u8..7, data in "[^\u{1e}]{0,100}", bin in proptest::collection::vec(any::<u8>(), 0..100)) {
        let p = match kind {
            0 => EnginePacket::Close,
            1 => EnginePacket::Ping(data),
            2 => EnginePacket::Pong(data),
            3 => EnginePacket::Message(data),
            4 => EnginePacket::Upgrade,
            5 => EnginePacket::Noop,
            _ => EnginePacket::Binary(Bytes::from(bin.clone())),
        };
        let text = p.encode_text();
        prop_assert_eq!(EnginePacket::decode_text(&text), Ok(p.clone()));
        // the same inside a polling payload, next to a binary message
        let body = format!("{text}\u{1e}{}", encode_binary_for_polling(&bin));
        let got = EnginePacket::decode_payload(body.as_bytes(), 10).expect("payload");
        prop_assert_eq!(got, vec![p, EnginePacket::Binary(Bytes::from(bin))]);
    }

    #[test]
    fn socketio_any_text(s in ".{0,200}", max in 0usize..12) {
        if let Ok(p) = Packet::decode(&s, max) {
            prop_assert!(p.attachments <= max);
        }
    }

    #[test]
    fn socketio_grammar_text(s in packetish(), max in 0usize..12) {
        if let Ok(p) = Packet::decode(&s, max) {
            prop_assert!(p.attachments <= max);
            prop_assert!(p.nsp.starts_with('/'));
        }
        // with an Engine.IO message prefix too
        let _ = EnginePacket::decode_text(&format!("4{s}"));
    }

    #[test]
    fn socketio_events_round_trip(nsp in "(/[a-z]{1,10})?", id in proptest::option::of(0u64..1_000_000_000_000), name in ".{1,20}", args in proptest::collection::vec(json(), 0..4)) {
        let nsp = if nsp.is_empty() { "/".to_owned() } else { nsp };
        let mut items = vec![Value::String(name)];
        items.extend(args);
        // count the placeholders the generator put in, to announce that many attachments
        let data = Value::Array(items);
        let text = encode(PacketType::Event, &nsp, id, 0, Some(&data));
        match Packet::decode(&text, 10) {
            Ok(p) => {
                prop_assert_eq!(p.kind, PacketType::Event);
                prop_assert_eq!(p.nsp, nsp);
                prop_assert_eq!(p.id, id);
                prop_assert_eq!(p.data, Some(data));
            }
            // placeholders without attachments are refused, as they must be
            Err(e) => prop_assert!(text.contains("_placeholder"), "{}: {}", text, e),
        }
    }

    #[test]
    fn stored_payload_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Payload::from_bytes(&b);
    }

    #[test]
    fn stored_payload_round_trip(data in ".{0,200}", atts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
        let p = Payload { data, attachments: atts.into_iter().map(Bytes::from).collect() };
        prop_assert_eq!(Payload::from_bytes(&p.to_bytes()), Ok(p));
    }

    #[test]
    fn client_input_validators(v in json(), s in ".{0,40}") {
        if let Ok(Some(since)) = validate::parse_since(Some(&v)) {
            prop_assert!(since.epoch.len() <= 64);
        }
        let _ = validate::parse_since(v.get("since"));
        let sym = validate::is_symbol(&s);
        prop_assert_eq!(sym, !s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
        if validate::check_user_id(&s).is_ok() {
            prop_assert!(!s.contains(['/', ' ', '\n']));
        }
        if validate::check_room(&s).is_ok() {
            prop_assert!(!s.chars().any(char::is_control));
        }
        let _ = validate::check_event_name(&s);
    }
}

const FLAGS: &[&str] = &[
    "--port",
    "--host",
    "--node-id",
    "--peer-port",
    "--peers",
    "--join",
    "--advertise-addr",
    "--cluster-secret",
    "--api-key",
    "--jwt-secret",
    "--backend",
    "--redis-url",
    "--cors-origin",
    "--frontend-url",
    "--max-body-bytes",
    "--api-rate",
    "--session-ttl",
    "--header-timeout",
    "--ping-interval-ms",
    "--ping-timeout-ms",
    "--max-connections",
    "--max-connections-per-ip",
    "--max-event-bytes",
    "--max-attachments",
    "--subscribe-rate",
    "--event-rate",
    "--max-symbols",
    "--quote-throttle-ms",
    "--history-size",
    "--history-ttl",
    "--recovery-window",
    "--shutdown-timeout",
    "--stats-interval",
    "--log-format",
    "--election-timeout-ms",
    "--node-dead-after",
    "--propose-timeout",
];

const ENVS: &[&str] = &[
    "PORT",
    "REDIS_URL",
    "CORS_ORIGIN",
    "FRONTEND_URL",
    "RAFTCAST_PEERS",
    "RAFTCAST_NODE_ID",
    "RAFTCAST_MAX_CONNECTIONS",
    "RAFTCAST_HISTORY_TTL",
    "RAFTCAST_BACKEND",
    "RUST_LOG",
    "RAFTCAST_HEADER_TIMEOUT",
    "RAFTCAST_API_KEY",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,30}",
        "[0-9]{1,25}",
        "-[0-9]{1,5}",
        "[0-9]{1,4}(ms|s|m|h|d|y|)",
        "([0-9]=[a-z0-9.:]{0,20},?){0,4}",
        "(https?://[a-z.]{1,12}(:[0-9]{1,6})?,?){0,3}",
        Just("*".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config(cases()))]

    /// Any flags and env values give a config or a ConfigError.
    #[test]
    fn config_flags_and_env(args in proptest::collection::vec((proptest::sample::select(FLAGS), value()), 0..5), env in proptest::collection::vec((proptest::sample::select(ENVS), value()), 0..4)) {
        let mut argv = vec!["raftcast".to_owned()];
        for (f, v) in args {
            argv.push(f.to_owned());
            argv.push(v);
        }
        let env: HashMap<String, String> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let _ = raftcast::config::Config::load_from(argv, &env);
    }

    /// Any config file text gives a config or a ConfigError.
    #[test]
    fn config_file(lines in proptest::collection::vec((proptest::sample::select(FLAGS), value(), 0u8..4), 0..6), junk in ".{0,40}") {
        let mut text = String::new();
        for (flag, v, style) in lines {
            let key = flag.trim_start_matches("--");
            match style {
                0 => text.push_str(&format!("{key} = {v:?}\n")),
                1 => text.push_str(&format!("{key} = {v}\n")),
                2 => text.push_str(&format!("{} = [{v:?}]\n", key.replace('-', "_"))),
                _ => text.push_str(&format!("[{key}]\nx = {v:?}\n")),
            }
        }
        text.push_str(&junk);
        let dir = std::env::temp_dir().join(format!("raftcast-prop-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(format!("{:016x}.toml", rand::random::<u64>()));
        std::fs::write(&path, &text).expect("write");
        let argv = vec!["raftcast".to_owned(), "--config".to_owned(), path.display().to_string()];
        let _ = raftcast::config::Config::load_from(argv, &HashMap::new());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}
