//! Replicated types: the commands that go through the Raft log, their responses, the events
//! emitted when they are applied, the read-side views, and the openraft type configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Identifier of a node in the Raft group.
pub type NodeId = u64;

/// The room every socket of `user_id` is in, from its connection to its close (CONTRACT §2:
/// `user:<userId>`). A socket cannot leave it; the user's presence is its membership.
pub fn user_room(user_id: &str) -> String {
    format!("{USER_ROOM_PREFIX}{user_id}")
}

/// What every user's room name starts with.
const USER_ROOM_PREFIX: &str = "user:";

/// The user whose room `room` is ([`user_room`]), if it is a user's room.
pub fn user_of_room(room: &str) -> Option<&str> {
    room.strip_prefix(USER_ROOM_PREFIX)
}

/// What the membership config stores about each node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// "host:port" of the node's peer transport.
    pub peer_addr: String,
    /// "host:port" of the node's public HTTP server (may be empty when unknown).
    pub public_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} public={}", self.peer_addr, self.public_addr)
    }
}

/// A replicated command. Proposed with [`crate::RaftNode::propose`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create (or replace) a session.
    CreateSession {
        session_id: String,
        user_id: String,
        expires_at_ms: u64,
    },
    /// Revoke a session; emits [`Applied::SessionRevoked`] when it existed.
    RevokeSession { session_id: String },
    /// Publish an event to a room. Durable events get the next offset and enter the history.
    Publish {
        room: String,
        event: String,
        /// Encoded as one bytes field (the same bincode bytes as a `Vec<u8>` sequence, ten
        /// times cheaper to encode and decode).
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        durable: bool,
        history_max: u32,
        history_ttl_ms: u64,
    },
    /// A socket connected on `node`. It is always a member of its user's room
    /// ([`user_room`]), whether or not `rooms` names it: presence is that room's membership.
    SocketOpen {
        node: NodeId,
        sid: String,
        pid: String,
        user_id: String,
        session_id: Option<String>,
        rooms: Vec<String>,
    },
    /// A socket joined rooms.
    Join { sid: String, rooms: Vec<String> },
    /// A socket left rooms.
    Leave { sid: String, rooms: Vec<String> },
    /// A socket disconnected. `recoverable_for_ms > 0` keeps a detached recovery record.
    SocketClose {
        sid: String,
        recoverable_for_ms: u64,
    },
    /// Take the detached record of `pid` (if unexpired) and give its rooms to `new_sid`
    /// (empty: the socket keeps its previous id).
    Recover {
        pid: String,
        new_sid: String,
        node: NodeId,
    },
    /// A node (re)started: its previous sockets become detached recovery records.
    NodeStarted {
        node: NodeId,
        recoverable_for_ms: u64,
    },
    /// The leader decided `node` is dead: same effect as [`Command::NodeStarted`].
    PurgeNode {
        node: NodeId,
        recoverable_for_ms: u64,
    },
    /// Internal: names the cluster history. Ignored when an epoch is already set.
    SetEpoch { epoch: String },
    /// [`Command::Join`] naming the socket's user, whose records are keyed by user: found
    /// with one read where `Join` scans the socket records. Versions before it cannot read it
    /// (nor the two below), so a node proposes the older form until every member has said it
    /// reads them ([`Command::compatible`]).
    JoinOf {
        sid: String,
        user_id: String,
        rooms: Vec<String>,
    },
    /// [`Command::Leave`] naming the socket's user.
    LeaveOf {
        sid: String,
        user_id: String,
        rooms: Vec<String>,
    },
    /// [`Command::SocketClose`] naming the socket's user.
    SocketCloseOf {
        sid: String,
        user_id: String,
        recoverable_for_ms: u64,
    },
}

impl Command {
    /// About how many bytes the command takes in a log entry: its payload and names for a
    /// publish, a small constant otherwise. Bounds the size of a batch.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Command::Publish {
                room,
                event,
                payload,
                ..
            } => 64 + room.len() + event.len() + payload.len(),
            Command::SocketOpen { rooms, .. }
            | Command::Join { rooms, .. }
            | Command::Leave { rooms, .. }
            | Command::JoinOf { rooms, .. }
            | Command::LeaveOf { rooms, .. } => {
                128 + rooms.iter().map(|r| r.len() + 8).sum::<usize>()
            }
            _ => 128,
        }
    }

    /// The same command in the form every version reads: the commands naming a socket's user
    /// become their older forms, which find the socket by sid (a scan, but the same effect).
    pub fn compatible(self) -> Command {
        match self {
            Command::JoinOf { sid, rooms, .. } => Command::Join { sid, rooms },
            Command::LeaveOf { sid, rooms, .. } => Command::Leave { sid, rooms },
            Command::SocketCloseOf {
                sid,
                recoverable_for_ms,
                ..
            } => Command::SocketClose {
                sid,
                recoverable_for_ms,
            },
            other => other,
        }
    }
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The command was applied and has nothing to report.
    Ok,
    /// A publish was applied. For volatile events `offset` is the room's current offset.
    Published {
        room: String,
        offset: u64,
        epoch: String,
        ts_ms: u64,
        index: u64,
        /// Position of the command within its log entry: `(index, pos)` is unique per event.
        pos: u32,
    },
    /// A detached socket was recovered.
    Recovered {
        user_id: String,
        session_id: Option<String>,
        rooms: Vec<String>,
        old_sid: String,
    },
    /// No (unexpired) detached record for the pid.
    NotRecovered,
    /// A NodeStarted/PurgeNode was applied at log `index`.
    NodeReset { index: u64 },
}

