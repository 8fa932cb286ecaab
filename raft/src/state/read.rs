//! Read queries over the applied state. Expiry uses the last applied entry timestamp as "now".

use std::collections::BTreeMap;

use crate::types::{History, HistoryEvent, NodeId, Session, SocketInfo, Stats};

use super::apply::meta_global;
use super::history;
use super::keys::{self, get, meta, Key, KeyReader};
use super::kv::KvRead;
use super::{sockets, RoomMeta, StateError};

/// The cluster epoch, once set.
pub fn epoch<K: KvRead + ?Sized>(kv: &K) -> Result<Option<String>, StateError> {
    get(kv, &meta(super::meta::EPOCH))
}

/// Timestamp of the last applied entry (0 before any).
pub fn last_ts<K: KvRead + ?Sized>(kv: &K) -> Result<u64, StateError> {
    Ok(get(kv, &meta(super::meta::LAST_TS))?.unwrap_or(0))
}

/// A session, absent when unknown or expired.
pub fn session<K: KvRead + ?Sized>(kv: &K, id: &str) -> Result<Option<Session>, StateError> {
    let now = last_ts(kv)?;
    let s: Option<Session> = get(kv, &Key::tag(keys::SESSION).s(id).build())?;
    Ok(s.filter(|s| s.expires_at_ms > now))
}

/// The room's history bookkeeping (default: a room without durable events).
pub(super) fn room_meta<K: KvRead + ?Sized>(kv: &K, room: &str) -> Result<RoomMeta, StateError> {
    Ok(get(kv, &Key::tag(keys::ROOM_META).s(room).build())?.unwrap_or_default())
}

/// The room's current offset with the epoch.
pub fn room_offset<K: KvRead + ?Sized>(kv: &K, room: &str) -> Result<(String, u64), StateError> {
    Ok((
        epoch(kv)?.unwrap_or_default(),
        room_meta(kv, room)?.last_offset,
    ))
}

/// Retained durable events of `room` with offset greater than `after`.
pub fn history<K: KvRead + ?Sized>(kv: &K, room: &str, after: u64) -> Result<History, StateError> {
    let rm = room_meta(kv, room)?;
    let events = match rm.first {
        Some(first) => history::events_from(kv, room, first.max(after.saturating_add(1)))?,
        None => Vec::new(),
    };
    Ok(History {
        epoch: epoch(kv)?.unwrap_or_default(),
        last_offset: rm.last_offset,
        first_retained: rm.first,
        events,
    })
}

/// Retained durable events of `rooms` positioned after `(index, pos)`, in log order.
pub fn events_after<K: KvRead + ?Sized>(
    kv: &K,
    rooms: &[String],
    index: u64,
    pos: u32,
) -> Result<Vec<(String, HistoryEvent)>, StateError> {
    let mut out = Vec::new();
    for room in rooms {
        let Some(first) = room_meta(kv, room)?.first else {
            continue;
        };
        for ev in history::events_after(kv, room, first, index, pos)? {
            out.push((room.clone(), ev));
        }
    }
    out.sort_by_key(|(_, ev)| (ev.index, ev.pos));
    Ok(out)
}

fn pairs_node<K: KvRead + ?Sized>(
    kv: &K,
    prefix: Vec<u8>,
) -> Result<Vec<(NodeId, String)>, StateError> {
    let mut out = Vec::new();
    for pair in kv.scan(&prefix, None, false) {
        let (k, v) = pair?;
        let mut r = KeyReader::new(&k);
        r.s()?;
        let sid = r.s()?;
        out.push((keys::dec::<NodeId>(&v)?, sid));
    }
    Ok(out)
}

/// Sockets of a user, cluster-wide: the members of the user's room, which every socket is in.
pub fn presence<K: KvRead + ?Sized>(
    kv: &K,
    user_id: &str,
) -> Result<Vec<(NodeId, String)>, StateError> {
    room_members(kv, &crate::types::user_room(user_id))
}

/// Sockets in a room, cluster-wide, in sid order. A user's room holds the user's sockets
/// (their records) and any other socket that joined it (an `R` record, as in other rooms).
pub fn room_members<K: KvRead + ?Sized>(
    kv: &K,
    room: &str,
) -> Result<Vec<(NodeId, String)>, StateError> {
    let mut out = pairs_node(kv, Key::tag(keys::ROOM_MEMBER).s(room).build())?;
    if let Some(user) = crate::types::user_of_room(room) {
        for pair in kv.scan(&sockets::user_prefix(user), None, false) {
            let (k, v) = pair?;
            let (_, sid) = sockets::socket_key_parts(&k)?;
            out.push((keys::dec::<SocketInfo>(&v)?.node, sid));
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
    }
    Ok(out)
}

/// A connected socket. Scans the socket records (they are keyed by user): for tests and
/// tools, not for a hot path.
pub fn socket<K: KvRead + ?Sized>(kv: &K, sid: &str) -> Result<Option<SocketInfo>, StateError> {
    Ok(sockets::find(kv, sid, None)?.map(|f| f.info))
}

/// Cluster-wide counters.
pub fn stats<K: KvRead + ?Sized>(kv: &K) -> Result<Stats, StateError> {
    let mut connections_per_node = BTreeMap::new();
    for pair in kv.scan(&[keys::NODE_COUNT], None, false) {
        let (k, v) = pair?;
        let node = KeyReader::new(&k).n()?;
        connections_per_node.insert(node, keys::dec::<u64>(&v)?);
    }
    Ok(Stats {
        connections_per_node,
        unique_users: get(kv, &meta_global(b"users"))?.unwrap_or(0),
        room_count: get(kv, &meta_global(b"rooms"))?.unwrap_or(0),
    })
}
