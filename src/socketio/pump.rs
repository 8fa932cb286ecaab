//! The loop of an open WebSocket connection ([`Pump`]): writes what the connection's outbox
//! holds (large messages as bounded fragments), runs at most one piece of handler work, and
//! reads the next packet. Used by the WebSocket transport (`ws.rs`), which opens and closes
//! the connection around it.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::conn::{Conn, DisconnectReason, Frame};
use super::encode::Frames;
use super::engine_packet::EnginePacket;
use super::handler::BoxFuture;
use super::inbound::Outcome;
use super::server::Io;
use super::ws::{to_message, Stream};

/// Largest WebSocket frame written; a longer message goes as several fragments.
const FRAGMENT: usize = 4096;

/// A message being written in fragments (RFC 6455 §5.4): the first frame carries the
/// message's opcode, the next ones are continuations, the last is final.
struct Split {
    data: Bytes,
    text: bool,
    pos: usize,
}

impl Split {
    fn new(frame: Frame) -> Box<Split> {
        let (data, text) = match frame {
            Frame::Text(t) => (Bytes::from(t), true),
            Frame::Binary(b) => (b, false),
        };
        Box::new(Split { data, text, pos: 0 })
    }

    /// The next fragment, and whether it is the last.
    fn next_fragment(&mut self) -> (Message, bool) {
        let end = (self.pos + FRAGMENT).min(self.data.len());
        let opcode = match (self.pos, self.text) {
            (0, true) => OpCode::Data(OpData::Text),
            (0, false) => OpCode::Data(OpData::Binary),
            _ => OpCode::Data(OpData::Continue),
        };
        let last = end == self.data.len();
        let frame = WsFrame::message(self.data.slice(self.pos..end), opcode, last);
        self.pos = end;
        (Message::Frame(frame), last)
    }
}

/// The loop of an open WebSocket connection: writes what is queued, runs at most one
/// piece of handler work, reads the next packet. A plain `poll` function rather than an
/// async block with `select!`: every idle connection's task keeps this state, and the
/// async version kept the union of all its await points (~300 B more per connection).
pub(super) struct Pump<'a, S> {
    io: &'a Io,
    ws: &'a mut WebSocketStream<S>,
    conn: &'a Arc<Conn>,
    /// Handler work to finish before the next packet is read (keeps a socket's events in
    /// order).
    work: Option<BoxFuture<()>>,
    /// Frames taken from the outbox and not yet handed to the WebSocket, newest first:
    /// the next one is popped from the end. (Its iterator, which yields from the front, is
    /// 16 bytes larger, in every idle connection's task.)
    queued: Frames,
    /// A large frame being sent in fragments.
    split: Option<Box<Split>>,
    /// Frames were handed to the WebSocket since the last flush.
    unflushed: bool,
    /// The outbox was signalled and not yet taken.
    dirty: bool,
    ping_timeout_ms: u64,
}

impl<'a, S: Stream> Pump<'a, S> {
    pub(super) fn new(
        io: &'a Io,
        ws: &'a mut WebSocketStream<S>,
        conn: &'a Arc<Conn>,
        ping_timeout_ms: u64,
    ) -> Self {
        Pump {
            io,
            ws,
            conn,
            work: None,
            queued: Frames::new(),
            split: None,
            unflushed: false,
            dirty: false,
            ping_timeout_ms,
        }
    }

