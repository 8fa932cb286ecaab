//! Fault injection for chaos tests: drop or delay traffic to/from chosen peers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::types::NodeId;

#[derive(Debug, Default)]
struct State {
    drop_out: HashSet<NodeId>,
    drop_in: HashSet<NodeId>,
    delay: HashMap<NodeId, Duration>,
    isolated: bool,
}

/// A switch shared by the transport client and server of one node.
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<Mutex<State>>);

impl FaultSwitch {
    fn st(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while flipping a flag: keep going.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop all traffic to and from `peer`.
    pub fn isolate(&self, peer: NodeId) {
        let mut s = self.st();
        s.drop_out.insert(peer);
        s.drop_in.insert(peer);
    }

    /// Drop all traffic to and from every peer.
    pub fn isolate_all(&self) {
        self.st().isolated = true;
    }

    /// Drop only what this node sends to `peer` (one-way loss).
    pub fn drop_outgoing(&self, peer: NodeId) {
        self.st().drop_out.insert(peer);
    }

    /// Drop only what `peer` sends to this node (one-way loss).
    pub fn drop_incoming(&self, peer: NodeId) {
        self.st().drop_in.insert(peer);
    }

    /// Delay every message to and from `peer` by `d` (slow link).
    pub fn delay(&self, peer: NodeId, d: Duration) {
        self.st().delay.insert(peer, d);
    }

    /// Restore traffic with `peer`.
    pub fn heal(&self, peer: NodeId) {
        let mut s = self.st();
        s.drop_out.remove(&peer);
        s.drop_in.remove(&peer);
        s.delay.remove(&peer);
    }

    /// Restore all traffic.
    pub fn heal_all(&self) {
        *self.st() = State::default();
    }

    /// Whether a message to `peer` is dropped, and its delay.
    pub(crate) fn outgoing(&self, peer: Option<NodeId>) -> (bool, Option<Duration>) {
        let s = self.st();
        match peer {
            Some(p) => (
                s.isolated || s.drop_out.contains(&p),
                s.delay.get(&p).copied(),
            ),
            None => (s.isolated, None),
        }
    }

    /// Whether a message from `peer` is dropped, and its delay.
    pub(crate) fn incoming(&self, peer: NodeId) -> (bool, Option<Duration>) {
        let s = self.st();
        (
            s.isolated || s.drop_in.contains(&peer),
            s.delay.get(&peer).copied(),
        )
    }
}
