//! `POST /api/emit/batch` as a backend sees it: many events in one request, delivered and
//! kept in the order given; a bad event refuses the whole batch and writes nothing; the API
//! rate limit counts each event; a burst larger than the server's write coalescing arrives
//! whole. On the in-memory backend and on a one-node Raft group.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{start, T};
use reqwest::Method;
use serde_json::{json, Value};

const BACKENDS: [&str; 2] = ["local", "raft"];

async fn batch(s: &common::TestServer, body: Value) -> (u16, Value) {
    s.api(Method::POST, "/api/emit/batch", Some(body)).await
}

#[tokio::test]
async fn a_batch_is_delivered_and_kept_in_its_order() {
    for backend in BACKENDS {
        let s = start(&["--backend", backend]).await;
        let mut c = s.client("bo").await;
        // Two rooms interleaved: each room's offsets follow the batch's order.
        let emits: Vec<Value> = (1..=40)
            .map(|i| {
                if i % 4 == 0 {
                    json!({"room": "portfolio:bo", "event": "portfolio:update", "data": {"n": i}})
                } else {
                    json!({"userId": "bo", "event": "trade:executed", "data": {"n": i}})
                }
            })
            .collect();
        let (status, body) = batch(&s, json!({ "emits": emits })).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(
            (body["ok"].clone(), body["failed"].clone()),
            (json!(40), json!(0))
        );
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), 40);
        let (mut user_off, mut portfolio_off) = (0, 0);
        for (i, r) in results.iter().enumerate() {
            let n = i + 1;
            let (room, counter) = if n % 4 == 0 {
                ("portfolio:bo", &mut portfolio_off)
            } else {
                ("user:bo", &mut user_off)
            };
            *counter += 1;
            assert_eq!(r["room"], room, "{backend} result {i}: {r}");
            assert_eq!(r["offset"], *counter, "{backend} result {i}: {r}");
            assert!(r["epoch"].is_string(), "{r}");
        }
        // The client (in its user room) gets the 30 trades, in order, and nothing else.
        for want in (1..=40).filter(|n| n % 4 != 0) {
            let args = c.ws.event("trade:executed", T).await;
            assert_eq!(args[0], json!({"n": want}), "{backend}");
        }
        // The history of each room holds its events in the batch's order.
        let (_, h) = s.get_json("/api/rooms/portfolio:bo/history").await;
        let got: Vec<Value> = h["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["data"]["n"].clone())
            .collect();
        assert_eq!(
            got,
            [4, 8, 12, 16, 20, 24, 28, 32, 36, 40].map(|n| json!(n))
        );
        // A single emit after the batch continues the room's offsets.
        let one = s
            .emit(json!({"userId": "bo", "event": "trade:executed", "data": {"n": 41}}))
            .await;
        assert_eq!(one["offset"], 31, "{backend}: {one}");
    }
}

