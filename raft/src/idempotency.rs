//! Proposal ids from a client's idempotency key.
//!
//! Every proposal carries an id, and the state machine answers a proposal whose id it
//! applied within the de-duplication window (`state::DEDUP_WINDOW_MS`) with the first
//! result instead of applying it again. Nodes draw random ids; a backend that retries a
//! request after a lost answer (its node died, a timeout) would draw new ones and publish
//! twice. An idempotency key fixes the ids instead: the same key gives the same ids on
//! every node, so the retry, sent to any node, is answered with the first attempt's
//! offsets when that attempt was committed, and published once when it was not.

use sha2::{Digest, Sha256};

/// The id of the `i`-th event of a request with idempotency key `key` (never 0: 0 means
/// "no id" in the log). Stable across nodes, versions and restarts.
pub fn idempotent_id(key: &str, i: usize) -> u64 {
    let mut h = Sha256::new();
    h.update(b"raftcast idempotency key\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update((i as u64).to_be_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        // Pinned: a change would make a retry across a rolling upgrade publish twice.
        assert_eq!(idempotent_id("k", 0), 0x02b6_4ea3_dfce_991b);
        let ids: std::collections::HashSet<u64> = (0..1000)
            .map(|i| idempotent_id("order-1", i))
            .chain((0..1000).map(|i| idempotent_id("order-2", i)))
            .collect();
        assert_eq!(ids.len(), 2000);
        assert!(!ids.contains(&0));
        // The key and the position cannot run into each other.
        assert_ne!(idempotent_id("a", 1), idempotent_id("a\u{0}", 1));
    }
}
