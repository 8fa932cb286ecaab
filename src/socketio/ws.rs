//! The WebSocket transport: the HTTP upgrade, the probe/upgrade dance for polling
//! connections, and the one task per connection that reads packets and writes the outbox.
//!
//! The request is dropped as soon as the upgrade is answered (its headers and hyper's
//! buffers go with it); the stream is wrapped with small, explicit buffer and size limits.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::conn::{Conn, DisconnectReason, Frame, Transport};
use super::engine_packet::EnginePacket;
use super::handler::{BoxFuture, ConnGuard, RequestInfo};
use super::inbound::Outcome;
use super::server::{EngineError, Io};

/// What a WebSocket connection task can run on.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// What a valid upgrade request leaves: the upgrade to await, the guard the HTTP server
/// attached (kept for the life of the WebSocket) and the 101 answer.
type Upgrade = (OnUpgrade, Option<ConnGuard>, Response<Body>);

/// Checks the upgrade request and builds its 101 answer; the request is dropped here.
fn handshake(mut req: Request<Body>) -> Result<Upgrade, EngineError> {
    let headers = req.headers();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| version_ok)
    else {
        return Err(EngineError::BadRequest);
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let guard = req.extensions_mut().remove::<ConnGuard>();
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok((on_upgrade, guard, resp))
}

/// Completes the WebSocket handshake and closes the WebSocket at once (an upgrade for a
/// session that already has one).
pub(crate) fn refuse(req: Request<Body>) -> Response<Body> {
    let (on_upgrade, guard, resp) = match handshake(req) {
        Ok(h) => h,
        Err(e) => return e.response(),
    };
    tokio::spawn(async move {
        let _guard = guard;
        if let Ok(upgraded) = on_upgrade.await {
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    });
    resp
}

/// Answers the upgrade request and spawns the connection task.
pub(crate) fn accept(
    io: Io,
    req: Request<Body>,
    remote: SocketAddr,
    existing: Option<Arc<Conn>>,
    info: Arc<RequestInfo>,
) -> Response<Body> {
    let (on_upgrade, guard, resp) = match handshake(req) {
        Ok(h) => h,
        Err(e) => return e.response(),
    };

    let cfg = io.config();
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(cfg.max_outbox_bytes.saturating_mul(2))
        .max_message_size(Some(cfg.max_payload))
        .max_frame_size(Some(cfg.max_payload));
    tokio::spawn(serve(
        io, on_upgrade, guard, ws_config, remote, existing, info,
    ));
    resp
}

/// Waits for the upgrade, then spawns the connection task. Two tasks rather than one: the
/// long-lived one holds only [`run`]'s state (the upgrade's and the WebSocket set-up's
/// futures would otherwise size every idle connection's task).
async fn serve(
    io: Io,
    on_upgrade: OnUpgrade,
    guard: Option<ConnGuard>,
    ws_config: WebSocketConfig,
    remote: SocketAddr,
    existing: Option<Arc<Conn>>,
    info: Arc<RequestInfo>,
) {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    // Take the TCP stream back from hyper when it is ours: that drops hyper's connection
    // buffers and the boxed I/O of `Upgraded` (a few KiB per idle connection).
    match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            // `read_buf` shares hyper's whole 8 KiB read buffer: copy the few bytes it holds
            // and let the buffer go now, not when the connection ends.
            let hyper::upgrade::Parts {
                io: tcp, read_buf, ..
            } = parts;
            let early = read_buf.to_vec();
            drop(read_buf);
            let ws = WebSocketStream::from_partially_read(
                tcp.into_inner(),
                early,
                Role::Server,
                Some(ws_config),
            )
            .await;
            tokio::spawn(run(io, ws, remote, existing, info, guard));
        }
        // Not a plain TCP stream (never with our own listener).
        Err(upgraded) => {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config),
            )
            .await;
            tokio::spawn(run(io, ws, remote, existing, info, guard));
        }
    }
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t),
        Frame::Binary(b) => Message::Binary(b),
    }
}

/// Writes everything queued, then flushes once.
async fn write_all<S: Stream>(
    conn: &Conn,
    ws: &mut WebSocketStream<S>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    loop {
        let frames = conn.drain();
        if frames.is_empty() {
            break;
        }
        for f in frames {
            ws.feed(to_message(f)).await?;
        }
    }
    ws.flush().await
}

/// The loop of an open WebSocket connection: writes what is queued, runs at most one
/// piece of handler work, reads the next packet. A plain `poll` function rather than an
/// async block with `select!`: every idle connection's task keeps this state, and the
/// async version kept the union of all its await points (~300 B more per connection).
struct Pump<'a, S> {
    io: &'a Io,
    ws: &'a mut WebSocketStream<S>,
    conn: &'a Arc<Conn>,
    /// Handler work to finish before the next packet is read (keeps a socket's events in
    /// order).
    work: Option<BoxFuture<()>>,
    /// Frames taken from the outbox and not yet handed to the WebSocket.
    queued: VecDeque<Frame>,
    /// Frames were handed to the WebSocket since the last flush.
    unflushed: bool,
    /// The outbox was signalled and not yet taken.
    dirty: bool,
    ping_timeout_ms: u64,
}

