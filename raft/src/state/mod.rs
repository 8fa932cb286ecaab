//! The replicated state machine logic: pure, deterministic functions over an ordered
//! key-value store ([`kv::KvRead`]/[`kv::Kv`]).
//!
//! Everything time-based uses the leader's timestamp stamped into each log entry (made
//! monotonic with the last applied one), never the local clock, so every node computes the
//! same state from the same log.

pub mod apply;
pub mod dedup;
#[cfg(test)]
mod dedup_tests;
pub mod history;
#[cfg(test)]
mod history_tests;
pub mod keys;
pub mod kv;
pub mod read;
mod records;
pub mod sockets;
#[cfg(test)]
mod tests;

pub use apply::apply_entry;
pub use dedup::Dedup;

pub use records::{Detached, RoomMeta};

/// How long the result of a proposal id is kept to answer a retry of the same proposal
/// (log time). Retries reach the log within two propose timeouts of the first attempt (see
/// [`MAX_PROPOSE_TIMEOUT_MS`]), so a minute is ample.
pub const DEDUP_WINDOW_MS: u64 = 60_000;

/// The longest allowed propose timeout. A proposal id can reach a log entry until the
/// forwarding node's deadline, and a leader that received the forward late keeps its own
/// deadline from then: up to two timeouts after the first attempt. A third of the dedup
/// window leaves the rest for clock differences between successive leaders, whose clocks
/// stamp the entries.
pub const MAX_PROPOSE_TIMEOUT_MS: u64 = DEDUP_WINDOW_MS / 3;

/// Errors of the state logic (storage or codec failures, never invalid commands).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A stored value or key could not be decoded.
    #[error("decode: {0}")]
    Decode(String),
    /// A value could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// The underlying store failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// Meta key names.
pub mod meta {
    /// Cluster epoch (String).
    pub const EPOCH: &[u8] = b"epoch";
    /// Last applied entry timestamp (u64), the state's notion of "now".
    pub const LAST_TS: &[u8] = b"last_ts";
    /// Last applied log id (openraft LogId).
    pub const APPLIED: &[u8] = b"applied";
    /// Last applied membership (openraft StoredMembership).
    pub const MEMBERSHIP: &[u8] = b"membership";
}

/// Dump every pair of the state (for snapshots).
pub fn dump<K: kv::KvRead + ?Sized>(kv: &K) -> Result<Vec<kv::Pair>, StateError> {
    kv.scan(&[], None, false).collect()
}
