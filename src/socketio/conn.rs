//! One Engine.IO connection: its outbox, heartbeat clock and the sockets it carries.
//!
//! Nothing here owns a task or a channel. Writers (broadcasts, acks, heartbeats) push
//! already-encoded [`Frame`]s into the outbox under a short lock and wake the transport;
//! the transport (the WebSocket task, or the pending long-poll) drains the whole outbox at
//! once and writes it in one batch. An idle connection holds no buffer: the outbox is an
//! empty [`Frames`], which keeps one frame inline and allocates only for a second.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::clock::now_ms;
use super::encode::Frames;
use super::handler::RequestInfo;
use super::signal::Signal;
use super::socket::Socket;

/// An encoded Engine.IO packet, cheap to clone and shared by every recipient of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete text packet including its Engine.IO type digit, e.g. `42["a",1]`.
    Text(Utf8Bytes),
    /// A binary message (Socket.IO attachment).
    Binary(Bytes),
}

impl Frame {
    /// A text frame from a complete Engine.IO packet.
    pub fn text(s: impl Into<Utf8Bytes>) -> Frame {
        Frame::Text(s.into())
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }
}

/// Which transport currently carries the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling = 0,
    WebSocket = 1,
}

/// Why a connection or socket ended, in Socket.IO's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The transport closed (the peer went away or the network broke).
    TransportClose,
    /// The transport failed (protocol error, oversized message, I/O error).
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client disconnected the socket on purpose.
    ClientNamespaceDisconnect,
    /// The server disconnected the socket on purpose.
    ServerNamespaceDisconnect,
    /// The client did not read fast enough and its outbox overflowed.
    SlowConsumer,
    /// The server is shutting down.
    ServerShuttingDown,
}

impl DisconnectReason {
    /// The reason string Socket.IO uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::SlowConsumer => "slow consumer",
            DisconnectReason::ServerShuttingDown => "server shutting down",
        }
    }

    /// Whether a client may come back and recover this socket's state (connection state
    /// recovery applies to accidental disconnections only).
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::SlowConsumer
                | DisconnectReason::ServerShuttingDown
        )
    }
}

#[derive(Default)]
struct Outbox {
    /// The first frame is inline: a delivery of one frame to an idle connection (most
    /// of them) allocates nothing here.
    frames: Frames,
    bytes: usize,
}

/// The state of one Engine.IO connection.
pub struct Conn {
    pub(crate) sid: Arc<str>,
    pub(crate) remote: SocketAddr,
    /// Request details copied at handshake, for the connect handler; dropped once the
    /// connection has joined a namespace (an idle connection keeps no request data).
    info: Mutex<Option<Arc<RequestInfo>>>,
    /// A binary packet waiting for its attachments.
    pub(crate) partial: Mutex<Option<Box<super::inbound::Partial>>>,
    outbox: Mutex<Outbox>,
    /// Wakes whichever transport writes this connection's outbox.
    pub(crate) wake: Signal,
    closed: AtomicBool,
    close_reason: AtomicU8,
    transport: AtomicU8,
    /// Deadline (ms since start) for the next ping; `u64::MAX` while a ping is out.
    next_ping_at: AtomicU64,
    /// Deadline for the pong of the ping that is out; 0 when none is out.
    pong_deadline: AtomicU64,
    /// When the connection opened, for the connect timeout.
    opened_at: u64,
    /// Set once a socket joined a namespace: the connect timeout no longer applies.
    joined: AtomicBool,
    /// Set while a WebSocket probes this polling connection (at most one upgrade at a time).
    pub(crate) upgrading: AtomicBool,
    /// Sockets on this connection, one per namespace.
    pub(crate) sockets: Mutex<SmallVec<[Arc<Socket>; 1]>>,
    max_outbox_bytes: usize,
    /// True while a long-poll GET is pending (at most one at a time).
    pub(crate) polling_busy: AtomicBool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("sid", &self.sid).finish()
    }
}

