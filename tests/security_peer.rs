//! ISSUE 8, peers and logs: a raw TCP client on the peer port with garbage or a wrong secret
//! is refused and the node stays healthy; secrets and session ids never appear in the logs
//! (RUST_LOG=debug) or in /metrics.
//!
//! Runs the real binary as one Raft node (one-member group) with debug logging to a file.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use raftcast_raft::network::wire::{Req, Resp};
use raftcast_raft::network::NetCtx;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod ports;
use ports::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_raftcast");
const API_KEY: &str = "sec-api-key-Qx7Lp2Vb9Kd4";
const SECRET: &str = "sec-cluster-secret-Hm3Zr8Tn5Wc1";
const JWT_SECRET: &str = "sec-jwt-secret-Yf6Ds0Gj2Ue8";
const WRONG_KEY: &str = "wrong-api-key-Ab1Cd2Ef3Gh4";

struct Node {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    port: u16,
    peer_port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(&self.log) {
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- node log tail ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_node() -> Node {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("raftcast-sec-{}-{n:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("node.log");
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log clone");
    let (port, peer_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args([
            "--node-id",
            "1",
            "--port",
            &port.to_string(),
            "--peer-port",
            &peer_port.to_string(),
            "--cluster-secret",
            SECRET,
            "--api-key",
            API_KEY,
            "--jwt-secret",
            JWT_SECRET,
            "--data-dir",
            &dir.join("data").display().to_string(),
        ])
        .env("RUST_LOG", "debug")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn raftcast");
    Node {
        child,
        dir,
        log,
        port,
        peer_port,
    }
}

async fn ready(http: &reqwest::Client, base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Reads until the peer closes or `within` passes: true when it closed.
async fn refused(mut s: TcpStream, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn healthy(http: &reqwest::Client, base: &str) {
    let r = http
        .get(format!("{base}/health/websocket"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "healthy", "{v}");
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(port: u16, auth: Value) -> (Ws, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("ws");
    let open = ws.next().await.expect("open").expect("open");
    let open = open.into_text().expect("text").to_string();
    ws.send(Message::text(format!("40{auth}")))
        .await
        .expect("send");
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("40") || t.starts_with("44") => {
                    return t.to_string()
                }
                Some(Ok(_)) => {}
                _ => return String::new(),
            }
        }
    })
    .await
    .expect("connect answer");
    (ws, format!("{open}\n{answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_port_refuses_strangers_and_logs_hold_no_secrets() {
    let node = spawn_node();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http");
    let base = format!("http://127.0.0.1:{}", node.port);
    assert!(ready(&http, &base).await, "node did not become ready");
    let peer = format!("127.0.0.1:{}", node.peer_port);

    // --- the peer port -------------------------------------------------------------
    // The right secret works (the harness is sound) ...
    let friend = NetCtx::new(2, SECRET.into(), None);
    match friend
        .call(&peer, None, &Req::Ping, Duration::from_secs(5))
        .await
    {
        Ok(Resp::Pong { node_id, .. }) => assert_eq!(node_id, 1),
        other => panic!("ping with the right secret: {other:?}"),
    }
    // ... a wrong one does not, whatever it asks.
    for wrong in [
        "",
        "wrong",
        &SECRET[..SECRET.len() - 1],
        &format!("{SECRET}x"),
    ] {
        let stranger = NetCtx::new(9, wrong.into(), None);
        let r = stranger
            .call(&peer, None, &Req::Ping, Duration::from_secs(5))
            .await;
        assert!(r.is_err(), "wrong secret {wrong:?} was accepted: {r:?}");
        let r = stranger
            .call(
                &peer,
                None,
                &Req::Forward(Vec::new()),
                Duration::from_secs(5),
            )
            .await;
        assert!(r.is_err(), "wrong secret {wrong:?} could forward: {r:?}");
    }
    // Raw garbage: random bytes, an absurd length prefix, a valid-looking frame of junk,
    // a request frame without any handshake, and silence (closed by the 5 s handshake timeout).
    let mut attempts = Vec::new();
    let garbage: Vec<Vec<u8>> = vec![
        (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        {
            // a Ping request as an authenticated peer would send it, but without the handshake
            let body = bincode::serde::encode_to_vec(&Req::Ping, bincode::config::standard())
                .expect("encode");
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend(body);
            f
        },
        Vec::new(),
    ];
    for _ in 0..20 {
        for g in &garbage {
            let g = g.clone();
            let peer = peer.clone();
            attempts.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(&peer).await.expect("peer connect");
                if !g.is_empty() {
                    let _ = s.write_all(&g).await;
                }
                refused(s, Duration::from_secs(8)).await
            }));
        }
    }
    for a in attempts {
        assert!(
            a.await.expect("task"),
            "a stranger's connection was kept open"
        );
    }
    // the node is still healthy and still commits writes
    healthy(&http, &base).await;
    let (status, v) = api(
        &http,
        &base,
        API_KEY,
        reqwest::Method::POST,
        "/api/emit",
        Some(json!({"userId": "u1", "event": "trade:executed", "data": 1})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["offset"].as_u64().is_some_and(|o| o >= 1), "{v}");
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert!(log.contains("peer refused"), "refusals are logged");

    // --- sessions and auth failures, for the log check ------------------------------
    let mut sessions = Vec::new();
    let mut engine_sids = Vec::new();
    let mut pids = Vec::new();
    for user in ["alice", "bob"] {
        let (status, v) = api(
            &http,
            &base,
            API_KEY,
            reqwest::Method::POST,
            "/api/sessions",
            Some(json!({"userId": user})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        let sid = v["sessionId"].as_str().expect("sessionId").to_owned();
        let (mut ws, answers) = ws_connect(node.port, json!({"sessionId": sid})).await;
        let mut lines = answers.lines();
        let open: Value = serde_json::from_str(&lines.next().unwrap_or("")[1..]).expect("open");
        engine_sids.push(open["sid"].as_str().expect("sid").to_owned());
        let ok = lines.next().unwrap_or("");
        assert!(ok.starts_with("40"), "{ok}");
        let ok: Value = serde_json::from_str(&ok[2..]).expect("connect ok");
        pids.push(ok["pid"].as_str().expect("pid").to_owned());
        // some traffic, a bad packet, then gone
        let _ = ws
            .send(Message::text("42[\"subscribe:portfolio\",{}]"))
            .await;
        let _ = ws.send(Message::text("42[\"nope\"")).await;
        let _ = ws.close(None).await;
        sessions.push(sid);
    }
    // revoke one; reuse it; unknown session; bad tokens; wrong API keys
    let (status, _) = api(
        &http,
        &base,
        API_KEY,
        reqwest::Method::DELETE,
        &format!("/api/sessions/{}", sessions[0]),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, answer) = ws_connect(node.port, json!({"sessionId": sessions[0]})).await;
    assert!(answer.contains("\n44"), "{answer}");
    let bogus_session = "bogus-session-Zz9Yy8Xx7";
    let (_, answer) = ws_connect(node.port, json!({"sessionId": bogus_session})).await;
    assert!(answer.contains("\n44"), "{answer}");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let good_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "carol", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("jwt");
    let bad_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "carol", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-0123456"),
    )
    .expect("jwt");
    let (_, answer) = ws_connect(node.port, json!({"token": good_token})).await;
    assert!(answer.contains("\n40"), "{answer}");
    let (_, answer) = ws_connect(node.port, json!({"token": bad_token})).await;
    assert!(answer.contains("\n44"), "{answer}");
    for key in [WRONG_KEY, &API_KEY[..API_KEY.len() - 2]] {
        let (status, _) = api(&http, &base, key, reqwest::Method::GET, "/api/stats", None).await;
        assert_eq!(status, 401);
    }
    // a polling session too
    let r = http
        .get(format!("{base}/socket.io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("poll");
    let body = r.text().await.expect("body");
    let open: Value = serde_json::from_str(&body[1..]).expect("open");
    let poll_sid = open["sid"].as_str().expect("sid").to_owned();
    let _ = http
        .post(format!(
            "{base}/socket.io/?EIO=4&transport=polling&sid={poll_sid}"
        ))
        .body(format!("40{}", json!({"sessionId": sessions[1]})))
        .send()
        .await;
    let _ = http
        .post(format!(
            "{base}/socket.io/?EIO=4&transport=polling&sid={poll_sid}"
        ))
        .body("4garbage")
        .send()
        .await;
    engine_sids.push(poll_sid);

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(metrics.contains("raftcast_"), "metrics look empty");
    // give the log a moment, then stop the node
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(&node.log).expect("log");
    assert!(log.contains("DEBUG"), "the node did not log at debug level");
    let mut secrets: Vec<(&str, String)> = vec![
        ("API key", API_KEY.into()),
        ("cluster secret", SECRET.into()),
        ("JWT secret", JWT_SECRET.into()),
        ("wrong API key", WRONG_KEY.into()),
        ("bogus session id", bogus_session.into()),
        ("JWT", good_token.clone()),
        ("bad JWT", bad_token.clone()),
        // the signature part alone
        (
            "JWT signature",
            good_token.rsplit('.').next().unwrap_or_default().to_owned(),
        ),
    ];
    for s in &sessions {
        secrets.push(("session id", s.clone()));
    }
    for s in &engine_sids {
        secrets.push(("Engine.IO sid", s.clone()));
    }
    for p in &pids {
        secrets.push(("recovery pid", p.clone()));
    }
    for (what, value) in &secrets {
        assert!(!value.is_empty());
        assert!(
            !log.contains(value.as_str()),
            "the log contains the {what} {value}"
        );
        assert!(
            !metrics.contains(value.as_str()),
            "/metrics contains the {what} {value}"
        );
    }
    // the generated-secret files would be mode 0600; none were generated here
    assert!(!node.dir.join("data").join("api-key").exists());
}
