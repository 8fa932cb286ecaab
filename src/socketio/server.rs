//! The Socket.IO server handle: configuration, namespaces, the connection registry, the
//! shared heartbeat timer and HTTP request routing for `/socket.io/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, Response, StatusCode};
use parking_lot::RwLock;
use rand::RngCore;

use super::clock::now_ms;
use super::conn::{Beat, Conn, DisconnectReason, Frame, Transport};
use super::handler::{Handler, RequestInfo};
use super::namespace::Namespace;
use super::{inbound, polling, ws};

/// Settings of the Socket.IO layer.
#[derive(Debug, Clone)]
pub struct IoConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest message (WebSocket) or POST body (polling) accepted, in bytes.
    pub max_payload: usize,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// A connection that joins no namespace within this time is closed.
    pub connect_timeout: Duration,
    /// Bytes queued for a client that does not read before it is dropped as a slow consumer.
    pub max_outbox_bytes: usize,
    /// WebSocket read buffer per connection (grows only for larger messages).
    pub ws_read_buffer: usize,
    /// Whether polling clients may upgrade to WebSocket.
    pub allow_upgrades: bool,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_attachments: 10,
            connect_timeout: Duration::from_secs(45),
            max_outbox_bytes: 4 << 20,
            ws_read_buffer: 256,
            allow_upgrades: true,
        }
    }
}

pub(crate) struct IoInner {
    pub(crate) config: IoConfig,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    conns: RwLock<HashMap<Arc<str>, Arc<Conn>>>,
    pub(crate) shutting_down: AtomicBool,
    handshakes: AtomicU64,
    /// When set, Engine.IO messages go here instead of the Socket.IO decoder.
    pub(crate) message_hook: std::sync::OnceLock<MessageHook>,
}

/// An Engine.IO message, for a server that speaks plain Engine.IO (see
/// [`Io::set_message_hook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    Text(String),
    Binary(bytes::Bytes),
}

/// Receives every Engine.IO message of a plain Engine.IO server.
pub type MessageHook = Arc<dyn Fn(&Arc<Conn>, EngineMessage) + Send + Sync>;

