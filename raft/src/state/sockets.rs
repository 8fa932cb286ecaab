//! The connected sockets in the replicated state: their records, the room index beside them,
//! and the counters kept from them.
//!
//! A socket is one `k` record on every node (user, sid → its info), plus an `R` record (room,
//! sid → node) for each of its rooms but one: every socket is in its user's room
//! ([`crate::types::user_room`]) from its open to its close, and that room's members are the
//! user's `k` records, a prefix scan, so neither a user index nor an `R` record per socket in
//! its own user's room is kept (each would be a sled key on every node, about 0.3 KB of
//! memory per socket). A socket that joins another user's room has an `R` record there like
//! in any other room. The per-node connection counts and the global unique-user and room
//! counters change when a socket opens or closes or a room gains its first or loses its last
//! member, which the first key under the room's prefixes tells (no count record per room or
//! user: see [`super::keys::LEGACY`]).
//!
//! Commands of older versions name a socket by its sid alone ([`Command::Join`] and the
//! like); they find its record by a scan of the socket records. The commands of this version
//! name its user too, and find it directly. A socket id is one user's (the server draws them
//! at random): a `SocketOpen` replaces an earlier record of the same id and user only.
//!
//! [`Command::Join`]: crate::types::Command::Join

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{user_of_room, user_room, NodeId, SocketInfo};

use super::apply::meta_global;
use super::keys::{self, add, get, put, Key, KeyReader};
use super::kv::{Kv, KvRead};
use super::StateError;

/// The key of a socket's record.
fn socket_key(user: &str, sid: &str) -> Vec<u8> {
    Key::tag(keys::SOCKET).s(user).s(sid).build()
}

/// The (user, sid) a socket record's key names.
pub(super) fn socket_key_parts(key: &[u8]) -> Result<(String, String), StateError> {
    let mut r = KeyReader::new(key);
    let user = r.s()?;
    Ok((user, r.s()?))
}

/// The prefix of a user's socket records.
pub(super) fn user_prefix(user: &str) -> Vec<u8> {
    Key::tag(keys::SOCKET).s(user).build()
}

/// A socket's record: its key and what it holds.
pub(super) struct Found {
    pub key: Vec<u8>,
    pub info: SocketInfo,
}

/// The record of socket `sid`. With its `user` (the commands of this version name it) that is
/// one read; without (a command of an older version) a scan of the socket records.
pub(super) fn find<K: KvRead + ?Sized>(
    kv: &K,
    sid: &str,
    user: Option<&str>,
) -> Result<Option<Found>, StateError> {
    if let Some(user) = user {
        let key = socket_key(user, sid);
        return Ok(get::<SocketInfo, _>(kv, &key)?.map(|info| Found { key, info }));
    }
    for pair in kv.scan(&[keys::SOCKET], None, false) {
        let (k, v) = pair?;
        if socket_key_parts(&k)?.1 == sid {
            return Ok(Some(Found {
                key: k,
                info: keys::dec(&v)?,
            }));
        }
    }
    Ok(None)
}

/// The users of sockets by sid, for the commands of older versions (which name a socket by
/// its sid alone) within one log entry: one scan of the socket records for the entry instead
/// of one per command. A reconnection storm during a rolling upgrade sends thousands of them
/// while the cluster still proposes the older forms; at 10,000 sockets a scan costs about 4 ms
/// (release build, sled), and an entry holds up to 64 commands.
///
/// Built at the second lookup of an entry: a lone command of the older form costs one scan
/// that stops at its socket, less than building the index (about 14 ms at 10,000 sockets).
#[derive(Default)]
pub(super) struct SidIndex {
    lookups: u32,
    users: Option<std::collections::HashMap<String, String>>,
}

impl SidIndex {
    /// The user of socket `sid`, if it has a record. A user found in the index is checked by
    /// the caller's read of the record (a socket closed since reads as gone, which it is: a
    /// socket id is one user's); a sid not in it is looked up by a scan.
    pub(super) fn user<K: KvRead + ?Sized>(
        &mut self,
        kv: &K,
        sid: &str,
    ) -> Result<Option<String>, StateError> {
        self.lookups += 1;
        if self.users.is_none() && self.lookups > 1 {
            let mut users = std::collections::HashMap::new();
            for pair in kv.scan(&[keys::SOCKET], None, false) {
                let (user, sid) = socket_key_parts(&pair?.0)?;
                users.insert(sid, user);
            }
            self.users = Some(users);
        }
        if let Some(user) = self.users.as_ref().and_then(|m| m.get(sid)) {
            return Ok(Some(user.clone()));
        }
        let found = find(kv, sid, None)?.map(|f| f.info.user_id);
        if let (Some(user), Some(m)) = (&found, self.users.as_mut()) {
            m.insert(sid.to_owned(), user.clone());
        }
        Ok(found)
    }

    /// Socket `sid` of `user` was opened in this entry.
    pub(super) fn opened(&mut self, sid: &str, user: &str) {
        if let Some(m) = self.users.as_mut() {
            m.insert(sid.to_owned(), user.to_owned());
        }
    }
}

