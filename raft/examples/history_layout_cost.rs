//! What a node's state machine spends per durable publish in each history layout (one record
//! per event, or records of a room's consecutive events: `state/history.rs`), on a sled
//! state, with the rooms full (every publish also trims the oldest event) or filling. Shapes:
//! single emits (one publish per entry over 100 rooms), requests of 50 and of 200 (50 or 200
//! publishes per entry over 100 rooms), with rooms of 100 or 1,000 events (the server's
//! default). The layouts alternate, three rounds each, in one process; the rooms keep events for
//! the server's default 24 h. Run with
//! `cargo run --release -p raftcast-raft --example history_layout_cost` (`ONLY=<part of a
//! shape's name>` runs the shapes whose name holds it); the figures are in
//! docs/performance.md ("Session 21", "Session 22").
#![allow(clippy::unwrap_used, clippy::expect_used)]
use raftcast_raft::state::{apply_entry, kv::Overlay, Dedup};
use raftcast_raft::store::SledKv;
use raftcast_raft::types::{Command, Request};
use std::time::Instant;

const ROOMS: u64 = 100;

/// Applies one entry and writes its changes to sled one by one, as the state machine does.
fn run(kv: &SledKv, dedup: &mut Dedup, idx: u64, cmds: Vec<Command>, per_entry: bool) {
    let mut ov = Overlay::new(kv);
    let mut out = Vec::new();
    let ids = vec![0; cmds.len()];
    let req = Request {
        ts_ms: idx,
        ids,
        cmds,
    };
    apply_entry(&mut ov, dedup, idx, &req, &mut out, per_entry).unwrap();
    for (k, v) in ov.into_changes() {
        match v {
            Some(v) => kv.0.insert(k, v).map(drop).unwrap(),
            None => kv.0.remove(k).map(drop).unwrap(),
        }
    }
}

fn publish(n: u64, max: u32) -> Command {
    Command::Publish {
        room: format!("room-{}", n % ROOMS),
        event: "trade".into(),
        payload: format!("{{\"n\":{n},\"symbol\":\"BTC-USD\",\"price\":67000.5,\"qty\":0.25}}")
            .into_bytes(),
        durable: true,
        history_max: max,
        // The server's default `--history-ttl` (24 h).
        history_ttl_ms: 86_400_000,
    }
}

/// CPU time this process used so far (all threads: sled's I/O threads too), in seconds.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Microseconds per publish (of this thread's time, and of the process's CPU) and the sled
/// keys of the state at the end: `entries` entries of `per` publishes into a fresh state,
/// after `warm` publishes of the same shape (to fill the rooms up to `max`, or not).
fn measure(per_entry: bool, per: u64, max: u32, warm: u64, entries: u64) -> (f64, f64, usize) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let kv = SledKv(db.open_tree("sm").unwrap());
    let mut dedup = Dedup::default();
    let mut n = 0;
    let mut idx = 0;
    let mut entry = |count: u64, kv: &SledKv, dedup: &mut Dedup| {
        for _ in 0..count {
            idx += 1;
            let cmds = (0..per)
                .map(|_| {
                    n += 1;
                    publish(n, max)
                })
                .collect();
            run(kv, dedup, idx, cmds, per_entry);
        }
    };
    entry(warm / per, &kv, &mut dedup);
    let (t, cpu) = (Instant::now(), cpu_s());
    entry(entries, &kv, &mut dedup);
    db.flush().unwrap();
    let n = (entries * per) as f64;
    (
        t.elapsed().as_secs_f64() * 1e6 / n,
        (cpu_s() - cpu) * 1e6 / n,
        kv.0.len(),
    )
}

fn main() {
    let shapes = [
        (
            "requests of 50, rooms full (max 1000)",
            50,
            1000,
            110_000,
            800,
        ),
        ("single emits, rooms full (max 100)", 1, 100, 20_000, 40_000),
        ("single emits, rooms filling (max 1000)", 1, 1000, 0, 40_000),
        (
            "single emits, rooms full (max 1000)",
            1,
            1000,
            110_000,
            40_000,
        ),
        (
            "requests of 200, rooms full (max 100)",
            200,
            100,
            20_000,
            200,
        ),
        (
            "requests of 200, rooms filling (max 1000)",
            200,
            1000,
            0,
            200,
        ),
        (
            "requests of 200, rooms full (max 1000)",
            200,
            1000,
            110_000,
            200,
        ),
    ];
    let only = std::env::var("ONLY").ok();
    for (name, per, max, warm, entries) in shapes {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let mut rows = [Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, per_entry) in [false, true].into_iter().enumerate() {
                rows[i].push(measure(per_entry, per, max, warm, entries));
            }
        }
        let show = |v: &[(f64, f64, usize)]| {
            let times = v
                .iter()
                .map(|(t, c, _)| format!("{t:.1} ({c:.1})"))
                .collect::<Vec<_>>()
                .join(" / ");
            format!("{times}, {} keys", v.last().map_or(0, |r| r.2))
        };
        println!(
            "{name}: µs per publish (CPU µs), per event {} | second layout {}",
            show(&rows[0]),
            show(&rows[1])
        );
    }
}
