//! The connected sockets in the replicated state: their records, the room index beside them,
//! and the counters kept from them.
//!
//! A socket is two kinds of record on every node: `K` (sid → its info) and `R` (room, sid →
//! node) for each of its rooms, one of which is always its user's room
//! ([`crate::types::user_room`]): that room's members are the user's sockets, so no separate
//! user index is kept. The per-node connection counts and the global unique-user and room
//! counters change when a socket opens or closes or a room gains its first or loses its last
//! member, which the first key under the room's prefix tells (no count record per room or
//! user: see [`super::keys::LEGACY`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{user_room, NodeId, SocketInfo};

use super::apply::meta_global;
use super::keys::{self, add, get, put, Key, KeyReader};
use super::kv::Kv;
use super::StateError;

/// The sids of `node`'s sockets, in sid order. Reads every socket record: this runs when a
/// node starts or is purged, and saves an index record per socket on every node.
pub(super) fn sockets_of_node<K: Kv + ?Sized>(
    kv: &K,
    node: NodeId,
) -> Result<Vec<String>, StateError> {
    let mut sids = Vec::new();
    for pair in kv.scan(&[keys::SOCKET], None, false) {
        let (k, v) = pair?;
        if keys::dec::<SocketInfo>(&v)?.node == node {
            sids.push(KeyReader::new(&k).s()?);
        }
    }
    Ok(sids)
}

/// Whether any key starts with `prefix`.
fn any_under<K: Kv + ?Sized>(kv: &K, prefix: &[u8]) -> Result<bool, StateError> {
    kv.scan(prefix, None, false)
        .next()
        .transpose()
        .map(|p| p.is_some())
}

/// Whether any key starts with `prefix` once `removed` (under it, just deleted) is gone.
/// Looks after `removed` first: a node's sockets are removed in sid order, so a scan from the
/// prefix's start would step over every member already deleted in the same batch (the
/// overlay hides them one by one), quadratic in a big room; the scan from the start is left
/// for the last members.
fn any_left<K: Kv + ?Sized>(kv: &K, prefix: &[u8], removed: &[u8]) -> Result<bool, StateError> {
    if kv
        .scan(prefix, Some(removed), false)
        .next()
        .transpose()?
        .is_some()
    {
        return Ok(true);
    }
    any_under(kv, prefix)
}

pub(super) fn open_socket<K: Kv + ?Sized>(
    kv: &mut K,
    sid: &str,
    mut info: SocketInfo,
) -> Result<(), StateError> {
    remove_socket(kv, sid)?;
    add(kv, Key::tag(keys::NODE_COUNT).n(info.node).build(), 1)?;
    let own = user_room(&info.user_id);
    if !info.rooms.contains(&own) {
        info.rooms.insert(0, own.clone());
    }
    if !any_under(kv, &Key::tag(keys::ROOM_MEMBER).s(&own).build())? {
        add(kv, meta_global(b"users"), 1)?;
    }
    for room in &info.rooms {
        add_member(kv, room, sid, info.node)?;
    }
    put(kv, Key::tag(keys::SOCKET).s(sid).build(), &info)
}

pub(super) fn remove_socket<K: Kv + ?Sized>(
    kv: &mut K,
    sid: &str,
) -> Result<Option<SocketInfo>, StateError> {
    let key = Key::tag(keys::SOCKET).s(sid).build();
    let Some(info) = get::<SocketInfo, _>(kv, &key)? else {
        return Ok(None);
    };
    kv.del(key);
    add(kv, Key::tag(keys::NODE_COUNT).n(info.node).build(), -1)?;
    let own = user_room(&info.user_id);
    for room in &info.rooms {
        if remove_member(kv, room, sid)? == Emptied::Yes && *room == own {
            add(kv, meta_global(b"users"), -1)?;
        }
    }
    Ok(Some(info))
}

/// Sets the per-node connection counts and the unique-user and room counters to what the
/// socket records say, and returns whether any was off. Applies keep them exact; this is for
/// a state opened after other versions of the logic wrote it (an older node that installed a
/// newer node's snapshot could not keep them). Reads every socket record.
pub fn recount<K: Kv + ?Sized>(kv: &mut K) -> Result<bool, StateError> {
    let mut per_node: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut users = BTreeSet::new();
    let mut rooms = BTreeSet::new();
    for pair in kv.scan(&[keys::SOCKET], None, false) {
        let info: SocketInfo = keys::dec(&pair?.1)?;
        *per_node.entry(info.node).or_default() += 1;
        users.insert(info.user_id);
        rooms.extend(info.rooms);
    }
    let mut fixed = false;
    let mut set = |kv: &mut K, key: Vec<u8>, want: u64| -> Result<(), StateError> {
        if get::<u64, _>(kv, &key)?.unwrap_or(0) != want {
            fixed = true;
            if want == 0 {
                kv.del(key);
            } else {
                put(kv, key, &want)?;
            }
        }
        Ok(())
    };
    let stale: Vec<Vec<u8>> = kv
        .scan(&[keys::NODE_COUNT], None, false)
        .map(|p| p.map(|(k, _)| k))
        .collect::<Result<_, _>>()?;
    for key in stale {
        let node = KeyReader::new(&key).n()?;
        if !per_node.contains_key(&node) {
            set(kv, key, 0)?;
        }
    }
    for (node, n) in per_node {
        set(kv, Key::tag(keys::NODE_COUNT).n(node).build(), n)?;
    }
    set(kv, meta_global(b"users"), users.len() as u64)?;
    set(kv, meta_global(b"rooms"), rooms.len() as u64)?;
    Ok(fixed)
}

pub(super) fn add_member<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    sid: &str,
    node: NodeId,
) -> Result<(), StateError> {
    let key = Key::tag(keys::ROOM_MEMBER).s(room).s(sid).build();
    if kv.get(&key)?.is_some() {
        return Ok(());
    }
    if !any_under(kv, &Key::tag(keys::ROOM_MEMBER).s(room).build())? {
        add(kv, meta_global(b"rooms"), 1)?;
    }
    put(kv, key, &node)?;
    Ok(())
}

/// Whether a removal left its room without members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emptied {
    Yes,
    No,
}

pub(super) fn remove_member<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    sid: &str,
) -> Result<Emptied, StateError> {
    let key = Key::tag(keys::ROOM_MEMBER).s(room).s(sid).build();
    if kv.get(&key)?.is_none() {
        return Ok(Emptied::No);
    }
    kv.del(key.clone());
    if any_left(kv, &Key::tag(keys::ROOM_MEMBER).s(room).build(), &key)? {
        return Ok(Emptied::No);
    }
    add(kv, meta_global(b"rooms"), -1)?;
    Ok(Emptied::Yes)
}
