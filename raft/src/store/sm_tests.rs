//! Tests of the state machine store: snapshots beside applies, crash redo, older layouts.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::state::keys::enc;
use crate::state::kv::Pair;
use openraft::{CommittedLeaderId, LogId};

#[test]
fn the_snapshot_encoding_of_borrowed_pairs_is_what_restore_reads() {
    let owned: Vec<Pair> = vec![(b"k1".to_vec(), vec![0, 1, 255]), (vec![], b"v".to_vec())];
    let view: Vec<(&[u8], &[u8])> = owned.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let bytes = enc(&view).unwrap();
    assert_eq!(bytes, enc(&owned).unwrap());
    assert_eq!(dec::<Vec<Pair>>(&bytes).unwrap(), owned);
}

fn publish(index: u64, room: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(crate::types::Request {
            ts_ms: 1_000 + index,
            cmds: vec![crate::types::Command::Publish {
                room: room.into(),
                event: "e".into(),
                payload: index.to_be_bytes().to_vec(),
                durable: true,
                history_max: 3,
                history_ttl_ms: 0,
            }],
            ids: vec![index],
        }),
    }
}

/// A fresh directory under the system's temp dir.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let n: u64 = rand::random();
    std::env::temp_dir().join(format!("raftcast-sm-{tag}-{n:016x}"))
}

/// A store on a temporary sled database, with its snapshot files in `dir`.
fn scratch_store(dir: &Path) -> (sled::Db, SmStore) {
    std::fs::create_dir_all(dir).unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let sm = SmStore::new(&db, dir).unwrap();
    (db, sm)
}

/// Opens the database at `dir` again. sled's I/O threads can hold the directory's lock
/// for a moment after the previous handle is dropped, so the open is retried until it
/// succeeds or 10 s pass.
fn reopen(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("reopen {}: {e}; retrying", dir.display());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot reopen {}: {e}", dir.display()),
        }
    }
}

