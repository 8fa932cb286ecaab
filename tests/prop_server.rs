//! Property tests against an in-process server: arbitrary API bodies and arbitrary client
//! event payloads are answered (4xx `INVALID_PAYLOAD`-style errors or success, acks for every
//! event), never with a 5xx or a panic, and the server keeps serving.
//!
//! Cases: `PROPTEST_CASES` (default 48 per property: each case is a few round trips).

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
mod security_common;

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n: u32| n.clamp(1, 2000))
        .unwrap_or(48)
}

/// Cases as given; failures are kept in `tests/regressions/prop_server.txt` and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/regressions/prop_server.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

/// One runtime and one server for every case of this binary.
struct World {
    rt: tokio::runtime::Runtime,
    server: common::TestServer,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        security_common::count_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(common::start(&[
            "--event-rate",
            "1000000",
            "--subscribe-rate",
            "1000000",
            "--api-rate",
            "0",
            "--ping-interval-ms",
            "20000",
            "--ping-timeout-ms",
            "20000",
        ]));
        World { rt, server }
    })
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[A-Z]{1,5}".prop_map(Value::String),
        "(user|portfolio|watchlist):[a-z]{1,5}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("since".to_owned()),
                    Just("symbols".to_owned()),
                    Just("offset".to_owned()),
                    Just("epoch".to_owned()),
                    Just("userId".to_owned()),
                    Just("room".to_owned()),
                    Just("event".to_owned()),
                    Just("data".to_owned()),
                    Just("durable".to_owned()),
                    Just("ttlSeconds".to_owned()),
                    Just("symbol".to_owned()),
                    Just("quote".to_owned()),
                    ".{0,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json().prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
        (json(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            // valid JSON cut short
            let s = v.to_string().into_bytes();
            let n = i.index(s.len() + 1);
            s[..n].to_vec()
        }),
    ]
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/sessions"),
    ("POST", "/api/emit"),
    ("POST", "/api/quotes"),
    ("DELETE", "/api/sessions/"),
    ("GET", "/api/rooms/"),
    ("GET", "/api/presence/"),
];

proptest! {
    #![proptest_config(config(cases()))]

    #[test]
    fn api_bodies_and_paths(route in proptest::sample::select(ROUTES), body in body(), tail in "[ -~]{0,30}") {
        let w = world();
        let s = &w.server;
        let (method, path) = route;
        let path = match path {
            "/api/rooms/" => format!("/api/rooms/{}/history?since={}", urlencode(&tail), urlencode(&tail)),
            p if p.ends_with('/') => format!("{p}{}", urlencode(&tail)),
            p => p.to_owned(),
        };
        let status = w.rt.block_on(async {
            let r = s
                .http
                .request(method.parse().expect("method"), s.url(&path))
                .bearer_auth(common::API_KEY)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if status >= 400 {
                assert!(v["code"].is_string(), "{method} {path}: {status} without a code: {v}");
            }
            status
        });
        prop_assert!(status < 500, "{} {} with {:?}: {}", method, path, String::from_utf8_lossy(&body), status);
        prop_assert_eq!(security_common::panics(), 0);
    }

    #[test]
    fn client_event_payloads(event in prop_oneof![
        Just("subscribe:portfolio".to_owned()),
        Just("unsubscribe:portfolio".to_owned()),
        Just("subscribe:watchlist".to_owned()),
        Just("unsubscribe:watchlist".to_owned()),
        Just("subscribe:trades".to_owned()),
        Just("ping".to_owned()),
        ".{0,20}",
    ], args in proptest::collection::vec(json(), 0..4)) {
        let w = world();
        let s = &w.server;
        let ack = w.rt.block_on(async {
            static ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // a fresh socket per case keeps the subscription count within the limits
            let mut c = s.client("prop").await;
            c.ws.emit(&event, &args, Some(id));
            let ack = c.ws.ack(id, common::T).await;
            c.ws.close();
            ack
        });
        let a = ack.first().cloned().unwrap_or(Value::Null);
        if let Some(e) = a.get("error") {
            let code = e["code"].as_str().unwrap_or_default();
            prop_assert!(["INVALID_PAYLOAD", "SUBSCRIPTION_LIMIT"].contains(&code), "{} {:?}: {}", event, args, a);
        } else {
            prop_assert!(a.is_object(), "{} {:?}: {}", event, args, a);
        }
        prop_assert_eq!(security_common::panics(), 0);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// After the properties ran (or alone), the server still answers health.
#[test]
fn server_still_healthy() {
    let w = world();
    let status = w.rt.block_on(async {
        w.server
            .http
            .get(w.server.url("/health/websocket"))
            .send()
            .await
            .expect("health")
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let _ = json!(null);
}
