//! The backend HTTP API and the operator routes, as a backend or an operator sees them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{start, API_KEY, T};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn api_needs_the_key() {
    let s = start(&[]).await;
    for key in [None, Some("wrong-key-0123456789"), Some("")] {
        let mut req = s.http.get(s.url("/api/stats"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let r = req.send().await.expect("request");
        assert_eq!(r.status(), 401, "key {key:?}");
        let body: Value = r.json().await.expect("json error body");
        assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
        assert!(body["message"].is_string());
    }
    // a key given some other way than Bearer is not accepted either
    let r = s
        .http
        .post(s.url("/api/emit"))
        .header("authorization", API_KEY)
        .json(&json!({"userId": "u", "event": "e", "data": 1}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn emit_validation() {
    let s = start(&[]).await;
    let post_raw = |body: &'static str| {
        let req = s
            .http
            .post(s.url("/api/emit"))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = post_raw("this is not json").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("INVALID_PAYLOAD")),
        "{body}"
    );
    let (status, body) = post_raw("[1,2]").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("INVALID_PAYLOAD")),
        "{body}"
    );

    for bad in [
        json!({"userId": "u", "data": 1}),
        json!({"room": "r", "userId": "u", "event": "e", "data": 1}),
        json!({"event": "e", "data": 1}),
        json!({"userId": "u", "event": 7, "data": 1}),
        json!({"userId": "bad user", "event": "e", "data": 1}),
        json!({"userId": "u", "event": "e", "data": 1, "durable": "yes"}),
    ] {
        let (status, body) = s.api(Method::POST, "/api/emit", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "INVALID_PAYLOAD", "{bad}: {body}");
        assert!(body["message"].is_string());
    }

    let big = json!({"userId": "u", "event": "e", "data": "x".repeat(70 * 1024)});
    let (status, body) = s.api(Method::POST, "/api/emit", Some(big)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{body}");

    // nothing of the refused emits was written
    let (status, h) = s.get_json("/api/rooms/user:u/history").await;
    assert_eq!(status, 200);
    assert_eq!(h["events"], json!([]), "{h}");
}

#[tokio::test]
async fn sessions_api() {
    let s = start(&[]).await;
    let (status, body) = s
        .api(
            Method::POST,
            "/api/sessions",
            Some(json!({"userId": "sam", "ttlSeconds": 60})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["userId"], "sam");
    assert!(
        body["sessionId"].as_str().is_some_and(|s| s.len() >= 16),
        "{body}"
    );
    assert!(body["expiresAt"].is_string(), "{body}");
    let (status, body) = s.api(Method::POST, "/api/sessions", Some(json!({}))).await;
    assert_eq!((status, &body["code"]), (400, &json!("INVALID_PAYLOAD")));
    let (status, _) = s
        .api(Method::DELETE, "/api/sessions/unknown-session", None)
        .await;
    assert_eq!(status, 204, "revoking an unknown session is idempotent");
}

#[tokio::test]
async fn history_shape_and_since() {
    let s = start(&[]).await;
    let mut epoch = Value::Null;
    for i in 1..=4 {
        let r = s
            .emit(json!({"room": "portfolio:hal", "event": "portfolio:update", "data": {"n": i}}))
            .await;
        assert_eq!(r["offset"], i);
        epoch = r["epoch"].clone();
    }
    let (status, h) = s.get_json("/api/rooms/portfolio:hal/history").await;
    assert_eq!(status, 200);
    assert_eq!(h["room"], "portfolio:hal");
    assert_eq!(h["epoch"], epoch);
    let events = h["events"].as_array().expect("events");
    assert_eq!(events.len(), 4);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["offset"], i as u64 + 1);
        assert_eq!(e["event"], "portfolio:update");
        assert_eq!(e["data"], json!({"n": i + 1}));
        assert!(e["ts"].is_u64());
    }
    let (_, h) = s.get_json("/api/rooms/portfolio:hal/history?since=2").await;
    let offsets: Vec<&Value> = h["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["offset"])
        .collect();
    assert_eq!(offsets, [&json!(3), &json!(4)]);
    let (_, h) = s.get_json("/api/rooms/portfolio:hal/history?since=0").await;
    assert_eq!(h["events"].as_array().map(Vec::len), Some(4));
    let (status, h) = s
        .get_json("/api/rooms/portfolio:hal/history?since=-1")
        .await;
    assert_eq!((status, &h["code"]), (400, &json!("INVALID_PAYLOAD")));
    let (status, h) = s.get_json("/api/rooms/never-used/history").await;
    assert_eq!(status, 200);
    assert_eq!(h["events"], json!([]));
}

#[tokio::test]
async fn presence_online_then_offline() {
    let s = start(&[]).await;
    let (status, p) = s.get_json("/api/presence/pia").await;
    assert_eq!(status, 200);
    assert_eq!(p["userId"], "pia");
    assert_eq!(p["online"], false);
    let mut c = s.client("pia").await;
    let (_, p) = s.get_json("/api/presence/pia").await;
    assert_eq!(p["online"], true, "{p}");
    assert_eq!(p["sockets"].as_array().map(Vec::len), Some(1), "{p}");
    assert_eq!(p["sockets"][0]["socketId"], c.sid.as_str());
    assert_eq!(p["nodes"], json!([1]));
    c.ws.close();
    let mut offline = || async { s.get_json("/api/presence/pia").await.1["online"] == false };
    assert!(
        common::poll_until(T, &mut offline).await,
        "still online after close"
    );
}

#[tokio::test]
async fn stats_keys() {
    let s = start(&[]).await;
    let _a = s.client("st1").await;
    let _b = s.client("st2").await;
    let _c = s.client("st2").await;
    let st = s.stats().await;
    for key in [
        "totalConnections",
        "uniqueUsers",
        "roomCount",
        "eventsPerMinute",
        "adapter",
        "uptime",
    ] {
        assert!(st.get(key).is_some(), "stats lack {key}: {st}");
    }
    assert_eq!(st["totalConnections"], 3, "{st}");
    assert_eq!(st["uniqueUsers"], 2, "{st}");
    assert_eq!(st["roomCount"], 2, "user:st1 and user:st2: {st}");
    assert_eq!(st["adapter"], "local");
    s.emit(json!({"userId": "st1", "event": "e", "data": 1}))
        .await;
    let st = s.stats().await;
    assert!(
        st["eventsPerMinute"].as_u64().is_some_and(|n| n >= 1),
        "{st}"
    );
}

#[tokio::test]
async fn operator_routes() {
    let s = start(&[]).await;
    let r = s
        .http
        .get(s.url("/health/websocket"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.expect("json");
    assert_eq!(h["status"], "healthy", "{h}");
    assert!(h["timestamp"].is_string());
    let stats = &h["stats"];
    assert_eq!(stats["totalConnections"], 0);
    assert_eq!(stats["uniqueUsers"], 0);
    assert_eq!(stats["adapter"], "local");
    assert!(stats["uptime"].is_u64());

    for path in ["/healthz", "/readyz"] {
        let r = s.http.get(s.url(path)).send().await.expect(path);
        assert_eq!(r.status(), 200, "{path}");
    }

    let _c = s.client("metrics-user").await;
    let r = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(
        text.lines().any(|l| l.starts_with("raftcast_connections")),
        "no raftcast_connections in /metrics:\n{text}"
    );

    // operator routes need no key, and carry no user data
    let r = s
        .http
        .get(s.url("/cluster/status"))
        .send()
        .await
        .expect("cluster");
    assert_eq!(r.status(), 200);
    let r = tokio::time::timeout(Duration::from_secs(5), s.http.get(s.url("/")).send())
        .await
        .expect("status page in time")
        .expect("status page");
    assert_eq!(r.status(), 200);
}
