//! What a command that changes a socket costs the state machine in its newer form (names the
//! socket's user: one read) and in its older form (sid only: found by a scan of the socket
//! records, or through an index built once per log entry from its second such command),
//! with 10,000 sockets in a sled state, one and 64 commands per entry. Run with
//! `cargo run --release -p raftcast-raft --example older_command_cost`; the figures are in
//! docs/performance.md ("Session 12").
#![allow(clippy::unwrap_used, clippy::expect_used)]
use raftcast_raft::state::{apply_entry, kv::Overlay, Dedup};
use raftcast_raft::store::SledKv;
use raftcast_raft::types::{Command, Request};
use std::time::Instant;
fn run(kv: &SledKv, idx: u64, cmds: Vec<Command>) {
    let mut ov = Overlay::new(kv);
    let mut out = Vec::new();
    let ids = vec![0; cmds.len()];
    apply_entry(
        &mut ov,
        &mut Dedup::default(),
        idx,
        &Request {
            ts_ms: 1,
            ids,
            cmds,
        },
        &mut out,
        true,
    )
    .unwrap();
    let mut b = sled::Batch::default();
    for (k, v) in ov.into_changes() {
        match v {
            Some(v) => b.insert(k, v),
            None => b.remove(k),
        }
    }
    kv.0.apply_batch(b).unwrap();
}
fn main() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let kv = SledKv(db.open_tree("sm").unwrap());
    let n = 10_000;
    for chunk in 0..(n / 50) {
        let cmds = (0..50)
            .map(|i| {
                let s = chunk * 50 + i;
                Command::SocketOpen {
                    node: 1,
                    sid: format!("sid{s:017}"),
                    pid: format!("pid{s:017}"),
                    user_id: format!("user{}", s % 5000),
                    session_id: Some(format!("{s:036}")),
                    rooms: vec![],
                }
            })
            .collect();
        run(&kv, chunk as u64 + 1, cmds);
    }
    let mut idx = 1000;
    for per in [1usize, 64] {
        for (name, older) in [("newer", false), ("older", true)] {
            let cmds: Vec<Command> = (0..192u64)
                .map(|i| i * 50 + 7 + per as u64 + older as u64)
                .map(|s| {
                    let c = Command::JoinOf {
                        sid: format!("sid{s:017}"),
                        user_id: format!("user{}", s % 5000),
                        rooms: vec![format!("r{older}")],
                    };
                    if older {
                        c.compatible()
                    } else {
                        c
                    }
                })
                .collect();
            let t = Instant::now();
            for chunk in cmds.chunks(per) {
                idx += 1;
                run(&kv, idx, chunk.to_vec());
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0 / 192.0;
            println!("{per} per entry, {name} form: {ms:.3} ms per command");
        }
    }
}
