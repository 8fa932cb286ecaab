//! Public errors of the node handle.

use serde::{Deserialize, Serialize};

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader with a quorum answered within the propose timeout. Nothing was acknowledged
    /// (see the crate docs for the residual case of an entry that commits after the timeout).
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// Raft stopped or storage failed.
    #[error("fatal: {0}")]
    Fatal(String),
    /// The command is invalid in the current state (e.g. a join for an unknown socket).
    #[error("rejected: {0}")]
    Rejected(String),
    /// This node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Opening the store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Binding the peer listener failed.
    #[error("peer listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The openraft config was invalid.
    #[error("raft config: {0}")]
    Config(String),
    /// openraft failed to start.
    #[error("raft: {0}")]
    Raft(String),
}
