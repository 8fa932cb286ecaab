//! The in-memory backend: one node, nothing replicated, nothing kept across restarts (a new
//! process starts a new epoch). For tests and ephemeral use; the default is Raft.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    BackendHealth, ClusterCounts, Delivery, Fanout, FanoutError, History, Membership, Payload,
    Presence, Published, RecoveredSocket, SessionInfo, Sink, StoredEvent,
};
use crate::util::now_unix_ms;

/// Retention and recovery settings shared by the backends.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub recovery_window: Duration,
}

#[derive(Default)]
struct Room {
    offset: u64,
    events: VecDeque<StoredEvent>,
}

struct SocketRec {
    pid: String,
    user_id: String,
    session_id: Option<String>,
    rooms: Vec<String>,
    /// Some while detached: recoverable until this time (ms since 1970).
    detached_until: Option<u64>,
}

#[derive(Default)]
struct State {
    seq: u64,
    rooms: HashMap<String, Room>,
    sessions: HashMap<String, SessionInfo>,
    sockets: HashMap<String, SocketRec>,
    by_pid: HashMap<String, String>,
    /// Detached sockets in expiry order.
    detached: VecDeque<(u64, String)>,
    users: HashMap<String, u32>,
    room_members: HashMap<String, u32>,
}

/// The in-memory backend.
pub struct LocalFanout {
    node_id: u64,
    epoch: String,
    retention: Retention,
    state: Mutex<State>,
    sink: OnceLock<Arc<dyn Sink>>,
}

impl LocalFanout {
    pub fn new(node_id: u64, retention: Retention) -> LocalFanout {
        LocalFanout {
            node_id,
            epoch: crate::socketio::random_id()[..16].to_owned(),
            retention,
            state: Mutex::new(State::default()),
            sink: OnceLock::new(),
        }
    }
}

impl State {
    fn trim(&mut self, room: &str, now: u64, retention: &Retention) {
        let ttl = u64::try_from(retention.history_ttl.as_millis()).unwrap_or(u64::MAX);
        if let Some(r) = self.rooms.get_mut(room) {
            while r.events.len() > retention.history_size
                || r.events
                    .front()
                    .is_some_and(|e| now.saturating_sub(e.ts_ms) > ttl)
            {
                r.events.pop_front();
            }
        }
    }

    fn live_add(&mut self, user: &str, rooms: &[String]) {
        *self.users.entry(user.to_owned()).or_default() += 1;
        for r in rooms {
            *self.room_members.entry(r.clone()).or_default() += 1;
        }
    }

    fn live_remove(&mut self, user: &str, rooms: &[String]) {
        dec(&mut self.users, user);
        for r in rooms {
            dec(&mut self.room_members, r);
        }
    }

    fn expire_detached(&mut self, now: u64) {
        while let Some((until, _)) = self.detached.front() {
            if *until > now {
                break;
            }
            let Some((until, sid)) = self.detached.pop_front() else {
                break;
            };
            if self
                .sockets
                .get(&sid)
                .is_some_and(|s| s.detached_until == Some(until))
            {
                if let Some(rec) = self.sockets.remove(&sid) {
                    self.by_pid.remove(&rec.pid);
                }
            }
        }
    }
}

