//! The in-memory mirror of the histories of the rooms this node serves, so that the sync
//! reads of the [`Fanout`](super::super::Fanout) trait (`history`, `events_after_index`)
//! answer without a round trip while a room lock is held.
//!
//! A room is loaded by `prepare` (a snapshot of its stream and offset) and then kept current
//! by the deliveries this node hears, in their global order, before they reach the sink.
//! Deliveries that arrive while a snapshot is in flight are buffered and merged by index, so
//! the snapshot and the live stream meet without a gap or a duplicate.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::super::{Delivery, History, StoredEvent};
use crate::fanout::local::Retention;

/// Why a read from the mirror failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MirrorError {
    #[error("room {0} is not loaded on this node (prepare it first)")]
    NotPrepared(String),
}

/// A room's snapshot as read from Redis.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: String,
    pub last_offset: u64,
    pub events: Vec<StoredEvent>,
}

enum Room {
    /// A snapshot is being read; deliveries heard meanwhile wait here.
    Loading {
        buffered: Vec<Delivery>,
        since: Instant,
    },
    Ready {
        epoch: String,
        last_offset: u64,
        events: VecDeque<StoredEvent>,
        loaded: Instant,
    },
}

/// The mirror of every loaded room.
pub struct Mirror {
    retention: Retention,
    rooms: Mutex<HashMap<String, Room>>,
}