/// Events emitted, in log order, as entries are applied on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// An event was published (durable or volatile).
    Published {
        room: String,
        event: String,
        payload: Vec<u8>,
        durable: bool,
        offset: u64,
        epoch: String,
        ts_ms: u64,
        index: u64,
        /// Position of the command within its log entry: `(index, pos)` is unique per event.
        pos: u32,
    },
    /// A session was revoked: disconnect its sockets.
    SessionRevoked { session_id: String, user_id: String },
    /// A node's sockets became detached recovery records (after NodeStarted/PurgeNode).
    SocketsDetached { node: NodeId, sids: Vec<String> },
    /// The whole state was replaced from a leader snapshot: rebuild local views from
    /// [`crate::StateReader`].
    SnapshotInstalled,
}

/// The application data of one log entry: a batch of commands stamped by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Leader wall clock (ms since 1970) when the entry was proposed.
    pub ts_ms: u64,
    /// The commands, applied in order.
    pub cmds: Vec<Command>,
    /// One proposal id per command (0: none). A command whose id was applied within the
    /// last [`crate::state::DEDUP_WINDOW_MS`] is not applied again: its first result is
    /// returned. This makes retries after an unknown outcome (leader lost mid-write, forward
    /// timed out) safe: a publish is never committed twice.
    pub ids: Vec<u64>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request(ts={}, {} cmds)", self.ts_ms, self.cmds.len())
    }
}

/// Per-command results of one log entry (a rejected command carries its reason).
pub type EntryResponse = Vec<Result<Response, String>>;

openraft::declare_raft_types!(
    /// openraft type configuration of raftcast.
    pub TypeConfig:
        D = Request,
        R = EntryResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle type.
pub type Raft = openraft::Raft<TypeConfig>;

/// A session as seen by readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub expires_at_ms: u64,
}

/// A connected socket as seen by readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub node: NodeId,
    pub pid: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub rooms: Vec<String>,
}

/// One durable event kept in a room's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub offset: u64,
    pub event: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub ts_ms: u64,
    /// Log index of the entry that carried the event.
    pub index: u64,
    /// Position within that entry: `(index, pos)` is unique and increasing across all rooms.
    pub pos: u32,
}

/// A slice of a room's history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// Cluster epoch ("" before it is set).
    pub epoch: String,
    /// Offset of the room's last durable event (0: none yet).
    pub last_offset: u64,
    /// Offset of the oldest retained event, if any is retained.
    pub first_retained: Option<u64>,
    /// Events with offset greater than the requested one, in offset order.
    pub events: Vec<HistoryEvent>,
}

/// Cluster-wide counters from the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub connections_per_node: BTreeMap<NodeId, u64>,
    pub unique_users: u64,
    pub room_count: u64,
}

/// Role of a node in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Follower,
    Learner,
}

/// One node in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub peer_addr: String,
    pub public_addr: String,
    pub role: Role,
    pub reachable: bool,
}

/// A view of the cluster from this node, built from openraft metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub nodes: Vec<NodeStatus>,
    pub has_quorum: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::keys::{dec, enc};

    /// How older versions (payload as a plain `Vec<u8>`, i.e. a sequence of u8) wrote these
    /// types: the variant order of [`Command`] up to `Publish`, and [`HistoryEvent`].
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum OldCommand {
        CreateSession,
        RevokeSession,
        Publish {
            room: String,
            event: String,
            payload: Vec<u8>,
            durable: bool,
            history_max: u32,
            history_ttl_ms: u64,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OldHistoryEvent {
        offset: u64,
        event: String,
        payload: Vec<u8>,
        ts_ms: u64,
        index: u64,
        pos: u32,
    }

    #[test]
    fn byte_payloads_keep_the_bytes_older_versions_wrote() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let old = OldCommand::Publish {
            room: "r".into(),
            event: "e".into(),
            payload: payload.clone(),
            durable: true,
            history_max: 7,
            history_ttl_ms: 9,
        };
        let new: Command = dec(&enc(&old).unwrap()).unwrap();
        let Command::Publish {
            payload: ref read, ..
        } = new
        else {
            panic!("{new:?}");
        };
        assert_eq!(*read, payload);
        assert_eq!(enc(&new).unwrap(), enc(&old).unwrap());
        assert_eq!(dec::<OldCommand>(&enc(&new).unwrap()).unwrap(), old);

        let old = OldHistoryEvent {
            offset: 3,
            event: "e".into(),
            payload,
            ts_ms: 4,
            index: 5,
            pos: 6,
        };
        let new: HistoryEvent = dec(&enc(&old).unwrap()).unwrap();
        assert_eq!(new.payload, old.payload);
        assert_eq!((new.offset, new.ts_ms, new.index, new.pos), (3, 4, 5, 6));
        assert_eq!(enc(&new).unwrap(), enc(&old).unwrap());
    }
}
