//! Where a room's retained durable events are kept, in either of two layouts, and how they
//! are found, trimmed and read.
//!
//! - One record per event (`h | room | offset` → event), what versions up to peer protocol 3
//!   write: a sled insert per durable publish on every node, and a delete when the event
//!   leaves the history.
//! - One record per room per log entry (`g | room | last offset` → the entry's events of the
//!   room, consecutive offsets ending at the key's; [`MAX_RECORD_BYTES`] splits a large
//!   burst). An entry of 200 publishes over 100 rooms writes about 100 records instead of 200
//!   (docs/performance.md, session 21: at 10,125 durable emits/s in requests of 200, 3–23 %
//!   less server CPU, p99 within 50 ms in eight runs of twelve against three of fifteen). Keyed by the last offset, so the events after an offset start at the
//!   first record whose key is past it, and trimming removes records from the front while
//!   their key is below the oldest retained offset. A record may hold events below that
//!   offset (a room that trims one event at a time keeps the record until all of its events
//!   left); every reader skips them.
//!
//! A node writes the second only while every member reads it (the version gate of
//! `node/versions.rs`, protocol 4): an older node that installed a snapshot of them would
//! lose the history. Both are always read, so a state holding either or both (a room written
//! before and after the gate opened, or while it was closed again for a joining node) loses
//! nothing. The room's bookkeeping ([`super::RoomMeta`]) is the same in both.

use std::collections::BTreeMap;

use crate::types::HistoryEvent;

use super::keys::{self, dec, get, put, Key, KeyReader};
use super::kv::{Kv, KvRead};
use super::StateError;

/// The most event bytes (payload and name) one per-entry record holds; a larger burst for one
/// room is split over several records (a single larger event has one of its own). sled 0.34
/// splits a leaf past 16 keys, not by size, and writes a leaf (or value) past 128 KiB as a
/// file of its own (its blob threshold: a 512 KiB segment over 4): 16 records of this size
/// stay under it.
pub const MAX_RECORD_BYTES: usize = 6 * 1024;

/// Key of a per-event record.
pub fn event_key(room: &str, offset: u64) -> Vec<u8> {
    Key::tag(keys::HISTORY).s(room).n(offset).build()
}

/// Key of a per-entry record whose last event has offset `last`.
pub fn entry_key(room: &str, last: u64) -> Vec<u8> {
    Key::tag(keys::HISTORY_ENTRY).s(room).n(last).build()
}

fn event_prefix(room: &str) -> Vec<u8> {
    Key::tag(keys::HISTORY).s(room).build()
}

fn entry_prefix(room: &str) -> Vec<u8> {
    Key::tag(keys::HISTORY_ENTRY).s(room).build()
}

/// The offset a history key ends with (either layout).
fn key_offset(key: &[u8]) -> Result<u64, StateError> {
    let mut r = KeyReader::new(key);
    r.s()?;
    r.n()
}

/// The events of the entry being applied, by room, written as one record per room when the
/// entry is done ([`write_entry`]).
#[derive(Debug, Default)]
pub struct Pending {
    rooms: BTreeMap<String, Vec<HistoryEvent>>,
}

impl Pending {
    /// Adds a durable event of `room` (offsets ascend within a room).
    pub fn push(&mut self, room: &str, ev: HistoryEvent) {
        match self.rooms.get_mut(room) {
            Some(evs) => evs.push(ev),
            None => {
                self.rooms.insert(room.to_owned(), vec![ev]);
            }
        }
    }

    /// `room`'s events of this entry so far.
    fn of(&self, room: &str) -> &[HistoryEvent] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// The events by room, to write once the entry is done ([`write_entry`]).
    pub fn into_rooms(self) -> BTreeMap<String, Vec<HistoryEvent>> {
        self.rooms
    }
}

/// Writes `room`'s events of one entry that are still retained (offset at or past `first`,
/// the room's oldest retained one; none if it is `None`), in records of at most
/// [`MAX_RECORD_BYTES`].
pub fn write_entry<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    first: Option<u64>,
    evs: Vec<HistoryEvent>,
) -> Result<(), StateError> {
    let Some(first) = first else {
        return Ok(());
    };
    let mut record: Vec<HistoryEvent> = Vec::new();
    let mut bytes = 0;
    for ev in evs.into_iter().filter(|e| e.offset >= first) {
        let size = ev.payload.len() + ev.event.len();
        if !record.is_empty() && bytes + size > MAX_RECORD_BYTES {
            write_record(kv, room, &std::mem::take(&mut record))?;
            bytes = 0;
        }
        bytes += size;
        record.push(ev);
    }
    write_record(kv, room, &record)
}

fn write_record<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    evs: &[HistoryEvent],
) -> Result<(), StateError> {
    match evs.last() {
        Some(last) => put(kv, entry_key(room, last.offset), &evs),
        None => Ok(()),
    }
}

/// Finds a room's events by offset (for the age limit), in either layout or among the
/// entry's pending events; keeps the last per-entry record it decoded, as trimming asks for
/// consecutive offsets.
pub struct Finder<'p> {
    room: &'p str,
    pending: Option<&'p Pending>,
    record: Vec<HistoryEvent>,
}

impl<'p> Finder<'p> {
    /// For `room`, whose events of the entry being applied are `pending`.
    pub fn new(room: &'p str, pending: &'p Pending) -> Self {
        Finder {
            room,
            pending: Some(pending),
            record: Vec::new(),
        }
    }