#[tokio::test]
async fn a_bad_event_refuses_the_whole_batch_and_names_it() {
    let s = start(&["--backend", "raft"]).await;
    let ok = |n: u32| json!({"userId": "cy", "event": "trade:executed", "data": {"n": n}});
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({}), 400, "INVALID_PAYLOAD", "emits is required"),
        (
            json!({"emits": {}}),
            400,
            "INVALID_PAYLOAD",
            "emits must be an array",
        ),
        (json!({"emits": []}), 400, "INVALID_PAYLOAD", "1 to 1000"),
        (
            json!({"emits": vec![ok(1); 1001]}),
            400,
            "INVALID_PAYLOAD",
            "1 to 1000",
        ),
        (
            json!({"emits": [ok(1), ok(2), 7]}),
            400,
            "INVALID_PAYLOAD",
            "emits[2]: must be an object",
        ),
        (
            json!({"emits": [ok(1), {"userId": "cy", "data": 1}]}),
            400,
            "INVALID_PAYLOAD",
            "emits[1]: event is required",
        ),
        (
            json!({"emits": [ok(1), ok(2), {"room": "r", "userId": "cy", "event": "e"}]}),
            400,
            "INVALID_PAYLOAD",
            "emits[2]: give exactly one of room or userId",
        ),
        (
            json!({"emits": [{"userId": "bad user", "event": "e"}]}),
            400,
            "INVALID_PAYLOAD",
            "emits[0]: userId must be",
        ),
        (
            json!({"emits": [ok(1), {"room": "", "event": "e"}]}),
            400,
            "INVALID_PAYLOAD",
            "emits[1]: room must be",
        ),
        (
            json!({"emits": [ok(1), {"userId": "cy", "event": "e", "durable": 1}]}),
            400,
            "INVALID_PAYLOAD",
            "emits[1]: durable must be a boolean",
        ),
        // Each event's data fits in --max-body-bytes (64 KiB), as for a single emit.
        (
            json!({"emits": [ok(1), {"userId": "cy", "event": "e", "data": "x".repeat(70 * 1024)}]}),
            413,
            "PAYLOAD_TOO_LARGE",
            "emits[1]: data is",
        ),
    ];
    for (body, status, code, message) in cases {
        let shown = body.to_string().chars().take(120).collect::<String>();
        let (got, answer) = batch(&s, body).await;
        assert_eq!(got, status, "{shown}: {answer}");
        assert_eq!(answer["code"], code, "{shown}: {answer}");
        let m = answer["message"].as_str().unwrap_or_default();
        assert!(
            m.contains(message),
            "{shown}: message {m:?} lacks {message:?}"
        );
    }
    // The whole body may be 16 × --max-body-bytes: 20 events of 60 KiB (1.2 MiB) is too much.
    let big: Vec<Value> = (0..20)
        .map(|_| json!({"userId": "cy", "event": "e", "data": "x".repeat(60 * 1024)}))
        .collect();
    let (got, answer) = batch(&s, json!({ "emits": big })).await;
    assert_eq!(
        (got, &answer["code"]),
        (413, &json!("PAYLOAD_TOO_LARGE")),
        "{answer}"
    );
    // None of the refused batches wrote anything; then a good batch of large events passes.
    let (_, h) = s.get_json("/api/rooms/user:cy/history").await;
    assert_eq!(h["events"], json!([]), "{h}");
    let large: Vec<Value> = (0..10)
        .map(|i| json!({"userId": "cy", "event": "e", "data": format!("{i}{}", "x".repeat(60 * 1024))}))
        .collect();
    let (got, answer) = batch(&s, json!({ "emits": large })).await;
    assert_eq!(got, 200, "{}", answer["message"]);
    let (_, h) = s.get_json("/api/rooms/user:cy/history").await;
    assert_eq!(h["events"].as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn the_api_rate_counts_each_event_of_a_batch() {
    let s = start(&["--api-rate", "5"]).await;
    let emits = |n: usize| json!({"emits": (0..n).map(|i| json!({"room": "r:rate", "event": "e", "data": i})).collect::<Vec<_>>()});
    // More events than the limit allows in any second: refused outright, with the reason
    // (the request itself took one of the second's five cells).
    let (status, body) = batch(&s, emits(6)).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("RATE_LIMIT")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("send smaller batches"),
        "{body}"
    );
    // Four events take the rest of the second's allowance (a cell comes back every 200 ms):
    // the next five are refused unless a second has passed, which two loopback requests
    // do not take.
    let (status, body) = batch(&s, emits(4)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = batch(&s, emits(5)).await;
    assert_eq!(
        (status, &body["code"]),
        (429, &json!("RATE_LIMIT")),
        "{body}"
    );
    assert!(
        body["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
        "{body}"
    );
    // What was written, read past the API (whose reads the limit also counts).
    let h = s.gateway.fanout().history("r:rate", 0).expect("history");
    assert_eq!(h.events.len(), 4, "{h:?}");
}

/// A batch's events reach a member back to back; the server gathers what a connection has
/// queued into few sends (`socketio/coalesce.rs`, 16 KiB each). A burst of several times
/// that, with payloads larger than a WebSocket fragment (4 KiB) among small ones, arrives
/// whole, in order and byte for byte.
#[tokio::test]
async fn a_large_burst_arrives_whole_and_in_order() {
    let s = start(&["--backend", "raft"]).await;
    let mut c = s.client("burst").await;
    let big = "x".repeat(9_000);
    let data = |i: usize| {
        if i % 25 == 0 {
            json!({"n": i, "pad": big, "u": "é€😀"})
        } else {
            json!({"n": i, "pad": "y".repeat(i % 200)})
        }
    };
    let emits: Vec<Value> = (0..600)
        .map(|i| json!({"userId": "burst", "event": "trade:executed", "data": data(i)}))
        .collect();
    let (status, body) = batch(&s, json!({ "emits": emits })).await;
    assert_eq!((status, &body["ok"]), (200, &json!(600)), "{body}");
    for i in 0..600 {
        let args = c.ws.event("trade:executed", T).await;
        assert_eq!(args[0], data(i), "event {i}");
    }
    // And the connection still carries the next event.
    s.emit(json!({"userId": "burst", "event": "trade:executed", "data": {"n": "after"}}))
        .await;
    let args = c.ws.event("trade:executed", T).await;
    assert_eq!(args[0], json!({"n": "after"}));
}
