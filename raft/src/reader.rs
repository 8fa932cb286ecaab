//! [`StateReader`]: local, synchronous reads of the applied state (may lag the leader).
//!
//! Reads go straight to the sled state tree. A storage read error (which means the disk is
//! failing) is logged and the read answers as if the data were absent.

use crate::state::read;
use crate::state::StateError;
use crate::store::SledKv;
use crate::types::{History, HistoryEvent, NodeId, Session, SocketInfo, Stats};

/// Read access to the applied state. Cheap to clone.
#[derive(Clone)]
pub struct StateReader(pub(crate) SledKv);

fn or_default<T: Default>(what: &str, r: Result<T, StateError>) -> T {
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, what, "state read failed");
        T::default()
    })
}

impl StateReader {
    /// The cluster epoch, once set.
    pub fn epoch(&self) -> Option<String> {
        or_default("epoch", read::epoch(&self.0))
    }

    /// Timestamp of the last applied entry: the state's "now".
    pub fn now_ms(&self) -> u64 {
        or_default("last_ts", read::last_ts(&self.0))
    }

    /// A session; expired or unknown sessions are absent.
    pub fn session(&self, id: &str) -> Option<Session> {
        or_default("session", read::session(&self.0, id))
    }

    /// Retained durable events of `room` after `after_offset`.
    pub fn history(&self, room: &str, after_offset: u64) -> History {
        or_default("history", read::history(&self.0, room, after_offset))
    }

    /// The room's epoch and current offset.
    pub fn room_offset(&self, room: &str) -> (String, u64) {
        or_default("room_offset", read::room_offset(&self.0, room))
    }

    /// Retained durable events of `rooms` from entries after log `index`, in log order.
    pub fn events_after_index(&self, rooms: &[String], index: u64) -> Vec<(String, HistoryEvent)> {
        or_default(
            "events_after",
            read::events_after(&self.0, rooms, index, u32::MAX),
        )
    }

    /// Retained durable events of `rooms` positioned after `(index, pos)`, in log order.
    /// Use `(index, pos)` of the last event seen as a unique recovery position.
    pub fn events_after(
        &self,
        rooms: &[String],
        index: u64,
        pos: u32,
    ) -> Vec<(String, HistoryEvent)> {
        or_default(
            "events_after",
            read::events_after(&self.0, rooms, index, pos),
        )
    }

    /// Sockets of a user, cluster-wide.
    pub fn presence(&self, user_id: &str) -> Vec<(NodeId, String)> {
        or_default("presence", read::presence(&self.0, user_id))
    }

    /// Sockets in a room, cluster-wide.
    pub fn room_members(&self, room: &str) -> Vec<(NodeId, String)> {
        or_default("room_members", read::room_members(&self.0, room))
    }

    /// A connected socket.
    pub fn socket(&self, sid: &str) -> Option<SocketInfo> {
        or_default("socket", read::socket(&self.0, sid))
    }

    /// Cluster-wide counters.
    pub fn stats(&self) -> Stats {
        or_default("stats", read::stats(&self.0))
    }
}
