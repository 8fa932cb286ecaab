//! `Idempotency-Key` on `POST /api/emit` and `POST /api/emit/batch`: a request repeated
//! with the same key is answered with the first attempt's offsets and not published again;
//! other keys publish; a bad key, or a backend that keeps no results, is a clear 400.
//! (Across nodes: `cluster_ordering.rs`.)

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{start, API_KEY, T};
use serde_json::{json, Value};

async fn post(s: &common::TestServer, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn trade(n: u64) -> Value {
    json!({"userId": "ida", "event": "trade:executed", "data": {"n": n}})
}

#[tokio::test]
async fn a_repeated_emit_is_answered_with_the_first_offset_and_delivered_once() {
    let s = start(&["--backend", "raft"]).await;
    let mut c = s.client("ida").await;
    let (st, first) = post(&s, "/api/emit", "k-1", &trade(1)).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(c.ws.event("trade:executed", T).await[0], json!({"n": 1}));
    let (st, again) = post(&s, "/api/emit", "k-1", &trade(1)).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again, first, "the retry's answer is the first one");
    // The next event the client sees is the next one published: the retry was not.
    let next = s.emit(trade(2)).await;
    assert_eq!(next["offset"], json!(first["offset"].as_u64().unwrap() + 1));
    assert_eq!(c.ws.event("trade:executed", T).await[0], json!({"n": 2}));
    let (_, h) = s.get_json("/api/rooms/user:ida/history").await;
    assert_eq!(h["events"].as_array().expect("events").len(), 2, "{h}");
    // Another key publishes.
    let (st, other) = post(&s, "/api/emit", "k-2", &trade(3)).await;
    assert_eq!(st, 200, "{other}");
    assert_eq!(
        other["offset"],
        json!(first["offset"].as_u64().unwrap() + 2)
    );
}

#[tokio::test]
async fn a_repeated_batch_gets_the_same_offsets_and_writes_nothing_more() {
    let s = start(&["--backend", "raft"]).await;
    let body = json!({ "emits": (1..=5).map(trade).collect::<Vec<_>>() });
    let (st, first) = post(&s, "/api/emit/batch", "batch-1", &body).await;
    assert_eq!(st, 200, "{first}");
    let (st, again) = post(&s, "/api/emit/batch", "batch-1", &body).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again, first);
    let (_, h) = s.get_json("/api/rooms/user:ida/history").await;
    assert_eq!(h["events"].as_array().expect("events").len(), 5, "{h}");
    // A single emit with the batch's key is a different request (its first event's id
    // is the batch's first): it is answered as that event, not published.
    let (st, single) = post(&s, "/api/emit", "batch-1", &trade(1)).await;
    assert_eq!(st, 200, "{single}");
    assert_eq!(single["offset"], first["results"][0]["offset"]);
}

#[tokio::test]
async fn bad_keys_and_backends_without_results_are_refused() {
    let s = start(&["--backend", "raft"]).await;
    for bad in ["", &"x".repeat(256)] {
        let (st, body) = post(&s, "/api/emit", bad, &trade(1)).await;
        assert_eq!(st, 400, "key {bad:?}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{body}"
        );
    }
    let (_, h) = s.get_json("/api/rooms/user:ida/history").await;
    assert_eq!(h["events"], json!([]), "a refused emit wrote {h}");

    let local = start(&["--backend", "local"]).await;
    for path in ["/api/emit", "/api/emit/batch"] {
        let body = if path == "/api/emit" {
            trade(1)
        } else {
            json!({ "emits": [trade(1)] })
        };
        let (st, answer) = post(&local, path, "k-1", &body).await;
        assert_eq!(st, 400, "{path}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("Raft backend"),
            "{answer}"
        );
    }
    let (_, h) = local.get_json("/api/rooms/user:ida/history").await;
    assert_eq!(h["events"], json!([]), "{h}");
}