    /// For `room` outside an entry's publishes (nothing pending).
    pub fn stored(room: &'p str) -> Self {
        Finder {
            room,
            pending: None,
            record: Vec::new(),
        }
    }

    /// The timestamp of the event at `offset`, if it is stored or pending.
    pub fn ts_of<K: KvRead + ?Sized>(
        &mut self,
        kv: &K,
        offset: u64,
    ) -> Result<Option<u64>, StateError> {
        if let Some(ev) = self.record.iter().find(|e| e.offset == offset) {
            return Ok(Some(ev.ts_ms));
        }
        let pending = self.pending.map_or(&[][..], |p| p.of(self.room));
        if let Some(ev) = pending.iter().find(|e| e.offset == offset) {
            return Ok(Some(ev.ts_ms));
        }
        if let Some(ev) = get::<HistoryEvent, _>(kv, &event_key(self.room, offset))? {
            return Ok(Some(ev.ts_ms));
        }
        let prefix = entry_prefix(self.room);
        let from = entry_key(self.room, offset);
        if let Some(pair) = kv.scan(&prefix, Some(&from), false).next() {
            let (_, v) = pair?;
            self.record = dec(&v)?;
            return Ok(self
                .record
                .iter()
                .find(|e| e.offset == offset)
                .map(|e| e.ts_ms));
        }
        Ok(None)
    }
}

/// Up to this many trimmed offsets, [`remove_below`] deletes the keys the records ending at
/// each of them would have in both layouts, whether they exist or not (sled makes a delete of
/// a missing key a lookup); past it, two scans (one per layout) that find the records cost
/// less. A full room that takes one or two events per entry (single emits) is the first case.
const DELETE_BY_KEY: u64 = 2;

/// Removes `room`'s stored events with offsets from `from` (the room's oldest retained offset
/// before a trim) up to, not including, `to` (the oldest after it; `None`: none is retained,
/// and `last` is the room's last offset), in both layouts: per-event records in that range,
/// and per-entry records whose last event is in it. Records ending below `from` are gone
/// already (removed when the oldest offset passed them), so those are all the records whose
/// events are no longer retained; a per-entry record that still holds a retained event stays
/// whole.
pub fn remove_below<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    from: u64,
    to: Option<u64>,
    last: u64,
) -> Result<(), StateError> {
    let to = to.unwrap_or(last.saturating_add(1));
    if from >= to {
        return Ok(());
    }
    if to - from <= DELETE_BY_KEY {
        for offset in from..to {
            kv.del(event_key(room, offset));
            kv.del(entry_key(room, offset));
        }
        return Ok(());
    }
    let mut gone = Vec::new();
    let layouts = [
        (event_prefix(room), event_key(room, from)),
        (entry_prefix(room), entry_key(room, from)),
    ];
    for (prefix, start) in layouts {
        for pair in kv.scan(&prefix, Some(&start), false) {
            let (k, _) = pair?;
            if key_offset(&k)? >= to {
                break;
            }
            gone.push(k);
        }
    }
    for k in gone {
        kv.del(k);
    }
    Ok(())
}

/// `room`'s stored events with offsets at or past `from`, in offset order (both layouts).
pub fn events_from<K: KvRead + ?Sized>(
    kv: &K,
    room: &str,
    from: u64,
) -> Result<Vec<HistoryEvent>, StateError> {
    let mut out = Vec::new();
    for pair in kv.scan(&event_prefix(room), Some(&event_key(room, from)), false) {
        let (_, v) = pair?;
        out.push(dec::<HistoryEvent>(&v)?);
    }
    let per_event = out.len();
    for pair in kv.scan(&entry_prefix(room), Some(&entry_key(room, from)), false) {
        let (_, v) = pair?;
        let evs: Vec<HistoryEvent> = dec(&v)?;
        out.extend(evs.into_iter().filter(|e| e.offset >= from));
    }
    if per_event > 0 && out.len() > per_event {
        out.sort_by_key(|e| e.offset);
    }
    Ok(out)
}

/// `room`'s stored events positioned after `(index, pos)` with offsets at or past `first`,
/// in log order (both layouts). Reads from the newest back, as a reconnecting client is
/// usually missing only the last few.
pub fn events_after<K: KvRead + ?Sized>(
    kv: &K,
    room: &str,
    first: u64,
    index: u64,
    pos: u32,
) -> Result<Vec<HistoryEvent>, StateError> {
    let newer = |e: &HistoryEvent| (e.index, e.pos) > (index, pos) && e.offset >= first;
    let mut out = Vec::new();
    for pair in kv.scan(&event_prefix(room), None, true) {
        let (_, v) = pair?;
        let ev: HistoryEvent = dec(&v)?;
        if !newer(&ev) {
            break;
        }
        out.push(ev);
    }
    for pair in kv.scan(&entry_prefix(room), None, true) {
        let (_, v) = pair?;
        let evs: Vec<HistoryEvent> = dec(&v)?;
        let held = evs.len();
        let before = out.len();
        out.extend(evs.into_iter().rev().take_while(|e| newer(e)));
        // A record not all of whose events are wanted holds the boundary: the older records
        // hold none.
        if out.len() - before < held {
            break;
        }
    }
    out.sort_by_key(|e| (e.index, e.pos));
    Ok(out)
}
