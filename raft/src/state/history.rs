//! Where a room's retained durable events are kept, in either of two layouts, and how they
//! are found, trimmed and read.
//!
//! - One record per event (`h | room | offset` → event), what versions up to peer protocol 3
//!   write: a sled insert per durable publish on every node, and a delete when the event
//!   leaves the history.
//! - Records of consecutive events of a room, in two parts:
//!   - closed ones (`g | room | last offset` → events whose offsets run up to the key's);
//!   - the room's open record (`o | room` → its newest events), which each log entry's events
//!     of the room extend (one sled write, in place) until it holds [`GROW_BELOW_BYTES`]
//!     or more; then it is closed: written under its last offset, and the open one removed.
//!
//!   So a room that takes one or two events per entry writes one record per entry, not one
//!   per event, and sled gains (and later removes) one key per kilobyte of events instead of
//!   one per entry (docs/performance.md, sessions 21 and 22). [`MAX_RECORD_BYTES`] splits a
//!   large burst. Keyed by the last offset, the events after an offset start at the first
//!   closed record whose key is past it (or in the open one), and trimming removes closed
//!   records from the front while their key is below the oldest retained offset. A record
//!   may hold events below that offset (a room that trims one event at a time keeps the
//!   record until all of its events left); every reader skips them. The open record always
//!   ends at the room's last offset: it is rewritten by each entry that publishes to the
//!   room, and turned into per-event records by one that publishes while the layout is off.
//!
//! A node writes the second layout only while every member reads it (the version gate of
//! `node/versions.rs`: closed records from peer protocol 4, open ones from 5): an older node
//! that installed a snapshot of them would lose the history. Both are always read, so a state
//! holding either or both (a room written before and after the gate opened, or while it was
//! closed again for a joining node) loses nothing. The room's bookkeeping
//! ([`super::RoomMeta`]) is the same in both.

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

/// Key of a closed record whose last event has offset `last`.
pub fn entry_key(room: &str, last: u64) -> Vec<u8> {
    Key::tag(keys::HISTORY_ENTRY).s(room).n(last).build()
}

/// Key of a room's open record.
pub fn open_key(room: &str) -> Vec<u8> {
    Key::tag(keys::HISTORY_OPEN).s(room).build()
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

/// A room's open record takes each entry's events in while it holds fewer event bytes than
/// this (about nine events of 110 bytes), and is closed once it holds more.
pub const GROW_BELOW_BYTES: usize = 1024;

/// An event's share of a record's size bounds.
fn event_bytes(ev: &HistoryEvent) -> usize {
    ev.payload.len() + ev.event.len()
}

/// Writes `room`'s events of one entry that are still retained (offset at or past `first`,
/// the room's oldest retained one; none if it is `None`) into its open record, or, once that
/// holds [`GROW_BELOW_BYTES`] or more, closes it: its events and the entry's go to closed
/// records of at most [`MAX_RECORD_BYTES`].
pub fn write_entry<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    first: Option<u64>,
    evs: Vec<HistoryEvent>,
) -> Result<(), StateError> {
    let key = open_key(room);
    let Some(first) = first else {
        kv.del(key);
        return Ok(());
    };
    let held: Option<Vec<HistoryEvent>> = get(kv, &key)?;
    let had_open = held.is_some();
    let mut record: Vec<HistoryEvent> = held
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.offset >= first)
        .collect();
    if let (Some(last), Some(next)) = (record.last(), evs.first()) {
        if last.offset.checked_add(1) != Some(next.offset) {
            // Not the events before this entry's (a state this version did not write):
            // closed as they are, so records stay runs of consecutive offsets.
            write_closed(kv, room, std::mem::take(&mut record))?;
        }
    }
    record.extend(evs.into_iter().filter(|e| e.offset >= first));
    if !record.is_empty() && record.iter().map(event_bytes).sum::<usize>() < GROW_BELOW_BYTES {
        return put(kv, key, &record);
    }
    // Closed (or nothing retained: `write_closed` writes nothing for no events).
    if had_open {
        kv.del(key);
    }
    write_closed(kv, room, record)
}

/// Writes `evs` (consecutive offsets) as closed records of at most [`MAX_RECORD_BYTES`] (a
/// larger single event has one of its own).
fn write_closed<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    evs: Vec<HistoryEvent>,
) -> Result<(), StateError> {
    let mut record: Vec<HistoryEvent> = Vec::new();
    let mut bytes = 0;
    for ev in evs {
        let size = event_bytes(&ev);
        if !record.is_empty() && bytes + size > MAX_RECORD_BYTES {
            write_record(kv, room, &std::mem::take(&mut record))?;
            bytes = 0;
        }
        bytes += size;
        record.push(ev);
    }
    write_record(kv, room, &record)
}

/// For an entry that publishes to `room` while the open records are off (a member reads
/// only per-event records): turns the room's open record, if any, into per-event records of
/// its events still retained (offset at or past `first`), so the open record keeps ending at
/// the room's last offset.
pub fn close_open<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    first: Option<u64>,
) -> Result<(), StateError> {
    let key = open_key(room);
    let Some(held) = get::<Vec<HistoryEvent>, _>(kv, &key)? else {
        return Ok(());
    };
    kv.del(key);
    let Some(first) = first else {
        return Ok(());
    };
    for ev in held.into_iter().filter(|e| e.offset >= first) {
        put(kv, event_key(room, ev.offset), &ev)?;
    }
    Ok(())
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
/// entry's pending events; keeps the last record of the second layout it decoded, as
/// trimming asks for consecutive offsets.
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
        } else if let Some(open) = get(kv, &open_key(self.room))? {
            self.record = open;
        }
        Ok(self
            .record
            .iter()
            .find(|e| e.offset == offset)
            .map(|e| e.ts_ms))
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
/// closed records whose last event is in it, and the open record when none is retained (it
/// ends at the room's last offset). Records ending below `from` are gone already (removed
/// when the oldest offset passed them), so those are all the records whose events are no
/// longer retained; a record that still holds a retained event stays whole.
pub fn remove_below<K: Kv + ?Sized>(
    kv: &mut K,
    room: &str,
    from: u64,
    to: Option<u64>,
    last: u64,
) -> Result<(), StateError> {
    if to.is_none() {
        kv.del(open_key(room));
    }
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

/// `room`'s stored events with offsets at or past `from`, in offset order (both layouts; the
/// open record holds the newest of the second).
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
    if let Some(open) = get::<Vec<HistoryEvent>, _>(kv, &open_key(room))? {
        out.extend(open.into_iter().filter(|e| e.offset >= from));
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
    // The open record first (the newest events), then the closed ones from the newest. A
    // record not all of whose events are wanted holds the boundary: the older ones hold none.
    let open: Option<Vec<HistoryEvent>> = get(kv, &open_key(room))?;
    let records = open.into_iter().map(Ok).chain(
        kv.scan(&entry_prefix(room), None, true)
            .map(|pair| pair.and_then(|(_, v)| dec::<Vec<HistoryEvent>>(&v))),
    );
    for evs in records {
        let evs = evs?;
        let held = evs.len();
        let before = out.len();
        out.extend(evs.into_iter().rev().take_while(|e| newer(e)));
        if out.len() - before < held {
            break;
        }
    }
    out.sort_by_key(|e| (e.index, e.pos));
    Ok(out)
}
