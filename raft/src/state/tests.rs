//! Unit tests of the state logic over the in-memory store.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::kv::{Kv, KvRead, MemKv, Overlay};
use super::*;
use crate::types::{Applied, Command, Request, Response};

pub(super) struct Sm {
    pub(super) kv: MemKv,
    pub(super) dedup: Dedup,
    /// Write the per-entry layouts (the version gate open).
    pub(super) per_entry: bool,
    index: u64,
    applied: Vec<Applied>,
}

impl Sm {
    pub(super) fn new() -> Self {
        let mut sm = Sm {
            kv: MemKv::default(),
            dedup: Dedup::default(),
            per_entry: true,
            index: 0,
            applied: Vec::new(),
        };
        sm.run(0, vec![Command::SetEpoch { epoch: "e1".into() }]);
        sm
    }

    pub(super) fn run(&mut self, ts_ms: u64, cmds: Vec<Command>) -> Vec<Result<Response, String>> {
        let ids = vec![0; cmds.len()];
        self.run_ids(ts_ms, cmds, ids)
    }

    pub(super) fn run_ids(
        &mut self,
        ts_ms: u64,
        cmds: Vec<Command>,
        ids: Vec<u64>,
    ) -> Vec<Result<Response, String>> {
        self.index += 1;
        let mut ov = Overlay::new(&self.kv);
        let res = apply_entry(
            &mut ov,
            &mut self.dedup,
            self.index,
            &Request { ts_ms, ids, cmds },
            &mut self.applied,
            self.per_entry,
        )
        .unwrap();
        let changes = ov.into_changes();
        self.kv.commit(changes);
        res
    }

    /// The log index of the last entry applied.
    pub(super) fn index(&self) -> u64 {
        self.index
    }

    pub(super) fn one(&mut self, ts_ms: u64, cmd: Command) -> Response {
        self.run(ts_ms, vec![cmd]).remove(0).unwrap()
    }
}

pub(super) fn publish(room: &str, durable: bool, max: u32, ttl: u64) -> Command {
    Command::Publish {
        room: room.into(),
        event: "ev".into(),
        payload: vec![1, 2, 3],
        durable,
        history_max: max,
        history_ttl_ms: ttl,
    }
}

fn open(node: u64, sid: &str, user: &str, rooms: &[&str]) -> Command {
    Command::SocketOpen {
        node,
        sid: sid.into(),
        pid: format!("pid-{sid}"),
        user_id: user.into(),
        session_id: None,
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
    }
}

fn offset(r: &Response) -> u64 {
    match r {
        Response::Published { offset, .. } => *offset,
        other => panic!("not published: {other:?}"),
    }
}