    /// Ready once the connection is closed (marked with the reason).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.conn.is_closed() {
                return Poll::Ready(());
            }
            let mut progressed = false;
            // Writes first. The outbox is taken only once the previous batch was handed to
            // the WebSocket: while a client does not read, what is published for it stays in
            // the outbox, whose bound then closes the connection as a slow consumer (as do a
            // ping timeout or a revocation); the close wakes this loop through the signal,
            // which stays registered while the write is blocked, and the write is abandoned.
            // Until Pending: a taken permit leaves no waker registered, and the next
            // notify (maybe the close) must wake this task.
            while self.conn.wake.poll_notified(cx).is_ready() {
                self.dirty = true;
            }
            if self.dirty && self.queued.is_empty() {
                self.dirty = false;
                self.queued = self.conn.drain();
                self.queued.reverse();
            }
            match self.poll_write(cx) {
                Poll::Ready(Err(e)) => {
                    tracing::debug!(conn = self.conn.log_id(), error = %e, "websocket write failed");
                    self.conn.mark_closed(DisconnectReason::TransportError);
                    return Poll::Ready(());
                }
                // More was queued while this batch was written: take it next.
                Poll::Ready(Ok(())) => progressed |= self.dirty,
                Poll::Pending => {}
            }
            if let Some(w) = self.work.as_mut() {
                if w.as_mut().poll(cx).is_ready() {
                    self.work = None;
                    progressed = true;
                }
            }
            if self.work.is_none() {
                if let Poll::Ready(msg) = self.ws.poll_next_unpin(cx) {
                    progressed = true;
                    if let Some(reason) = self.on_message(msg) {
                        self.conn.mark_closed(reason);
                        return Poll::Ready(());
                    }
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    /// What was taken from the outbox and not written yet, for the closing writes; None
    /// when a fragmented message was cut short (no data frame may follow it).
    pub(super) fn leftover(&mut self) -> Option<Frames> {
        if self.split.is_some() {
            return None;
        }
        let mut left = std::mem::take(&mut self.queued);
        left.reverse();
        Some(left)
    }

    /// Hands the queued frames to the WebSocket, then flushes once. A large frame goes as
    /// fragments of at most [`FRAGMENT`] bytes: tungstenite keeps its write buffer at the
    /// size of the largest frame it ever wrote, for the life of the connection.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        while self.split.is_some() || !self.queued.is_empty() {
            ready!(self.ws.poll_ready_unpin(cx))?;
            let msg = match self.split.as_mut() {
                Some(split) => {
                    let (msg, last) = split.next_fragment();
                    if last {
                        self.split = None;
                    }
                    msg
                }
                None => match self.queued.pop() {
                    Some(f) if f.len() > FRAGMENT => {
                        let mut split = Split::new(f);
                        let (msg, last) = split.next_fragment();
                        if !last {
                            self.split = Some(split);
                        }
                        msg
                    }
                    Some(f) => to_message(f),
                    None => break,
                },
            };
            // Nothing follows this message before the flush: it need not be gathered.
            let alone = self.split.is_none() && self.queued.is_empty();
            self.ws.get_mut().set_direct(alone);
            self.ws.start_send_unpin(msg)?;
            self.unflushed = true;
        }
        // All handed over: an idle connection keeps no queue allocated (a batch of more
        // than one frame was on the heap).
        if self.queued.spilled() {
            self.queued = Frames::new();
        }
        if self.unflushed {
            ready!(self.ws.poll_flush_unpin(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// One message from the client; `Some(reason)` closes the connection.
    fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<DisconnectReason> {
        self.conn.on_inbound(self.ping_timeout_ms);
        let packet = match msg {
            None | Some(Ok(Message::Close(_))) => return Some(DisconnectReason::TransportClose),
            Some(Err(e)) => {
                tracing::debug!(conn = self.conn.log_id(), error = %e, "websocket read failed");
                return Some(DisconnectReason::TransportError);
            }
            Some(Ok(Message::Text(t))) => match EnginePacket::decode_text(&t) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(conn = self.conn.log_id(), error = %e, "bad engine packet");
                    return Some(DisconnectReason::TransportError);
                }
            },
            Some(Ok(Message::Binary(b))) => EnginePacket::Binary(b),
            Some(Ok(_)) => return None,
        };
        match self.io.on_packet(self.conn, packet) {
            Outcome::Continue => None,
            Outcome::Work(w) => {
                self.work = Some(w);
                None
            }
            Outcome::Close(reason) => Some(reason),
        }
    }
}
