//! Our Engine.IO 4 + Socket.IO 5 server, on hyper and tokio-tungstenite.
//!
//! It knows nothing of Raft, Redis or the business: the rest of the server plugs in a
//! [`Handler`] per namespace (auth at connect, recovery, events with acks) and broadcasts
//! already-encoded frames to local rooms. Lean by design: at most one task per WebSocket
//! connection, no channel or buffer held while idle, one heartbeat timer for all
//! connections, and broadcasts encode once and share the same bytes with every recipient.

mod clock;
mod coalesce;
pub mod conn;
pub mod encode;
pub mod engine_packet;
pub mod handler;
mod inbound;
mod members;
pub mod namespace;
pub mod packet;
mod polling;
mod pump;
pub mod server;
mod signal;
pub mod socket;
mod ws;

pub use conn::{DisconnectReason, Frame, Transport};
pub use encode::Frames;
pub use handler::{
    Accept, AckSender, BoxFuture, ConnGuard, ConnectRequest, Event, Handler, Refusal, RequestInfo,
    Restore, SocketState,
};
pub use namespace::{Namespace, Target};
pub use server::{random_id, EngineMessage, Io, IoConfig, MessageHook};
pub use socket::{AckError, AckResponse, Socket};
