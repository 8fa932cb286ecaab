//! A node's disk fills up. openraft stops a node's Raft for good on a storage error, so the
//! node must not linger with its clients connected and fed nothing: it reports the cause,
//! tells its clients `server:shutdown` and exits non-zero, while the other two go on. When it
//! was the leader, emits made through the others still succeed: their forwards wait for the
//! leader elected without it.
//!
//! Every node keeps its data on a tmpfs of its own, and the test fills one of them; that needs
//! root and `mount`; elsewhere the tests print why they skip and pass.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use cluster_common::{Cluster, Sio};
use serde_json::json;
use tokio::sync::Mutex;

/// One test at a time: each fills a disk and wants the cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A tmpfs per node directory, unmounted when dropped.
struct Disks(Vec<PathBuf>);

impl Disks {
    /// Mounts a 64 MiB tmpfs on `<dir>/n1..=n3`, or says why it cannot.
    fn mount(dir: &Path) -> Result<Disks, String> {
        let mut disks = Disks(Vec::new());
        for i in 1..=3 {
            let at = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
                .arg(&at)
                .output()
                .map_err(|e| format!("cannot run mount: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            disks.0.push(at);
        }
        Ok(disks)
    }

    /// Fills node `id`'s disk: a file grows until the file system refuses another byte.
    fn fill(&self, id: u64) {
        let path = self.0[id as usize - 1].join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 1 << 16];
        let mut written = 0usize;
        while f.write_all(&block).is_ok() {
            written += block.len();
            assert!(written < 128 << 20, "a 64 MiB tmpfs took {written} bytes");
        }
        for n in [4096, 512, 1] {
            while f.write_all(&block[..n]).is_ok() {}
        }
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for at in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

/// A three-node cluster on tmpfs disks, or None (printed) where they cannot be mounted.
async fn cluster(test: &str) -> Option<(Cluster, Disks)> {
    let mut disks = Err(String::new());
    let c = Cluster::start_prepared("diskfull", 3, &[], |dir| disks = Disks::mount(dir)).await;
    match disks {
        Ok(d) => Some((c, d)),
        Err(why) => {
            println!("{test}: skipped: {why}");
            None
        }
    }
}

/// Emits durable events of 10 kB through `via` until node `full` exits (bounded), each
/// answered 200; returns how it exited and the offsets the answers gave.
async fn emit_until_exit(
    c: &mut Cluster,
    via: u64,
    full: u64,
    user: &str,
) -> (ExitStatus, Vec<u64>) {
    let pad = "x".repeat(10_000);
    let started = Instant::now();
    let mut offsets = Vec::new();
    loop {
        if let Some(st) = c.node_mut(full).wait_exit(Duration::ZERO) {
            return (st, offsets);
        }
        let i = offsets.len() as u64 + 1;
        assert!(
            i < 500 && started.elapsed() < Duration::from_secs(60),
            "node {full} still running after {i} emits onto its full disk"
        );
        let body =
            json!({ "userId": user, "event": "trade:executed", "data": { "i": i, "pad": pad } });
        match c.emit_body(via, &body).await {
            Ok((200, v)) => offsets.push(v["offset"].as_u64().unwrap()),
            r => panic!("emit {i} through node {via}: {r:?}"),
        }
    }
}

/// Node `full` said why it stopped, and its client was told to go elsewhere.
async fn stopped_cleanly(c: &Cluster, full: u64, exit: ExitStatus, client: &mut Sio) {
    assert!(
        !exit.success(),
        "node {full} exited with {exit} after its disk filled up"
    );
    let mut told = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let Ok((name, _)) = client.next_event(Duration::from_secs(5)).await else {
            break;
        };
        if name == "server:shutdown" {
            told = true;
            break;
        }
    }
    assert!(told, "node {full}'s client never got server:shutdown");
    assert!(client.closed_within(Duration::from_secs(5)).await);
    let log = std::fs::read_to_string(&c.node(full).log).unwrap();
    assert!(
        log.contains("the backend stopped working") && log.contains("No space left on device"),
        "node {full}'s log does not say why it stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_fills_up_shuts_down_and_the_others_go_on() {
    let _serial = SERIAL.lock().await;
    let test = "a_follower_whose_disk_fills_up_shuts_down_and_the_others_go_on";
    let Some((mut c, disks)) = cluster(test).await else {
        return;
    };
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let full = (1..=3).find(|&i| i != leader).unwrap();
    let user = "erin";
    let session = c.session(leader, user).await;
    let mut client = Sio::login(c.node(full).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on the follower");

    disks.fill(full);
    let (exit, _) = emit_until_exit(&mut c, leader, full, user).await;
    stopped_cleanly(&c, full, exit, &mut client).await;
    for i in 1..=3 {
        let r = c.emit_trade(leader, user, 1000 + i).await;
        assert!(
            matches!(r, Ok((200, _))),
            "emit after the follower left: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_fills_up_hands_over_and_no_emit_through_the_others_fails() {
    let _serial = SERIAL.lock().await;
    let test = "a_leader_whose_disk_fills_up_hands_over_and_no_emit_through_the_others_fails";
    let Some((mut c, disks)) = cluster(test).await else {
        return;
    };
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let via = (1..=3).find(|&i| i != leader).unwrap();
    let user = "frank";
    let session = c.session(via, user).await;
    let mut client = Sio::login(c.node(leader).addr(), &json!({ "sessionId": session }))
        .await
        .expect("client on the leader");

    disks.fill(leader);
    let (exit, mut offsets) = emit_until_exit(&mut c, via, leader, user).await;
    stopped_cleanly(&c, leader, exit, &mut client).await;
    // The survivors elect a leader and go on; every emit answered 200 is in the history.
    for i in 1..=3 {
        match c.emit_trade(via, user, 1000 + i).await {
            Ok((200, v)) => offsets.push(v["offset"].as_u64().unwrap()),
            r => panic!("emit after the leader left: {r:?}"),
        }
    }
    let (status, h) = c
        .get(via, &format!("/api/rooms/user:{user}/history"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let kept: Vec<u64> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    for o in &offsets {
        assert!(
            kept.contains(o),
            "offset {o} answered 200 but not in the history: {kept:?}"
        );
    }
}
