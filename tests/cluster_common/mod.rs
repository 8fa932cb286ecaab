//! Real-process cluster tests: spawns the `raftcast` binary as separate nodes on loopback,
//! talks to them over HTTP and with a raw Socket.IO client over WebSocket.
//!
//! Every wait polls a condition with a deadline. A [`Cluster`] kills its processes when
//! dropped and, when the test is failing, prints the tail of every node's log first.

// Tests fail by panicking: expect/unwrap are the point here. `unused` (not `dead_code`):
// each test crate uses a different part, and some also allow `dead_code` on the `mod`.
#![allow(unused, clippy::expect_used, clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const API_KEY: &str = "cluster-test-api-key-0123456789";
pub const SECRET: &str = "cluster-test-secret-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_raftcast");

pub use crate::ports::free_port;

fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!(
        "raftcast-cluster-{tag}-{}-{n:016x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// One node process.
pub struct Node {
    pub id: u64,
    pub port: u16,
    pub peer_port: u16,
    pub args: Vec<String>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the process (again) with its arguments; output appends to its log file.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        {
            use std::io::Write;
            let mut w = &out;
            let _ = writeln!(w, "### spawn {BIN} {}", self.args.join(" "));
        }
        let err = out.try_clone().expect("log file clone");
        let level = std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".into());
        let child = Command::new(BIN)
            .args(&self.args)
            .env("RUST_LOG", level)
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn raftcast");
        self.child = Some(child);
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (the process is left to exit by itself; see [`Node::wait_exit`]).
    pub fn term(&self) {
        let pid = self.pid().expect("node running");
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -TERM {pid} failed");
    }

    /// Waits (bounded) for the process to exit; its status, or None if still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A set of node processes sharing one temp dir.
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Starts `n` voters (ids 1..=n) with `extra` flags each, and waits until all are ready.
    pub async fn start(tag: &str, n: u64, extra: &[&str]) -> Cluster {
        Self::start_prepared(tag, n, extra, |_| {}).await
    }

    /// Like [`Cluster::start`], calling `prepare` with the cluster's directory (node `i`
    /// keeps its data in `<dir>/n<i>`) before any node starts.
    pub async fn start_prepared(
        tag: &str,
        n: u64,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Cluster {
        let dir = temp_dir(tag);
        prepare(&dir);
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (_, q))| format!("{}=127.0.0.1:{q}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (p, q)) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let mut args: Vec<String> = [
                "--node-id",
                &id.to_string(),
                "--port",
                &p.to_string(),
                "--peer-port",
                &q.to_string(),
                "--peers",
                &peers,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            args.extend(common_args(&dir, id));
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            nodes.push(Node {
                id,
                port: *p,
                peer_port: *q,
                args,
                log: dir.join(format!("n{id}.log")),
                child: None,
            });
        }
        let mut c = Cluster {
            dir,
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        };
        for node in &mut c.nodes {
            node.spawn();
        }
        let ids: Vec<u64> = (1..=n).collect();
        c.wait_ready(&ids, Duration::from_secs(30)).await;
        c
    }

    /// Adds and starts a node that joins through node `via` as a learner (no `--peers`).
    pub fn add_joiner(&mut self, via: u64, extra: &[&str]) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let (p, q) = (free_port(), free_port());
        let join = format!("127.0.0.1:{}", self.node(via).peer_port);
        let mut args: Vec<String> = [
            "--node-id",
            &id.to_string(),
            "--port",
            &p.to_string(),
            "--peer-port",
            &q.to_string(),
            "--join",
            &join,
            "--peer-host",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(common_args(&self.dir, id));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut node = Node {
            id,
            port: p,
            peer_port: q,
            args,
            log: self.dir.join(format!("n{id}.log")),
            child: None,
        };
        node.spawn();
        self.nodes.push(node);
        id
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("{}{path}", self.node(id).base())
    }

    /// Polls `GET /readyz` == 200 on every node of `ids` until `within` passes (panics then).
    pub async fn wait_ready(&mut self, ids: &[u64], within: Duration) {
        let deadline = Instant::now() + within;
        for &id in ids {
            loop {
                if self.get_status(id, "/readyz").await == Some(200) {
                    break;
                }
                assert!(
                    self.node_mut(id).running(),
                    "node {id} exited while starting"
                );
                assert!(
                    Instant::now() < deadline,
                    "node {id} not ready within {within:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn get_status(&self, id: u64, path: &str) -> Option<u16> {
        let r = self
            .http
            .get(self.url(id, path))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }

    /// An HTTP call with the API key and a per-request timeout: status and JSON body
    /// (Null when not JSON), or Err when the request itself failed.
    pub async fn call(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .http
            .request(method, self.url(id, path))
            .bearer_auth(API_KEY)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, id: u64, path: &str) -> Result<(u16, Value), String> {
        self.call(id, reqwest::Method::GET, path, None, Duration::from_secs(5))
            .await
    }

    /// `POST /api/emit` of `body` through `id` (10 s timeout).
    pub async fn emit_body(&self, id: u64, body: &Value) -> Result<(u16, Value), String> {
        self.call(
            id,
            reqwest::Method::POST,
            "/api/emit",
            Some(body),
            Duration::from_secs(10),
        )
        .await
    }

    /// `POST /api/emit/batch` of durable `trade:executed` `{i}` to `user:<user>`, one per
    /// `i` in order, through `id` (8 s timeout).
    pub async fn emit_trades(
        &self,
        id: u64,
        user: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(u16, Value), String> {
        let emits: Vec<Value> = range
            .map(|i| json!({ "userId": user, "event": "trade:executed", "data": { "i": i } }))
            .collect();
        let body = json!({ "emits": emits });
        let path = "/api/emit/batch";
        self.call(
            id,
            reqwest::Method::POST,
            path,
            Some(&body),
            Duration::from_secs(8),
        )
        .await
    }

    /// `POST /api/emit` of a durable `trade:executed` `{i}` to `user:<user>` through `id`.
    pub async fn emit_trade(&self, id: u64, user: &str, i: u64) -> Result<(u16, Value), String> {
        self.emitter(id).emit_trade(user, i).await
    }

    /// A detached handle emitting through node `id` (usable while the cluster is borrowed).
    pub fn emitter(&self, id: u64) -> Emitter {
        Emitter {
            http: self.http.clone(),
            url: self.url(id, "/api/emit"),
        }
    }

    /// Like [`Cluster::emit_trade`], expecting 200; returns the answer.
    pub async fn emit_ok(&self, id: u64, user: &str, i: u64) -> Value {
        match self.emit_trade(id, user, i).await {
            Ok((200, v)) => v,
            other => panic!("emit {i} through node {id}: {other:?}"),
        }
    }

    /// Creates a session for `user` through node `id`.
    pub async fn session(&self, id: u64, user: &str) -> String {
        let r = self
            .call(
                id,
                reqwest::Method::POST,
                "/api/sessions",
                Some(&json!({ "userId": user })),
                Duration::from_secs(8),
            )
            .await;
        match r {
            Ok((201, v)) => v["sessionId"].as_str().expect("sessionId").to_owned(),
            other => panic!("create session through node {id}: {other:?}"),
        }
    }

    /// `/cluster/status` of node `id`.
    pub async fn cluster_status(&self, id: u64) -> Option<Value> {
        match self.get(id, "/cluster/status").await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// The leader id on which every node of `ids` agrees, polled until `within` passes.
    pub async fn agreed_leader(&self, ids: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for &id in ids {
                seen.push(
                    self.cluster_status(id)
                        .await
                        .and_then(|s| s["leaderId"].as_u64()),
                );
            }
            if let Some(Some(l)) = seen.first() {
                if seen.iter().all(|s| *s == Some(*l)) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?} within {within:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /api/rooms/<room>/history` on node `id`: `(offset, data)` of every event.
    pub async fn history(
        &self,
        id: u64,
        room: &str,
    ) -> Result<(String, Vec<(u64, Value)>), String> {
        let (st, v) = self
            .get(id, &format!("/api/rooms/{room}/history?since=0"))
            .await?;
        if st != 200 {
            return Err(format!("history status {st}: {v}"));
        }
        let events = v["events"]
            .as_array()
            .ok_or_else(|| format!("no events in {v}"))?
            .iter()
            .map(|e| (e["offset"].as_u64().unwrap_or(0), e["data"].clone()))
            .collect();
        Ok((v["epoch"].as_str().unwrap_or_default().to_owned(), events))
    }

    /// Prints the tail of every node's log to stderr.
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(150);
            eprintln!(
                "===== node {} log ({}), last {} of {} lines =====",
                n.id,
                n.log.display(),
                lines.len() - from,
                lines.len()
            );
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Emits through one node's HTTP API.
#[derive(Clone)]
pub struct Emitter {
    http: reqwest::Client,
    url: String,
}

impl Emitter {
    /// `POST /api/emit` of a durable `trade:executed` `{i}` to `user:<user>`: status and
    /// JSON body, or Err when the request itself failed (8 s timeout).
    pub async fn emit_trade(&self, user: &str, i: u64) -> Result<(u16, Value), String> {
        let body = json!({ "userId": user, "event": "trade:executed", "data": { "i": i } });
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(API_KEY)
            .timeout(Duration::from_secs(8))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

fn common_args(dir: &Path, id: u64) -> Vec<String> {
    [
        "--host",
        "127.0.0.1",
        "--cluster-secret",
        SECRET,
        "--api-key",
        API_KEY,
        "--data-dir",
        &dir.join(format!("n{id}")).display().to_string(),
        "--ping-interval-ms",
        "500",
        "--ping-timeout-ms",
        "500",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            self.dump_logs();
            eprintln!("cluster dir kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `cond` every 50 ms until it yields Some or `within` passes.
pub async fn poll<T, F, Fut>(within: Duration, mut cond: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = cond().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the raw client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    /// The server closed the WebSocket, or the TCP connection ended.
    Closed,
}

/// A raw Socket.IO client over WebSocket on `/`: a background task answers Engine.IO pings
/// (`2` → `3`) and queues every other frame.
pub struct Sio {
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Msg>,
    task: JoinHandle<()>,
    closed: bool,
    pub sid: String,
    pub pid: String,
    /// The `connected` event's payload (when waited for).
    pub connected: Value,
}

const T: Duration = Duration::from_secs(5);

impl Sio {
    /// Opens the WebSocket and reads the Engine.IO open packet.
    pub async fn open(addr: SocketAddr) -> Result<Sio, String> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let stream = tokio::time::timeout(T, TcpStream::connect(addr))
            .await
            .map_err(|_| "tcp connect timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(url, stream))
            .await
            .map_err(|_| "ws handshake timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(T, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().starts_with('0') => {}
            other => return Err(format!("no open packet: {other:?}")),
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Msg>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(m) => if ws.send(m).await.is_err() { break },
                        None => {
                            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                            break;
                        }
                    },
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if t.as_str() == "2" {
                                if ws.send(Message::text("3")).await.is_err() { break }
                                continue;
                            }
                            let _ = in_tx.send(Msg::Text(t.as_str().to_owned()));
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = in_tx.send(Msg::Closed);
        });
        Ok(Sio {
            out: out_tx,
            inbox: in_rx,
            task,
            closed: false,
            sid: String::new(),
            pid: String::new(),
            connected: Value::Null,
        })
    }

    /// Sends CONNECT on `/` with `auth`: Ok(the answer `{sid, pid}`) or Err(a description,
    /// with the CONNECT_ERROR body when there is one).
    pub async fn connect(&mut self, auth: &Value) -> Result<Value, String> {
        self.send(&format!("40{auth}"));
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Text(t)) if t.starts_with("40") => {
                    let v: Value = serde_json::from_str(&t[2..]).map_err(|e| e.to_string())?;
                    self.sid = v["sid"].as_str().unwrap_or_default().to_owned();
                    self.pid = v["pid"].as_str().unwrap_or_default().to_owned();
                    return Ok(v);
                }
                Some(Msg::Text(t)) if t.starts_with("44") => {
                    return Err(format!("connect_error {}", &t[2..]))
                }
                Some(Msg::Text(_)) => {}
                Some(Msg::Closed) => return Err("closed before the CONNECT answer".into()),
                None => return Err("no CONNECT answer".into()),
            }
        }
    }

    /// Opens, connects with `auth` and reads the `connected` event.
    pub async fn login(addr: SocketAddr, auth: &Value) -> Result<Sio, String> {
        let mut s = Sio::open(addr).await?;
        s.connect(auth).await?;
        let c = s.event("connected", T).await?;
        s.connected = c.first().cloned().unwrap_or(Value::Null);
        Ok(s)
    }

    pub fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text));
    }

    /// Emits `event` with `args`, with an ack id when given.
    pub fn emit(&self, event: &str, args: &[Value], ack: Option<u64>) {
        let mut arr = vec![json!(event)];
        arr.extend(args.iter().cloned());
        let id = ack.map(|a| a.to_string()).unwrap_or_default();
        self.send(&format!("42{id}{}", Value::Array(arr)));
    }

    /// The next frame, or None after `within`; Closed repeats once seen.
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

    /// The next event `(name, args)` (other frames skipped); Err on close or timeout.
    pub async fn next_event(&mut self, within: Duration) -> Result<(String, Vec<Value>), String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Text(t)) => {
                    if let Some(mut a) = event_array(&t) {
                        let name = a.remove(0).as_str().unwrap_or_default().to_owned();
                        return Ok((name, a));
                    }
                }
                Some(Msg::Closed) => return Err("connection closed".into()),
                None => return Err(format!("no event within {within:?}")),
            }
        }
    }

    /// Skips frames until the event `name`; its arguments.
    pub async fn event(&mut self, name: &str, within: Duration) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, a) = self
                .next_event(left)
                .await
                .map_err(|e| format!("waiting for {name}: {e}"))?;
            if n == name {
                return Ok(a);
            }
        }
    }

    /// Skips frames until the ack `id`; its arguments.
    pub async fn ack(&mut self, id: u64, within: Duration) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(Msg::Text(t)) => {
                    if let Some((i, a)) = parse_ack(&t) {
                        if i == id {
                            return Ok(a);
                        }
                    }
                }
                Some(Msg::Closed) => return Err(format!("closed waiting for ack {id}")),
                None => return Err(format!("no ack {id} within {within:?}")),
            }
        }
    }

    /// Collects `trade:executed`-like events named `name` until `n` arrived or `within`
    /// passes (other events skipped). Returns what arrived.
    pub async fn collect(&mut self, name: &str, n: usize, within: Duration) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Ok((e, a)) if e == name => out.push(a),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        out
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Waits until the connection ends, discarding frames; whether it did within `within`.
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
}

impl Drop for Sio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `42[...]` (optionally with an ack id): the array.
fn event_array(t: &str) -> Option<Vec<Value>> {
    let rest = t.strip_prefix("42")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    match serde_json::from_str::<Value>(rest).ok()? {
        Value::Array(a) if !a.is_empty() => Some(a),
        _ => None,
    }
}

/// `43<id>[...]`: its id and arguments.
fn parse_ack(t: &str) -> Option<(u64, Vec<Value>)> {
    let rest = t.strip_prefix("43")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let id = digits.parse().ok()?;
    match serde_json::from_str::<Value>(&rest[digits.len()..]).ok()? {
        Value::Array(a) => Some((id, a)),
        _ => None,
    }
}

/// A delivered durable event: `(data, meta, offset string)` → `(data.i, meta.offset,
/// meta.epoch, trailing offset string)`.
pub fn durable_parts(args: &[Value]) -> (u64, u64, String, String) {
    let i = args
        .first()
        .and_then(|d| d["i"].as_u64())
        .unwrap_or(u64::MAX);
    let meta = args.get(1).cloned().unwrap_or(Value::Null);
    (
        i,
        meta["offset"].as_u64().unwrap_or(0),
        meta["epoch"].as_str().unwrap_or_default().to_owned(),
        args.get(2)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}