impl Conn {
    pub(crate) fn new(
        sid: Arc<str>,
        remote: SocketAddr,
        transport: Transport,
        info: Arc<RequestInfo>,
        ping_interval_ms: u64,
        max_outbox_bytes: usize,
    ) -> Conn {
        let now = now_ms();
        Conn {
            sid,
            remote,
            info: Mutex::new(Some(info)),
            partial: Mutex::new(None),
            outbox: Mutex::new(Outbox::default()),
            wake: Signal::default(),
            closed: AtomicBool::new(false),
            close_reason: AtomicU8::new(0),
            transport: AtomicU8::new(transport as u8),
            next_ping_at: AtomicU64::new(now + ping_interval_ms),
            pong_deadline: AtomicU64::new(0),
            opened_at: now,
            joined: AtomicBool::new(false),
            upgrading: AtomicBool::new(false),
            sockets: Mutex::new(SmallVec::new()),
            max_outbox_bytes,
            polling_busy: AtomicBool::new(false),
        }
    }

    /// The request details for a connect handler (empty once a namespace was joined).
    pub(crate) fn request_info(&self) -> Arc<RequestInfo> {
        self.info.lock().clone().unwrap_or_default()
    }

    /// Forgets the request details (once a socket has joined a namespace).
    fn drop_request_info(&self) {
        self.info.lock().take();
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// A short, non-secret tag of this connection for logs: the sid itself is the polling
    /// transport's only credential and is never logged.
    pub fn log_id(&self) -> &str {
        self.sid.get(..6).unwrap_or("?")
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        if self.transport.load(Ordering::Acquire) == Transport::WebSocket as u8 {
            Transport::WebSocket
        } else {
            Transport::Polling
        }
    }

    pub(crate) fn set_transport(&self, t: Transport) {
        self.transport.store(t as u8, Ordering::Release);
        self.wake.notify();
    }

    /// Queues frames to be written together, in order. Returns false when the connection
    /// is closed or its outbox overflowed (the connection is then closed as a slow consumer).
    pub fn push(&self, frames: &[Frame]) -> bool {
        if self.is_closed() {
            return false;
        }
        let overflow = {
            let mut out = self.outbox.lock();
            let add: usize = frames.iter().map(Frame::len).sum();
            if out.bytes + add > self.max_outbox_bytes && !out.frames.is_empty() {
                true
            } else {
                out.bytes += add;
                out.frames.extend(frames.iter().cloned());
                false
            }
        };
        if overflow {
            self.mark_closed(DisconnectReason::SlowConsumer);
            return false;
        }
        self.wake.notify();
        true
    }

    /// Queues one frame.
    pub fn push_one(&self, frame: Frame) -> bool {
        self.push(std::slice::from_ref(&frame))
    }

    /// Takes everything queued so far.
    pub(crate) fn drain(&self) -> Frames {
        let mut out = self.outbox.lock();
        out.bytes = 0;
        std::mem::take(&mut out.frames)
    }

    /// Whether anything waits to be written.
    #[cfg(test)]
    pub(crate) fn has_pending(&self) -> bool {
        !self.outbox.lock().frames.is_empty()
    }

    /// Marks the connection closed (idempotent). Returns true for the first caller, who
    /// must then run the teardown. Wakes the transport so it notices.
    pub(crate) fn mark_closed(&self, reason: DisconnectReason) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        if first {
            self.close_reason.store(reason as u8, Ordering::Release);
        }
        self.wake.notify();
        first
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn close_reason(&self) -> DisconnectReason {
        match self.close_reason.load(Ordering::Acquire) {
            x if x == DisconnectReason::TransportError as u8 => DisconnectReason::TransportError,
            x if x == DisconnectReason::PingTimeout as u8 => DisconnectReason::PingTimeout,
            x if x == DisconnectReason::ClientNamespaceDisconnect as u8 => {
                DisconnectReason::ClientNamespaceDisconnect
            }
            x if x == DisconnectReason::ServerNamespaceDisconnect as u8 => {
                DisconnectReason::ServerNamespaceDisconnect
            }
            x if x == DisconnectReason::SlowConsumer as u8 => DisconnectReason::SlowConsumer,
            x if x == DisconnectReason::ServerShuttingDown as u8 => {
                DisconnectReason::ServerShuttingDown
            }
            _ => DisconnectReason::TransportClose,
        }
    }

    /// Records a pong (or any sign of life that answers a ping).
    pub(crate) fn on_pong(&self, ping_interval_ms: u64) {
        self.pong_deadline.store(0, Ordering::Release);
        self.next_ping_at
            .store(now_ms() + ping_interval_ms, Ordering::Release);
    }

    /// Records that the client sent something while a ping is out: it is alive, and its pong
    /// may be queued behind packets the server is still working through (a burst of events
    /// is read one at a time), so the pong deadline moves to `ping_timeout` from now.
    pub(crate) fn on_inbound(&self, ping_timeout_ms: u64) {
        let deadline = self.pong_deadline.load(Ordering::Acquire);
        if deadline != 0 {
            let later = (now_ms() + ping_timeout_ms).max(deadline);
            // Only the deadline we read: a pong (0) or a new ping in between wins.
            let _ = self.pong_deadline.compare_exchange(
                deadline,
                later,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Records that a socket joined a namespace (ends the connect timeout).
    pub(crate) fn mark_joined(&self) {
        self.joined.store(true, Ordering::Release);
        self.drop_request_info();
    }

    /// Whether the pong of the ping that is out is overdue at `now`: the connection is dead
    /// even if the shared timer has not swept it yet.
    pub(crate) fn pong_overdue(&self, now: u64) -> bool {
        let deadline = self.pong_deadline.load(Ordering::Acquire);
        deadline != 0 && now >= deadline
    }

    /// Heartbeat step, called by the shared timer. Returns what to do with this connection.
    pub(crate) fn heartbeat(
        &self,
        now: u64,
        ping_timeout_ms: u64,
        connect_timeout_ms: u64,
    ) -> Beat {
        if self.pong_overdue(now) {
            return Beat::TimedOut;
        }
        if !self.joined.load(Ordering::Acquire)
            && now.saturating_sub(self.opened_at) >= connect_timeout_ms
        {
            return Beat::TimedOut;
        }
        let due = self.next_ping_at.load(Ordering::Acquire);
        if now >= due {
            self.next_ping_at.store(u64::MAX, Ordering::Release);
            // The pong is due `ping_timeout` after the ping was due, not after the (coarse)
            // timer got to it, so a session times out at interval + timeout like upstream's;
            // a badly late timer still leaves the client half the timeout.
            let deadline = (due + ping_timeout_ms).max(now + ping_timeout_ms / 2);
            self.pong_deadline.store(deadline, Ordering::Release);
            return Beat::Ping;
        }
        Beat::Idle
    }

    /// The socket of this connection on namespace `nsp`.
    pub(crate) fn socket(&self, nsp: &str) -> Option<Arc<Socket>> {
        self.sockets.lock().iter().find(|s| s.nsp() == nsp).cloned()
    }
}

/// What the heartbeat decided for a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    Idle,
    Ping,
    TimedOut,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(max: usize) -> Conn {
        Conn::new(
            Arc::from("s"),
            "127.0.0.1:1".parse().unwrap(),
            Transport::WebSocket,
            Arc::default(),
            1000,
            max,
        )
    }

    #[test]
    fn inbound_data_moves_an_outstanding_pong_deadline_only() {
        let c = conn(1 << 20);
        let now = now_ms();
        // Nothing out: inbound data sets no deadline.
        c.on_inbound(200);
        assert!(!c.pong_overdue(now + 10_000));
        // A ping goes out (interval 1000 ms has passed): the pong is due 200 ms later.
        assert!(matches!(c.heartbeat(now + 1000, 200, 45_000), Beat::Ping));
        assert!(c.pong_overdue(now + 1200));
        // The client is still sending (its pong queued behind): the deadline moves on.
        c.on_inbound(60_000);
        assert!(!c.pong_overdue(now + 1200));
        assert!(c.pong_overdue(now_ms() + 60_001));
        // The pong ends it; later data does not bring a deadline back.
        c.on_pong(1000);
        c.on_inbound(200);
        assert!(!c.pong_overdue(now_ms() + 10_000));
    }

    #[test]
    fn outbox_keeps_order_and_frees_when_drained() {
        let c = conn(1 << 20);
        assert!(c.push(&[Frame::text("4a"), Frame::Binary(Bytes::from_static(b"x"))]));
        assert!(c.push_one(Frame::text("4b")));
        let got: Vec<Frame> = c.drain().into_iter().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Frame::text("4b"));
        assert!(!c.has_pending());
        // One frame (most deliveries) is kept inline: no allocation to queue it.
        assert!(c.push_one(Frame::text("4c")));
        let one = c.drain();
        assert!(!one.spilled(), "a single frame needs no heap buffer");
        assert_eq!(one.into_iter().collect::<Vec<_>>(), vec![Frame::text("4c")]);
    }

    #[test]
    fn overflow_closes_as_slow_consumer() {
        let c = conn(10);
        assert!(c.push_one(Frame::text("4123456789")));
        assert!(!c.push_one(Frame::text("4x")));
        assert!(c.is_closed());
        assert_eq!(c.close_reason(), DisconnectReason::SlowConsumer);
        assert!(!c.push_one(Frame::text("4y")));
    }

    #[test]
    fn heartbeat_pings_then_times_out() {
        let c = conn(100);
        let t0 = now_ms();
        assert_eq!(c.heartbeat(t0, 50, u64::MAX), Beat::Idle);
        assert_eq!(c.heartbeat(t0 + 1000, 50, u64::MAX), Beat::Ping);
        assert_eq!(c.heartbeat(t0 + 1010, 50, u64::MAX), Beat::Idle);
        assert_eq!(c.heartbeat(t0 + 1050, 50, u64::MAX), Beat::TimedOut);
        c.on_pong(1000);
        // the pong clears the deadline; the next ping is due a full interval after it
        assert!(!c.pong_overdue(t0 + 1050));
        assert_eq!(c.heartbeat(t0 + 999, 50, u64::MAX), Beat::Idle);
    }

    #[test]
    fn pong_deadline_counts_from_when_the_ping_was_due() {
        let c = conn(100);
        let due = c.next_ping_at.load(Ordering::Acquire);
        // the timer reaches the ping 20 ms late: the pong is still due at ping time + 200
        assert_eq!(c.heartbeat(due + 20, 200, u64::MAX), Beat::Ping);
        assert!(!c.pong_overdue(due + 199));
        assert!(c.pong_overdue(due + 200));
        // a timer stalled past the deadline still leaves half the timeout
        let c = conn(100);
        let due = c.next_ping_at.load(Ordering::Acquire);
        assert_eq!(c.heartbeat(due + 5000, 200, u64::MAX), Beat::Ping);
        assert!(!c.pong_overdue(due + 5099));
        assert!(c.pong_overdue(due + 5100));
    }

    #[test]
    fn connect_timeout_only_until_the_first_join() {
        let c = conn(100);
        let t0 = now_ms();
        assert_eq!(c.heartbeat(t0 + 10, 50, 5), Beat::TimedOut);
        let c = conn(100);
        c.mark_joined();
        // joined, then left every namespace: the connection stays (upstream does the same)
        assert_eq!(c.heartbeat(t0 + 10, 50, 5), Beat::Idle);
    }
}