/// The (user, sid) of `node`'s sockets, in sid order (the order of their member records in
/// every room, which [`any_left`] relies on). Reads every socket record: this runs when a
/// node starts or is purged, and saves an index record per socket on every node.
pub(super) fn sockets_of_node<K: Kv + ?Sized>(
    kv: &K,
    node: NodeId,
) -> Result<Vec<(String, String)>, StateError> {
    let mut out = Vec::new();
    for pair in kv.scan(&[keys::SOCKET], None, false) {
        let (k, v) = pair?;
        if keys::dec::<SocketInfo>(&v)?.node == node {
            out.push(socket_key_parts(&k)?);
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Whether any key starts with `prefix`.
fn any_under<K: Kv + ?Sized>(kv: &K, prefix: &[u8]) -> Result<bool, StateError> {
    kv.scan(prefix, None, false)
        .next()
        .transpose()
        .map(|p| p.is_some())
}

/// Whether any key starts with `prefix` once `removed` (just deleted) is gone. When
/// `removed` is under `prefix`, looks after it first: a node's sockets are removed in sid
/// order, so a scan from the prefix's start would step over every member already deleted in
/// the same batch (the overlay hides them one by one), quadratic in a big room; the scan from
/// the start is left for the last members.
fn any_left<K: Kv + ?Sized>(kv: &K, prefix: &[u8], removed: &[u8]) -> Result<bool, StateError> {
    if removed.starts_with(prefix)
        && kv
            .scan(prefix, Some(removed), false)
            .next()
            .transpose()?
            .is_some()
    {
        return Ok(true);
    }
    any_under(kv, prefix)
}

/// Whether `room` has a member once `removed` (a key just deleted, if any) is gone: an `R`
/// record, or for a user's room a socket of that user.
fn occupied<K: Kv + ?Sized>(kv: &K, room: &str, removed: &[u8]) -> Result<bool, StateError> {
    if any_left(kv, &Key::tag(keys::ROOM_MEMBER).s(room).build(), removed)? {
        return Ok(true);
    }
    match user_of_room(room) {
        Some(user) => any_left(kv, &user_prefix(user), removed),
        None => Ok(false),
    }
}

pub(super) fn open_socket<K: Kv + ?Sized>(
    kv: &mut K,
    sid: &str,
    mut info: SocketInfo,
) -> Result<(), StateError> {
    remove_socket(kv, sid, &info.user_id)?;
    add(kv, Key::tag(keys::NODE_COUNT).n(info.node).build(), 1)?;
    let own = user_room(&info.user_id);
    if !info.rooms.contains(&own) {
        info.rooms.insert(0, own.clone());
    }
    if !any_under(kv, &user_prefix(&info.user_id))? {
        add(kv, meta_global(b"users"), 1)?;
    }
    if !occupied(kv, &own, &[])? {
        add(kv, meta_global(b"rooms"), 1)?;
    }
    for room in info.rooms.iter().filter(|r| **r != own) {
        add_member(kv, room, sid, info.node)?;
    }
    put(kv, socket_key(&info.user_id, sid), &info)
}

/// Removes socket `sid` of `user` and its memberships.
pub(super) fn remove_socket<K: Kv + ?Sized>(
    kv: &mut K,
    sid: &str,
    user: &str,
) -> Result<Option<SocketInfo>, StateError> {
    let Some(Found { key, info }) = find(kv, sid, Some(user))? else {
        return Ok(None);
    };
    kv.del(key.clone());
    add(kv, Key::tag(keys::NODE_COUNT).n(info.node).build(), -1)?;
    let own = user_room(&info.user_id);
    for room in info.rooms.iter().filter(|r| **r != own) {
        remove_member(kv, room, sid)?;
    }
    if !any_left(kv, &user_prefix(&info.user_id), &key)? {
        add(kv, meta_global(b"users"), -1)?;
        if !occupied(kv, &own, &key)? {
            add(kv, meta_global(b"rooms"), -1)?;
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

/// Converts the socket records of an older layout ([`keys::SOCKET_BY_SID`]: sid → info, and
/// an `R` record in the socket's own user's room) to this one's; returns how many sockets it
/// converted. The counters are unchanged: both layouts count the same sockets and rooms.
pub fn convert_older_sockets<K: Kv + ?Sized>(kv: &mut K) -> Result<usize, StateError> {
    let older: Vec<(Vec<u8>, Vec<u8>)> = kv
        .scan(&[keys::SOCKET_BY_SID], None, false)
        .collect::<Result<_, _>>()?;
    for (k, v) in &older {
        let sid = KeyReader::new(k).s()?;
        let info: SocketInfo = keys::dec(v)?;
        kv.del(k.clone());
        kv.del(
            Key::tag(keys::ROOM_MEMBER)
                .s(&user_room(&info.user_id))
                .s(&sid)
                .build(),
        );
        kv.put(socket_key(&info.user_id, &sid), v.clone());
    }
    Ok(older.len())
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
    if !occupied(kv, room, &[])? {
        add(kv, meta_global(b"rooms"), 1)?;
    }
    put(kv, key, &node)?;
    Ok(())
}

pub(super) fn remove_member<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    sid: &str,
) -> Result<(), StateError> {
    let key = Key::tag(keys::ROOM_MEMBER).s(room).s(sid).build();
    if kv.get(&key)?.is_none() {
        return Ok(());
    }
    kv.del(key.clone());
    if !occupied(kv, room, &key)? {
        add(kv, meta_global(b"rooms"), -1)?;
    }
    Ok(())
}
