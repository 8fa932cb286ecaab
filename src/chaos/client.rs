//! One Socket.IO client of the workload, speaking Engine.IO v4 / Socket.IO v5 over
//! tokio-tungstenite directly: connect with a session id, answer pings, subscribe to its
//! trades (`user:<id>`) with `since` after every reconnect, to any node that is up, and
//! record every durable delivery with its `meta`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

use super::cluster::View;
use super::record::{ClientLog, Delivery, Journal};

/// Most connection attempts of one client in a run.
const MAX_ATTEMPTS: u32 = 100_000;
/// The volatile stream's symbol.
pub const QUOTE_SYMBOL: &str = "CHAOS";

/// Who a client is.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub id: usize,
    pub user: String,
    pub session: String,
    /// Index of the node it connects to first.
    pub home: usize,
}

type Ws = WebSocketStream<TcpStream>;

/// Offsets seen so far: what `since` is built from.
#[derive(Default)]
struct Progress {
    start: Option<u64>,
    epoch: Option<String>,
    seen: BTreeSet<u64>,
    contiguous: u64,
}

impl Progress {
    fn note(&mut self, offset: u64) {
        let Some(start) = self.start else {
            self.seen.insert(offset);
            return;
        };
        if offset > self.contiguous {
            self.seen.insert(offset);
        }
        if self.contiguous < start {
            self.contiguous = start;
        }
        while self.seen.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
        // Offsets at or below the contiguous mark are never needed again.
        while let Some(first) = self.seen.first().copied() {
            if first <= self.contiguous {
                self.seen.remove(&first);
            } else {
                break;
            }
        }
    }

    fn since(&self) -> Value {
        match (&self.start, &self.epoch) {
            (Some(_), Some(epoch)) => {
                json!({ "since": { "offset": self.contiguous, "epoch": epoch } })
            }
            _ => json!({}),
        }
    }
}

