//! Tests of history retention (by count and by age) and of the rooms' expiry index.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::keys::{self, Key, KeyReader};
use super::kv::KvRead;
use super::read;
use super::tests::{publish, Sm};

/// The rooms' expiry index: (time, room) of every `T` key.
fn expiry_index(sm: &Sm) -> Vec<(u64, String)> {
    sm.kv
        .scan(&[keys::ROOM_EXP], None, false)
        .map(|pair| {
            let (k, _) = pair.unwrap();
            let mut r = KeyReader::new(&k);
            (r.n().unwrap(), r.s().unwrap())
        })
        .collect()
}

/// The lowest offset that ends a history record of `room` (a per-event record's offset, a
/// record's last), and how many records it has.
fn stored(sm: &Sm, room: &str) -> (Option<u64>, usize) {
    let records = records(sm, room);
    (records.iter().map(|r| r.1).min(), records.len())
}

fn retained(sm: &Sm, room: &str) -> Vec<u64> {
    let h = read::history(&sm.kv, room, 0).unwrap();
    h.events.iter().map(|e| e.offset).collect()
}

#[test]
fn a_full_room_keeps_its_expiry_key_while_it_is_ahead() {
    let mut sm = Sm::new();
    for t in 100..110 {
        sm.one(t, publish("a", true, 3, 1000));
        // The first event's expiry stays indexed while the room trims by count: a publish
        // to a full room does not move the room's key.
        assert_eq!(expiry_index(&sm), vec![(1100, "a".to_string())], "at {t}");
    }
    assert_eq!(retained(&sm, "a"), vec![8, 9, 10]);
    // When that time comes, garbage collection finds no event expired yet (the oldest is
    // from t=107) and indexes the real expiry of the oldest.
    sm.one(1100, publish("other", false, 1, 0));
    assert_eq!(retained(&sm, "a"), vec![8, 9, 10]);
    assert_eq!(expiry_index(&sm), vec![(1107, "a".to_string())]);
    sm.one(1108, publish("other", false, 1, 0));
    assert_eq!(retained(&sm, "a"), vec![10]);
    assert_eq!(expiry_index(&sm), vec![(1109, "a".to_string())]);
    // No TTL: no key.
    sm.one(1300, publish("a", true, 3, 0));
    assert_eq!(retained(&sm, "a"), vec![11]);
    assert_eq!(expiry_index(&sm), vec![]);
}

#[test]
fn a_shorter_ttl_trims_at_once() {
    let mut sm = Sm::new();
    sm.one(0, publish("a", true, 3, 1000));
    sm.one(450, publish("a", true, 3, 1000));
    assert_eq!(expiry_index(&sm), vec![(1000, "a".to_string())]);
    // Under the new TTL the event from t=0 expired at t=100, long before its indexed time.
    sm.one(500, publish("a", true, 3, 100));
    assert_eq!(retained(&sm, "a"), vec![2, 3]);
    assert_eq!(expiry_index(&sm), vec![(550, "a".to_string())]);
}

/// One room of the model: what must be retained after each entry.
#[derive(Default)]
struct ModelRoom {
    /// (offset, timestamp, log index) of each retained event.
    events: VecDeque<(u64, u64, u64)>,
    last: u64,
    max: u32,
    ttl: u64,
}

