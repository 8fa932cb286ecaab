//! The WebSocket transport: the HTTP upgrade, the probe/upgrade dance for polling
//! connections, and the one task per connection that runs the loop of `pump.rs` between
//! opening and closing.
//!
//! The request is dropped as soon as the upgrade is answered (its headers and hyper's
//! buffers go with it); the stream is wrapped with small, explicit buffer and size limits.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::coalesce::Coalesce;
use super::conn::{Conn, DisconnectReason, Frame, Transport};
use super::encode::Frames;
use super::handler::{ConnGuard, RequestInfo};
use super::pump::Pump;
use super::server::{EngineError, Io};

/// What a WebSocket connection task can run on.
pub(super) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
    /// Told before each message is handed over whether it is the last one before a flush
    /// (see [`Coalesce::set_direct`]).
    fn set_direct(&mut self, _direct: bool) {}
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream
    for Coalesce<T>
{
    fn set_direct(&mut self, direct: bool) {
        Coalesce::set_direct(self, direct);
    }
}
#[cfg(test)]
impl Stream for tokio::net::TcpStream {}

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
                Coalesce::new(tcp.into_inner()),
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
                Coalesce::new(TokioIo::new(upgraded)),
                Role::Server,
                Some(ws_config),
            )
            .await;
            tokio::spawn(run(io, ws, remote, existing, info, guard));
        }
    }
}

pub(super) fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t),
        Frame::Binary(b) => Message::Binary(b),
    }
}

/// Writes everything queued, then flushes once.
async fn write_all<S: Stream>(
    conn: &Conn,
    ws: &mut WebSocketStream<S>,
    mut frames: Frames,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    // Several frames may follow each other here: gather them.
    ws.get_mut().set_direct(false);
    loop {
        if frames.is_empty() {
            frames = conn.drain();
            if frames.is_empty() {
                break;
            }
        }
        for f in std::mem::take(&mut frames) {
            ws.feed(to_message(f)).await?;
        }
    }
    ws.flush().await
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
        let ping_timeout_ms = super::server::ms(io.config().ping_timeout);
        let mut pump = Pump::new(&io, &mut ws, &conn, ping_timeout_ms);
        std::future::poll_fn(|cx| pump.poll(cx)).await;
        let leftover = pump.leftover();
        Box::pin(finish(&io, &conn, &mut ws, leftover)).await;
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
///
/// `leftover` is what the loop had taken from the outbox and not yet written, written
/// first; None when the loop stopped inside a fragmented message, after which no data
/// frame may be sent (a close frame may).
async fn finish<S: Stream>(
    io: &Io,
    conn: &Arc<Conn>,
    ws: &mut WebSocketStream<S>,
    leftover: Option<Frames>,
) {
    let slow = conn.close_reason() == DisconnectReason::SlowConsumer;
    let _ = tokio::time::timeout(Duration::from_secs(if slow { 0 } else { 1 }), async {
        if let Some(first) = leftover {
            let _ = write_all(conn, ws, first).await;
        }
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
        // 504 bytes in a debug build with Rust 1.95 (1,144 before the hand-written loop and
        // the `async move` block); the WebSocket stream alone is 320.
        assert!(size <= 560, "connection task future grew to {size} bytes");
    }
}
