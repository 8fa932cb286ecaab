//! raftcast: a Socket.IO real-time server whose nodes replicate rooms, sessions and a
//! durable event log with Raft, in one binary.
//!
//! Embed it: build a [`Server`] from a [`config::Config`], call `run(listener, shutdown)`,
//! and use [`Server::gateway`] for `emit_to_user`, `emit_to_room`, `create_session`, ...

pub mod app;
pub mod chaos;
pub mod cli;
pub mod config;
pub mod fanout;
pub mod gateway;
pub mod http;
pub mod malloc;
pub mod secrets;
pub mod socketio;
pub mod telemetry;
pub mod telemetry_errors;
pub mod util;

pub use app::{run, Server, ServerError};
