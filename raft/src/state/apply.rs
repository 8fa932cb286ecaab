//! Applying one log entry (a batch of commands) to the state.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{
    Applied, Command, EntryResponse, HistoryEvent, NodeId, Request, Response, Session, SocketInfo,
};

use super::dedup::{Dedup, Outcome};
use super::history::{self, Finder, Pending};
use super::keys::{self, get, meta, put, Key, KeyReader};
use super::kv::Kv;
use super::read::room_meta;
use super::sockets::{
    add_member, find, open_socket, remove_member, remove_socket, sockets_of_node, Found, SidIndex,
};
use super::{Detached, RoomMeta, StateError};

/// Bound on expired records collected per entry (keeps apply time bounded; the rest goes
/// with later entries).
const GC_PER_ENTRY: usize = 256;

/// Apply the entry at log `index`. Returns one result per command (`Err` = rejected command)
/// and pushes the events to emit onto `out`. `per_entry`: write the history in records of a
/// room's consecutive events, the newest in its open record (every member reads them:
/// `state/history.rs`); otherwise one record per event.
pub fn apply_entry<K: Kv + ?Sized>(
    kv: &mut K,
    dedup: &mut Dedup,
    index: u64,
    req: &Request,
    out: &mut Vec<Applied>,
    per_entry: bool,
) -> Result<EntryResponse, StateError> {
    let last_ts: u64 = get(kv, &meta(super::meta::LAST_TS))?.unwrap_or(0);
    let now = req.ts_ms.max(last_ts);
    put(kv, meta(super::meta::LAST_TS), &now)?;
    gc(kv, now)?;
    dedup.collect(kv, now.saturating_sub(super::DEDUP_WINDOW_MS))?;
    let mut ctx = Ctx {
        kv,
        now,
        index,
        out,
        sids: SidIndex::default(),
        epoch: None,
        per_entry,
        pending: Pending::default(),
        trimmed: BTreeMap::new(),
        per_event: BTreeSet::new(),
    };
    let mut res = Vec::with_capacity(req.cmds.len());
    let mut kept: Vec<(u64, Outcome)> = Vec::new();
    for (pos, cmd) in req.cmds.iter().enumerate() {
        let id = req.ids.get(pos).copied().unwrap_or(0);
        let pos = u32::try_from(pos).unwrap_or(u32::MAX);
        if id != 0 && deduplicated(cmd) {
            let earlier = match kept.iter().find(|(i, _)| *i == id) {
                Some((_, r)) => Some(r.clone()),
                None => dedup.find(ctx.kv, id)?,
            };
            if let Some(first) = earlier {
                res.push(first);
                continue;
            }
            let r = ctx.apply(cmd, pos)?;
            kept.push((id, r.clone()));
            res.push(r);
        } else {
            res.push(ctx.apply(cmd, pos)?);
        }
    }
    ctx.finish_history()?;
    dedup.record(ctx.kv, now, index, kept)?;
    Ok(res)
}

/// Commands that must not take effect twice (the others are idempotent).
fn deduplicated(cmd: &Command) -> bool {
    matches!(cmd, Command::Publish { .. } | Command::Recover { .. })
}

struct Ctx<'a, K: Kv + ?Sized> {
    kv: &'a mut K,
    now: u64,
    index: u64,
    out: &'a mut Vec<Applied>,
    /// Users of sockets by sid, for the older command forms (built on first use).
    sids: SidIndex,
    /// The cluster epoch, read at the entry's first publish (every publish names it).
    epoch: Option<String>,
    /// Write the history in records of consecutive events (and open records).
    per_entry: bool,
    /// This entry's durable events, by room (with `per_entry`).
    pending: Pending,
    /// Rooms whose oldest retained offset moved in this entry: the offset before it did.
    trimmed: BTreeMap<String, u64>,
    /// Rooms this entry published to in per-event records (without `per_entry`): their open
    /// records, if any, become per-event ones too.
    per_event: BTreeSet<String>,
}

type CmdResult = Result<Result<Response, String>, StateError>;

