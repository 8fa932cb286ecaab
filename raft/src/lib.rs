//! raftcast-raft: replication of sessions, socket room memberships and a durable per-room
//! event log with Raft (openraft 0.9 + sled).
//!
//! The crate knows nothing of Socket.IO or HTTP. It offers:
//! - [`RaftNode::propose`]: propose a [`Command`] from any node, get its [`Response`];
//! - [`RaftNode::state`]: local reads of the applied state ([`StateReader`]);
//! - the [`Applied`] stream returned by [`RaftNode::start`], in log order.

pub mod state;
pub mod types;

pub use types::*;
pub mod store;
pub mod error;
pub mod network;

pub use error::{ProposeError, StartError};
pub use network::FaultSwitch;
mod batch;
mod node;
mod reader;

pub use node::{RaftConfig, RaftNode};
pub use reader::StateReader;