impl ModelRoom {
    fn expire(&mut self, now: u64) {
        while let Some(&(_, ts, _)) = self.events.front() {
            if self.ttl > 0 && ts + self.ttl <= now {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the publishes, limits and gaps in time, a room retains exactly its last
    /// `max` durable events that are younger than its TTL (both as given by its last durable
    /// publish), and every room with a retained event and a TTL has one expiry key, no later
    /// than its oldest event's expiry. So in either history layout, and with the layout
    /// changing between entries (the version gate opening and closing): reads find exactly
    /// the retained events, from any offset or log position, and no record outlives the
    /// events it holds.
    #[test]
    fn history_is_what_the_limits_say(
        entries in proptest::collection::vec(
            (0..120u64, any::<bool>(), proptest::collection::vec(
                (0..3usize, any::<bool>(), 0..5u32, prop_oneof![Just(0u64), Just(50), Just(100), Just(200)]),
                1..6,
            )),
            1..40,
        )
    ) {
        let names = ["a", "b", "c"];
        let mut sm = Sm::new();
        let mut model: BTreeMap<&str, ModelRoom> = BTreeMap::new();
        let mut now = 0;
        for (gap, per_entry, cmds) in entries {
            sm.per_entry = per_entry;
            now += gap;
            for room in model.values_mut() {
                room.expire(now);
            }
            for &(r, durable, max, ttl) in &cmds {
                if durable {
                    let room = model.entry(names[r]).or_default();
                    room.last += 1;
                    room.max = max;
                    room.ttl = ttl;
                    room.events.push_back((room.last, now, sm.index() + 1));
                    while room.events.len() > max as usize {
                        room.events.pop_front();
                    }
                    room.expire(now);
                }
            }
            sm.run(now, cmds.iter().map(|&(r, d, max, ttl)| publish(names[r], d, max, ttl)).collect());
            let index = expiry_index(&sm);
            for (name, room) in &model {
                let want: Vec<u64> = room.events.iter().map(|e| e.0).collect();
                prop_assert_eq!(retained(&sm, name), want.clone(), "room {} at {}", name, now);
                for after in [0, 1, room.last.saturating_sub(2), room.last] {
                    let got: Vec<u64> = read::history(&sm.kv, name, after).unwrap().events.iter().map(|e| e.offset).collect();
                    let want_after: Vec<u64> = want.iter().copied().filter(|o| *o > after).collect();
                    prop_assert_eq!(got, want_after, "room {} after offset {}", name, after);
                }
                for cut in [0, sm.index().saturating_sub(3), sm.index().saturating_sub(1)] {
                    let got: Vec<u64> = read::events_after(&sm.kv, &[name.to_string()], cut, u32::MAX)
                        .unwrap().iter().map(|(_, e)| e.offset).collect();
                    let want_cut: Vec<u64> = room.events.iter().filter(|e| e.2 > cut).map(|e| e.0).collect();
                    prop_assert_eq!(got, want_cut, "room {} after entry {}", name, cut);
                }
                let (lowest, records) = stored(&sm, name);
                match room.events.front() {
                    Some(&(first, _, _)) => prop_assert!(lowest.is_none_or(|l| l >= first), "room {}: a record wholly below offset {}", name, first),
                    None => prop_assert_eq!(records, 0, "room {}: records without retained events", name),
                }
                let keys: Vec<u64> = index.iter().filter(|(_, r)| r == name).map(|e| e.0).collect();
                match room.events.front() {
                    Some(&(_, ts, _)) if room.ttl > 0 => {
                        prop_assert_eq!(keys.len(), 1, "room {} at {}", name, now);
                        prop_assert!(keys[0] <= ts + room.ttl && keys[0] > now);
                    }
                    _ => prop_assert!(keys.is_empty(), "room {} at {}: {:?}", name, now, keys),
                }
            }
        }
    }
}

/// `room`'s history records: (tag, offset of the last event; the key ends with it but for
/// the open record's).
fn records(sm: &Sm, room: &str) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    for tag in [keys::HISTORY, keys::HISTORY_ENTRY] {
        for pair in sm.kv.scan(&Key::tag(tag).s(room).build(), None, false) {
            let (k, _) = pair.unwrap();
            let mut r = KeyReader::new(&k);
            r.s().unwrap();
            out.push((tag, r.n().unwrap()));
        }
    }
    if let Some(open) = open_offsets(sm, room) {
        out.push((keys::HISTORY_OPEN, *open.last().unwrap()));
    }
    out
}

/// The offsets of the events in `room`'s open record, if it has one.
fn open_offsets(sm: &Sm, room: &str) -> Option<Vec<u64>> {
    let v = sm.kv.get(&super::history::open_key(room)).unwrap()?;
    let evs: Vec<crate::types::HistoryEvent> = keys::dec(&v).unwrap();
    Some(evs.iter().map(|e| e.offset).collect())
}

#[test]
fn an_entry_writes_one_record_per_room_once_every_member_reads_it() {
    let cmds = || {
        vec![
            publish("a", true, 10, 0),
            publish("a", true, 10, 0),
            publish("b", true, 10, 0),
            publish("a", true, 10, 0),
        ]
    };
    let mut sm = Sm::new();
    sm.per_entry = true;
    sm.run(1, cmds());
    assert_eq!(records(&sm, "a"), vec![(keys::HISTORY_OPEN, 3)]);
    assert_eq!(records(&sm, "b"), vec![(keys::HISTORY_OPEN, 1)]);
    // While a member reads only the older layout: one record per event.
    let mut older = Sm::new();
    older.per_entry = false;
    older.run(1, cmds());
    let h = keys::HISTORY;
    assert_eq!(records(&older, "a"), vec![(h, 1), (h, 2), (h, 3)]);
    // Both read the same.
    assert_eq!(retained(&sm, "a"), retained(&older, "a"));
    assert_eq!(
        read::history(&sm.kv, "a", 1).unwrap().events,
        read::history(&older.kv, "a", 1).unwrap().events
    );
}

#[test]
fn a_large_burst_is_split_into_bounded_records() {
    let mut sm = Sm::new();
    sm.per_entry = true;
    let big = |_| crate::types::Command::Publish {
        room: "a".into(),
        event: "ev".into(),
        payload: vec![7; 2_000],
        durable: true,
        history_max: 100,
        history_ttl_ms: 0,
    };
    sm.run(1, (0..10).map(big).collect());
    // 10 events of 2,002 bytes: closed at once (past GROW_BELOW_BYTES), three per record
    // (6 KiB).
    assert_eq!(
        records(&sm, "a"),
        vec![
            (keys::HISTORY_ENTRY, 3),
            (keys::HISTORY_ENTRY, 6),
            (keys::HISTORY_ENTRY, 9),
            (keys::HISTORY_ENTRY, 10)
        ]
    );
    assert_eq!(retained(&sm, "a"), (1..=10).collect::<Vec<_>>());
    // The next burst has records of its own.
    sm.run(2, (0..4).map(big).collect());
    assert_eq!(retained(&sm, "a"), (1..=14).collect::<Vec<_>>());
    let ends: Vec<u64> = records(&sm, "a").iter().map(|r| r.1).collect();
    assert_eq!(ends, vec![3, 6, 9, 10, 13, 14]);
}

/// A durable publish of `room` whose payload has `bytes` bytes.
fn sized(room: &str, max: u32, bytes: usize) -> crate::types::Command {
    crate::types::Command::Publish {
        room: room.into(),
        event: "ev".into(),
        payload: vec![7; bytes],
        durable: true,
        history_max: max,
        history_ttl_ms: 0,
    }
}

/// The offsets of the events a closed record of `room` ending at `last` holds.
fn record_offsets(sm: &Sm, room: &str, last: u64) -> Vec<u64> {
    let v = sm
        .kv
        .get(&super::history::entry_key(room, last))
        .unwrap()
        .unwrap();
    let evs: Vec<crate::types::HistoryEvent> = keys::dec(&v).unwrap();
    evs.iter().map(|e| e.offset).collect()
}

#[test]
fn a_room_with_few_events_per_entry_grows_its_open_record_up_to_a_bound() {
    let (g, o) = (keys::HISTORY_ENTRY, keys::HISTORY_OPEN);
    let mut sm = Sm::new();
    sm.per_entry = true;
    let one = |max| publish("a", true, max, 0);
    sm.run(1, vec![one(3), one(3), one(3)]);
    assert_eq!(records(&sm, "a"), vec![(o, 3)]);
    sm.run(2, vec![one(3)]);
    // Offsets 2-4 retained, in the open record; offset 1 left it.
    assert_eq!(retained(&sm, "a"), vec![2, 3, 4]);
    assert_eq!(open_offsets(&sm, "a"), Some(vec![2, 3, 4]));
    sm.run(3, vec![one(3), one(3)]);
    assert_eq!(retained(&sm, "a"), vec![4, 5, 6]);
    assert_eq!(records(&sm, "a"), vec![(o, 6)]);
    assert_eq!(open_offsets(&sm, "a"), Some(vec![4, 5, 6]));
    // It takes more events only while it holds fewer than GROW_BELOW_BYTES: events of 302
    // bytes (payload and name), one per entry, grow it to four (906 bytes before the
    // fourth), which closes it; the fifth opens the next.
    assert_eq!(super::history::GROW_BELOW_BYTES, 1024);
    let mut big = Sm::new();
    big.per_entry = true;
    for _ in 0..6 {
        big.run(1, vec![sized("a", 100, 300)]);
    }
    assert_eq!(records(&big, "a"), vec![(g, 4), (o, 6)]);
    assert_eq!(record_offsets(&big, "a", 4), vec![1, 2, 3, 4]);
    assert_eq!(open_offsets(&big, "a"), Some(vec![5, 6]));
    assert_eq!(retained(&big, "a"), (1..=6).collect::<Vec<_>>());
    assert_eq!(
        read::history(&big.kv, "a", 3).unwrap().events,
        read::history(&big.kv, "a", 0).unwrap().events[3..].to_vec()
    );
    // Trimmed while it grows: the closed record goes once all of its events left.
    big.run(1, vec![sized("a", 2, 300)]);
    assert_eq!(retained(&big, "a"), vec![6, 7]);
    assert_eq!(records(&big, "a"), vec![(o, 7)]);
    assert_eq!(open_offsets(&big, "a"), Some(vec![6, 7]));
    // Nothing retained (history 0): no record left.
    big.run(1, vec![sized("a", 0, 300)]);
    assert_eq!(retained(&big, "a"), Vec::<u64>::new());
    assert_eq!(records(&big, "a"), vec![]);
}

#[test]
fn an_entry_in_per_event_records_turns_the_open_record_into_them() {
    let (h, o) = (keys::HISTORY, keys::HISTORY_OPEN);
    let one = || publish("a", true, 10, 0);
    let mut sm = Sm::new();
    sm.per_entry = true;
    sm.run(1, vec![one(), one(), one()]);
    assert_eq!(records(&sm, "a"), vec![(o, 3)]);
    let before = read::history(&sm.kv, "a", 0).unwrap().events;
    // A member that reads only per-event records joined: the next entry writes those, and
    // the open record becomes per-event records too (it would no longer end at the room's
    // last offset).
    sm.per_entry = false;
    sm.run(2, vec![one()]);
    assert_eq!(records(&sm, "a"), vec![(h, 1), (h, 2), (h, 3), (h, 4)]);
    let after = read::history(&sm.kv, "a", 0).unwrap().events;
    assert_eq!(after[..3], before[..]);
    assert_eq!(retained(&sm, "a"), vec![1, 2, 3, 4]);
    // And back: a new open record after them.
    sm.per_entry = true;
    sm.run(3, vec![one()]);
    assert_eq!(
        records(&sm, "a"),
        vec![(h, 1), (h, 2), (h, 3), (h, 4), (o, 5)]
    );
    assert_eq!(retained(&sm, "a"), vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_long_trim_in_both_layouts_leaves_only_the_records_of_retained_events() {
    let mut sm = Sm::new();
    let one = |max| publish("a", true, max, 0);
    // Events of 302 bytes: an entry of four is past GROW_BELOW_BYTES, a closed record.
    let four = || vec![sized("a", 100, 300); 4];
    // 40 per-event records, then 40 events in per-entry records of 4 (entries 41-80).
    sm.per_entry = false;
    for _ in 0..40 {
        sm.run(1, vec![one(100)]);
    }
    sm.per_entry = true;
    for _ in 0..10 {
        sm.run(1, four());
    }
    assert_eq!(records(&sm, "a").len(), 50);
    // A smaller limit trims 75 events at once (past the per-key bound: a scan).
    sm.run(1, vec![one(6)]);
    assert_eq!(retained(&sm, "a"), (76..=81).collect::<Vec<_>>());
    assert_eq!(
        records(&sm, "a"),
        vec![
            (keys::HISTORY_ENTRY, 76),
            (keys::HISTORY_ENTRY, 80),
            (keys::HISTORY_OPEN, 81)
        ]
    );
    // The same in the other direction: per-entry records first, then per-event ones.
    let mut other = Sm::new();
    other.per_entry = true;
    for _ in 0..10 {
        other.run(1, four());
    }
    other.per_entry = false;
    for _ in 0..40 {
        other.run(1, vec![one(100)]);
    }
    other.run(1, vec![one(3)]);
    assert_eq!(retained(&other, "a"), vec![79, 80, 81]);
    let h = keys::HISTORY;
    assert_eq!(records(&other, "a"), vec![(h, 79), (h, 80), (h, 81)]);
}
