//! The Raft backend (placeholder until `raftcast-raft`'s node API lands): runs the
//! in-memory backend and says so loudly.

use std::sync::Arc;

use super::local::{LocalFanout, Retention};
use super::SharedFanout;
use crate::config::Config;

/// Why the Raft backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("{0}")]
    Start(String),
}

/// Starts the Raft backend for this node.
pub async fn start(config: &mut Config, retention: Retention) -> Result<SharedFanout, RaftStartError> {
    tracing::warn!("Raft backend not wired yet: running the in-memory backend");
    Ok(Arc::new(LocalFanout::new(config.node_id, retention)))
}
