//! raftcast-raft: replication of sessions, socket room memberships and a durable per-room
//! event log with Raft (openraft 0.9 + sled).
//!
//! The crate knows nothing of Socket.IO or HTTP. It offers:
//! - [`RaftNode::propose`]: propose a [`Command`] from any node, get its [`Response`];
//! - [`RaftNode::state`]: local reads of the applied state ([`StateReader`]);
//! - the [`Applied`] events in log order: the stream returned by [`RaftNode::start`], or an
//!   [`AppliedHandler`] given to [`RaftNode::start_with_handler`].
//!
//! Known limits:
//! - openraft 0.9.25 has no leadership transfer: [`RaftNode::shutdown`] on the leader stops
//!   it, and the others elect a new leader after an election timeout (~0.6–1.2 s).
//! - `propose` refuses up front when the leader has not heard from a majority within the
//!   election timeout. In the residual case (quorum lost after the check) the entry may still
//!   commit after `NoQuorum` was returned, if the quorum comes back.
//! - Snapshots are built and sent whole, in memory (one frame); fine for moderate state.

mod idempotency;
pub mod state;
pub use idempotency::idempotent_id;
pub mod types;

pub use types::*;
pub mod error;
pub mod network;
pub mod store;

pub use error::{ProposeError, StartError};
pub use network::FaultSwitch;
mod batch;
mod events;
pub use events::AppliedHandler;
mod node;
mod reader;

pub use batch::{COMMIT_SECONDS, ENTRY_COMMANDS, QUORUM_CHECK_SECONDS};
pub use node::{RaftConfig, RaftNode, PEER_PROTOCOL, SNAPSHOT_EVERY};
pub use reader::StateReader;
