//! The Engine.IO 4 / Socket.IO 5 client side of the load generator, over WebSocket only.
//!
//! One task per connection. Handshake: `0{..}` open packet, then Socket.IO CONNECT
//! `40{"sessionId":..}` answered by `40{"sid":..}` (or `44{..}` on refusal), then optionally
//! `42["subscribe:watchlist",{"symbols":[..]}]` answered by `42["subscribed:watchlist",..]`.
//! Steady state: answer every server ping `2` with `3`, and time every delivered
//! `42["bench",{"s":<seq>,"t":<send time µs>},meta,...]`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

use crate::error::{BenchError, Result};
use crate::hist::Histogram;

pub type Ws = WebSocketStream<TcpStream>;

/// The event name the publisher uses; everything else delivered is ignored.
pub const BENCH_EVENT: &str = "bench";

/// Width of one timeline bucket (used for delivery gaps in M7).
pub const TIMELINE_BUCKET_MS: u64 = 10;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Delivery accounting shared by every client task and the publisher.
pub struct Shared {
    /// Publish-to-deliver latency at members on the node the publisher posts to.
    pub hist_local: Histogram,
    /// ... and at members on other nodes (what crosses the cluster).
    pub hist_cross: Histogram,
    pub deliveries: AtomicU64,
    /// Per sequence number: how many members received it.
    pub seen: Vec<AtomicU32>,
    /// Per sequence number: 0 not sent, 1 acknowledged (HTTP 200), 2 refused or failed.
    pub acked: Vec<AtomicU8>,
    /// Cross-node deliveries per TIMELINE_BUCKET_MS since `t0`.
    pub timeline_cross: Vec<AtomicU32>,
    pub t0: Instant,
    pub publish_node: AtomicUsize,
    pub disconnects: AtomicU64,
    pub pings: AtomicU64,
    /// Confirmed subscriptions per room index.
    pub room_members: Vec<AtomicU32>,
}

impl Shared {
    pub fn new(max_seq: usize, rooms: usize, timeline_secs: u64) -> Arc<Self> {
        let buckets = (timeline_secs * 1000 / TIMELINE_BUCKET_MS) as usize;
        Arc::new(Shared {
            hist_local: Histogram::new(),
            hist_cross: Histogram::new(),
            deliveries: AtomicU64::new(0),
            seen: (0..max_seq).map(|_| AtomicU32::new(0)).collect(),
            acked: (0..max_seq).map(|_| AtomicU8::new(0)).collect(),
            timeline_cross: (0..buckets).map(|_| AtomicU32::new(0)).collect(),
            t0: Instant::now(),
            publish_node: AtomicUsize::new(0),
            disconnects: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            room_members: (0..rooms).map(|_| AtomicU32::new(0)).collect(),
        })
    }

    /// Clears the per-step latency and delivery counters (sequence arrays are never reused).
    pub fn reset_step(&self) {
        self.hist_local.reset();
        self.hist_cross.reset();
        self.deliveries.store(0, Ordering::Relaxed);
    }

    pub fn members(&self, room: usize) -> u64 {
        self.room_members
            .get(room)
            .map(|m| m.load(Ordering::Relaxed) as u64)
            .unwrap_or(0)
    }

