//! Key layout of the replicated state and the value codec.
//!
//! Every key is a one-byte tag followed by components: strings as a 4-byte big-endian length
//! plus bytes, numbers as 8 big-endian bytes. Lengths keep prefixes unambiguous and big-endian
//! numbers keep scans in numeric order. Values are bincode (serde path, standard config).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::kv::{Kv, KvRead};
use super::StateError;

/// Meta keys (epoch, last timestamp, applied log id, membership).
pub const META: u8 = b'a';
/// session id → Session
pub const SESSION: u8 = b'S';
/// expiry, session id → ()
pub const SESSION_EXP: u8 = b'E';
/// user, sid → SocketInfo. Keyed by user so that the user's sockets (the members of the
/// user's room, [`crate::types::user_room`], which every socket is in) are a prefix scan: no
/// separate record per socket in its user's room.
pub const SOCKET: u8 = b'k';
/// sid → SocketInfo, with an `R` record in the socket's own user's room: the layout of older
/// versions, converted to [`SOCKET`] records when a state is opened or a snapshot installed
/// ([`super::sockets::convert_older_sockets`]).
pub const SOCKET_BY_SID: u8 = b'K';
/// room, sid → node, for every room of a socket but its own user's room.
pub const ROOM_MEMBER: u8 = b'R';
/// node → connection count
pub const NODE_COUNT: u8 = b'C';
/// Tags older versions wrote and this one no longer does: per-room member counts (`r`),
/// per-user socket counts (`u`), the node → socket index (`N`) and the user → socket index
/// (`U`: user, sid → node). Every socket cost four more records on every node, each a sled
/// key held in memory (about 240 B apiece), for answers the remaining records give: whether
/// a room or user has any member left is the first key under its prefix, a node's sockets are
/// found by reading the socket records when the node starts or is purged, which is rare, and
/// a user's sockets are the members of the user's room, which every socket is in
/// ([`crate::types::user_room`]). [`LEGACY`] keys are removed when a state is opened or a
/// snapshot installed.
pub const LEGACY: [u8; 4] = [b'r', b'u', b'N', b'U'];
/// global counters
pub const GLOBAL: u8 = b'G';
/// pid → Detached
pub const DETACHED: u8 = b'D';
/// expiry, pid → ()
pub const DETACHED_EXP: u8 = b'X';
/// room → RoomMeta
pub const ROOM_META: u8 = b'H';
/// room, offset → HistoryEvent: one record per event (`state/history.rs`).
pub const HISTORY: u8 = b'h';
/// room, last offset → [HistoryEvent]: consecutive events of a room (`state/history.rs`;
/// written while every member reads it).
pub const HISTORY_ENTRY: u8 = b'g';
/// room → [HistoryEvent]: a room's newest events, still growing (`state/history.rs`; written
/// while every member reads it).
pub const HISTORY_OPEN: u8 = b'o';
/// expiry of the oldest event, room → ()
pub const ROOM_EXP: u8 = b'T';
/// `P | id` → the first result of a proposal id (dedup of retried proposals).
pub const PROPOSAL: u8 = b'P';
/// `q | ts | index` → the proposal ids whose results the entry at log `index` stored: their
/// expiry index, one record per entry rather than one per proposal.
pub const PROPOSAL_ENTRY: u8 = b'q';
/// `Q | ts | index` → [(id, result)]: the results of the proposals of the entry at log
/// `index`, one record per entry (`state/dedup.rs`; written while every member reads it).
pub const RESULTS: u8 = b'Q';
/// `p | ts | id` → (): the expiry index older versions wrote, one record per proposal. Still
/// collected with the results it names, so a state written by an older version (or by an
/// older node during a rolling upgrade) loses nothing.
pub const PROPOSAL_EXP: u8 = b'p';

/// Whether `key` is one of the [`LEGACY`] records, dropped when a state is loaded.
pub fn is_legacy(key: &[u8]) -> bool {
    key.first().is_some_and(|t| LEGACY.contains(t))
}

/// Builds keys component by component.
#[derive(Debug, Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key (or prefix) with `tag`.
    pub fn tag(tag: u8) -> Self {
        Key(vec![tag])
    }

    /// Append a string component.
    pub fn s(mut self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// Append a number component.
    pub fn n(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Append raw bytes (meta names).
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    /// The bytes.
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// Reads components back out of a key.
pub struct KeyReader<'a> {
    rest: &'a [u8],
}

impl<'a> KeyReader<'a> {
    /// Start after the tag byte.
    pub fn new(key: &'a [u8]) -> Self {
        KeyReader {
            rest: key.get(1..).unwrap_or(&[]),
        }
    }

    /// Next string component.
    pub fn s(&mut self) -> Result<String, StateError> {
        let len_bytes: [u8; 4] = self
            .rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StateError::Decode("short key (len)".into()))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let body = self
            .rest
            .get(4..4 + len)
            .ok_or_else(|| StateError::Decode("short key (str)".into()))?;
        let s = String::from_utf8(body.to_vec()).map_err(|e| StateError::Decode(e.to_string()))?;
        self.rest = &self.rest[4 + len..];
        Ok(s)
    }

    /// Next number component.
    pub fn n(&mut self) -> Result<u64, StateError> {
        let b: [u8; 8] = self
            .rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StateError::Decode("short key (u64)".into()))?;
        self.rest = &self.rest[8..];
        Ok(u64::from_be_bytes(b))
    }
}

/// Encode a value.
pub fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(v, bincode::config::standard())
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// Decode a value.
pub fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StateError> {
    bincode::serde::decode_from_slice(b, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StateError::Decode(e.to_string()))
}

/// Read and decode `key`.
pub fn get<T: DeserializeOwned, K: KvRead + ?Sized>(
    kv: &K,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    kv.get(key)?.map(|b| dec(&b)).transpose()
}

/// Encode and write `key`.
pub fn put<T: Serialize, K: Kv + ?Sized>(
    kv: &mut K,
    key: Vec<u8>,
    v: &T,
) -> Result<(), StateError> {
    let b = enc(v)?;
    kv.put(key, b);
    Ok(())
}

/// Add `delta` to a counter (deleted at zero); returns the new value.
pub fn add<K: Kv + ?Sized>(kv: &mut K, key: Vec<u8>, delta: i64) -> Result<u64, StateError> {
    let cur: u64 = get(kv, &key)?.unwrap_or(0);
    let new = if delta >= 0 {
        cur.saturating_add(delta.unsigned_abs())
    } else {
        cur.saturating_sub(delta.unsigned_abs())
    };
    if new == 0 {
        kv.del(key);
    } else {
        put(kv, key, &new)?;
    }
    Ok(new)
}

/// Meta key for `name`.
pub fn meta(name: &[u8]) -> Vec<u8> {
    Key::tag(META).raw(name).build()
}
