//! The ceiling: a minimal raw tokio-tungstenite broadcast server with no Socket.IO library.
//!
//! It speaks just enough Engine.IO 4 / Socket.IO 5 for `raftcast-bench` to point its fan-out
//! scenario at it: the EIO open packet `0{..}`, CONNECT `40` → `40{"sid":..}`, pings `2` every
//! ping interval (answers `3` ignored), `subscribe:watchlist` confirmed (every socket gets every
//! broadcast anyway), and plain HTTP on the same port:
//! `POST /api/emit {room?, userId?, event, data}` encodes `42[event,data,meta]` once and hands
//! the same shared bytes to every connection; `POST /api/sessions` hands out dummy sessions;
//! `GET /healthz` answers 200.
//!
//! `raw_ceiling --port 5021`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

#[derive(Parser)]
#[command(about = "raw tokio-tungstenite broadcast server: the fan-out ceiling")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5021)]
    port: u16,
    #[arg(long, default_value_t = 25_000)]
    ping_interval_ms: u64,
    #[arg(long, default_value_t = 20_000)]
    ping_timeout_ms: u64,
    /// Broadcast queue length per connection before a slow one starts losing frames.
    #[arg(long, default_value_t = 8192)]
    queue: usize,
}

#[derive(Debug, thiserror::Error)]
enum RawError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

impl From<tokio_tungstenite::tungstenite::Error> for RawError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        RawError::Ws(Box::new(e))
    }
}

struct State {
    tx: broadcast::Sender<Utf8Bytes>,
    next_sid: AtomicU64,
    lagged: AtomicU64,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raw_ceiling: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("raw_ceiling: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> Result<(), RawError> {
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|_| RawError::BadRequest("bad --host/--port"))?;
    let listener = TcpListener::bind(addr).await?;
    let (tx, _) = broadcast::channel(args.queue.max(16));
    let state = Arc::new(State {
        tx,
        next_sid: AtomicU64::new(1),
        lagged: AtomicU64::new(0),
        ping_interval_ms: args.ping_interval_ms,
        ping_timeout_ms: args.ping_timeout_ms,
    });
    // One shared heartbeat timer for every socket.
    let hb = state.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_millis(hb.ping_interval_ms.max(100)));
        t.tick().await;
        loop {
            t.tick().await;
            let _ = hb.tx.send(Utf8Bytes::from_static("2"));
        }
    });
    eprintln!("raw_ceiling listening on {addr}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("raw_ceiling: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            if let Err(e) = handle(stream, state).await {
                if !matches!(e, RawError::Io(_)) {
                    eprintln!("raw_ceiling: {e}");
                }
            }
        });
    }
}

struct Head {
    method: String,
    path: String,
    content_length: usize,
    ws_key: Option<String>,
}

fn parse_head(text: &str) -> Result<Head, RawError> {
    let mut lines = text.split("\r\n");
    let mut first = lines
        .next()
        .ok_or(RawError::BadRequest("empty request"))?
        .split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let mut head = Head {
        method,
        path,
        content_length: 0,
        ws_key: None,
    };
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
            match n.as_str() {
                "content-length" => {
                    head.content_length = v.parse().map_err(|_| RawError::BadRequest("length"))?
                }
                "sec-websocket-key" => head.ws_key = Some(v.to_string()),
                _ => {}
            }
        }
    }
    Ok(head)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> Result<(), RawError> {
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    Ok(())
}

/// HTTP/1.1 with keep-alive until the request is a WebSocket upgrade.
async fn handle(mut stream: TcpStream, state: Arc<State>) -> Result<(), RawError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(RawError::BadRequest("request head too large"));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = parse_head(&String::from_utf8_lossy(&buf[..end]))?;
        buf.drain(..end);
        if head.method == "GET" && head.path.starts_with("/socket.io/") {
            let key = head
                .ws_key
                .ok_or(RawError::BadRequest("not a websocket upgrade"))?;
            if !buf.is_empty() {
                return Err(RawError::BadRequest("data before the upgrade completed"));
            }
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(resp.as_bytes()).await?;
            return socket(stream, state).await;
        }
        if head.content_length > MAX_BODY {
            respond(
                &mut stream,
                "413 Payload Too Large",
                "{\"code\":\"PAYLOAD_TOO_LARGE\"}",
            )
            .await?;
            return Ok(());
        }
        while buf.len() < head.content_length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..head.content_length).collect();
        match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/healthz") | ("GET", "/readyz") => {
                respond(&mut stream, "200 OK", "{\"status\":\"ok\"}").await?
            }
            ("POST", "/api/sessions") => {
                let n = state.next_sid.fetch_add(1, Ordering::Relaxed);
                let user = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("userId").cloned())
                    .unwrap_or(serde_json::Value::Null);
                let answer = serde_json::json!({ "sessionId": format!("raw-{n}"), "userId": user });
                respond(&mut stream, "201 Created", &answer.to_string()).await?
            }
            ("POST", "/api/emit") => match emit(&state, &body) {
                Some(answer) => respond(&mut stream, "200 OK", &answer).await?,
                None => {
                    respond(
                        &mut stream,
                        "400 Bad Request",
                        "{\"code\":\"INVALID_PAYLOAD\"}",
                    )
                    .await?
                }
            },
            _ => respond(&mut stream, "404 Not Found", "{\"code\":\"NOT_FOUND\"}").await?,
        }
    }
}