    fn on_delivery(&self, node: usize, text: &str) {
        let Some(rest) = text
            .strip_prefix("42[\"")
            .and_then(|r| r.strip_prefix(BENCH_EVENT))
            .and_then(|r| r.strip_prefix("\","))
        else {
            return;
        };
        let (Some(seq), Some(sent)) = (field(rest, "\"s\":"), field(rest, "\"t\":")) else {
            return;
        };
        let lat = now_us().saturating_sub(sent);
        let cross = node != self.publish_node.load(Ordering::Relaxed);
        if cross {
            self.hist_cross.record(lat);
            let bucket = (self.t0.elapsed().as_millis() as u64 / TIMELINE_BUCKET_MS) as usize;
            if let Some(b) = self.timeline_cross.get(bucket) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.hist_local.record(lat);
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self.seen.get(seq as usize) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Parses the unsigned integer that follows `key` in `s` (compact JSON, optional spaces).
pub fn field(s: &str, key: &str) -> Option<u64> {
    let at = s.find(key)? + key.len();
    let digits = s[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Where and how one client connects.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    pub node: usize,
    pub addr: SocketAddr,
    pub source_ip: Ipv4Addr,
    pub session: Arc<str>,
    pub rooms: Vec<usize>,
}

pub fn symbol(room: usize) -> String {
    format!("R{room}")
}

pub fn room_name(room: usize) -> String {
    format!("watchlist:{}", symbol(room))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => {
                return Err(BenchError::Protocol("closed during handshake".into()))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Opens one connection and takes it through the Engine.IO and Socket.IO handshakes and the
/// subscriptions in its plan.
pub async fn connect(plan: &ClientPlan) -> Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(plan.source_ip.into(), 0))?;
    let stream = sock.connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", plan.addr);
    let (mut ws, _) = client_async_with_config(url, stream, Some(ws_config())).await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(BenchError::Protocol(format!(
            "expected EIO open, got {open:.80}"
        )));
    }
    ws.send(Message::text(format!(
        "40{{\"sessionId\":\"{}\"}}",
        plan.session
    )))
    .await?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with("40") {
            break;
        } else if t.starts_with("44") {
            return Err(BenchError::Refused(t.chars().take(200).collect()));
        } else if t == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
    if !plan.rooms.is_empty() {
        let symbols: Vec<String> = plan.rooms.iter().map(|r| symbol(*r)).collect();
        let packet = format!(
            "42[\"subscribe:watchlist\",{}]",
            serde_json::json!({ "symbols": symbols })
        );
        ws.send(Message::text(packet)).await?;
        loop {
            let t = next_text(&mut ws).await?;
            if t.starts_with("42[\"subscribed:watchlist\"") {
                break;
            } else if t.starts_with("42[\"error\"") {
                return Err(BenchError::Refused(t.chars().take(200).collect()));
            } else if t == "2" {
                ws.send(Message::text("3")).await?;
            }
        }
    }
    Ok(ws)
}

/// Connects with retries (sessions may still be replicating to the node a client picks).
pub async fn connect_with_retry(plan: &ClientPlan, attempts: u32, timeout: Duration) -> Result<Ws> {
    let mut last = BenchError::Timeout("no attempt".into());
    for attempt in 0..attempts {
        match tokio::time::timeout(timeout, connect(plan)).await {
            Ok(Ok(ws)) => return Ok(ws),
            Ok(Err(e)) => last = e,
            Err(_) => last = BenchError::Timeout(format!("handshake to {}", plan.addr)),
        }
        tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
    }
    Err(last)
}

/// The steady state of one client until `stop` flips or the server closes the connection.
pub async fn run(mut ws: Ws, node: usize, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if t == "2" {
                        shared.pings.fetch_add(1, Ordering::Relaxed);
                        if ws.send(Message::text("3")).await.is_err() {
                            shared.disconnects.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    } else if t.starts_with("42") {
                        shared.on_delivery(node, t);
                    } else if t.starts_with("41") || t.starts_with('1') {
                        shared.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delivery_fields() {
        let t = r#"{"s":42,"t":1700000000123456},{"room":"watchlist:R0","offset":3,"epoch":"e","ts":1700000000123}"#;
        assert_eq!(field(t, "\"s\":"), Some(42));
        assert_eq!(field(t, "\"t\":"), Some(1_700_000_000_123_456));
    }

    #[test]
    fn counts_a_delivery() {
        let shared = Shared::new(10, 1, 1);
        let sent = now_us();
        shared.on_delivery(
            1,
            &format!("42[\"bench\",{{\"s\":3,\"t\":{sent}}},{{}},\"7\"]"),
        );
        shared.on_delivery(1, "42[\"other\",{\"s\":3,\"t\":1}]");
        assert_eq!(shared.deliveries.load(Ordering::Relaxed), 1);
        assert_eq!(shared.seen[3].load(Ordering::Relaxed), 1);
        assert_eq!(shared.hist_cross.count(), 1);
    }
}