impl<K: Kv + ?Sized> Ctx<'_, K> {
    fn apply(&mut self, cmd: &Command, pos: u32) -> CmdResult {
        match cmd {
            Command::CreateSession {
                session_id,
                user_id,
                expires_at_ms,
            } => {
                remove_session(self.kv, session_id)?;
                let s = Session {
                    user_id: user_id.clone(),
                    expires_at_ms: *expires_at_ms,
                };
                put(self.kv, Key::tag(keys::SESSION).s(session_id).build(), &s)?;
                put(self.kv, session_exp_key(*expires_at_ms, session_id), &())?;
                Ok(Ok(Response::Ok))
            }
            Command::RevokeSession { session_id } => {
                if let Some(s) = remove_session(self.kv, session_id)? {
                    self.out.push(Applied::SessionRevoked {
                        session_id: session_id.clone(),
                        user_id: s.user_id,
                    });
                }
                Ok(Ok(Response::Ok))
            }
            Command::Publish {
                room,
                event,
                payload,
                durable,
                history_max,
                history_ttl_ms,
            } => self.publish(
                room,
                event,
                payload,
                *durable,
                *history_max,
                *history_ttl_ms,
                pos,
            ),
            Command::SocketOpen {
                node,
                sid,
                pid,
                user_id,
                session_id,
                rooms,
            } => {
                let info = SocketInfo {
                    node: *node,
                    pid: pid.clone(),
                    user_id: user_id.clone(),
                    session_id: session_id.clone(),
                    rooms: dedup(rooms),
                };
                open_socket(self.kv, sid, info)?;
                self.sids.opened(sid, user_id);
                Ok(Ok(Response::Ok))
            }
            Command::Join { sid, rooms } => match self.sids.user(self.kv, sid)? {
                Some(user) => self.join_leave(sid, &user, rooms, true),
                None => Ok(Err(unknown_socket(sid))),
            },
            Command::Leave { sid, rooms } => match self.sids.user(self.kv, sid)? {
                Some(user) => self.join_leave(sid, &user, rooms, false),
                None => Ok(Err(unknown_socket(sid))),
            },
            Command::JoinOf {
                sid,
                user_id,
                rooms,
            } => self.join_leave(sid, user_id, rooms, true),
            Command::LeaveOf {
                sid,
                user_id,
                rooms,
            } => self.join_leave(sid, user_id, rooms, false),
            Command::SocketClose {
                sid,
                recoverable_for_ms,
            } => {
                let Some(user) = self.sids.user(self.kv, sid)? else {
                    return Ok(Ok(Response::Ok));
                };
                self.close(sid, &user, *recoverable_for_ms)
                    .map(|()| Ok(Response::Ok))
            }
            Command::SocketCloseOf {
                sid,
                user_id,
                recoverable_for_ms,
            } => self
                .close(sid, user_id, *recoverable_for_ms)
                .map(|()| Ok(Response::Ok)),
            Command::Recover { pid, new_sid, node } => self.recover(pid, new_sid, *node),
            Command::NodeStarted {
                node,
                recoverable_for_ms,
            }
            | Command::PurgeNode {
                node,
                recoverable_for_ms,
            } => {
                let sockets = sockets_of_node(self.kv, *node)?;
                let mut sids = Vec::with_capacity(sockets.len());
                for (user, sid) in sockets {
                    self.close(&sid, &user, *recoverable_for_ms)?;
                    sids.push(sid);
                }
                if !sids.is_empty() {
                    self.out
                        .push(Applied::SocketsDetached { node: *node, sids });
                }
                Ok(Ok(Response::NodeReset { index: self.index }))
            }
            Command::SetEpoch { epoch } => {
                let key = meta(super::meta::EPOCH);
                if get::<String, _>(self.kv, &key)?.is_none() {
                    put(self.kv, key, epoch)?;
                    self.epoch = None;
                }
                Ok(Ok(Response::Ok))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        room: &str,
        event: &str,
        payload: &[u8],
        durable: bool,
        history_max: u32,
        history_ttl_ms: u64,
        pos: u32,
    ) -> CmdResult {
        let epoch = match &self.epoch {
            Some(e) => e.clone(),
            None => {
                let e: String = get(self.kv, &meta(super::meta::EPOCH))?.unwrap_or_default();
                self.epoch = Some(e.clone());
                e
            }
        };
        let meta_key = Key::tag(keys::ROOM_META).s(room).build();
        let mut rm: RoomMeta = get(self.kv, &meta_key)?.unwrap_or_default();
        if durable {
            rm.last_offset += 1;
            rm.max = history_max;
            let ttl_shrank = history_ttl_ms < rm.ttl_ms;
            rm.ttl_ms = history_ttl_ms;
            let ev = HistoryEvent {
                offset: rm.last_offset,
                event: event.to_owned(),
                payload: payload.to_vec(),
                ts_ms: self.now,
                index: self.index,
                pos,
            };
            if self.per_entry {
                self.pending.push(room, ev);
            } else {
                put(self.kv, history::event_key(room, rm.last_offset), &ev)?;
                if !self.per_event.contains(room) {
                    self.per_event.insert(room.to_owned());
                }
            }
            let was = *rm.first.get_or_insert(rm.last_offset);
            let mut finder = Finder::new(room, &self.pending);
            trim_room(self.kv, room, &mut rm, self.now, ttl_shrank, &mut finder)?;
            if rm.first != Some(was) && !self.trimmed.contains_key(room) {
                self.trimmed.insert(room.to_owned(), was);
            }
            put(self.kv, meta_key, &rm)?;
        }
        self.out.push(Applied::Published {
            room: room.to_owned(),
            event: event.to_owned(),
            payload: payload.to_vec(),
            durable,
            offset: rm.last_offset,
            epoch: epoch.clone(),
            ts_ms: self.now,
            index: self.index,
            pos,
        });
        Ok(Ok(Response::Published {
            room: room.to_owned(),
            offset: rm.last_offset,
            epoch,
            ts_ms: self.now,
            index: self.index,
            pos,
        }))
    }

    /// After the entry's commands: removes the events the entry trimmed from the rooms'
    /// history (once per room, not per publish), writes its pending events, and turns the
    /// open records of rooms it wrote per event into per-event records.
    fn finish_history(&mut self) -> Result<(), StateError> {
        let mut pending = std::mem::take(&mut self.pending).into_rooms();
        for (room, was) in std::mem::take(&mut self.trimmed) {
            let rm = room_meta(self.kv, &room)?;
            history::remove_below(self.kv, &room, was, rm.first, rm.last_offset)?;
            if let Some(evs) = pending.remove(&room) {
                history::write_entry(self.kv, &room, rm.first, evs)?;
            }
        }
        for (room, evs) in pending {
            let rm = room_meta(self.kv, &room)?;
            history::write_entry(self.kv, &room, rm.first, evs)?;
        }
        for room in std::mem::take(&mut self.per_event) {
            let rm = room_meta(self.kv, &room)?;
            history::close_open(self.kv, &room, rm.first)?;
        }
        Ok(())
    }

    /// A socket closed: its records go, and with a recovery window it leaves a detached
    /// record to recover from.
    fn close(&mut self, sid: &str, user: &str, recoverable_for_ms: u64) -> Result<(), StateError> {
        if let Some(info) = remove_socket(self.kv, sid, user)? {
            if recoverable_for_ms > 0 {
                let exp = self.now.saturating_add(recoverable_for_ms);
                detach(self.kv, sid, info, exp)?;
            }
        }
        Ok(())
    }

    fn join_leave(&mut self, sid: &str, user: &str, rooms: &[String], join: bool) -> CmdResult {
        let Some(Found { key, mut info }) = find(self.kv, sid, Some(user))? else {
            return Ok(Err(unknown_socket(sid)));
        };
        let own = crate::types::user_room(&info.user_id);
        for room in rooms {
            let present = info.rooms.iter().any(|r| r == room);
            if !join && *room == own {
                // A socket stays in its user's room until it closes (presence is that room).
                continue;
            }
            if join && !present {
                info.rooms.push(room.clone());
                add_member(self.kv, room, sid, info.node)?;
            } else if !join && present {
                info.rooms.retain(|r| r != room);
                remove_member(self.kv, room, sid)?;
            }
        }
        put(self.kv, key, &info)?;
        Ok(Ok(Response::Ok))
    }

    fn recover(&mut self, pid: &str, new_sid: &str, node: NodeId) -> CmdResult {
        let key = Key::tag(keys::DETACHED).s(pid).build();
        let Some(d) = get::<Detached, _>(self.kv, &key)? else {
            return Ok(Ok(Response::NotRecovered));
        };
        self.kv.del(key);
        self.kv.del(detached_exp_key(d.expires_at_ms, pid));
        if d.expires_at_ms <= self.now {
            return Ok(Ok(Response::NotRecovered));
        }
        if let Some(session_id) = &d.session_id {
            let s: Option<Session> = get(self.kv, &Key::tag(keys::SESSION).s(session_id).build())?;
            if s.is_none_or(|s| s.expires_at_ms <= self.now) {
                return Ok(Ok(Response::NotRecovered));
            }
        }
        let info = SocketInfo {
            node,
            pid: pid.to_owned(),
            user_id: d.user_id.clone(),
            session_id: d.session_id.clone(),
            rooms: d.rooms.clone(),
        };
        // An empty new_sid keeps the socket's id, as Socket.IO's own recovery does.
        let sid = if new_sid.is_empty() {
            d.sid.as_str()
        } else {
            new_sid
        };
        open_socket(self.kv, sid, info)?;
        self.sids.opened(sid, &d.user_id);
        Ok(Ok(Response::Recovered {
            user_id: d.user_id,
            session_id: d.session_id,
            rooms: d.rooms,
            old_sid: d.sid,
        }))
    }
}

fn unknown_socket(sid: &str) -> String {
    format!("unknown socket {sid}")
}

fn dedup(rooms: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(rooms.len());
    for r in rooms {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

fn session_exp_key(exp: u64, session_id: &str) -> Vec<u8> {
    Key::tag(keys::SESSION_EXP).n(exp).s(session_id).build()
}

fn detached_exp_key(exp: u64, pid: &str) -> Vec<u8> {
    Key::tag(keys::DETACHED_EXP).n(exp).s(pid).build()
}

fn room_exp_key(exp: u64, room: &str) -> Vec<u8> {
    Key::tag(keys::ROOM_EXP).n(exp).s(room).build()
}

fn remove_session<K: Kv + ?Sized>(
    kv: &mut K,
    session_id: &str,
) -> Result<Option<Session>, StateError> {
    let key = Key::tag(keys::SESSION).s(session_id).build();
    let old: Option<Session> = get(kv, &key)?;
    if let Some(old) = &old {
        kv.del(key);
        kv.del(session_exp_key(old.expires_at_ms, session_id));
    }
    Ok(old)
}

/// Key of a global counter.
pub fn meta_global(name: &[u8]) -> Vec<u8> {
    Key::tag(keys::GLOBAL).raw(name).build()
}

fn detach<K: Kv + ?Sized>(
    kv: &mut K,
    sid: &str,
    info: SocketInfo,
    exp: u64,
) -> Result<(), StateError> {
    let key = Key::tag(keys::DETACHED).s(&info.pid).build();
    if let Some(old) = get::<Detached, _>(kv, &key)? {
        kv.del(detached_exp_key(old.expires_at_ms, &info.pid));
    }
    put(kv, detached_exp_key(exp, &info.pid), &())?;
    let d = Detached {
        sid: sid.to_owned(),
        node: info.node,
        user_id: info.user_id,
        session_id: info.session_id,
        rooms: info.rooms,
        expires_at_ms: exp,
    };
    put(kv, key, &d)
}

/// Moves the oldest retained offset of `room` past its events beyond the count or age limit;
/// keeps its expiry indexed. The events themselves are removed by the caller
/// ([`history::remove_below`]), once per entry rather than per publish.
///
/// The index (`rm.expires_at_ms` and its `T` key) holds a time no later than the oldest
/// retained event's expiry, not necessarily that expiry itself. While that time is still
/// ahead, no retained event can have expired (events leave from the front and their
/// timestamps only grow), so a publish trims by count alone: no read of the oldest event and
/// no re-indexing, where an exact index would move its key on every publish of a full room.
/// When the time comes, garbage collection calls this again with `now` past it, which reads
/// the oldest events, trims what expired and indexes the new oldest event's expiry. A
/// shorter TTL (`ttl_shrank`) can make the index late, so it does the same at once. Events
/// beyond the count limit go without being read.
fn trim_room<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    rm: &mut RoomMeta,
    now: u64,
    ttl_shrank: bool,
    finder: &mut Finder<'_>,
) -> Result<(), StateError> {
    let index_ahead = rm.ttl_ms > 0 && !ttl_shrank && rm.expires_at_ms.is_some_and(|e| e > now);
    let mut first_ts = None;
    while let Some(first) = rm.first {
        if rm.last_offset - first < u64::from(rm.max) {
            if index_ahead {
                return Ok(());
            }
            if rm.ttl_ms == 0 {
                // Kept by count alone: no age to read, nothing to index.
                break;
            }
            let ts = finder.ts_of(kv, first)?.unwrap_or(0);
            if ts.saturating_add(rm.ttl_ms) > now {
                first_ts = Some(ts);
                break;
            }
        }
        rm.first = (first < rm.last_offset).then_some(first + 1);
    }
    let new_exp = match first_ts {
        Some(ts) if rm.ttl_ms > 0 => Some(ts.saturating_add(rm.ttl_ms)),
        _ => None,
    };
    if new_exp != rm.expires_at_ms {
        if let Some(old) = rm.expires_at_ms {
            kv.del(room_exp_key(old, room));
        }
        if let Some(new) = new_exp {
            put(kv, room_exp_key(new, room), &())?;
        }
        rm.expires_at_ms = new_exp;
    }
    Ok(())
}

/// Keys (with the leading expiry) of an expiry index that are due at `now`.
fn due<K: Kv + ?Sized>(kv: &K, tag: u8, now: u64) -> Result<Vec<(u64, String)>, StateError> {
    let mut out = Vec::new();
    for pair in kv.scan(&[tag], None, false) {
        let (k, _) = pair?;
        let mut r = KeyReader::new(&k);
        let exp = r.n()?;
        if exp > now || out.len() >= GC_PER_ENTRY {
            break;
        }
        out.push((exp, r.s()?));
    }
    Ok(out)
}

/// Remove expired sessions and recovery records, and trim rooms whose oldest event expired
/// (the results kept for retries: [`Dedup::collect`]).
fn gc<K: Kv + ?Sized>(kv: &mut K, now: u64) -> Result<(), StateError> {
    for (_, session_id) in due(kv, keys::SESSION_EXP, now)? {
        remove_session(kv, &session_id)?;
    }
    for (exp, pid) in due(kv, keys::DETACHED_EXP, now)? {
        kv.del(detached_exp_key(exp, &pid));
        kv.del(Key::tag(keys::DETACHED).s(&pid).build());
    }
    for (exp, room) in due(kv, keys::ROOM_EXP, now)? {
        let meta_key = Key::tag(keys::ROOM_META).s(&room).build();
        match get::<RoomMeta, _>(kv, &meta_key)? {
            Some(mut rm) => {
                let was = rm.first;
                trim_room(kv, &room, &mut rm, now, false, &mut Finder::stored(&room))?;
                if let Some(was) = was {
                    history::remove_below(kv, &room, was, rm.first, rm.last_offset)?;
                }
                if rm.expires_at_ms != Some(exp) {
                    kv.del(room_exp_key(exp, &room));
                }
                put(kv, meta_key, &rm)?;
            }
            None => kv.del(room_exp_key(exp, &room)),
        }
    }
    Ok(())
}