#[test]
fn offsets_are_gapless_and_volatile_does_not_advance() {
    let mut sm = Sm::new();
    let res = sm.run(
        10,
        vec![
            publish("a", true, 100, 0),
            publish("a", false, 100, 0),
            publish("b", true, 100, 0),
        ],
    );
    let offs: Vec<u64> = res.iter().map(|r| offset(r.as_ref().unwrap())).collect();
    assert_eq!(offs, vec![1, 1, 1]);
    assert_eq!(offset(&sm.one(11, publish("a", true, 100, 0))), 2);
    let h = read::history(&sm.kv, "a", 0).unwrap();
    assert_eq!(h.epoch, "e1");
    assert_eq!(h.last_offset, 2);
    assert_eq!(
        h.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(read::history(&sm.kv, "a", 1).unwrap().events.len(), 1);
    assert_eq!(
        read::room_offset(&sm.kv, "a").unwrap(),
        ("e1".to_string(), 2)
    );
    let published: Vec<(bool, u64)> = sm
        .applied
        .iter()
        .filter_map(|a| match a {
            Applied::Published {
                durable, offset, ..
            } => Some((*durable, *offset)),
            _ => None,
        })
        .collect();
    assert_eq!(published, vec![(true, 1), (false, 1), (true, 1), (true, 2)]);
}

#[test]
fn history_trimmed_by_size_and_ttl() {
    let mut sm = Sm::new();
    for i in 0..10 {
        sm.one(100 + i, publish("a", true, 3, 0));
    }
    let h = read::history(&sm.kv, "a", 0).unwrap();
    assert_eq!(h.first_retained, Some(8));
    assert_eq!(
        h.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );

    // TTL: events at t=1000 and t=1500 with ttl 1000.
    sm.one(1000, publish("t", true, 100, 1000));
    sm.one(1500, publish("t", true, 100, 1000));
    assert_eq!(read::history(&sm.kv, "t", 0).unwrap().events.len(), 2);
    // An unrelated entry at t=2100 expires the first via the expiry index.
    sm.one(2100, publish("other", false, 100, 0));
    let h = read::history(&sm.kv, "t", 0).unwrap();
    assert_eq!(h.first_retained, Some(2));
    assert_eq!(h.events.len(), 1);
    sm.one(2600, publish("other", false, 100, 0));
    let h = read::history(&sm.kv, "t", 0).unwrap();
    assert_eq!(
        (h.first_retained, h.last_offset, h.events.len()),
        (None, 2, 0)
    );
    // The next durable event continues the offsets.
    assert_eq!(offset(&sm.one(2700, publish("t", true, 100, 1000))), 3);
    // A clock going back at the leader does not move "now" back.
    sm.one(10, publish("other", false, 100, 0));
    assert_eq!(read::last_ts(&sm.kv).unwrap(), 2700);
}

#[test]
fn sessions_expire_by_entry_ts_and_revoke_emits() {
    let mut sm = Sm::new();
    sm.one(
        100,
        Command::CreateSession {
            session_id: "s1".into(),
            user_id: "u1".into(),
            expires_at_ms: 1000,
        },
    );
    sm.one(
        100,
        Command::CreateSession {
            session_id: "s2".into(),
            user_id: "u2".into(),
            expires_at_ms: 5000,
        },
    );
    assert_eq!(read::session(&sm.kv, "s1").unwrap().unwrap().user_id, "u1");
    sm.one(1000, publish("x", false, 1, 0));
    assert!(read::session(&sm.kv, "s1").unwrap().is_none());
    sm.one(
        1001,
        Command::RevokeSession {
            session_id: "s2".into(),
        },
    );
    assert!(read::session(&sm.kv, "s2").unwrap().is_none());
    assert!(sm.applied.contains(&Applied::SessionRevoked {
        session_id: "s2".into(),
        user_id: "u2".into()
    }));
}

#[test]
fn sockets_join_leave_close_recover_purge() {
    let mut sm = Sm::new();
    sm.one(100, open(1, "a", "u1", &["user:u1"]));
    sm.one(100, open(2, "b", "u1", &["user:u1", "r"]));
    sm.one(100, open(2, "c", "u2", &[]));
    sm.one(
        100,
        Command::Join {
            sid: "c".into(),
            rooms: vec!["r".into(), "r".into()],
        },
    );
    assert!(sm.run(
        100,
        vec![Command::Join {
            sid: "zz".into(),
            rooms: vec![]
        }]
    )[0]
    .is_err());
    let mut members = read::room_members(&sm.kv, "r").unwrap();
    members.sort();
    assert_eq!(members, vec![(2, "b".to_string()), (2, "c".to_string())]);
    let st = read::stats(&sm.kv).unwrap();
    assert_eq!(st.connections_per_node.get(&1), Some(&1));
    assert_eq!(st.connections_per_node.get(&2), Some(&2));
    // Rooms: r, user:u1, and user:u2 (c is in its user's room though it named none).
    assert_eq!((st.unique_users, st.room_count), (2, 3));
    assert_eq!(read::presence(&sm.kv, "u1").unwrap().len(), 2);

    sm.one(
        101,
        Command::Leave {
            sid: "c".into(),
            rooms: vec!["r".into()],
        },
    );
    assert_eq!(
        read::room_members(&sm.kv, "r").unwrap(),
        vec![(2, "b".to_string())]
    );

    // Close with recovery, recover on another node.
    sm.one(
        200,
        Command::SocketClose {
            sid: "a".into(),
            recoverable_for_ms: 1000,
        },
    );
    assert!(read::socket(&sm.kv, "a").unwrap().is_none());
    let r = sm.one(
        300,
        Command::Recover {
            pid: "pid-a".into(),
            new_sid: "a2".into(),
            node: 3,
        },
    );
    assert_eq!(
        r,
        Response::Recovered {
            user_id: "u1".into(),
            session_id: None,
            rooms: vec!["user:u1".into()],
            old_sid: "a".into()
        }
    );
    assert_eq!(read::socket(&sm.kv, "a2").unwrap().unwrap().node, 3);
    // A second recover of the same pid fails.
    assert_eq!(
        sm.one(
            300,
            Command::Recover {
                pid: "pid-a".into(),
                new_sid: "a3".into(),
                node: 3
            }
        ),
        Response::NotRecovered
    );
    // Expired records do not recover.
    sm.one(
        400,
        Command::SocketClose {
            sid: "a2".into(),
            recoverable_for_ms: 100,
        },
    );
    assert_eq!(
        sm.one(
            600,
            Command::Recover {
                pid: "pid-a".into(),
                new_sid: "a4".into(),
                node: 3
            }
        ),
        Response::NotRecovered
    );
    // Close without recovery forgets.
    sm.one(
        700,
        Command::SocketClose {
            sid: "c".into(),
            recoverable_for_ms: 0,
        },
    );
    assert_eq!(
        sm.one(
            700,
            Command::Recover {
                pid: "pid-c".into(),
                new_sid: "c2".into(),
                node: 3
            }
        ),
        Response::NotRecovered
    );

    // Purge node 2: its sockets are detached and recoverable elsewhere.
    sm.one(
        800,
        Command::PurgeNode {
            node: 2,
            recoverable_for_ms: 1000,
        },
    );
    assert!(sm.applied.contains(&Applied::SocketsDetached {
        node: 2,
        sids: vec!["b".into()]
    }));
    assert!(read::room_members(&sm.kv, "r").unwrap().is_empty());
    let st = read::stats(&sm.kv).unwrap();
    assert!(st.connections_per_node.is_empty());
    assert_eq!((st.unique_users, st.room_count), (0, 0));
    assert!(matches!(
        sm.one(
            900,
            Command::Recover {
                pid: "pid-b".into(),
                new_sid: "b2".into(),
                node: 1
            }
        ),
        Response::Recovered { .. }
    ));
    sm.one(
        900,
        Command::NodeStarted {
            node: 1,
            recoverable_for_ms: 0,
        },
    );
    assert!(read::socket(&sm.kv, "b2").unwrap().is_none());
}

#[test]
fn presence_is_the_user_room_which_a_socket_cannot_leave() {
    let mut sm = Sm::new();
    // Opened without naming its user's room: it is in it all the same.
    sm.one(100, open(1, "a", "u1", &["r"]));
    sm.one(100, open(2, "b", "u1", &[]));
    let mut p = read::presence(&sm.kv, "u1").unwrap();
    p.sort();
    assert_eq!(p, vec![(1, "a".to_string()), (2, "b".to_string())]);
    let info = read::socket(&sm.kv, "a").unwrap().unwrap();
    assert_eq!(info.rooms, vec!["user:u1".to_string(), "r".to_string()]);
    // Leaving it is ignored; leaving another room is not.
    sm.one(
        101,
        Command::Leave {
            sid: "a".into(),
            rooms: vec!["user:u1".into(), "r".into()],
        },
    );
    assert_eq!(read::presence(&sm.kv, "u1").unwrap().len(), 2);
    assert!(read::room_members(&sm.kv, "r").unwrap().is_empty());
    assert_eq!(read::stats(&sm.kv).unwrap().unique_users, 1);
    // The user counts until its last socket closes.
    for (sid, users) in [("a", 1), ("b", 0)] {
        sm.one(
            102,
            Command::SocketClose {
                sid: sid.into(),
                recoverable_for_ms: 0,
            },
        );
        assert_eq!(read::stats(&sm.kv).unwrap().unique_users, users);
    }
    assert!(read::presence(&sm.kv, "u1").unwrap().is_empty());
    assert_eq!(read::stats(&sm.kv).unwrap().room_count, 0);
}

#[test]
fn recover_refused_when_session_revoked() {
    let mut sm = Sm::new();
    sm.one(
        1,
        Command::CreateSession {
            session_id: "s".into(),
            user_id: "u".into(),
            expires_at_ms: 10_000,
        },
    );
    sm.one(
        1,
        Command::SocketOpen {
            node: 1,
            sid: "a".into(),
            pid: "p".into(),
            user_id: "u".into(),
            session_id: Some("s".into()),
            rooms: vec![],
        },
    );
    sm.one(
        2,
        Command::SocketClose {
            sid: "a".into(),
            recoverable_for_ms: 1000,
        },
    );
    sm.one(
        3,
        Command::RevokeSession {
            session_id: "s".into(),
        },
    );
    assert_eq!(
        sm.one(
            4,
            Command::Recover {
                pid: "p".into(),
                new_sid: "b".into(),
                node: 1
            }
        ),
        Response::NotRecovered
    );
}

#[test]
fn events_after_index_in_log_order() {
    let mut sm = Sm::new();
    sm.run(
        1,
        vec![publish("a", true, 10, 0), publish("b", true, 10, 0)],
    ); // index 2
    sm.one(2, publish("a", true, 10, 0)); // index 3
    sm.one(3, publish("b", true, 10, 0)); // index 4
    let rooms = vec!["a".to_string(), "b".to_string()];
    let evs = read::events_after(&sm.kv, &rooms, 2, 0).unwrap();
    let got: Vec<(String, u64, u32)> = evs
        .iter()
        .map(|(r, e)| (r.clone(), e.index, e.pos))
        .collect();
    assert_eq!(
        got,
        vec![("b".into(), 2, 1), ("a".into(), 3, 0), ("b".into(), 4, 0)]
    );
    assert_eq!(read::events_after(&sm.kv, &rooms, 0, 0).unwrap().len(), 4);
}

#[test]
fn epoch_set_once() {
    let mut sm = Sm::new();
    sm.one(1, Command::SetEpoch { epoch: "e2".into() });
    assert_eq!(read::epoch(&sm.kv).unwrap().as_deref(), Some("e1"));
}

#[test]
fn snapshot_restore_gives_identical_state() {
    let mut sm = Sm::new();
    sm.one(1, open(1, "a", "u1", &["r1", "r2"]));
    for i in 0..20 {
        sm.one(10 + i, publish("r1", true, 5, 50));
    }
    sm.one(
        100,
        Command::SocketClose {
            sid: "a".into(),
            recoverable_for_ms: 500,
        },
    );
    let dumped = dump(&sm.kv).unwrap();
    let bytes = keys::enc(&dumped).unwrap();
    let pairs: Vec<kv::Pair> = keys::dec(&bytes).unwrap();
    let mut restored = MemKv::default();
    restored.map.extend(pairs);
    assert_eq!(restored, sm.kv);

    // Both continue identically.
    let mut other = Sm {
        dedup: Dedup::load(&restored).unwrap(),
        kv: restored,
        per_entry: sm.per_entry,
        index: sm.index,
        applied: vec![],
    };
    for s in [&mut sm, &mut other] {
        s.one(120, publish("r1", true, 5, 50));
        s.one(
            130,
            Command::Recover {
                pid: "pid-a".into(),
                new_sid: "b".into(),
                node: 2,
            },
        );
    }
    assert_eq!(sm.kv, other.kv);
}

/// What the counters must say, worked out from the socket records alone.
fn counters_from_sockets(kv: &MemKv) -> (BTreeMap<u64, u64>, u64, u64) {
    let mut per_node = BTreeMap::new();
    let mut users = BTreeSet::new();
    let mut rooms = BTreeSet::new();
    for pair in kv.scan(&[keys::SOCKET], None, false) {
        let (_, v) = pair.unwrap();
        let info: crate::types::SocketInfo = keys::dec(&v).unwrap();
        *per_node.entry(info.node).or_insert(0) += 1;
        users.insert(info.user_id);
        rooms.extend(info.rooms);
    }
    (per_node, users.len() as u64, rooms.len() as u64)
}

/// Socket `sN` belongs to user `u(N % 4)`: a socket id is one user's (the server draws them
/// at random), which the records keyed by user rely on.
fn user_of(sid: &str) -> String {
    let n: u32 = sid.trim_start_matches('s').parse().unwrap_or(0);
    format!("u{}", n % 4)
}

/// Membership commands in this version's forms: the socket's user named.
fn membership_cmd() -> impl Strategy<Value = Command> {
    let sid = (0..12u8).prop_map(|i| format!("s{i:02}"));
    let room =
        prop_oneof![Just("r1"), Just("r2"), Just("big"), Just("user:u1")].prop_map(String::from);
    let rooms = proptest::collection::vec(room, 0..3);
    prop_oneof![
        4 => (1..4u64, sid.clone(), rooms.clone()).prop_map(|(node, sid, rooms)| {
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            open(node, &sid, &user_of(&sid), &rooms)
        }),
        2 => (sid.clone(), rooms.clone()).prop_map(|(sid, rooms)| Command::JoinOf {
            user_id: user_of(&sid),
            sid,
            rooms,
        }),
        2 => (sid.clone(), rooms).prop_map(|(sid, rooms)| Command::LeaveOf {
            user_id: user_of(&sid),
            sid,
            rooms,
        }),
        2 => (sid, 0..2u64).prop_map(|(sid, r)| Command::SocketCloseOf {
            user_id: user_of(&sid),
            sid,
            recoverable_for_ms: r * 1000,
        }),
        1 => (1..4u64).prop_map(|node| Command::PurgeNode {
            node,
            recoverable_for_ms: 0,
        }),
        1 => (1..4u64).prop_map(|node| Command::NodeStarted {
            node,
            recoverable_for_ms: 1000,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// The per-node connection counts and the distinct user and room counts, which the state
    /// keeps without a count record per user or room, always match the socket records,
    /// whatever the commands, in either form, and however they are grouped into entries
    /// (several removals from one room in one entry are the case the overlay makes
    /// interesting; `user:u1` is joined by other users' sockets too).
    #[test]
    fn counters_match_the_socket_records(
        entries in proptest::collection::vec(
            proptest::collection::vec((membership_cmd(), any::<bool>()), 1..8), 1..25)
    ) {
        let mut sm = Sm::new();
        for (i, cmds) in entries.into_iter().enumerate() {
            let cmds = cmds
                .into_iter()
                .map(|(c, older)| if older { c.compatible() } else { c })
                .collect();
            sm.run(100 + i as u64, cmds);
            let st = read::stats(&sm.kv).unwrap();
            let (per_node, users, rooms) = counters_from_sockets(&sm.kv);
            prop_assert_eq!(&st.connections_per_node, &per_node);
            prop_assert_eq!(st.unique_users, users);
            prop_assert_eq!(st.room_count, rooms);
            prop_assert!(sm.kv.map.keys().all(|k| !keys::is_legacy(k)));
        }
    }

    /// The commands naming a socket's user and their older forms (which find the socket by
    /// a scan) leave the same state and give the same results.
    #[test]
    fn the_older_forms_have_the_same_effect(
        entries in proptest::collection::vec(proptest::collection::vec(membership_cmd(), 1..8), 1..25)
    ) {
        let (mut new, mut old) = (Sm::new(), Sm::new());
        for (i, cmds) in entries.into_iter().enumerate() {
            let older = cmds.iter().cloned().map(Command::compatible).collect();
            let ts = 100 + i as u64;
            prop_assert_eq!(new.run(ts, cmds), old.run(ts, older));
            prop_assert_eq!(&new.kv, &old.kv);
        }
    }

    /// A user's room lists the user's sockets and the other sockets that joined it, as any
    /// room lists its members, and presence is that list.
    #[test]
    fn a_users_room_lists_its_sockets_and_its_guests(
        entries in proptest::collection::vec(proptest::collection::vec(membership_cmd(), 1..8), 1..25)
    ) {
        let mut sm = Sm::new();
        for (i, cmds) in entries.into_iter().enumerate() {
            sm.run(100 + i as u64, cmds);
        }
        for user in ["u0", "u1", "u2", "u3"] {
            let mut want = Vec::new();
            for pair in sm.kv.scan(&[keys::SOCKET], None, false) {
                let (k, v) = pair.unwrap();
                let mut r = keys::KeyReader::new(&k);
                r.s().unwrap();
                let sid = r.s().unwrap();
                let info: crate::types::SocketInfo = keys::dec(&v).unwrap();
                if info.rooms.contains(&crate::types::user_room(user)) {
                    want.push((info.node, sid));
                }
            }
            want.sort_by(|a, b| a.1.cmp(&b.1));
            prop_assert_eq!(read::presence(&sm.kv, user).unwrap(), want.clone());
            prop_assert_eq!(read::room_members(&sm.kv, &crate::types::user_room(user)).unwrap(), want);
        }
    }
}

#[test]
fn recount_corrects_drifted_counters_and_nothing_else() {
    let mut sm = Sm::new();
    sm.one(1, open(1, "a", "u1", &["user:u1", "r"]));
    sm.one(1, open(2, "b", "u2", &["user:u2", "r"]));
    let good = sm.kv.clone();
    let mut ov = Overlay::new(&sm.kv);
    assert!(
        !sockets::recount(&mut ov).unwrap(),
        "exact counters are left alone"
    );
    assert!(ov.into_changes().is_empty());

    // Drift every kind of counter, including a count for a node with no sockets.
    let mut drifted = good.clone();
    drifted.put(apply::meta_global(b"users"), keys::enc(&7u64).unwrap());
    drifted.del(apply::meta_global(b"rooms"));
    drifted.put(
        keys::Key::tag(keys::NODE_COUNT).n(1).build(),
        keys::enc(&4u64).unwrap(),
    );
    drifted.put(
        keys::Key::tag(keys::NODE_COUNT).n(9).build(),
        keys::enc(&2u64).unwrap(),
    );
    let mut ov = Overlay::new(&drifted);
    assert!(sockets::recount(&mut ov).unwrap());
    let changes = ov.into_changes();
    drifted.commit(changes);
    assert_eq!(drifted, good);
}
