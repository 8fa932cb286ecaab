//! A Socket.IO socket: one client on one namespace, carried by a [`Conn`].
//!
//! It knows its rooms, its handler-chosen state and its pending server-to-client acks
//! (allocated only when the server asks a client for an ack).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::conn::{Conn, DisconnectReason, Frame, Transport};
use super::encode::{self, Frames};
use super::handler::SocketState;
use super::namespace::Namespace;

/// An acknowledgement a client sent back: its arguments and attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

/// Why an acknowledgement did not come.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no acknowledgement within the timeout")]
    Timeout,
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
}

type AckMap = HashMap<u64, oneshot::Sender<AckResponse>>;

/// One connected client on one namespace.
pub struct Socket {
    id: Arc<str>,
    pid: Option<Arc<str>>,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) conn: Arc<Conn>,
    rooms: Mutex<SmallVec<[Arc<str>; 4]>>,
    state: SocketState,
    acks: Mutex<Option<Box<AckMap>>>,
    next_ack: AtomicU64,
    connected: AtomicBool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("nsp", &self.ns.path)
            .finish()
    }
}

impl Socket {
    pub(crate) fn new(
        id: Arc<str>,
        pid: Option<Arc<str>>,
        ns: Arc<Namespace>,
        conn: Arc<Conn>,
        state: SocketState,
    ) -> Socket {
        Socket {
            id,
            pid,
            ns,
            conn,
            rooms: Mutex::new(SmallVec::new()),
            state,
            acks: Mutex::new(None),
            next_ack: AtomicU64::new(0),
            connected: AtomicBool::new(true),
        }
    }

    /// The socket id (`socket.id` on the client).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> Arc<str> {
        self.id.clone()
    }

    /// The private session id used by connection state recovery, when enabled.
    pub fn pid(&self) -> Option<&str> {
        self.pid.as_deref()
    }

    /// The namespace path.
    pub fn nsp(&self) -> &str {
        &self.ns.path
    }

    /// The namespace this socket belongs to.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The handler-chosen state, if it is a `T`.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state.downcast_ref::<T>()
    }

    /// The client's address.
    pub fn remote_addr(&self) -> std::net::SocketAddr {
        self.conn.remote
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.conn.transport()
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire) && !self.conn.is_closed()
    }

    /// Queues already-encoded frames for this socket. False when it is gone.
    pub fn send_frames(&self, frames: &[Frame]) -> bool {
        self.connected.load(Ordering::Acquire) && self.conn.push(frames)
    }

    /// Emits `event` with JSON arguments.
    pub fn emit(&self, event: &str, args: &[Value]) -> bool {
        self.send_frames(&encode::event(self.nsp(), event, args, &[], None))
    }

    /// Emits `event` with arguments holding placeholders for `attachments`.
    pub fn emit_binary(&self, event: &str, args: &[Value], attachments: &[Bytes]) -> bool {
        self.send_frames(&encode::event(self.nsp(), event, args, attachments, None))
    }

    /// Emits `event` and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks
            .lock()
            .get_or_insert_with(Default::default)
            .insert(id, tx);
        if !self.send_frames(&encode::event(
            self.nsp(),
            event,
            args,
            attachments,
            Some(id),
        )) {
            self.take_ack(id);
            return Err(AckError::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.take_ack(id);
                Err(AckError::Timeout)
            }
        }
    }

    fn take_ack(&self, id: u64) -> Option<oneshot::Sender<AckResponse>> {
        let mut acks = self.acks.lock();
        let map = acks.as_mut()?;
        let tx = map.remove(&id);
        if map.is_empty() {
            *acks = None;
        }
        tx
    }

    /// Delivers a client's ACK packet to whoever waits for it. False for an unknown id.
    pub(crate) fn resolve_ack(&self, id: u64, resp: AckResponse) -> bool {
        match self.take_ack(id) {
            Some(tx) => tx.send(resp).is_ok(),
            None => false,
        }
    }

    /// Joins rooms (locally; the fan-out backend mirrors membership where it needs to).
    pub fn join(self: &Arc<Self>, rooms: &[String]) {
        self.ns.join(self, rooms, None);
    }

    /// Joins rooms and, atomically with the join, queues the packets `replay` returns for the
    /// current broadcast watermark (see [`Namespace::broadcast_seq`]).
    pub fn join_with_replay(
        self: &Arc<Self>,
        rooms: &[String],
        replay: impl FnOnce(u64) -> Vec<Frames> + Send,
    ) {
        self.ns.join(self, rooms, Some(Box::new(replay)));
    }

    /// Leaves rooms.
    pub fn leave(self: &Arc<Self>, rooms: &[String]) {
        self.ns.leave(self, rooms);
    }

    /// The rooms this socket is in.
    pub fn rooms(&self) -> Vec<String> {
        self.rooms.lock().iter().map(|r| r.to_string()).collect()
    }

    /// Whether the socket is in `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.lock().iter().any(|r| &**r == room)
    }

    pub(crate) fn add_room(&self, room: &Arc<str>) -> bool {
        let mut rooms = self.rooms.lock();
        if rooms.iter().any(|r| r == room) {
            false
        } else {
            rooms.push(room.clone());
            true
        }
    }

    pub(crate) fn remove_room(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock();
        match rooms.iter().position(|r| &**r == room) {
            Some(i) => {
                rooms.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Disconnects the socket from the server side: the client gets a DISCONNECT packet
    /// (and does not reconnect by itself).
    pub fn disconnect(self: &Arc<Self>) {
        if self.connected.load(Ordering::Acquire) {
            self.conn.push_one(encode::disconnect(self.nsp()));
            self.close(DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// Ends the socket: leaves rooms, drops pending acks, tells the handler. Idempotent.
    pub(crate) fn close(self: &Arc<Self>, reason: DisconnectReason) {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        self.conn.sockets.lock().retain(|s| !Arc::ptr_eq(s, self));
        *self.acks.lock() = None;
        // The handler sees the rooms the socket was in (for recovery records) but the socket
        // no longer receives anything.
        self.ns.handler.disconnected(self, reason);
        self.ns.remove_socket(self);
    }
}
