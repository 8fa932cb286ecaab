//! Tests of history retention (by count and by age) and of the rooms' expiry index.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::keys::{self, KeyReader};
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
    events: VecDeque<(u64, u64)>,
    last: u64,
    max: u32,
    ttl: u64,
}

impl ModelRoom {
    fn expire(&mut self, now: u64) {
        while let Some(&(_, ts)) = self.events.front() {
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
    /// than its oldest event's expiry.
    #[test]
    fn history_is_what_the_limits_say(
        entries in proptest::collection::vec(
            (0..120u64, proptest::collection::vec(
                (0..3usize, any::<bool>(), 0..5u32, prop_oneof![Just(0u64), Just(50), Just(100), Just(200)]),
                1..4,
            )),
            1..40,
        )
    ) {
        let names = ["a", "b", "c"];
        let mut sm = Sm::new();
        let mut model: BTreeMap<&str, ModelRoom> = BTreeMap::new();
        let mut now = 0;
        for (gap, cmds) in entries {
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
                    room.events.push_back((room.last, now));
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
                prop_assert_eq!(retained(&sm, name), want, "room {} at {}", name, now);
                let keys: Vec<u64> = index.iter().filter(|(_, r)| r == name).map(|e| e.0).collect();
                match room.events.front() {
                    Some(&(_, ts)) if room.ttl > 0 => {
                        prop_assert_eq!(keys.len(), 1, "room {} at {}", name, now);
                        prop_assert!(keys[0] <= ts + room.ttl && keys[0] > now);
                    }
                    _ => prop_assert!(keys.is_empty(), "room {} at {}: {:?}", name, now, keys),
                }
            }
        }
    }
}