impl Mirror {
    pub fn new(retention: Retention) -> Mirror {
        Mirror {
            retention,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `room` is ready to be read.
    pub fn is_ready(&self, room: &str) -> bool {
        matches!(self.rooms.lock().get(room), Some(Room::Ready { .. }))
    }

    /// Marks `room` as loading (returns false when it is already ready or loading, unless
    /// an earlier load was abandoned for more than 10 s).
    pub fn begin_load(&self, room: &str) -> bool {
        let mut rooms = self.rooms.lock();
        match rooms.get(room) {
            Some(Room::Ready { .. }) => false,
            Some(Room::Loading { since, .. }) if since.elapsed() < Duration::from_secs(10) => false,
            _ => {
                rooms.insert(
                    room.to_owned(),
                    Room::Loading {
                        buffered: Vec::new(),
                        since: Instant::now(),
                    },
                );
                true
            }
        }
    }

    /// Abandons a load that failed.
    pub fn abort_load(&self, room: &str) {
        let mut rooms = self.rooms.lock();
        if matches!(rooms.get(room), Some(Room::Loading { .. })) {
            rooms.remove(room);
        }
    }

    /// Installs a snapshot, merging the deliveries buffered while it was read.
    pub fn finish_load(&self, room: &str, snap: Snapshot) {
        let mut rooms = self.rooms.lock();
        let buffered = match rooms.remove(room) {
            Some(Room::Loading { buffered, .. }) => buffered,
            Some(ready @ Room::Ready { .. }) => {
                rooms.insert(room.to_owned(), ready);
                return;
            }
            None => Vec::new(),
        };
        let mut r = Room::Ready {
            epoch: snap.epoch,
            last_offset: snap.last_offset,
            events: snap.events.into(),
            loaded: Instant::now(),
        };
        for d in &buffered {
            apply(&mut r, d, self.retention.history_size);
        }
        rooms.insert(room.to_owned(), r);
    }

    /// Records a delivery heard from Redis (before the sink gets it).
    pub fn on_delivery(&self, d: &Delivery) {
        let mut rooms = self.rooms.lock();
        match rooms.get_mut(&d.room) {
            None => {}
            Some(Room::Loading { buffered, .. }) => buffered.push(d.clone()),
            Some(r) => apply(r, d, self.retention.history_size),
        }
    }

    /// The current offset of a loaded room (for volatile broadcasts from Node servers).
    pub fn last_offset(&self, room: &str) -> u64 {
        match self.rooms.lock().get(room) {
            Some(Room::Ready { last_offset, .. }) => *last_offset,
            _ => 0,
        }
    }

    /// A room's history after `after`.
    pub fn history(&self, room: &str, after: u64, now_ms: u64) -> Result<History, MirrorError> {
        let mut rooms = self.rooms.lock();
        let Some(Room::Ready {
            epoch,
            last_offset,
            events,
            ..
        }) = rooms.get_mut(room)
        else {
            return Err(MirrorError::NotPrepared(room.to_owned()));
        };
        trim(events, now_ms, &self.retention);
        Ok(History {
            epoch: epoch.clone(),
            last_offset: *last_offset,
            first_retained: events.front().map(|e| e.offset),
            events: events
                .iter()
                .filter(|e| e.offset > after)
                .cloned()
                .collect(),
        })
    }

    /// Durable events of `rooms` with an index above `index`, in index order.
    pub fn events_after_index(
        &self,
        rooms: &[String],
        index: u64,
        now_ms: u64,
    ) -> Result<Vec<(String, StoredEvent)>, MirrorError> {
        let mut map = self.rooms.lock();
        let mut out = Vec::new();
        for room in rooms {
            let Some(Room::Ready { events, .. }) = map.get_mut(room) else {
                return Err(MirrorError::NotPrepared(room.clone()));
            };
            trim(events, now_ms, &self.retention);
            out.extend(
                events
                    .iter()
                    .filter(|e| e.index > index)
                    .map(|e| (room.clone(), e.clone())),
            );
        }
        out.sort_by_key(|(_, e)| e.index);
        Ok(out)
    }

    /// Drops loaded rooms for which `keep` says no and that were loaded over `min_age` ago.
    pub fn evict(&self, min_age: Duration, keep: impl Fn(&str) -> bool) -> usize {
        let mut rooms = self.rooms.lock();
        let before = rooms.len();
        rooms.retain(|name, r| match r {
            Room::Ready { loaded, .. } => keep(name) || loaded.elapsed() < min_age,
            Room::Loading { .. } => true,
        });
        before - rooms.len()
    }

    /// Forgets every loaded room (after deliveries may have been missed).
    pub fn clear(&self) {
        self.rooms
            .lock()
            .retain(|_, r| matches!(r, Room::Loading { .. }));
    }

    /// How many rooms are loaded.
    pub fn len(&self) -> usize {
        self.rooms.lock().len()
    }

    /// Whether no room is loaded.
    pub fn is_empty(&self) -> bool {
        self.rooms.lock().is_empty()
    }
}

fn apply(r: &mut Room, d: &Delivery, size: usize) {
    let Room::Ready {
        epoch,
        last_offset,
        events,
        ..
    } = r
    else {
        return;
    };
    if d.epoch != *epoch {
        // The store lost its data and started a new history.
        *epoch = d.epoch.clone();
        events.clear();
        *last_offset = if d.durable {
            d.offset.saturating_sub(1)
        } else {
            d.offset
        };
    }
    if !d.durable {
        return;
    }
    if d.offset <= *last_offset {
        return; // already in the snapshot (offsets grow by one per durable event)
    }
    *last_offset = d.offset;
    events.push_back(StoredEvent {
        offset: d.offset,
        index: d.index,
        event: d.event.clone(),
        payload: d.payload.clone(),
        ts_ms: d.ts_ms,
    });
    while events.len() > size {
        events.pop_front();
    }
}

fn trim(events: &mut VecDeque<StoredEvent>, now: u64, retention: &Retention) {
    let ttl = u64::try_from(retention.history_ttl.as_millis()).unwrap_or(u64::MAX);
    while events
        .front()
        .is_some_and(|e| now.saturating_sub(e.ts_ms) > ttl)
    {
        events.pop_front();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::fanout::Payload;

    fn ret() -> Retention {
        Retention {
            history_size: 3,
            history_ttl: Duration::from_secs(60),
            recovery_window: Duration::from_secs(60),
        }
    }

    fn d(offset: u64, index: u64) -> Delivery {
        Delivery {
            room: "r".into(),
            event: "e".into(),
            payload: Payload::json("1"),
            durable: true,
            offset,
            epoch: "E".into(),
            ts_ms: 1000,
            index,
        }
    }

    fn ev(offset: u64, index: u64) -> StoredEvent {
        StoredEvent {
            offset,
            index,
            event: "e".into(),
            payload: Payload::json("1"),
            ts_ms: 1000,
        }
    }

    #[test]
    fn snapshot_and_buffer_merge_without_duplicates() {
        let m = Mirror::new(ret());
        assert!(m.history("r", 0, 1000).is_err());
        assert!(m.begin_load("r"));
        m.on_delivery(&d(2, 20)); // also in the snapshot
        m.on_delivery(&d(3, 30)); // after it
        m.finish_load(
            "r",
            Snapshot {
                epoch: "E".into(),
                last_offset: 2,
                events: vec![ev(1, 10), ev(2, 20)],
            },
        );
        m.on_delivery(&d(4, 40));
        let h = m.history("r", 0, 1000).unwrap();
        let offsets: Vec<u64> = h.events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![2, 3, 4]); // bounded to 3
        assert_eq!((h.last_offset, h.first_retained), (4, Some(2)));
        let after = m.events_after_index(&["r".into()], 25, 1000).unwrap();
        assert_eq!(after.len(), 2);
    }

    #[test]
    fn new_epoch_resets_and_ttl_trims() {
        let m = Mirror::new(ret());
        m.begin_load("r");
        m.finish_load(
            "r",
            Snapshot {
                epoch: "E".into(),
                last_offset: 1,
                events: vec![ev(1, 10)],
            },
        );
        let mut x = d(1, 1);
        x.epoch = "F".into();
        m.on_delivery(&x);
        let h = m.history("r", 0, 1000).unwrap();
        assert_eq!(
            (h.epoch.as_str(), h.events.len(), h.last_offset),
            ("F", 1, 1)
        );
        assert!(m.history("r", 0, 1000 + 61_000).unwrap().events.is_empty());
        assert_eq!(m.evict(Duration::ZERO, |_| false), 1);
    }
}