/// The Socket.IO server. Cheap to clone.
#[derive(Clone)]
pub struct Io {
    pub(crate) inner: Arc<IoInner>,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

/// An Engine.IO error answer (`{"code", "message"}` with HTTP 400 or 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EngineError {
    fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub(crate) fn response(self) -> Response<Body> {
        let status = if self == EngineError::Forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({ "code": self as u8, "message": self.message() }).to_string();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// A fresh random id (20 URL-safe characters).
pub fn random_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Io {
    /// Creates the server and starts its heartbeat timer (needs a Tokio runtime).
    pub fn new(config: IoConfig) -> Io {
        let io = Io {
            inner: Arc::new(IoInner {
                config,
                namespaces: RwLock::new(HashMap::new()),
                conns: RwLock::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                handshakes: AtomicU64::new(0),
                message_hook: std::sync::OnceLock::new(),
            }),
        };
        tokio::spawn(heartbeat(Arc::downgrade(&io.inner)));
        io
    }

    /// Registers a namespace. With `recovery`, sockets get a `pid` and recoverable packets
    /// may carry offsets (connection state recovery).
    pub fn add_namespace(
        &self,
        path: &str,
        handler: Arc<dyn Handler>,
        recovery: bool,
    ) -> Arc<Namespace> {
        let ns = Arc::new(Namespace::new(path, handler, recovery));
        self.inner
            .namespaces
            .write()
            .insert(path.to_owned(), ns.clone());
        ns
    }

    /// Makes this a plain Engine.IO server: every message goes to `hook` (which may answer
    /// with [`Conn::push_one`]) instead of being read as a Socket.IO packet, and the
    /// Socket.IO connect timeout no longer applies. Set once, before serving.
    pub fn set_message_hook(&self, hook: MessageHook) {
        let _ = self.inner.message_hook.set(hook);
    }

    /// The namespace at `path`.
    pub fn namespace(&self, path: &str) -> Option<Arc<Namespace>> {
        self.inner.namespaces.read().get(path).cloned()
    }

    /// The configuration.
    pub fn config(&self) -> &IoConfig {
        &self.inner.config
    }

    /// Open Engine.IO connections.
    pub fn connection_count(&self) -> usize {
        self.inner.conns.read().len()
    }

    /// Handshakes accepted since start.
    pub fn handshake_count(&self) -> u64 {
        self.inner.handshakes.load(Ordering::Relaxed)
    }

    /// Stops accepting handshakes (existing connections stay until closed).
    pub fn stop_accepting(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    /// Whether [`Io::stop_accepting`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Closes every connection, letting each flush what it has queued.
    pub fn close_all(&self, reason: DisconnectReason) {
        let conns: Vec<Arc<Conn>> = self.inner.conns.read().values().cloned().collect();
        for c in conns {
            c.mark_closed(reason);
            if c.transport() == Transport::Polling {
                self.inner.finish(&c);
            }
        }
    }

    /// Handles a request under `/socket.io/`.
    pub async fn handle(&self, req: Request<Body>, remote: SocketAddr) -> Response<Body> {
        let query = parse_query(req.uri().query().unwrap_or(""));
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("EIO") != Some("4") {
            return EngineError::UnsupportedProtocolVersion.response();
        }
        let transport = match get("transport") {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::WebSocket,
            _ => return EngineError::UnknownTransport.response(),
        };
        let sid = get("sid").map(str::to_owned);
        let is_upgrade = req
            .headers()
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));

        match (transport, sid) {
            (Transport::WebSocket, _) if !is_upgrade || req.method() != Method::GET => {
                EngineError::BadRequest.response()
            }
            (Transport::WebSocket, None) => {
                if self.inner.shutting_down.load(Ordering::Acquire) {
                    return EngineError::Forbidden.response();
                }
                let info = request_info(&req, query);
                ws::accept(self.clone(), req, remote, None, info)
            }
            (Transport::WebSocket, Some(sid)) => match self.inner.conn(&sid) {
                Some(conn)
                    if conn.transport() == Transport::Polling
                        && self.inner.config.allow_upgrades =>
                {
                    let info = request_info(&req, query);
                    ws::accept(self.clone(), req, remote, Some(conn), info)
                }
                // Already upgraded: like upstream, complete the WebSocket handshake and close
                // it right away (a WebSocket client treats a plain 400 as an error, not a close).
                Some(conn) if conn.transport() == Transport::WebSocket => ws::refuse(req),
                Some(_) => EngineError::BadRequest.response(),
                None => EngineError::UnknownSid.response(),
            },
            (Transport::Polling, None) => {
                if req.method() != Method::GET {
                    return EngineError::BadHandshakeMethod.response();
                }
                if self.inner.shutting_down.load(Ordering::Acquire) {
                    return EngineError::Forbidden.response();
                }
                let info = request_info(&req, query);
                polling::handshake(self, remote, info)
            }
            (Transport::Polling, Some(sid)) => match self.inner.conn(&sid) {
                None => EngineError::UnknownSid.response(),
                Some(conn) if conn.transport() != Transport::Polling => {
                    EngineError::BadRequest.response()
                }
                Some(conn) => match *req.method() {
                    Method::GET => polling::poll(self, conn).await,
                    Method::POST => polling::post(self, conn, req.into_body()).await,
                    _ => EngineError::BadRequest.response(),
                },
            },
        }
    }

    /// Registers a new connection and returns it with its Engine.IO open packet.
    pub(crate) fn open_conn(
        &self,
        remote: SocketAddr,
        transport: Transport,
        info: Arc<RequestInfo>,
    ) -> (Arc<Conn>, Frame) {
        let cfg = &self.inner.config;
        let sid: Arc<str> = Arc::from(random_id());
        let conn = Arc::new(Conn::new(
            sid.clone(),
            remote,
            transport,
            info,
            ms(cfg.ping_interval),
            cfg.max_outbox_bytes,
        ));
        let upgrades: &[&str] = if transport == Transport::Polling && cfg.allow_upgrades {
            &["websocket"]
        } else {
            &[]
        };
        let open = serde_json::json!({
            "sid": &*sid,
            "upgrades": upgrades,
            "pingInterval": ms(cfg.ping_interval),
            "pingTimeout": ms(cfg.ping_timeout),
            "maxPayload": cfg.max_payload,
        });
        self.inner.conns.write().insert(sid, conn.clone());
        self.inner.handshakes.fetch_add(1, Ordering::Relaxed);
        (conn, Frame::text(format!("0{open}")))
    }

    pub(crate) fn finish(&self, conn: &Arc<Conn>) {
        self.inner.finish(conn);
    }

    /// Handles one Engine.IO packet from a client (shared by both transports).
    pub(crate) fn on_packet(
        &self,
        conn: &Arc<Conn>,
        packet: super::engine_packet::EnginePacket,
    ) -> inbound::Outcome {
        inbound::on_engine_packet(self, conn, packet)
    }
}

impl IoInner {
    /// The open connection `sid`. One whose pong is overdue is closed here rather than
    /// served, even if the shared timer has not swept it yet.
    fn conn(&self, sid: &str) -> Option<Arc<Conn>> {
        let conn = self.conns.read().get(sid).cloned()?;
        if conn.pong_overdue(now_ms()) {
            conn.mark_closed(DisconnectReason::PingTimeout);
            self.finish(&conn);
            return None;
        }
        Some(conn)
    }

