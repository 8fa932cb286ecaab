//! The `raftcast` process limits glibc to one malloc arena (src/malloc.rs) unless
//! `MALLOC_ARENA_MAX` is set, and says which in its startup log. Real processes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod ops_common;
mod ports;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops_common::{bin, free_port, temp_dir};

struct Proc {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(arena_env: Option<&str>) -> Proc {
    let dir = temp_dir("malloc");
    let log = dir.join("node.log");
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log clone");
    let mut cmd = Command::new(bin());
    cmd.args([
        "--port",
        &free_port().to_string(),
        "--peer-port",
        &free_port().to_string(),
        "--backend",
        "local",
        "--data-dir",
        &dir.join("data").display().to_string(),
    ])
    .env_remove("MALLOC_ARENA_MAX")
    .env_remove("RUST_LOG")
    .env_remove("REDIS_URL")
    .stdin(Stdio::null())
    .stdout(Stdio::from(out))
    .stderr(Stdio::from(err));
    if let Some(v) = arena_env {
        cmd.env("MALLOC_ARENA_MAX", v);
    }
    let child = cmd.spawn().expect("spawn raftcast");
    Proc { child, dir, log }
}

/// The startup line about malloc arenas, polled for until a deadline.
fn arena_line(p: &Proc) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains("malloc arenas")) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no 'malloc arenas' line within 30 s; log so far:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_uses_one_malloc_arena_unless_the_environment_says_otherwise() {
    let default = start(None);
    let line = arena_line(&default);
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(line.contains("OneArena"), "{line}");
    } else {
        assert!(line.contains("Unchanged"), "{line}");
    }
    drop(default);

    let env = start(Some("4"));
    let line = arena_line(&env);
    assert!(line.contains("FromEnvironment"), "{line}");
}
