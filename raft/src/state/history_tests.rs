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
/// per-entry record's last), and how many records it has.
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

/// Keys of `room`'s history records: (tag, offset the key ends with).
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
    out
}

#[test]
fn an_entry_writes_one_record_per_room_once_every_member_reads_them() {
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
    assert_eq!(records(&sm, "a"), vec![(keys::HISTORY_ENTRY, 3)]);
    assert_eq!(records(&sm, "b"), vec![(keys::HISTORY_ENTRY, 1)]);
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
    // 10 events of 2,002 bytes: three per record fit in 6 KiB.
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
    // Trimming removes whole records once all their events left, and only then.
    sm.run(2, (0..4).map(big).collect());
    assert_eq!(retained(&sm, "a"), (1..=14).collect::<Vec<_>>());
    let mut small = Sm::new();
    small.per_entry = true;
    let one = |max| publish("a", true, max, 0);
    small.run(1, vec![one(3), one(3), one(3)]);
    small.run(2, vec![one(3)]);
    // Offsets 2-4 retained; the record of 1-3 stays (it holds 2 and 3).
    assert_eq!(retained(&small, "a"), vec![2, 3, 4]);
    assert_eq!(
        records(&small, "a"),
        vec![(keys::HISTORY_ENTRY, 3), (keys::HISTORY_ENTRY, 4)]
    );
    small.run(3, vec![one(3), one(3)]);
    assert_eq!(retained(&small, "a"), vec![4, 5, 6]);
    assert_eq!(
        records(&small, "a"),
        vec![(keys::HISTORY_ENTRY, 4), (keys::HISTORY_ENTRY, 6)]
    );
}

#[test]
fn a_long_trim_in_both_layouts_leaves_only_the_records_of_retained_events() {
    let mut sm = Sm::new();
    let one = |max| publish("a", true, max, 0);
    // 40 per-event records, then 40 events in per-entry records of 4 (entries 41-80).
    sm.per_entry = false;
    for _ in 0..40 {
        sm.run(1, vec![one(100)]);
    }
    sm.per_entry = true;
    for _ in 0..10 {
        sm.run(1, vec![one(100), one(100), one(100), one(100)]);
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
            (keys::HISTORY_ENTRY, 81)
        ]
    );
    // The same in the other direction: per-entry records first, then per-event ones.
    let mut other = Sm::new();
    other.per_entry = true;
    for _ in 0..10 {
        other.run(1, vec![one(100), one(100), one(100), one(100)]);
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