    /// Tears a closed connection down once: its sockets end, it leaves the registry.
    pub(crate) fn finish(&self, conn: &Arc<Conn>) {
        conn.mark_closed(DisconnectReason::TransportClose);
        let removed = {
            let mut conns = self.conns.write();
            match conns.get(&conn.sid) {
                Some(c) if Arc::ptr_eq(c, conn) => conns.remove(&conn.sid).is_some(),
                _ => false,
            }
        };
        if !removed {
            return;
        }
        let reason = conn.close_reason();
        let sockets: Vec<_> = conn.sockets.lock().drain(..).collect();
        for s in sockets {
            s.close(reason);
        }
        tracing::debug!(
            conn = conn.log_id(),
            reason = reason.as_str(),
            "connection closed"
        );
    }

    pub(crate) fn namespace(&self, path: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(path).cloned()
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn request_info(req: &Request<Body>, query: Vec<(String, String)>) -> Arc<RequestInfo> {
    let h = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect::<String>())
    };
    Arc::new(RequestInfo {
        origin: h(http::header::ORIGIN),
        user_agent: h(http::header::USER_AGENT),
        forwarded_for: h(http::header::HeaderName::from_static("x-forwarded-for")),
        query,
    })
}

/// Parses a query string (percent-decoding keys and values; at most 32 pairs).
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The shared heartbeat: one timer for every connection of the server.
async fn heartbeat(inner: std::sync::Weak<IoInner>) {
    let tick = match inner.upgrade() {
        Some(i) => {
            let c = &i.config;
            let base = c.ping_interval.min(c.ping_timeout) / 10;
            base.clamp(Duration::from_millis(10), Duration::from_secs(1))
        }
        None => return,
    };
    let ping = Frame::text("2");
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = now_ms();
        let timeout = ms(inner.config.ping_timeout);
        let connect_timeout = if inner.message_hook.get().is_some() {
            u64::MAX
        } else {
            ms(inner.config.connect_timeout)
        };
        let mut dead = Vec::new();
        for conn in inner.conns.read().values() {
            if conn.is_closed() {
                dead.push(conn.clone());
                continue;
            }
            match conn.heartbeat(now, timeout, connect_timeout) {
                Beat::Idle => {}
                Beat::Ping => {
                    conn.push_one(ping.clone());
                }
                Beat::TimedOut => {
                    conn.mark_closed(DisconnectReason::PingTimeout);
                    dead.push(conn.clone());
                }
            }
        }
        for conn in dead {
            inner.finish(&conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query("EIO=4&transport=polling&t=N8h%2Fx&a+b=c%zz&=");
        assert_eq!(q[0], ("EIO".into(), "4".into()));
        assert_eq!(q[2], ("t".into(), "N8h/x".into()));
        assert_eq!(q[3], ("a b".into(), "c%zz".into()));
        assert_eq!(parse_query("x=%"), vec![("x".into(), "%".into())]);
        assert_eq!(parse_query("x=%4"), vec![("x".into(), "%4".into())]);
    }

    #[test]
    fn ids_are_unique_and_url_safe() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
