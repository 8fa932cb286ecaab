//! The store's memory is bounded by its cache setting, not by what it holds: a state machine
//! that keeps far more history than `store::open`'s `cache_bytes` leaves the rest on disk
//! (sled's own default, 1 GiB, kept everything in memory: a node with a large history grew
//! past 1 GB of RSS). Its own test binary, so that no other test's memory is counted.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raftcast_raft::store;
use raftcast_raft::types::{Command, Request, TypeConfig};

const MIB: u64 = 1024 * 1024;
/// Event payload size and events per entry.
const PAYLOAD: usize = 4096;
const PER_ENTRY: u64 = 50;

/// This process's resident set, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

fn entry(index: u64) -> Entry<TypeConfig> {
    let cmds: Vec<Command> = (0..PER_ENTRY)
        .map(|k| Command::Publish {
            room: format!("room-{}", (index * PER_ENTRY + k) % 2000),
            event: "trade:executed".into(),
            payload: vec![(index % 251) as u8; PAYLOAD],
            durable: true,
            history_max: 1000,
            history_ttl_ms: 0,
        })
        .collect();
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            ts_ms: 1_000 + index,
            ids: (0..PER_ENTRY).map(|k| index * PER_ENTRY + k + 1).collect(),
            cmds,
        }),
    }
}

/// Applies entries `from..to` (indexes from 1), 20 per call as openraft does under load.
async fn apply(sm: &mut store::SmStore, from: u64, to: u64) {
    for first in (from..to).step_by(20) {
        let batch: Vec<_> = (first..(first + 20).min(to)).map(entry).collect();
        sm.apply(batch).await.expect("apply");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holding_far_more_than_its_cache_stops_growing_in_memory() {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("raftcast-store-cache-{n:016x}"));
    let cache = 8 * MIB;
    let (db, _log, mut sm) = store::open(&dir, cache).expect("open store");
    // Four quarters of 64 MiB of event payloads each, all kept as history (2,000 rooms,
    // 1,000 events each at most: nothing is trimmed). Measured (debug build): with an
    // 8 MiB cache RSS grows by ~85, ~55, ~15 and ≤ 0 MiB; with sled's default cache by
    // ~150, ~45, ~55 and ~65 MiB, on and on.
    let quarter = 64 * MIB / (PAYLOAD as u64 * PER_ENTRY);
    let mut rss = vec![rss_bytes()];
    for q in 0..4 {
        apply(&mut sm, q * quarter + 1, (q + 1) * quarter + 1).await;
        rss.push(rss_bytes());
    }
    db.flush_async().await.expect("flush");
    let held: u64 = db.size_on_disk().expect("size on disk");
    drop((sm, db));
    let _ = std::fs::remove_dir_all(&dir);
    let mib = |b: u64| b as f64 / MIB as f64;
    let steps: Vec<f64> = rss.windows(2).map(|w| mib(w[1]) - mib(w[0])).collect();
    eprintln!(
        "cache {} MiB, on disk {:.0} MiB, RSS growth per 64 MiB of history: {steps:.1?} MiB",
        cache / MIB,
        mib(held)
    );
    assert!(held > 256 * MIB, "the history is on disk: {held} bytes");
    let late = mib(rss[4]) - mib(rss[2]);
    assert!(
        late < 32.0,
        "the last 128 MiB of history grew RSS by {late:.1} MiB with an {} MiB cache \
         (growth per 64 MiB: {steps:.1?} MiB): memory follows the data, not the cache",
        cache / MIB
    );
}
