//! Shared helpers of the integration tests: an in-process server on port 0, an HTTP API
//! client, and a raw WebSocket client speaking Engine.IO / Socket.IO text frames by hand.
//!
//! Every wait is bounded: `recv` takes a timeout, conditions are polled with deadlines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use raftcast::gateway::Gateway;
use raftcast::socketio::Io;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const API_KEY: &str = "test-key-0123456789";
pub const JWT_SECRET: &str = "jwt-secret-0123456789";

/// Default flags of a test server; a flag given to [`start`] replaces its default.
const DEFAULTS: &[(&str, &str)] = &[
    ("--api-key", API_KEY),
    ("--jwt-secret", JWT_SECRET),
    ("--backend", "local"),
    ("--ping-interval-ms", "300"),
    ("--ping-timeout-ms", "200"),
];

/// A server running in-process on a random port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub gateway: Gateway,
    pub io: Io,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), raftcast::ServerError>>>,
    dir: PathBuf,
}

const DIR_PREFIX: &str = "raftcast-test-";

fn temp_dir() -> PathBuf {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_dead_dirs);
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Removes the data directories of test processes that are gone: a server kept for a whole
/// binary (`prop_server`'s) is never dropped, and a test killed by a timeout drops nothing.
/// A directory whose process (by the pid in its name) still runs is left alone.
fn sweep_dead_dirs() {
    if !std::path::Path::new("/proc/self").exists() {
        return; // no way to tell a live process from a dead one
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts a server with the default test flags plus `extra` (e.g. `["--history-size", "5"]`).
pub async fn start(extra: &[&str]) -> TestServer {
    let dir = temp_dir();
    let mut args: Vec<String> = vec![
        "raftcast".into(),
        "--port".into(),
        "0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ];
    for (flag, value) in DEFAULTS {
        if !extra.contains(flag) {
            args.push((*flag).into());
            args.push((*value).into());
        }
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut cfg = raftcast::config::Config::load_from(args, &HashMap::new()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    cfg.port = addr.port();
    cfg.advertise_addr = addr.to_string();
    let server = raftcast::Server::build(cfg).await.expect("build");
    let gateway = server.gateway().clone();
    let io = server.io().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(listener, async {
        let _ = rx.await;
    }));
    let ts = TestServer {
        addr,
        base: format!("http://{addr}"),
        gateway,
        io,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client"),
        shutdown: Some(tx),
        handle: Some(handle),
        dir,
    };
    // Ready when /healthz answers (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = ts.http.get(format!("{}/healthz", ts.base)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ts
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An API call with the right key: status and JSON body (Null when not JSON).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// Creates a session for `user` through the API and returns its id.
    pub async fn session(&self, user: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({ "userId": user })),
            )
            .await;
        assert_eq!(status, 201, "create session: {body}");
        body["sessionId"].as_str().expect("sessionId").to_owned()
    }

    /// `POST /api/emit`, expecting 200; returns the answer.
    pub async fn emit(&self, body: Value) -> Value {
        let (status, answer) = self
            .api(reqwest::Method::POST, "/api/emit", Some(body.clone()))
            .await;
        assert_eq!(status, 200, "emit {body}: {answer}");
        answer
    }

    /// `/api/stats`.
    pub async fn stats(&self) -> Value {
        let (status, body) = self.get_json("/api/stats").await;
        assert_eq!(status, 200, "stats: {body}");
        body
    }

    /// A raw WebSocket client (open packet read).
    pub async fn ws(&self) -> Ws {
        Ws::open(self.addr).await
    }

    /// A WebSocket client connected to `/` as `user` (session auth), with `connected` read.
    pub async fn client(&self, user: &str) -> Client {
        let session = self.session(user).await;
        self.client_with_session(&session).await
    }

    pub async fn client_with_session(&self, session: &str) -> Client {
        let mut ws = self.ws().await;
        let ok = ws
            .connect(json!({ "sessionId": session }))
            .await
            .unwrap_or_else(|e| panic!("connect refused: {e}"));
        let connected = ws.event("connected", T).await;
        Client {
            ws,
            sid: ok["sid"].as_str().unwrap_or_default().to_owned(),
            pid: ok["pid"].as_str().unwrap_or_default().to_owned(),
            session: session.to_owned(),
            connected: connected[0].clone(),
        }
    }

    /// Fires the shutdown future (once).
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (bounded) for the run future to complete after [`TestServer::trigger_shutdown`].
    pub async fn join(&mut self, within: Duration) -> Result<(), String> {
        let Some(h) = self.handle.take() else {
            return Ok(());
        };
        match tokio::time::timeout(within, h).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("run failed: {e}")),
            Ok(Err(e)) => Err(format!("run panicked: {e}")),
            Err(_) => Err(format!("run did not complete within {within:?}")),
        }
    }

    /// Polls `cond` until true or `within` passes; returns whether it became true.
    pub async fn poll_until<F, Fut>(&self, within: Duration, mut cond: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        poll_until(within, &mut cond).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn poll_until<F, Fut>(within: Duration, cond: &mut F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The default bound of a single wait.
pub const T: Duration = Duration::from_secs(3);

/// What the raw client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
    /// The server closed the WebSocket, or the TCP connection ended.
    Closed,
}

/// A raw WebSocket client. A background task reads the socket, answers Engine.IO pings
/// (`2` → `3`) while `auto_pong` is set, and queues everything else.
pub struct Ws {
    out: Option<mpsc::UnboundedSender<Message>>,
    inbox: mpsc::UnboundedReceiver<Msg>,
    pub auto_pong: Arc<AtomicBool>,
    pub pings: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    /// The Engine.IO open packet's JSON.
    pub open: Value,
    closed: bool,
}

impl Ws {
    pub async fn open(addr: SocketAddr) -> Ws {
        Self::try_open(addr).await.expect("websocket open")
    }

    pub async fn try_open(addr: SocketAddr) -> Result<Ws, String> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let stream = tokio::time::timeout(T, TcpStream::connect(addr))
            .await
            .map_err(|_| "tcp connect timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, stream))
            .await
            .map_err(|_| "ws handshake timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let open = match tokio::time::timeout(T, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let t = t.as_str();
                let body = t
                    .strip_prefix('0')
                    .ok_or_else(|| format!("not an open packet: {t}"))?;
                serde_json::from_str::<Value>(body).map_err(|e| e.to_string())?
            }
            other => return Err(format!("no open packet: {other:?}")),
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Msg>();
        let auto_pong = Arc::new(AtomicBool::new(true));
        let pings = Arc::new(AtomicUsize::new(0));
        let (ap, pc) = (auto_pong.clone(), pings.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(m) => {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = tokio::time::timeout(T, ws.close(None)).await;
                            // drain until the server's close
                            let _ = tokio::time::timeout(T, async { while let Some(Ok(_)) = ws.next().await {} }).await;
                            break;
                        }
                    },
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if t.as_str() == "2" {
                                pc.fetch_add(1, Ordering::SeqCst);
                                if ap.load(Ordering::SeqCst) && ws.send(Message::text("3")).await.is_err() {
                                    break;
                                }
                                continue;
                            }
                            let _ = in_tx.send(Msg::Text(t.as_str().to_owned()));
                        }
                        Some(Ok(Message::Binary(b))) => {
                            let _ = in_tx.send(Msg::Binary(b.to_vec()));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
            let _ = in_tx.send(Msg::Closed);
        });
        Ok(Ws {
            out: Some(out_tx),
            inbox: in_rx,
            auto_pong,
            pings,
            task,
            open,
            closed: false,
        })
    }

    /// Sends a text frame (a whole Engine.IO packet, e.g. `42["ping"]`).
    pub fn send(&self, text: &str) {
        if let Some(out) = &self.out {
            let _ = out.send(Message::text(text));
        }
    }

    pub fn send_binary(&self, bytes: &[u8]) {
        if let Some(out) = &self.out {
            let _ = out.send(Message::binary(bytes.to_vec()));
        }
    }

    /// Sends a Socket.IO event on `/`, with an ack id when given.
    pub fn emit(&self, event: &str, args: &[Value], ack: Option<u64>) {
        let mut arr = vec![json!(event)];
        arr.extend(args.iter().cloned());
        let id = ack.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("42{id}{}", Value::Array(arr)));
    }

    /// The next message, or None after `within` (Closed is returned once and then repeats).
    pub async fn recv(&mut self, within: Duration) -> Option<Msg> {
        if self.closed {
            return Some(Msg::Closed);
        }
        match tokio::time::timeout(within, self.inbox.recv()).await {
            Ok(Some(Msg::Closed)) | Ok(None) => {
                self.closed = true;
                Some(Msg::Closed)
            }
            Ok(Some(m)) => Some(m),
            Err(_) => None,
        }
    }

    /// The next text message; panics on timeout, close or binary.
    pub async fn text(&mut self, within: Duration) -> String {
        match self.recv(within).await {
            Some(Msg::Text(t)) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Skips messages until one is a text satisfying `pred`; panics on timeout or close.
    pub async fn wait_text(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Text(t)) if pred(&t) => return t,
                Some(Msg::Closed) => panic!("connection closed while waiting"),
                Some(_) => {}
                None => panic!("timed out after {within:?}"),
            }
        }
    }

    /// Skips messages until the event `name` arrives; returns its arguments.
    pub async fn event(&mut self, name: &str, within: Duration) -> Vec<Value> {
        let t = self
            .wait_text(within, |t| event_name(t).as_deref() == Some(name))
            .await;
        event_args(&t).expect("event args")
    }

    /// Skips messages until the ack `id` arrives; returns its arguments.
    pub async fn ack(&mut self, id: u64, within: Duration) -> Vec<Value> {
        let t = self
            .wait_text(within, |t| parse_ack(t).is_some_and(|(i, _)| i == id))
            .await;
        parse_ack(&t).expect("ack").1
    }

    /// Sends CONNECT on `/` with `auth` and waits for the answer: Ok(`{sid, pid}`) or
    /// Err(CONNECT_ERROR's `{message, data}`).
    pub async fn connect(&mut self, auth: Value) -> Result<Value, Value> {
        self.send(&format!("40{auth}"));
        let t = self
            .wait_text(T, |t| t.starts_with("40") || t.starts_with("44"))
            .await;
        let v: Value = serde_json::from_str(&t[2..]).expect("connect answer json");
        if t.starts_with("40") {
            Ok(v)
        } else {
            Err(v)
        }
    }

    /// Waits until the connection ends; true when it did within `within`. Other messages
    /// are discarded.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Closed) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }

    /// Everything that arrives within `within` (stops early on close).
    pub async fn collect(&mut self, within: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Closed) => {
                    out.push(Msg::Closed);
                    return out;
                }
                Some(m) => out.push(m),
                None => return out,
            }
        }
    }

    /// Closes the WebSocket politely (close frame).
    pub fn close(&mut self) {
        self.out = None;
    }

    /// Drops the TCP connection at once (no close frame, no Engine.IO close).
    pub fn kill(&mut self) {
        self.task.abort();
        self.out = None;
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connected client on `/`.
pub struct Client {
    pub ws: Ws,
    pub sid: String,
    pub pid: String,
    pub session: String,
    /// The `connected` event's payload.
    pub connected: Value,
}

/// The event name of a `42[...]` / `45N-[...]` text, if it is one.
pub fn event_name(text: &str) -> Option<String> {
    event_args_full(text)?
        .first()
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The arguments after the name of a `42[...]` or `45N-[...]` text.
pub fn event_args(text: &str) -> Option<Vec<Value>> {
    let mut v = event_args_full(text)?;
    v.remove(0);
    Some(v)
}

fn event_args_full(text: &str) -> Option<Vec<Value>> {
    let json = if let Some(rest) = text.strip_prefix("42") {
        rest
    } else if let Some(rest) = text.strip_prefix("45") {
        let (_, after) = rest.split_once('-')?;
        after
    } else {
        return None;
    };
    // skip an ack id if any
    let json = json.trim_start_matches(|c: char| c.is_ascii_digit());
    match serde_json::from_str::<Value>(json).ok()? {
        Value::Array(a) if !a.is_empty() => Some(a),
        _ => None,
    }
}

/// An ack text `43<id>[...]` (or binary `46N-<id>[...]`): its id and arguments.
pub fn parse_ack(text: &str) -> Option<(u64, Vec<Value>)> {
    let rest = if let Some(r) = text.strip_prefix("43") {
        r
    } else {
        text.strip_prefix("46")?.split_once('-')?.1
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let id = digits.parse().ok()?;
    match serde_json::from_str::<Value>(&rest[digits.len()..]).ok()? {
        Value::Array(a) => Some((id, a)),
        _ => None,
    }
}

/// An HS256 JWT over `claims` with the test secret.
pub fn jwt(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("jwt")
}

/// Seconds since 1970.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
