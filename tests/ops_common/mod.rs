//! Shared by the `ops_*` tests: a small cluster of real `raftcast` processes on loopback,
//! and a way to run the binary's subcommands.
//!
//! The binary is `RAFTCAST_BIN` when set (a developer sharing a target dir with other
//! trees can point it at their own build), else cargo's `CARGO_BIN_EXE_raftcast`.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const API_KEY: &str = "ops-test-api-key-0123456789abcdef";
pub const SECRET: &str = "ops-test-cluster-secret-0123456789";

/// The binary under test.
pub fn bin() -> String {
    std::env::var("RAFTCAST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_raftcast").to_owned())
}

pub use crate::ports::free_port;

pub fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("raftcast-{tag}-{}-{n:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub args: Vec<String>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spawn(&mut self) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = out.try_clone().expect("log file clone");
        self.child = Some(
            Command::new(bin())
                .args(&self.args)
                .env("RUST_LOG", "info")
                .env_remove("REDIS_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("spawn raftcast"),
        );
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `n` voters (ids 1..=n) on loopback, all ready.
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
}

impl Cluster {
    pub async fn start(tag: &str, n: u64) -> Cluster {
        let dir = temp_dir(tag);
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (_, q))| format!("{}=127.0.0.1:{q}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (p, q))| {
                let id = i as u64 + 1;
                let args = [
                    "--node-id".to_owned(),
                    id.to_string(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    p.to_string(),
                    "--peer-port".into(),
                    q.to_string(),
                    "--peers".into(),
                    peers.clone(),
                    "--cluster-secret".into(),
                    SECRET.into(),
                    "--api-key".into(),
                    API_KEY.into(),
                    "--data-dir".into(),
                    dir.join(format!("n{id}")).display().to_string(),
                    "--ping-interval-ms".into(),
                    "1000".into(),
                    "--ping-timeout-ms".into(),
                    "1000".into(),
                ]
                .to_vec();
                Node {
                    id,
                    port: *p,
                    args,
                    log: dir.join(format!("n{id}.log")),
                    child: None,
                }
            })
            .collect();
        let mut c = Cluster {
            dir,
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        };
        for node in &mut c.nodes {
            node.spawn();
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        for i in 0..c.nodes.len() {
            let url = format!("{}/readyz", c.nodes[i].base());
            loop {
                let ok = matches!(c.http.get(&url).send().await, Ok(r) if r.status() == 200);
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "node {} not ready", i + 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        c
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub async fn get(&self, url: &str) -> Option<Value> {
        let r = self.http.get(url).send().await.ok()?;
        r.json().await.ok()
    }

    /// The leader on which every running node of `ids` agrees, with every member
    /// reachable in the leader's view.
    pub async fn settled_leader(&self, ids: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut leaders = Vec::new();
            let mut all_reachable = true;
            for &id in ids {
                let s = self
                    .get(&format!("{}/cluster/status", self.node(id).base()))
                    .await;
                leaders.push(s.as_ref().and_then(|s| s["leaderId"].as_u64()));
                all_reachable &= s
                    .as_ref()
                    .and_then(|s| s["nodes"].as_array().cloned())
                    .is_some_and(|n| n.iter().all(|n| n["reachable"] == json!(true)));
            }
            if let Some(Some(l)) = leaders.first() {
                if all_reachable && leaders.iter().all(|x| *x == Some(*l)) {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no settled leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn api(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.node(id).base()))
            .bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(r) => {
                let st = r.status().as_u16();
                (st, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!(e.to_string())),
        }
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(60);
            eprintln!("===== node {} log, last lines =====", n.id);
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            self.dump_logs();
            eprintln!("cluster dir kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `raftcast <args>`: exit code, stdout, stderr.
pub async fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("RAFTCAST_URL")
        .env_remove("RAFTCAST_API_KEY")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run raftcast");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses `/metrics` for one unlabelled sample (a gauge, a counter, a histogram's `_count`
/// or `_sum`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}
