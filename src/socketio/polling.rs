//! The HTTP long-polling transport: handshake, GET (wait for and return queued packets,
//! `\x1e`-separated, binary as `b<base64>`) and POST (packets from the client).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

use super::conn::{Conn, DisconnectReason, Frame, Transport};
use super::engine_packet::{encode_binary_for_polling, EnginePacket, SEPARATOR};
use super::handler::RequestInfo;
use super::inbound::Outcome;
use super::server::{EngineError, Io};

/// Most packets one POST body may carry.
const MAX_PACKETS_PER_POST: usize = 1024;

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn payload(frames: impl IntoIterator<Item = Frame>) -> String {
    let mut out = String::new();
    for (i, f) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR as char);
        }
        match f {
            Frame::Text(t) => out.push_str(&t),
            Frame::Binary(b) => out.push_str(&encode_binary_for_polling(&b)),
        }
    }
    out
}

/// A new polling connection: answers with the open packet.
pub(crate) fn handshake(
    io: &Io,
    remote: std::net::SocketAddr,
    info: Arc<RequestInfo>,
) -> Response<Body> {
    let (_conn, open) = io.open_conn(remote, Transport::Polling, info);
    text(StatusCode::OK, payload([open]), "text/plain; charset=UTF-8")
}

struct Busy<'a>(&'a Conn);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.polling_busy.store(false, Ordering::Release);
    }
}

/// A long-poll: returns queued packets as soon as there are any.
pub(crate) async fn poll(io: &Io, conn: Arc<Conn>) -> Response<Body> {
    if conn.polling_busy.swap(true, Ordering::AcqRel) {
        // Two concurrent polls break the protocol: close the session.
        conn.mark_closed(DisconnectReason::TransportError);
        io.finish(&conn);
        return EngineError::BadRequest.response();
    }
    let _busy = Busy(&conn);
    loop {
        if conn.transport() == Transport::WebSocket {
            // The connection moved to WebSocket: leave the outbox to it.
            conn.wake.notify();
            return text(StatusCode::OK, "6".into(), "text/plain; charset=UTF-8");
        }
        let frames = conn.drain();
        if !frames.is_empty() {
            return text(StatusCode::OK, payload(frames), "text/plain; charset=UTF-8");
        }
        if conn.is_closed() {
            io.finish(&conn);
            return text(
                StatusCode::OK,
                close_answer(&conn).into(),
                "text/plain; charset=UTF-8",
            );
        }
        // A push after the checks above left a permit: no wake-up is missed.
        conn.wake.notified().await;
    }
}

/// What ends a pending poll of a closed connection: a noop when the client closed it
/// itself (its CLOSE packet, whose reason is "transport close"), else a CLOSE packet to
/// tell it, as upstream's polling transport does.
fn close_answer(conn: &Conn) -> &'static str {
    if conn.close_reason() == DisconnectReason::TransportClose {
        "6"
    } else {
        "1"
    }
}

/// Packets from the client.
pub(crate) async fn post(io: &Io, conn: Arc<Conn>, body: Body) -> Response<Body> {
    let limit = io.config().max_payload;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            conn.mark_closed(DisconnectReason::TransportError);
            io.finish(&conn);
            return if too_large {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload too large".into(),
                    "text/plain",
                )
            } else {
                EngineError::BadRequest.response()
            };
        }
    };
    let packets = match EnginePacket::decode_payload(&bytes, MAX_PACKETS_PER_POST) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(conn = conn.log_id(), error = %e, "bad polling payload");
            conn.mark_closed(DisconnectReason::TransportError);
            io.finish(&conn);
            return EngineError::BadRequest.response();
        }
    };
    for p in packets {
        match io.on_packet(&conn, p) {
            Outcome::Continue => {}
            Outcome::Work(w) => w.await,
            Outcome::Close(reason) => {
                conn.mark_closed(reason);
                io.finish(&conn);
                break;
            }
        }
    }
    text(StatusCode::OK, "ok".into(), "text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(
            Arc::from("s"),
            "127.0.0.1:1".parse().unwrap(),
            Transport::Polling,
            Arc::default(),
            1000,
            1 << 20,
        )
    }

    #[test]
    fn pending_poll_ends_with_noop_when_the_client_closed() {
        let c = conn();
        c.mark_closed(DisconnectReason::TransportClose);
        assert_eq!(close_answer(&c), "6");
        for reason in [
            DisconnectReason::PingTimeout,
            DisconnectReason::ServerShuttingDown,
        ] {
            let c = conn();
            c.mark_closed(reason);
            assert_eq!(close_answer(&c), "1");
        }
    }
}
