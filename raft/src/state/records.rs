//! Stored record types that readers never see directly.

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// A closed socket kept for connection-state recovery until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detached {
    pub sid: String,
    pub node: NodeId,
    pub user_id: String,
    pub session_id: Option<String>,
    pub rooms: Vec<String>,
    pub expires_at_ms: u64,
}

/// Per-room history bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    /// Offset of the last durable event (0: none).
    pub last_offset: u64,
    /// Oldest retained offset.
    pub first: Option<u64>,
    /// Retention by count, as given by the last durable publish.
    pub max: u32,
    /// Retention by age (0 = none), as given by the last durable publish.
    pub ttl_ms: u64,
    /// When the oldest retained event expires (indexed for garbage collection).
    pub expires_at_ms: Option<u64>,
}
