//! [`RaftConfig`] and its translation to openraft's config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::error::StartError;
use crate::types::NodeId;

/// Configuration of a node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node_id: NodeId,
    /// The sled db lives in `data_dir/raft`.
    pub data_dir: PathBuf,
    /// Where this node's peer transport listens (never the public port).
    pub peer_listen: SocketAddr,
    /// Voters' peer addresses ("host:port") including this node; empty = single-member group.
    pub peers: BTreeMap<NodeId, String>,
    /// Peer address of any member: join as a non-voting learner.
    pub join: Option<String>,
    /// This node's public HTTP address, stored in the membership.
    pub public_addr: String,
    /// Peers must prove it (HMAC challenge-response).
    pub cluster_secret: String,
    /// Election timeout range in ms; the heartbeat is a third of the minimum (at most 100 ms).
    pub election_timeout_ms: (u64, u64),
    /// After it, `propose` returns `NoQuorum`. At most
    /// [`crate::state::MAX_PROPOSE_TIMEOUT_MS`] (retries must stay inside the dedup window).
    pub propose_timeout: Duration,
    /// The leader purges a node silent for this long.
    pub node_dead_after: Duration,
    /// How long sockets of a purged/restarted node stay recoverable (PurgeNode/NodeStarted).
    pub recovery_window: Duration,
    /// Enables [`crate::FaultSwitch`].
    pub fault_injection: bool,
    /// Applied entries between two snapshots of this node (the log is purged up to 1,000
    /// entries before each). Members snapshot at different indexes, and a node with a large
    /// state skips up to 15 intervals while its log is small next to it (`node/snapshots.rs`).
    pub snapshot_every: u64,
    /// The peer protocol this node says it speaks ([`crate::PEER_PROTOCOL`]). Tests set an
    /// older one to stand for a node of an older version: it answers so, and proposes only
    /// the command forms every version reads.
    pub protocol: u32,
    /// Most bytes sled keeps in memory of the log and the state (its page cache).
    pub store_cache_bytes: u64,
}

/// The default of [`RaftConfig::snapshot_every`].
pub const SNAPSHOT_EVERY: u64 = 5000;

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            node_id: 1,
            data_dir: PathBuf::from("data"),
            peer_listen: SocketAddr::from(([127, 0, 0, 1], 6000)),
            peers: BTreeMap::new(),
            join: None,
            public_addr: String::new(),
            cluster_secret: String::new(),
            election_timeout_ms: (300, 600),
            propose_timeout: Duration::from_secs(3),
            node_dead_after: Duration::from_secs(3),
            recovery_window: Duration::from_secs(120),
            fault_injection: false,
            snapshot_every: SNAPSHOT_EVERY,
            protocol: super::versions::PROTOCOL,
            store_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
        }
    }
}

pub(crate) fn openraft_config(cfg: &RaftConfig) -> Result<openraft::Config, StartError> {
    if cfg.snapshot_every == 0 {
        return Err(StartError::Config(
            "snapshot_every must be at least 1".into(),
        ));
    }
    let max = Duration::from_millis(crate::state::MAX_PROPOSE_TIMEOUT_MS);
    if cfg.propose_timeout.is_zero() || cfg.propose_timeout > max {
        return Err(StartError::Config(format!(
            "propose timeout {:?} is outside 1 ms..={max:?}: a retried proposal must reach the \
             log within the {} s window in which duplicates are recognised",
            cfg.propose_timeout,
            crate::state::DEDUP_WINDOW_MS / 1000
        )));
    }
    let (min, max) = cfg.election_timeout_ms;
    let c = openraft::Config {
        cluster_name: "raftcast".into(),
        election_timeout_min: min,
        election_timeout_max: max,
        heartbeat_interval: (min / 3).clamp(10, 100),
        install_snapshot_timeout: 10_000,
        // Snapshots are asked for by `node/snapshots.rs`, at a different index on each node.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 1000,
        purge_batch_size: 256,
        max_payload_entries: 300,
        ..Default::default()
    };
    c.validate().map_err(|e| StartError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_propose_timeout_stays_inside_the_dedup_window() {
        let mut cfg = RaftConfig::default();
        assert!(openraft_config(&cfg).is_ok());
        cfg.propose_timeout = Duration::from_millis(crate::state::MAX_PROPOSE_TIMEOUT_MS);
        assert!(openraft_config(&cfg).is_ok());
        for bad in [
            Duration::ZERO,
            Duration::from_millis(crate::state::MAX_PROPOSE_TIMEOUT_MS + 1),
        ] {
            cfg.propose_timeout = bad;
            let e = openraft_config(&cfg).expect_err("out of range").to_string();
            assert!(e.contains("propose timeout"), "{e}");
        }
    }
}