fn state_of(kv: &SledKv) -> Vec<(Vec<u8>, Vec<u8>)> {
    kv.0.iter()
        .map(|p| p.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_snapshot_built_while_applies_go_on_is_the_state_at_its_index() {
    let dir = temp_dir("capture");
    let db = sled::Config::new().path(dir.join("a")).open().unwrap();
    let mut sm = SmStore::new(&db, &dir.join("a")).unwrap();
    // The same first 20 entries on a second store, as the reference state.
    let (_ref_db, mut reference) = scratch_store(&dir.join("ref"));
    let first: Vec<_> = (1..=20)
        .map(|i| publish(i, ["r1", "r2"][i as usize % 2]))
        .collect();
    sm.apply(first.clone()).await.unwrap();
    reference.apply(first).await.unwrap();
    let mut builder = sm.get_snapshot_builder().await;
    // Applies after the builder started: they change, trim and add history keys.
    for i in 21..=40 {
        sm.apply(vec![publish(i, ["r1", "r2", "r3"][i as usize % 3])])
            .await
            .unwrap();
    }
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(20));
    assert_ne!(state_of(&sm.kv), state_of(&reference.kv), "applies went on");
    // Its data is exactly the state after entry 20.
    let data: Vec<Pair> = dec(&snap.snapshot.into_inner()).unwrap();
    assert_eq!(data, state_of(&reference.kv));
    drop((sm, db));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_apply_cut_short_by_a_crash_is_whole_when_the_store_opens_again() {
    let dir = temp_dir("redo");
    let (_ref_db, mut reference) = scratch_store(&dir.join("ref"));
    let entries: Vec<_> = (1..=8).map(|i| publish(i, "r1")).collect();
    reference.apply(entries.clone()).await.unwrap();
    {
        let db = sled::Config::new().path(dir.join("a")).open().unwrap();
        let mut sm = SmStore::new(&db, &dir.join("a")).unwrap();
        sm.apply(entries[..6].to_vec()).await.unwrap();
        // Entries 7 and 8 (which trim the history and add to it) written only in part.
        let (changes, _, _) = sm.changes_of(entries[6..].to_vec()).unwrap();
        assert!(changes.len() > 3, "{changes:?}");
        sm.write(&changes, Some(2)).unwrap();
        assert_ne!(state_of(&sm.kv), state_of(&reference.kv));
        db.flush().unwrap();
    }
    let db = reopen(&dir.join("a"));
    let mut sm = SmStore::new(&db, &dir.join("a")).unwrap();
    assert_eq!(state_of(&sm.kv), state_of(&reference.kv));
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(8));
    drop((sm, db));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_installed_snapshot_is_not_undone_by_the_last_apply_when_the_store_opens() {
    let dir = temp_dir("install");
    // The snapshot: a state that applied entries to another room.
    let (_src_db, mut src) = scratch_store(&dir.join("src"));
    src.apply((1..=5).map(|i| publish(i, "other")).collect::<Vec<_>>())
        .await
        .unwrap();
    let snap = snapshot_of(&mut src).await;
    let installed = {
        let db = sled::Config::new().path(dir.join("a")).open().unwrap();
        let mut sm = SmStore::new(&db, &dir.join("a")).unwrap();
        sm.apply((1..=3).map(|i| publish(i, "r1")).collect::<Vec<_>>())
            .await
            .unwrap();
        sm.install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let installed = state_of(&sm.kv);
        // The snapshot's pairs, plus the membership it carries.
        let mut expected = state_of(&src.kv);
        expected.push((
            meta(state::meta::MEMBERSHIP),
            enc(&Some(snap.meta.last_membership.clone())).unwrap(),
        ));
        expected.sort();
        assert_eq!(installed, expected);
        installed
    };
    let db = reopen(&dir.join("a"));
    let sm = SmStore::new(&db, &dir.join("a")).unwrap();
    assert_eq!(state_of(&sm.kv), installed);
    drop((sm, db));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_kept_in_sled_by_an_older_version_moves_to_the_file() {
    let dir = temp_dir("migrate");
    let old = SnapshotFile {
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "2-42-1".into(),
        },
        data: enc(&Vec::<Pair>::new()).unwrap(),
    };
    {
        let db = sled::Config::new().path(&dir).open().unwrap();
        let snap = db.open_tree("sm_snapshot").unwrap();
        snap.insert(CURRENT, enc(&old).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let db = reopen(&dir);
    let _sm = SmStore::new(&db, &dir).unwrap();
    let moved = SnapDir::new(&dir)
        .read()
        .unwrap()
        .expect("moved to the file");
    assert_eq!(moved.meta.snapshot_id, "2-42-1");
    let snap = db.open_tree("sm_snapshot").unwrap();
    assert!(snap.get(CURRENT).unwrap().is_none(), "left in sled");
    drop(db);
    std::fs::remove_dir_all(&dir).unwrap();
}
fn socket_info() -> Vec<u8> {
    let info = crate::types::SocketInfo {
        node: 1,
        pid: "p".into(),
        user_id: "u1".into(),
        session_id: None,
        rooms: vec!["user:u1".into(), "x".into()],
    };
    enc(&info).unwrap()
}

/// Socket `a` of user `u1` in room `x`, in the layout of an older version: its record keyed
/// by sid (`K`), and a member record in each of its rooms, its own user's room included.
fn older_socket_records() -> Vec<Pair> {
    vec![
        (b"K\0\0\0\x01a".to_vec(), socket_info()),
        (
            b"R\0\0\0\x07user:u1\0\0\0\x01a".to_vec(),
            enc(&1u64).unwrap(),
        ),
        (b"R\0\0\0\x01x\0\0\0\x01a".to_vec(), enc(&1u64).unwrap()),
    ]
}

/// The same socket in this version's layout: its record keyed by user and sid, and a member
/// record in room `x` only.
fn current_socket_records() -> Vec<Pair> {
    vec![
        (b"R\0\0\0\x01x\0\0\0\x01a".to_vec(), enc(&1u64).unwrap()),
        (b"k\0\0\0\x02u1\0\0\0\x01a".to_vec(), socket_info()),
    ]
}

/// Records in the layout of older versions: a per-room count (`r`), a per-user count (`u`),
/// a node → socket index entry (`N`), a user → socket index entry (`U`) and a socket's
/// records keyed by sid.
fn legacy_and_current() -> Vec<Pair> {
    let mut pairs = vec![
        (b"r\0\0\0\x01x".to_vec(), enc(&1u64).unwrap()),
        (b"U\0\0\0\x02u1\0\0\0\x01a".to_vec(), enc(&1u64).unwrap()),
        (b"u\0\0\0\x02u1".to_vec(), enc(&1u64).unwrap()),
        (
            b"N\0\0\0\0\0\0\0\x01\0\0\0\x01a".to_vec(),
            enc(&()).unwrap(),
        ),
    ];
    pairs.extend(older_socket_records());
    pairs
}

#[test]
fn at_open_older_records_are_dropped_and_counters_recounted() {
    let dir = temp_dir("legacy");
    {
        let db = sled::Config::new().path(&dir).open().unwrap();
        let tree = db.open_tree("sm").unwrap();
        for (k, v) in legacy_and_current() {
            tree.insert(k, v).unwrap();
        }
        // Counters that drifted: 5 users where the one socket record says 1.
        tree.insert(state::apply::meta_global(b"users"), enc(&5u64).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let db = reopen(&dir);
    let sm = SmStore::new(&db, &dir).unwrap();
    let pairs = state_of(&sm.kv);
    assert!(pairs.iter().all(|(k, _)| !is_legacy(k)), "{pairs:?}");
    for p in current_socket_records() {
        assert!(pairs.contains(&p), "{p:?} missing from {pairs:?}");
    }
    let current = current_socket_records();
    for p in older_socket_records()
        .iter()
        .filter(|p| !current.contains(p))
    {
        assert!(!pairs.contains(p), "{p:?} still in {pairs:?}");
    }
    let stats = state::read::stats(&sm.kv).unwrap();
    assert_eq!((stats.unique_users, stats.room_count), (1, 2));
    assert_eq!(
        state::read::presence(&sm.kv, "u1").unwrap(),
        vec![(1, "a".to_string())]
    );
    assert_eq!(stats.connections_per_node.get(&1), Some(&1));
    drop((sm, db));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_made_by_an_older_version_installs_without_its_legacy_records() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("sm").unwrap();
    tree.insert(b"stale", b"gone".to_vec()).unwrap();
    restore(&tree, &enc(&legacy_and_current()).unwrap()).unwrap();
    assert_eq!(state_of(&SledKv(tree)), current_socket_records());
}

/// A snapshot of `sm`'s state as it is.
async fn snapshot_of(sm: &mut SmStore) -> Snapshot<TypeConfig> {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
}

/// `publish(index, room)` with proposal id `id`.
fn publish_with_id(index: u64, room: &str, id: u64) -> Entry<TypeConfig> {
    let mut e = publish(index, room);
    if let EntryPayload::Normal(req) = &mut e.payload {
        req.ids = vec![id];
    }
    e
}

#[tokio::test]
async fn kept_results_travel_with_a_snapshot_and_answer_a_retry_after_install() {
    let dir = temp_dir("dedup-install");
    let per_entry = Arc::new(AtomicBool::new(true));
    let (_src_db, src) = scratch_store(&dir.join("src"));
    let mut src = src.with_per_entry_layouts(per_entry.clone());
    let first = src.apply(vec![publish(1, "r")]).await.unwrap();
    assert_eq!(src.dedup_indexed(), 1);
    let snap = snapshot_of(&mut src).await;
    let (_db, sm) = scratch_store(&dir.join("dst"));
    let mut sm = sm.with_per_entry_layouts(per_entry);
    sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(sm.dedup_indexed(), 1, "the index is rebuilt at install");
    // The proposal of entry 1 (id 1) retried in entry 2: answered as the first time.
    let retry = sm.apply(vec![publish_with_id(2, "r", 1)]).await.unwrap();
    assert_eq!(retry, first);
    let events = crate::state::read::history(&sm.kv, "r", 0).unwrap().events;
    assert_eq!(events.len(), 1, "the retry was applied again: {events:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Offsets of the retained history of `room`.
fn offsets(sm: &SmStore, room: &str) -> Vec<u64> {
    let h = crate::state::read::history(&sm.kv, room, 0).unwrap();
    h.events.iter().map(|e| e.offset).collect()
}

#[tokio::test]
async fn history_in_both_layouts_travels_with_a_snapshot_and_trims_on_either() {
    let dir = temp_dir("history-layouts");
    let per_entry = Arc::new(AtomicBool::new(false));
    let (_src_db, src) = scratch_store(&dir.join("src"));
    let mut src = src.with_per_entry_layouts(per_entry.clone());
    // Per event while a member reads only that (entries 1-2), per entry once all read it
    // (3-4): history_max 3 keeps offsets 2-4, one per-event record and the open record of
    // 3-4.
    src.apply(vec![publish(1, "r"), publish(2, "r")])
        .await
        .unwrap();
    per_entry.store(true, Ordering::Relaxed);
    src.apply(vec![publish(3, "r"), publish(4, "r")])
        .await
        .unwrap();
    assert_eq!(offsets(&src, "r"), vec![2, 3, 4]);
    let tags: Vec<u8> = state_of(&src.kv).iter().map(|(k, _)| k[0]).collect();
    assert!(tags.contains(&b'h') && tags.contains(&b'o'), "{tags:?}");
    let snap = snapshot_of(&mut src).await;
    // Installed on a node whose gate is closed (a member joined): it reads both, and writes
    // and trims per event from there.
    let (_db, sm) = scratch_store(&dir.join("dst"));
    let mut sm = sm.with_per_entry_layouts(Arc::new(AtomicBool::new(false)));
    sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(offsets(&sm, "r"), vec![2, 3, 4]);
    sm.apply(vec![publish(5, "r"), publish(6, "r")])
        .await
        .unwrap();
    assert_eq!(offsets(&sm, "r"), vec![4, 5, 6]);
    // The open record became per-event records with the first publish; those of offsets 2
    // and 3 are gone.
    let keys: Vec<(u8, u8)> = state_of(&sm.kv)
        .iter()
        .filter(|(k, _)| matches!(k[0], b'h' | b'g' | b'o'))
        .map(|(k, _)| (k[0], k[k.len() - 1]))
        .collect();
    assert_eq!(keys, vec![(b'h', 4), (b'h', 5), (b'h', 6)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn events_of_entries_applied_before_the_switch_are_dropped_not_waited_for() {
    // What openraft re-applies inside `Raft::new`: more events than the channel holds,
    // with nobody draining it yet. The applies must finish.
    let dir = temp_dir("live");
    let (_db, sm) = scratch_store(&dir);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (mut sm, live) = sm.with_events(crate::events::EventOut::Channel(tx));
    let entries: Vec<_> = (1..=5).map(|i| publish(i, "r")).collect();
    let applied = tokio::time::timeout(std::time::Duration::from_secs(10), sm.apply(entries))
        .await
        .expect("apply waited for a channel nobody drains");
    assert_eq!(applied.unwrap().len(), 5);
    assert!(
        rx.try_recv().is_err(),
        "an event of the re-applied entries went out"
    );
    // Once the switch is set, events flow.
    live.store(true, Ordering::Release);
    sm.apply(vec![publish(6, "r")]).await.unwrap();
    match rx.try_recv() {
        Ok(Applied::Published { offset, .. }) => assert_eq!(offset, 6),
        other => panic!("expected the sixth event, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_restore_larger_than_one_batch_writes_every_pair_and_nothing_else() {
    use crate::store::snapdump::PairsEncoder;
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("sm").unwrap();
    tree.insert(b"stale", b"gone after the restore").unwrap();
    let n = RESTORE_BATCH * 2 + 7;
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..n as u64)
        .map(|i| (format!("k{i:08}").into_bytes(), i.to_le_bytes().to_vec()))
        .collect();
    let mut e = PairsEncoder::new();
    for (k, v) in &pairs {
        e.push(k, v).unwrap();
    }
    restore(&tree, &e.finish().unwrap()).unwrap();
    assert!(state_of(&SledKv(tree)) == pairs, "{n} pairs restored");
}
