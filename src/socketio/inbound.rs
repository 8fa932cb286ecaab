//! What the server does with each packet a client sends, whatever the transport: heartbeat
//! answers, Socket.IO decoding with binary reassembly, CONNECT (auth and recovery through
//! the namespace handler), events, acks and disconnects.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::conn::{Conn, DisconnectReason, Frame};
use super::encode;
use super::engine_packet::EnginePacket;
use super::handler::{AckSender, BoxFuture, ConnectRequest, Event};
use super::packet::{Packet, PacketType};
use super::server::{ms, random_id, EngineMessage, Io};
use super::socket::{AckResponse, Socket};

/// A binary packet whose attachments are still arriving.
#[derive(Debug)]
pub(crate) struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
}

/// What the transport should do after a packet.
pub(crate) enum Outcome {
    Continue,
    /// Await this before reading the next packet (keeps a socket's events in order).
    Work(BoxFuture<()>),
    /// Close the connection.
    Close(DisconnectReason),
}

pub(crate) fn on_engine_packet(io: &Io, conn: &Arc<Conn>, packet: EnginePacket) -> Outcome {
    match packet {
        EnginePacket::Ping(data) => {
            conn.push_one(Frame::text(format!("3{data}")));
            Outcome::Continue
        }
        EnginePacket::Pong(_) => {
            conn.on_pong(ms(io.inner.config.ping_interval));
            Outcome::Continue
        }
        EnginePacket::Message(text) if io.inner.message_hook.get().is_some() => {
            if let Some(hook) = io.inner.message_hook.get() {
                hook(conn, EngineMessage::Text(text));
            }
            Outcome::Continue
        }
        EnginePacket::Binary(bytes) if io.inner.message_hook.get().is_some() => {
            if let Some(hook) = io.inner.message_hook.get() {
                hook(conn, EngineMessage::Binary(bytes));
            }
            Outcome::Continue
        }
        EnginePacket::Message(text) => {
            if conn.partial.lock().is_some() {
                tracing::debug!(
                    conn = conn.log_id(),
                    "text packet while binary attachments were expected"
                );
                return Outcome::Close(DisconnectReason::TransportError);
            }
            match Packet::decode(&text, io.inner.config.max_attachments) {
                Err(e) => {
                    tracing::debug!(conn = conn.log_id(), error = %e, "undecodable Socket.IO packet");
                    Outcome::Close(DisconnectReason::TransportError)
                }
                Ok(p) if p.attachments > 0 => {
                    let n = p.attachments;
                    *conn.partial.lock() = Some(Box::new(Partial {
                        packet: p,
                        attachments: Vec::with_capacity(n),
                    }));
                    Outcome::Continue
                }
                Ok(p) => dispatch(io, conn, p, Vec::new()),
            }
        }
        EnginePacket::Binary(bytes) => {
            let done = {
                let mut partial = conn.partial.lock();
                match partial.as_mut() {
                    None => {
                        tracing::debug!(conn = conn.log_id(), "unexpected binary message");
                        return Outcome::Close(DisconnectReason::TransportError);
                    }
                    Some(p) => {
                        p.attachments.push(bytes);
                        if p.attachments.len() == p.packet.attachments {
                            partial.take()
                        } else {
                            None
                        }
                    }
                }
            };
            match done {
                Some(p) => dispatch(io, conn, p.packet, p.attachments),
                None => Outcome::Continue,
            }
        }
        EnginePacket::Close => Outcome::Close(DisconnectReason::TransportClose),
        EnginePacket::Noop => Outcome::Continue,
        EnginePacket::Open(_) | EnginePacket::Upgrade => {
            Outcome::Close(DisconnectReason::TransportError)
        }
    }
}

