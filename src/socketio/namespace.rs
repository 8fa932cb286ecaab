//! A namespace: its handler, its sockets and its local room index, and the broadcast path.
//!
//! Broadcast encodes nothing: it is handed frames encoded once and pushes clones of the same
//! shared bytes into each member's outbox. Sequenced broadcasts advance a watermark under
//! the room lock, so a socket that joins with a replay gets every packet up to the
//! watermark from the replay and every later one live, with no gap and no duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::conn::Frame;
use super::handler::Handler;
use super::socket::Socket;

use super::members::Members;

/// Sockets by id.
type ById = HashMap<Arc<str>, Arc<Socket>>;

/// Which sockets a broadcast reaches.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Rooms to reach (their union); empty means every socket of the namespace.
    pub rooms: Vec<String>,
    /// Sockets in any of these rooms are skipped.
    pub except_rooms: Vec<String>,
    /// These socket ids are skipped.
    pub except_sids: Vec<String>,
}

impl Target {
    /// Every member of `room`.
    pub fn room(room: impl Into<String>) -> Target {
        Target {
            rooms: vec![room.into()],
            ..Target::default()
        }
    }
}

/// One namespace of the server.
pub struct Namespace {
    pub(crate) path: Arc<str>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) recovery: bool,
    rooms: RwLock<HashMap<Arc<str>, Members>>,
    sockets: RwLock<ById>,
    watermark: AtomicU64,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("path", &self.path)
            .finish()
    }
}

impl Namespace {
    pub(crate) fn new(path: &str, handler: Arc<dyn Handler>, recovery: bool) -> Namespace {
        Namespace {
            path: Arc::from(path),
            handler,
            recovery,
            rooms: RwLock::new(HashMap::new()),
            sockets: RwLock::new(HashMap::new()),
            watermark: AtomicU64::new(0),
        }
    }

    /// The namespace path, e.g. `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Delivers frames to the local sockets of `target`. Returns how many sockets got them.
    pub fn broadcast(&self, target: &Target, frames: &[Frame]) -> usize {
        let rooms = self.rooms.read();
        self.deliver(&rooms, target, frames)
    }

    /// Like [`Namespace::broadcast`], and records `seq` as the last sequenced packet
    /// delivered, atomically with the delivery (see the module docs).
    pub fn broadcast_seq(&self, target: &Target, frames: &[Frame], seq: u64) -> usize {
        let rooms = self.rooms.read();
        let n = self.deliver(&rooms, target, frames);
        self.watermark.fetch_max(seq, Ordering::AcqRel);
        n
    }

    /// The sequence number of the last sequenced broadcast delivered here.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    fn deliver(
        &self,
        rooms: &HashMap<Arc<str>, Members>,
        target: &Target,
        frames: &[Frame],
    ) -> usize {
        let excluded = |s: &Arc<Socket>| {
            (!target.except_sids.is_empty() && target.except_sids.iter().any(|x| **x == *s.id()))
                || (!target.except_rooms.is_empty()
                    && target
                        .except_rooms
                        .iter()
                        .any(|r| rooms.get(r.as_str()).is_some_and(|m| m.contains(s.id()))))
        };
        let mut sent = 0;
        match target.rooms.as_slice() {
            [] => {
                for s in self.sockets.read().values() {
                    if !excluded(s) && s.send_frames(frames) {
                        sent += 1;
                    }
                }
            }
            [one] => {
                if let Some(members) = rooms.get(one.as_str()) {
                    for s in members.iter() {
                        if !excluded(s) && s.send_frames(frames) {
                            sent += 1;
                        }
                    }
                }
            }
            many => {
                let mut seen: HashSet<&str> = HashSet::new();
                for r in many {
                    for s in rooms.get(r.as_str()).into_iter().flat_map(|m| m.iter()) {
                        if seen.insert(s.id()) && !excluded(s) && s.send_frames(frames) {
                            sent += 1;
                        }
                    }
                }
            }
        }
        sent
    }

    /// Adds `socket` to `rooms`. With `replay`, runs it under the room lock with the current
    /// watermark and queues what it returns before any later broadcast.
    pub(crate) fn join(
        &self,
        socket: &Arc<Socket>,
        rooms: &[String],
        replay: Option<Box<dyn FnOnce(u64) -> Vec<super::encode::Frames> + Send + '_>>,
    ) {
        let mut map = self.rooms.write();
        if let Some(replay) = replay {
            for frames in replay(self.watermark()) {
                socket.send_frames(&frames);
            }
        }
        for room in rooms {
            let name = match map.get_key_value(room.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(room.as_str()),
            };
            if socket.add_room(&name) {
                map.entry(name).or_default().insert(socket.clone());
            }
        }
    }

    /// Removes `socket` from `rooms`; empty rooms are forgotten.
    pub(crate) fn leave(&self, socket: &Arc<Socket>, rooms: &[String]) {
        let mut map = self.rooms.write();
        for room in rooms {
            if socket.remove_room(room) {
                if let Some(m) = map.get_mut(room.as_str()) {
                    m.remove(socket);
                    if m.is_empty() {
                        map.remove(room.as_str());
                    }
                }
            }
        }
    }

    pub(crate) fn add_socket(&self, socket: &Arc<Socket>) {
        self.sockets.write().insert(socket.id_arc(), socket.clone());
    }

    /// Removes the socket from every room and from the namespace.
    pub(crate) fn remove_socket(&self, socket: &Arc<Socket>) {
        let rooms = socket.rooms();
        self.leave(socket, &rooms);
        let mut sockets = self.sockets.write();
        if sockets
            .get(socket.id())
            .is_some_and(|s| Arc::ptr_eq(s, socket))
        {
            sockets.remove(socket.id());
        }
    }

    /// The local socket with this id.
    pub fn socket(&self, sid: &str) -> Option<Arc<Socket>> {
        self.sockets.read().get(sid).cloned()
    }

    /// Every local socket of the namespace.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets.read().values().cloned().collect()
    }

    /// Local sockets in `room`.
    pub fn room_sockets(&self, room: &str) -> Vec<Arc<Socket>> {
        self.rooms
            .read()
            .get(room)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many rooms start with `prefix` (e.g. `user:` rooms = unique local users).
    pub fn rooms_with_prefix(&self, prefix: &str) -> usize {
        self.rooms
            .read()
            .keys()
            .filter(|r| r.starts_with(prefix))
            .count()
    }

    /// How many local sockets and rooms this namespace has.
    pub fn counts(&self) -> (usize, usize) {
        (self.sockets.read().len(), self.rooms.read().len())
    }
}