/// Runs the client until `stop` turns true.
pub async fn run(
    spec: ClientSpec,
    view: Arc<View>,
    journal: Arc<Journal>,
    log: Arc<Mutex<ClientLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut progress = Progress::default();
    let mut conn_no = 0u32;
    let mut next = spec.home;
    for _ in 0..MAX_ATTEMPTS {
        if *stop.borrow() {
            return;
        }
        // Any node that is up, starting from the one after the last tried.
        let Some(i) = view.up_from(next).first().copied() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        next = i + 1;
        let Some((node_id, addr)) = view.nodes.get(i).copied() else {
            return;
        };
        match connect(&spec, addr).await {
            Ok((ws, idle)) => {
                conn_no += 1;
                {
                    let mut l = log.lock();
                    l.connects += 1;
                    l.nodes.push(node_id);
                }
                let mut c = Conn {
                    ws,
                    idle,
                    node: node_id,
                    conn: conn_no,
                    journal: &journal,
                    log: &log,
                    progress: &mut progress,
                };
                if let Err(e) = c.serve(&mut stop).await {
                    log.lock().error(format!("node {node_id}: {e}"));
                }
            }
            Err(e) => {
                let mut l = log.lock();
                l.connect_failures += 1;
                l.error(format!("connect to node {node_id}: {e}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn next_text(ws: &mut Ws, limit: Duration) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err("timed out".into()),
            Ok(None) => return Err("closed".into()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(_)))) => return Err("closed by the server".into()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Opens the WebSocket and the Socket.IO session; returns it and the silence after which
/// the connection counts as dead (ping interval + ping timeout).
async fn connect(spec: &ClientSpec, addr: SocketAddr) -> Result<(Ws, Duration), String> {
    let tcp = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| "TCP connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(2), client_async(url, tcp))
        .await
        .map_err(|_| "WebSocket handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let open = next_text(&mut ws, Duration::from_secs(2)).await?;
    let hs: Value = open
        .strip_prefix('0')
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| format!("bad open packet {open:.80}"))?;
    let idle = Duration::from_millis(
        hs["pingInterval"].as_u64().unwrap_or(25_000)
            + hs["pingTimeout"].as_u64().unwrap_or(20_000)
            + 500,
    );
    let auth = format!("40{}", json!({ "sessionId": spec.session }));
    ws.send(Message::Text(auth.into()))
        .await
        .map_err(|e| e.to_string())?;
    // The node may hold the CONNECT until it is ready (≤ 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let t = next_text(&mut ws, left).await?;
        if t == "2" {
            ws.send(Message::Text("3".into()))
                .await
                .map_err(|e| e.to_string())?;
        } else if t.starts_with("40") {
            return Ok((ws, idle));
        } else if t.starts_with("44") {
            return Err(format!("refused: {t:.200}"));
        }
    }
}

struct Conn<'a> {
    ws: Ws,
    idle: Duration,
    node: u64,
    conn: u32,
    journal: &'a Journal,
    log: &'a Mutex<ClientLog>,
    progress: &'a mut Progress,
}

impl Conn<'_> {
    async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Subscribes, then reads until the connection dies or the run stops.
    async fn serve(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let since = self.progress.since();
        self.send(format!("42{}", json!(["subscribe:trades", since])))
            .await?;
        self.send(format!(
            "42{}",
            json!(["subscribe:watchlist", { "symbols": [QUOTE_SYMBOL] }])
        ))
        .await?;
        let mut confirmed = false;
        loop {
            let msg = tokio::select! {
                m = tokio::time::timeout(self.idle, self.ws.next()) => m,
                _ = stop.changed() => {
                    let _ = self.ws.close(None).await;
                    return Ok(());
                }
            };
            let text = match msg {
                Err(_) => return Err("silent for longer than ping interval + timeout".into()),
                Ok(None) => return Err("closed".into()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
                Ok(Some(Ok(Message::Close(_)))) => return Err("closed by the server".into()),
                Ok(Some(Ok(_))) => continue,
            };
            if text == "2" {
                self.send("3".into()).await?;
                continue;
            }
            if text.starts_with("41") {
                return Err("disconnected by the server".into());
            }
            let Some(rest) = text.strip_prefix("42") else {
                continue;
            };
            let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let Ok(Value::Array(args)) = serde_json::from_str::<Value>(body) else {
                self.log
                    .lock()
                    .error(format!("bad event packet {text:.120}"));
                continue;
            };
            match args.first().and_then(Value::as_str).unwrap_or_default() {
                "trade:executed" => self.delivery(&args, confirmed),
                "quote:update" => self.log.lock().quotes += 1,
                "subscribed:trades" => {
                    confirmed = true;
                    self.confirmed(args.get(1).unwrap_or(&Value::Null));
                }
                "server:shutdown" => return Err("server shutting down".into()),
                "error" => {
                    let e = args.get(1).map(Value::to_string).unwrap_or_default();
                    self.log.lock().error(format!("error event {e:.200}"));
                }
                _ => {}
            }
        }
    }

    fn delivery(&mut self, args: &[Value], confirmed: bool) {
        let meta = args.get(2).unwrap_or(&Value::Null);
        let Some(offset) = meta["offset"].as_u64() else {
            self.log.lock().error("trade:executed without meta.offset");
            return;
        };
        let epoch = meta["epoch"].as_str().unwrap_or_default().to_owned();
        let seq = args.get(1).and_then(|d| d["seq"].as_u64());
        self.progress.note(offset);
        if self.progress.epoch.is_none() && !epoch.is_empty() {
            self.progress.epoch = Some(epoch.clone());
        }
        let d = Delivery {
            offset,
            epoch,
            seq,
            at_ms: self.journal.now_ms(),
            node: self.node,
            conn: self.conn,
            pre_confirm: !confirmed,
        };
        let mut l = self.log.lock();
        l.deliveries.push(d);
        l.contiguous = self.progress.contiguous;
    }

    fn confirmed(&mut self, v: &Value) {
        let offset = v["offset"].as_u64().unwrap_or(0);
        let epoch = v["epoch"].as_str().unwrap_or_default().to_owned();
        let recovered = v["recovered"].as_bool().unwrap_or(false);
        let mut l = self.log.lock();
        if self.progress.start.is_none() {
            self.progress.start = Some(offset);
            self.progress.contiguous = offset;
            self.progress.epoch = Some(epoch.clone());
            let early: Vec<u64> = self.progress.seen.iter().copied().collect();
            self.progress.seen.clear();
            for o in early.into_iter().filter(|o| *o > offset) {
                self.progress.note(o);
            }
            self.progress.note(offset);
            l.start_offset = Some(offset);
            l.start_epoch = Some(epoch);
        } else if !recovered {
            l.not_recovered += 1;
            l.error(format!("resubscribe not recovered: {v}"));
        } else {
            self.progress.note(offset.min(self.progress.contiguous));
        }
        l.contiguous = self.progress.contiguous;
    }
}
