//! Peer transport: TCP with length-prefixed bincode frames, an HMAC challenge-response proving
//! the cluster secret in both directions, pooled persistent connections per peer, and the
//! openraft [`RaftNetworkFactory`](openraft::RaftNetworkFactory) on top of it.

mod auth;
mod client;
mod fault;
mod server;
pub mod wire;

pub use client::{NetCtx, Network};
pub use fault::FaultSwitch;
pub use server::{serve, Handler};

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Socket I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// A frame exceeded the size limit.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The peer did not prove the cluster secret (or we did not convince it).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The call did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The fault switch dropped the traffic.
    #[error("dropped by fault injection")]
    Injected,
    /// The peer answered with an unexpected message.
    #[error("unexpected reply")]
    Unexpected,
}
