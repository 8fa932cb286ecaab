//! Frames and messages of the peer protocol.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{LogId, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::NetError;
use crate::error::ProposeError;
use crate::types::{Command, NodeId, NodeInfo, Response, TypeConfig};

/// Largest accepted frame (a full snapshot travels in one frame).
pub const MAX_FRAME: usize = 1 << 30;

/// A request to a peer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Req {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot {
        vote: Vote<NodeId>,
        meta: SnapshotMeta<NodeId, NodeInfo>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Proposals forwarded from a follower to the leader.
    /// Proposals forwarded to the leader, with their ids (see `Request::ids`).
    Forward(Vec<(u64, Command)>),
    /// A node asks to join as a learner.
    Join {
        node_id: NodeId,
        info: NodeInfo,
    },
    Ping,
    /// What a voter knows of the leader and its own log (see `node::failover`).
    LogState,
    /// Which peer protocol the node speaks (see `node::versions`). Older versions do not know
    /// this request: they drop the connection.
    Version,
}

/// Why a forwarded batch was not handled at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRefused {
    /// The receiver is not the leader (any more).
    NotLeader,
    /// The receiver is shutting down.
    ShuttingDown,
}

/// The answer to a join request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinReply {
    Ok,
    /// Ask this peer address instead (the leader).
    Redirect(String),
    Err(String),
}

/// A response from a peer. Remote errors travel as strings.
#[derive(Debug, Serialize, Deserialize)]
pub enum Resp {
    Append(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    Snapshot(Result<SnapshotResponse<NodeId>, String>),
    Forward(Result<Vec<Result<Response, ProposeError>>, ForwardRefused>),
    Join(JoinReply),
    Pong {
        node_id: NodeId,
        public_addr: String,
        initialized: bool,
    },
    LogState(LogState),
    /// The peer protocol the node speaks.
    Version(u32),
}

/// A voter's view used to pick one candidate when the leader falls silent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogState {
    /// The leader this node follows, if any.
    pub leader: Option<NodeId>,
    /// How long ago this node last heard from that leader, in ms (None: never / no leader).
    pub leader_silent_ms: Option<u64>,
    /// The id of the last entry in this node's log.
    pub last_log: Option<LogId<NodeId>>,
}

/// Write one frame: 4-byte big-endian length, then the bincode body.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), NetError> {
    let body = bincode::serde::encode_to_vec(msg, bincode::config::standard())
        .map_err(|e| NetError::Codec(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(NetError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| NetError::TooLarge(body.len()))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame of at most `limit` bytes.
pub async fn read_frame<R: AsyncReadExt + Unpin, T: DeserializeOwned>(
    r: &mut R,
    limit: usize,
) -> Result<T, NetError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(NetError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode_body(&body)
}

/// Frames up to this size decode with [`SMALL_CLAIMS`] as their allocation bound.
const SMALL_FRAME: usize = 64 * 1024;
/// Most bytes the strings and byte vectors of a small frame may claim.
const SMALL_CLAIMS: usize = 16 << 20;

/// Decodes a frame body. The length prefixes inside it are bounded: without a limit bincode
/// allocates whatever a (corrupt or hostile) prefix claims before reading, and a claim of
/// exabytes aborts the process (found by raft/tests/prop_wire.rs).
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, NetError> {
    let decoded = if body.len() <= SMALL_FRAME {
        let cfg = bincode::config::standard().with_limit::<SMALL_CLAIMS>();
        bincode::serde::decode_from_slice(body, cfg)
    } else {
        let cfg = bincode::config::standard().with_limit::<MAX_FRAME>();
        bincode::serde::decode_from_slice(body, cfg)
    };
    decoded
        .map(|(v, _)| v)
        .map_err(|e| NetError::Codec(e.to_string()))
}