/// Encodes the Socket.IO EVENT packet once and broadcasts the shared bytes.
fn emit(state: &State, body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let event = v.get("event")?.as_str()?;
    let room = match (v.get("room"), v.get("userId")) {
        (Some(serde_json::Value::String(r)), None) => r.clone(),
        (None, Some(serde_json::Value::String(u))) => format!("user:{u}"),
        _ => return None,
    };
    let data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
    let meta =
        serde_json::json!({ "room": room, "offset": 0, "epoch": "raw", "ts": now_ms() as u64 });
    let packet = format!("42{}", serde_json::json!([event, data, meta]));
    // No receivers is fine: nobody is connected yet.
    let _ = state.tx.send(Utf8Bytes::from(packet));
    Some(serde_json::json!({ "room": room, "offset": 0, "epoch": "raw" }).to_string())
}

async fn recv_opt(
    rx: &mut Option<broadcast::Receiver<Utf8Bytes>>,
) -> Result<Utf8Bytes, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn socket(stream: TcpStream, state: Arc<State>) -> Result<(), RawError> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        // What is fed between two flushes goes out in one send (as raftcast's
        // `socketio/coalesce.rs` does), up to 64 KiB.
        .write_buffer_size(64 * 1024)
        .max_message_size(Some(MAX_BODY))
        .max_frame_size(Some(MAX_BODY));
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
    let sid = format!("raw{}", state.next_sid.fetch_add(1, Ordering::Relaxed));
    ws.send(Message::text(format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":[],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{MAX_BODY}}}",
        state.ping_interval_ms, state.ping_timeout_ms
    )))
    .await?;
    let mut rx: Option<broadcast::Receiver<Utf8Bytes>> = None;
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if t.starts_with("40") && rx.is_none() {
                        rx = Some(state.tx.subscribe());
                        ws.send(Message::text(format!("40{{\"sid\":\"{sid}\"}}"))).await?;
                        ws.send(Message::text(format!(
                            "42[\"connected\",{{\"socketId\":\"{sid}\",\"nodeId\":\"raw\",\"serverTime\":{}}}]",
                            now_ms()
                        ))).await?;
                    } else if let Some(args) = t.strip_prefix("42[\"subscribe:watchlist\",") {
                        let symbols = serde_json::from_str::<serde_json::Value>(args.trim_end_matches(']'))
                            .ok()
                            .and_then(|v| v.get("symbols").cloned())
                            .unwrap_or_else(|| serde_json::json!([]));
                        let rooms: Vec<String> = symbols
                            .as_array()
                            .map(|a| a.iter().filter_map(|s| s.as_str()).map(|s| format!("watchlist:{s}")).collect())
                            .unwrap_or_default();
                        let reply = serde_json::json!(["subscribed:watchlist", { "symbols": symbols, "rooms": rooms }]);
                        ws.send(Message::text(format!("42{reply}"))).await?;
                    } else if t.starts_with("41") {
                        return Ok(());
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
            frame = recv_opt(&mut rx) => match frame {
                Ok(frame) => {
                    ws.feed(Message::Text(frame)).await?;
                    // Write whatever else is already queued, then flush once.
                    if let Some(r) = rx.as_mut() {
                        for _ in 0..64 {
                            match r.try_recv() {
                                Ok(f) => ws.feed(Message::Text(f)).await?,
                                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                    state.lagged.fetch_add(n, Ordering::Relaxed);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    ws.flush().await?;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    state.lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
