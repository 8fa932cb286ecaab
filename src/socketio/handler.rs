//! What the rest of the server plugs into a namespace: connection middleware (auth and
//! recovery), event handling with acks, and disconnect notification.
//!
//! A handler is one shared object per namespace, not a set of closures per socket: no
//! per-socket allocation for handlers, and they are in place before a CONNECT is answered.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::conn::{DisconnectReason, Transport};
use super::encode::Frames;
use super::socket::Socket;

/// A boxed future, as handlers return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Per-socket state chosen by the handler at connect (e.g. the authenticated user).
pub type SocketState = Arc<dyn Any + Send + Sync>;

/// What a client sent with its CONNECT, and what we know of its connection.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The namespace asked for.
    pub nsp: String,
    /// The `auth` object of the client (`Value::Null` when none), without `pid`/`offset`.
    pub auth: Value,
    /// `Some((pid, offset))` when the client asks to recover a previous session.
    pub recover: Option<(String, String)>,
    pub remote: SocketAddr,
    pub transport: Transport,
    /// Selected request headers and the query copied at handshake (origin, user-agent,
    /// x-forwarded-for). Only the first namespace a connection joins sees them: they are
    /// dropped then, so an idle connection holds no request data (later namespaces get
    /// empty values).
    pub headers: Arc<RequestInfo>,
}

/// Request details kept after the handshake (the request itself is dropped).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub origin: Option<String>,
    pub user_agent: Option<String>,
    pub forwarded_for: Option<String>,
    pub query: Vec<(String, String)>,
}

/// A restored session: the socket takes this id and pid back, and `replay` produces the
/// packets it missed. `replay` runs while the namespace's rooms are locked, with the
/// sequence number of the last broadcast delivered locally; packets after it arrive live.
pub struct Restore {
    pub sid: String,
    pub pid: String,
    pub replay: Box<dyn FnOnce(u64) -> Vec<Frames> + Send>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore").field("sid", &self.sid).finish()
    }
}

/// A successful connect.
pub struct Accept {
    pub state: SocketState,
    /// Rooms to join before the CONNECT answer goes out.
    pub rooms: Vec<String>,
    /// Present when the handler restored a previous session (connection state recovery).
    pub restore: Option<Restore>,
}

/// A refused connect: the client gets CONNECT_ERROR `{message, data}`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub message: String,
    pub data: Option<Value>,
}

/// An event from a client.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    /// The arguments after the name (binary placeholders left in place).
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

/// Answers one client acknowledgement request (at most once).
#[derive(Debug)]
pub struct AckSender {
    pub(crate) socket: Arc<Socket>,
    pub(crate) id: u64,
}

impl AckSender {
    /// Sends the acknowledgement with `args`.
    pub fn send(self, args: &[Value]) {
        self.send_binary(args, &[]);
    }

    /// Sends the acknowledgement with binary attachments referenced by placeholders.
    pub fn send_binary(self, args: &[Value], attachments: &[Bytes]) {
        let frames = super::encode::ack(self.socket.nsp(), self.id, args, attachments);
        self.socket.send_frames(&frames);
    }
}

/// The behaviour of a namespace.
pub trait Handler: Send + Sync + 'static {
    /// Decides whether a client may connect. Runs before the socket exists.
    fn connect(&self, req: ConnectRequest) -> BoxFuture<Result<Accept, Refusal>>;

    /// Called once the CONNECT answer is queued (the socket is in its rooms).
    fn connected(&self, _socket: &Arc<Socket>) {}

    /// Handles an event. Work that must wait is returned as a future; the socket's next
    /// packet is read only when it completes, so a socket's events are handled in order.
    fn event(&self, socket: &Arc<Socket>, event: Event) -> Option<BoxFuture<()>>;

    /// Called once when the socket is gone: it receives nothing more, and `socket.rooms()`
    /// still lists the rooms it was in (it leaves them right after).
    fn disconnected(&self, _socket: &Arc<Socket>, _reason: DisconnectReason) {}
}

/// Something the HTTP server wants kept alive as long as the connection that carried the
/// request (e.g. a per-IP connection slot). Put it in the request's extensions; the
/// WebSocket transport keeps it for the life of the upgraded connection.
#[derive(Clone)]
pub struct ConnGuard(pub Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnGuard")
    }
}