impl<S: Stream> Pump<'_, S> {
    /// Ready once the connection is closed (marked with the reason).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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

    /// Hands the queued frames to the WebSocket, then flushes once.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        while !self.queued.is_empty() {
            ready!(self.ws.poll_ready_unpin(cx))?;
            if let Some(f) = self.queued.pop_front() {
                self.ws.start_send_unpin(to_message(f))?;
                self.unflushed = true;
            }
        }
        // All handed over: an idle connection keeps no queue allocated.
        if self.queued.capacity() > 0 {
            self.queued = VecDeque::new();
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

/// The connection task. A plain function returning an `async move` block rather than an
/// `async fn`: an async fn keeps a second copy of its arguments (the WebSocket stream is
/// 320 B) in every idle connection's task.
fn run<S: Stream>(
    io: Io,
    ws: WebSocketStream<S>,
    remote: SocketAddr,
    existing: Option<Arc<Conn>>,
    info: Arc<RequestInfo>,
    guard: Option<ConnGuard>,
) -> impl std::future::Future<Output = ()> + Send {
    // The opening (open packet or upgrade probe) and the closing run in boxed futures that
    // are freed when done: only the loop's state stays in every idle connection's task.
    let opening = Box::pin(open(io.clone(), ws, remote, existing, info));
    async move {
        let _guard = guard;
        let Some((conn, mut ws)) = opening.await else {
            return;
        };
        let mut pump = Pump {
            io: &io,
            ws: &mut ws,
            conn: &conn,
            work: None,
            queued: VecDeque::new(),
            unflushed: false,
            dirty: false,
            ping_timeout_ms: super::server::ms(io.config().ping_timeout),
        };
        std::future::poll_fn(|cx| pump.poll(cx)).await;
        Box::pin(finish(&io, &conn, &mut ws)).await;
    }
}

/// [`start`], owning the stream and handing it back.
async fn open<S: Stream>(
    io: Io,
    mut ws: WebSocketStream<S>,
    remote: SocketAddr,
    existing: Option<Arc<Conn>>,
    info: Arc<RequestInfo>,
) -> Option<(Arc<Conn>, WebSocketStream<S>)> {
    let conn = start(&io, &mut ws, remote, existing, info).await?;
    Some((conn, ws))
}

/// Opens the connection (open packet) or completes the upgrade of a polling one; None when
/// the WebSocket was closed instead.
async fn start<S: Stream>(
    io: &Io,
    ws: &mut WebSocketStream<S>,
    remote: SocketAddr,
    existing: Option<Arc<Conn>>,
    info: Arc<RequestInfo>,
) -> Option<Arc<Conn>> {
    match existing {
        None => {
            let (conn, open) = io.open_conn(remote, Transport::WebSocket, info);
            if ws.send(to_message(open)).await.is_err() {
                conn.mark_closed(DisconnectReason::TransportClose);
                io.finish(&conn);
                return None;
            }
            Some(conn)
        }
        Some(conn) => {
            // One upgrade at a time: a second WebSocket for the session is closed at once.
            if conn.upgrading.swap(true, Ordering::AcqRel) {
                let _ = ws.close(None).await;
                return None;
            }
            let wait = io.config().ping_interval + io.config().ping_timeout;
            let upgraded = probe(&conn, ws, wait).await;
            if !upgraded {
                conn.upgrading.store(false, Ordering::Release);
                let _ = ws.close(None).await;
                return None;
            }
            Some(conn)
        }
    }
}

/// Lets the client have what was queued for it (e.g. a DISCONNECT or a shutdown notice),
/// unless it stopped reading (then nothing more is queued for it), closes, and unregisters.
async fn finish<S: Stream>(io: &Io, conn: &Arc<Conn>, ws: &mut WebSocketStream<S>) {
    let slow = conn.close_reason() == DisconnectReason::SlowConsumer;
    let _ = tokio::time::timeout(Duration::from_secs(if slow { 0 } else { 1 }), async {
        let _ = write_all(conn, ws).await;
        let _ = ws.close(None).await;
    })
    .await;
    io.finish(conn);
}

/// The upgrade of a polling connection: `2probe` → `3probe`, end the pending poll with a
/// noop, wait for `5`, then switch the connection to this transport.
async fn probe<S: Stream>(conn: &Arc<Conn>, ws: &mut WebSocketStream<S>, wait: Duration) -> bool {
    if !expect(ws, "2probe", wait).await {
        return false;
    }
    if ws
        .send(Message::Text(Utf8Bytes::from_static("3probe")))
        .await
        .is_err()
    {
        return false;
    }
    conn.push_one(Frame::text("6"));
    if !expect(ws, "5", wait).await {
        return false;
    }
    conn.set_transport(Transport::WebSocket);
    true
}

/// Waits (bounded) for one text message equal to `want`.
async fn expect<S: Stream>(ws: &mut WebSocketStream<S>, want: &str, wait: Duration) -> bool {
    matches!(
        tokio::time::timeout(wait, ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == want
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle WebSocket connection holds one task whose size is `run`'s future: keep it
    /// small (the upgrade and set-up happen in a short-lived task; start and finish are boxed).
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let ws = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
        let io = Io::new(super::super::server::IoConfig::default());
        let fut = run(io, ws, addr, None, Arc::new(RequestInfo::default()), None);
        let size = std::mem::size_of_val(&fut);
        // 480 bytes in a debug build with Rust 1.95 (1,144 before the hand-written loop and
        // the `async move` block); the WebSocket stream alone is 320.
        assert!(size <= 560, "connection task future grew to {size} bytes");
    }
}