fn dec(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[async_trait]
impl Fanout for LocalFanout {
    fn name(&self) -> &'static str {
        "local"
    }

    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
    ) -> Result<Published, FanoutError> {
        let now = now_unix_ms();
        let mut st = self.state.lock();
        st.seq += 1;
        let index = st.seq;
        let r = st.rooms.entry(room.to_owned()).or_default();
        if durable {
            r.offset += 1;
            r.events.push_back(StoredEvent {
                offset: r.offset,
                index,
                event: event.to_owned(),
                payload: payload.clone(),
                ts_ms: now,
            });
        }
        let offset = r.offset;
        if durable {
            st.trim(room, now, &self.retention);
        } else if offset == 0 {
            st.rooms.remove(room);
        }
        let delivery = Delivery {
            room: room.to_owned(),
            event: event.to_owned(),
            payload,
            durable,
            offset,
            epoch: self.epoch.clone(),
            ts_ms: now,
            index,
        };
        // Delivered under the state lock so that local order is the global order.
        if let Some(sink) = self.sink.get() {
            sink.deliver(&delivery);
        }
        Ok(Published {
            room: delivery.room,
            offset,
            epoch: delivery.epoch,
            ts_ms: now,
        })
    }

    async fn create_session(
        &self,
        session_id: &str,
        user_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), FanoutError> {
        self.state.lock().sessions.insert(
            session_id.to_owned(),
            SessionInfo {
                user_id: user_id.to_owned(),
                expires_at_ms,
            },
        );
        Ok(())
    }

    async fn revoke_session(&self, session_id: &str) -> Result<Option<String>, FanoutError> {
        let removed = self.state.lock().sessions.remove(session_id);
        if let (Some(s), Some(sink)) = (&removed, self.sink.get()) {
            sink.session_revoked(session_id, &s.user_id);
        }
        Ok(removed.map(|s| s.user_id))
    }

    async fn session(&self, session_id: &str) -> Result<Option<SessionInfo>, FanoutError> {
        let now = now_unix_ms();
        let mut st = self.state.lock();
        match st.sessions.get(session_id) {
            Some(s) if s.expires_at_ms > now => Ok(Some(s.clone())),
            Some(_) => {
                st.sessions.remove(session_id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn history(&self, room: &str, after: u64) -> Result<History, FanoutError> {
        let now = now_unix_ms();
        let mut st = self.state.lock();
        st.trim(room, now, &self.retention);
        Ok(match st.rooms.get(room) {
            None => History {
                epoch: self.epoch.clone(),
                last_offset: 0,
                first_retained: None,
                events: Vec::new(),
            },
            Some(r) => History {
                epoch: self.epoch.clone(),
                last_offset: r.offset,
                first_retained: r.events.front().map(|e| e.offset),
                events: r
                    .events
                    .iter()
                    .filter(|e| e.offset > after)
                    .cloned()
                    .collect(),
            },
        })
    }

    fn events_after_index(
        &self,
        rooms: &[String],
        index: u64,
    ) -> Result<Vec<(String, StoredEvent)>, FanoutError> {
        let st = self.state.lock();
        let mut out: Vec<(String, StoredEvent)> = rooms
            .iter()
            .filter_map(|r| st.rooms.get(r).map(|h| (r, h)))
            .flat_map(|(r, h)| {
                h.events
                    .iter()
                    .filter(move |e| e.index > index)
                    .map(move |e| (r.clone(), e.clone()))
            })
            .collect();
        out.sort_by_key(|(_, e)| e.index);
        Ok(out)
    }

    fn membership(&self, change: Membership) {
        let now = now_unix_ms();
        let mut st = self.state.lock();
        st.expire_detached(now);
        match change {
            Membership::Open {
                sid,
                pid,
                user_id,
                session_id,
                rooms,
            } => {
                st.live_add(&user_id, &rooms);
                st.by_pid.insert(pid.clone(), sid.clone());
                st.sockets.insert(
                    sid,
                    SocketRec {
                        pid,
                        user_id,
                        session_id,
                        rooms,
                        detached_until: None,
                    },
                );
            }
            Membership::Join { sid, rooms, .. } => {
                let mut added = Vec::new();
                if let Some(rec) = st.sockets.get_mut(&sid) {
                    for r in rooms {
                        if !rec.rooms.contains(&r) {
                            rec.rooms.push(r.clone());
                            added.push(r);
                        }
                    }
                }
                for r in added {
                    *st.room_members.entry(r).or_default() += 1;
                }
            }
            Membership::Leave { sid, rooms, .. } => {
                let mut removed = Vec::new();
                if let Some(rec) = st.sockets.get_mut(&sid) {
                    rec.rooms.retain(|r| {
                        let keep = !rooms.contains(r);
                        if !keep {
                            removed.push(r.clone());
                        }
                        keep
                    });
                }
                for r in removed {
                    dec(&mut st.room_members, &r);
                }
            }
            Membership::Close {
                sid, recoverable, ..
            } => {
                let Some(rec) = st.sockets.get(&sid) else {
                    return;
                };
                if rec.detached_until.is_some() {
                    return;
                }
                let (user, rooms) = (rec.user_id.clone(), rec.rooms.clone());
                st.live_remove(&user, &rooms);
                let window = u64::try_from(self.retention.recovery_window.as_millis()).unwrap_or(0);
                if recoverable && window > 0 {
                    let until = now + window;
                    if let Some(rec) = st.sockets.get_mut(&sid) {
                        rec.detached_until = Some(until);
                    }
                    st.detached.push_back((until, sid));
                } else if let Some(rec) = st.sockets.remove(&sid) {
                    st.by_pid.remove(&rec.pid);
                }
            }
        }
    }

    async fn recover(&self, pid: &str) -> Result<Option<RecoveredSocket>, FanoutError> {
        let now = now_unix_ms();
        let mut st = self.state.lock();
        st.expire_detached(now);
        let Some(sid) = st.by_pid.get(pid).cloned() else {
            return Ok(None);
        };
        if st
            .sockets
            .get(&sid)
            .is_none_or(|s| s.detached_until.is_none())
        {
            return Ok(None);
        }
        st.by_pid.remove(pid);
        Ok(st.sockets.remove(&sid).map(|rec| RecoveredSocket {
            sid,
            user_id: rec.user_id,
            session_id: rec.session_id,
            rooms: rec.rooms,
        }))
    }

    async fn presence(&self, user_id: &str) -> Result<Presence, FanoutError> {
        let st = self.state.lock();
        let mut sockets: Vec<(u64, String)> = st
            .sockets
            .iter()
            .filter(|(_, s)| s.detached_until.is_none() && s.user_id == user_id)
            .map(|(sid, _)| (self.node_id, sid.clone()))
            .collect();
        sockets.sort();
        Ok(Presence { sockets })
    }

    async fn counts(&self) -> Result<ClusterCounts, FanoutError> {
        let st = self.state.lock();
        let live = st
            .sockets
            .values()
            .filter(|s| s.detached_until.is_none())
            .count() as u64;
        Ok(ClusterCounts {
            connections_per_node: [(self.node_id, live)].into_iter().collect(),
            unique_users: st.users.len() as u64,
            room_count: st.room_members.len() as u64,
        })
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            healthy: true,
            degraded: false,
            ready: true,
            detail: serde_json::Value::Null,
        }
    }

    async fn shutdown(&self) {}
}