fn dispatch(io: &Io, conn: &Arc<Conn>, packet: Packet, attachments: Vec<Bytes>) -> Outcome {
    match packet.kind {
        PacketType::Connect => connect(io, conn, packet),
        PacketType::Disconnect => {
            if let Some(s) = conn.socket(&packet.nsp) {
                s.close(DisconnectReason::ClientNamespaceDisconnect);
            }
            Outcome::Continue
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let Some(socket) = conn.socket(&packet.nsp) else {
                tracing::debug!(conn = conn.log_id(), nsp = %packet.nsp, "event for a namespace the client has not joined");
                return Outcome::Continue;
            };
            let Some(Value::Array(mut items)) = packet.data else {
                return Outcome::Close(DisconnectReason::TransportError);
            };
            let name = match items.first() {
                Some(Value::String(_)) => match items.remove(0) {
                    Value::String(s) => s,
                    _ => return Outcome::Close(DisconnectReason::TransportError),
                },
                _ => return Outcome::Close(DisconnectReason::TransportError),
            };
            let event = Event {
                name,
                args: items,
                attachments,
                ack: packet.id.map(|id| AckSender {
                    socket: socket.clone(),
                    id,
                }),
            };
            match socket.ns.handler.event(&socket, event) {
                Some(work) => Outcome::Work(work),
                None => Outcome::Continue,
            }
        }
        PacketType::Ack | PacketType::BinaryAck => {
            if let (Some(socket), Some(id), Some(Value::Array(args))) =
                (conn.socket(&packet.nsp), packet.id, packet.data)
            {
                if !socket.resolve_ack(id, AckResponse { args, attachments }) {
                    tracing::debug!(conn = conn.log_id(), id, "ack for no pending request");
                }
            }
            Outcome::Continue
        }
        PacketType::ConnectError => Outcome::Close(DisconnectReason::TransportError),
    }
}

fn connect(io: &Io, conn: &Arc<Conn>, packet: Packet) -> Outcome {
    let Some(ns) = io.inner.namespace(&packet.nsp) else {
        conn.push_one(encode::connect_error(
            &packet.nsp,
            "Invalid namespace",
            None,
        ));
        return Outcome::Continue;
    };
    if conn.socket(&packet.nsp).is_some() {
        tracing::debug!(conn = conn.log_id(), nsp = %packet.nsp, "second CONNECT on a namespace ignored");
        return Outcome::Continue;
    }
    let mut auth = packet.data.unwrap_or(Value::Null);
    let recover = match (&mut auth, ns.recovery) {
        (Value::Object(map), true) => {
            let pid = map.remove("pid");
            let offset = map.remove("offset");
            match (pid, offset) {
                (Some(Value::String(p)), Some(Value::String(o))) => Some((p, o)),
                (Some(Value::String(p)), None) => Some((p, String::new())),
                _ => None,
            }
        }
        _ => None,
    };
    let req = ConnectRequest {
        nsp: packet.nsp,
        auth,
        recover,
        remote: conn.remote,
        transport: conn.transport(),
        headers: conn.request_info(),
    };
    let decision = ns.handler.connect(req);
    let conn = conn.clone();
    Outcome::Work(Box::pin(async move {
        let accept = match decision.await {
            Ok(a) => a,
            Err(refusal) => {
                conn.push_one(encode::connect_error(
                    &ns.path,
                    &refusal.message,
                    refusal.data.as_ref(),
                ));
                return;
            }
        };
        if conn.is_closed() {
            return;
        }
        let (sid, pid, replay) = match accept.restore {
            Some(r) => (r.sid, Some(r.pid), Some(r.replay)),
            None => (random_id(), ns.recovery.then(random_id), None),
        };
        let socket = Arc::new(Socket::new(
            Arc::from(sid),
            pid.map(Arc::from),
            ns.clone(),
            conn.clone(),
            accept.state,
        ));
        conn.sockets.lock().push(socket.clone());
        conn.mark_joined();
        ns.add_socket(&socket);
        conn.push_one(encode::connect_ok(&ns.path, socket.id(), socket.pid()));
        match replay {
            Some(replay) => socket.join_with_replay(&accept.rooms, replay),
            None => socket.join(&accept.rooms),
        }
        ns.handler.connected(&socket);
        if conn.is_closed() {
            socket.close(conn.close_reason());
        }
    }))
}
