//! The throw-away cluster: node processes spawned from the raftcast binary on free loopback
//! ports (or, with `--net netns`, each in its network namespace on its own address) with
//! data dirs in a temp dir, and what the harness does to them — SIGKILL and restart,
//! SIGSTOP/SIGCONT, status, readiness and history reads.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::error::ChaosError;
use super::netns::{self, Netns};

/// What the load and the clients may know of the cluster: addresses, and which nodes are up
/// (not killed, not frozen). Partitioned nodes count as up: the harness plays a load
/// balancer that only sees processes.
#[derive(Debug)]
pub struct View {
    /// `(node id, public address)` per node.
    pub nodes: Vec<(u64, SocketAddr)>,
    up: Vec<AtomicBool>,
}

impl View {
    /// Whether node `i` (index) is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.up.get(i).is_some_and(|u| u.load(Ordering::Relaxed))
    }

    fn set_up(&self, i: usize, v: bool) {
        if let Some(u) = self.up.get(i) {
            u.store(v, Ordering::Relaxed);
        }
    }

    /// Indexes of the nodes that are up, starting the rotation at `from`.
    pub fn up_from(&self, from: usize) -> Vec<usize> {
        let n = self.nodes.len();
        (0..n)
            .map(|k| (from + k) % n)
            .filter(|i| self.is_up(*i))
            .collect()
    }
}

struct Node {
    id: u64,
    addr: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// The cluster's processes.
pub struct Cluster {
    binary: PathBuf,
    pub dir: PathBuf,
    pub api_key: String,
    secret: String,
    peers: String,
    nodes: Vec<Node>,
    pub view: Arc<View>,
    pub http: reqwest::Client,
    /// The namespaces with `--net netns` (None: loopback and the fault switch).
    net: Option<Netns>,
}

fn free_port() -> Result<u16, ChaosError> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ChaosError::io("127.0.0.1:0", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ChaosError::io("127.0.0.1:0", e))
}

/// A fresh temp dir for one run.
fn make_dir(seed: u64) -> Result<PathBuf, ChaosError> {
    let dir = std::env::temp_dir().join(format!(
        "raftcast-chaos-{}-{seed}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| ChaosError::io(&dir, e))?;
    Ok(dir)
}

impl Cluster {
    /// Lays out `n` nodes (addresses, dirs); starts nothing. With `net`, node `i` lives in
    /// its namespace on its own address, with the same ports on every node.
    pub fn new(
        binary: PathBuf,
        n: usize,
        seed: u64,
        net: Option<Netns>,
    ) -> Result<Cluster, ChaosError> {
        let dir = make_dir(seed)?;
        let mut nodes = Vec::with_capacity(n);
        let mut taken = Vec::new();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for i in 0..n {
            let id = i as u64 + 1;
            let data_dir = dir.join(format!("node{id}"));
            let log = dir.join(format!("node{id}.log"));
            if let Some(net) = &net {
                let ip = IpAddr::V4(net.node_ip(i));
                nodes.push(Node {
                    id,
                    addr: SocketAddr::new(ip, netns::PUBLIC_PORT),
                    peer: SocketAddr::new(ip, netns::PEER_PORT),
                    data_dir,
                    log,
                    child: None,
                    paused: false,
                });
                continue;
            }
            let mut pick = || -> Result<u16, ChaosError> {
                for _ in 0..50 {
                    let p = free_port()?;
                    if !taken.contains(&p) {
                        taken.push(p);
                        return Ok(p);
                    }
                }
                Err(ChaosError::Args("no free loopback port".into()))
            };
            let port = pick()?;
            let peer_port = pick()?;
            nodes.push(Node {
                id,
                addr: SocketAddr::new(loopback, port),
                peer: SocketAddr::new(loopback, peer_port),
                data_dir,
                log,
                child: None,
                paused: false,
            });
        }
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.peer))
            .collect::<Vec<_>>()
            .join(",");
        let view = Arc::new(View {
            nodes: nodes.iter().map(|n| (n.id, n.addr)).collect(),
            up: nodes.iter().map(|_| AtomicBool::new(false)).collect(),
        });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .no_proxy()
            .build()
            .map_err(|e| ChaosError::http("client", e))?;
        Ok(Cluster {
            binary,
            api_key: format!("chaos-key-{seed}-{}", std::process::id()),
            secret: format!("chaos-secret-{seed}-{}", std::process::id()),
            dir,
            peers,
            nodes,
            view,
            http,
            net,
        })
    }

    /// The namespaces, with `--net netns`.
    pub fn netns(&self) -> Option<&Netns> {
        self.net.as_ref()
    }

    /// Removes the namespaces (after [`Cluster::stop_all`]); None without `--net netns`,
    /// else the problems (empty: everything is gone).
    pub fn remove_net(&mut self) -> Option<Vec<String>> {
        self.net.as_mut().map(Netns::remove)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node id of index `i`.
    pub fn id(&self, i: usize) -> u64 {
        self.nodes.get(i).map(|n| n.id).unwrap_or(0)
    }

    /// Index of node `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Base URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        match self.nodes.get(i) {
            Some(n) => format!("http://{}", n.addr),
            None => "http://127.0.0.1:0".into(),
        }
    }

    /// Starts (or restarts) node `i`'s process; does not wait for it to be ready.
    pub fn spawn(&mut self, i: usize) -> Result<(), ChaosError> {
        let peers = self.peers.clone();
        let (binary, api_key, secret) = (
            self.binary.clone(),
            self.api_key.clone(),
            self.secret.clone(),
        );
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| ChaosError::Args(format!("no node index {i}")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| ChaosError::io(&node.log, e))?;
        let log2 = log.try_clone().map_err(|e| ChaosError::io(&node.log, e))?;
        // `ip netns exec` execs the binary: the child's pid is the node's.
        let mut cmd = match &self.net {
            Some(net) => {
                let mut c = Command::new(net.tools().ip_path());
                c.args(["netns", "exec", &net.node_namespace(i)])
                    .arg(&binary);
                c
            }
            None => {
                let mut c = Command::new(&binary);
                c.arg("--fault-injection");
                c
            }
        };
        cmd.args(["--node-id", &node.id.to_string()])
            .args(["--host", &node.addr.ip().to_string()])
            .args(["--port", &node.addr.port().to_string()])
            .args(["--peer-port", &node.peer.port().to_string()])
            .args(["--advertise-addr", &node.addr.to_string()])
            .args(["--peers", &peers])
            .args(["--backend", "raft"])
            .args(["--cluster-secret", &secret])
            .args(["--api-key", &api_key])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--ping-interval-ms", "1000", "--ping-timeout-ms", "2000"])
            .args(["--history-size", "10000000", "--history-ttl", "24h"])
            .args(["--subscribe-rate", "100", "--event-rate", "1000"])
            .args(["--shutdown-timeout", "2s", "--log-level", "warn"])
            .env_remove("REDIS_URL")
            .env_remove("RAFTCAST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| ChaosError::Node {
            node: node.id,
            message: format!("cannot start {}: {e}", binary.display()),
        })?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Marks node `i` as serving once its `/readyz` answers 200 (bounded by `limit`).
    pub async fn wait_ready(&self, i: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let url = format!("{}/readyz", self.url(i));
        while Instant::now() < deadline {
            if let Ok(r) = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                if r.status().as_u16() == 200 {
                    self.view.set_up(i, true);
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A task that marks node `i` up once ready (used after a restart).
    pub fn watch_ready(&self, i: usize, limit: Duration) -> tokio::task::JoinHandle<bool> {
        let (http, view) = (self.http.clone(), self.view.clone());
        let url = format!("{}/readyz", self.url(i));
        tokio::spawn(async move {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                    if r.status().as_u16() == 200 {
                        view.set_up(i, true);
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    }

    /// SIGKILL node `i` and reap it.
    pub async fn kill(&mut self, i: usize) -> Result<(), ChaosError> {
        self.view.set_up(i, false);
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| ChaosError::Args(format!("no node index {i}")))?;
        if let Some(mut child) = node.child.take() {
            child.start_kill().map_err(|e| ChaosError::Node {
                node: node.id,
                message: format!("SIGKILL: {e}"),
            })?;
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        node.paused = false;
        Ok(())
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to node `i` through `kill(1)` (no unsafe code).
    pub async fn signal_pause(&mut self, i: usize, stop: bool) -> Result<(), ChaosError> {
        if stop {
            self.view.set_up(i, false);
        }
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| ChaosError::Args(format!("no node index {i}")))?;
        let pid = node
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| ChaosError::Node {
                node: node.id,
                message: "not running".into(),
            })?;
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .await
            .map_err(|e| ChaosError::Node {
                node: node.id,
                message: format!("kill {sig}: {e}"),
            })?;
        if !status.success() {
            return Err(ChaosError::Node {
                node: node.id,
                message: format!("kill {sig} {pid} failed"),
            });
        }
        node.paused = stop;
        if !stop {
            self.view.set_up(i, true);
        }
        Ok(())
    }

    /// Whether node `i` has a live (possibly frozen) process.
    pub fn running(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.child.is_some())
    }

    /// Whether node `i` is frozen.
    pub fn paused(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.paused)
    }

    /// Resumes frozen nodes, restarts dead ones, heals every link.
    pub async fn restore_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for i in 0..self.len() {
            if self.paused(i) {
                if let Err(e) = self.signal_pause(i, false).await {
                    problems.push(e.to_string());
                }
            }
            if !self.running(i) {
                if let Err(e) = self.spawn(i) {
                    problems.push(e.to_string());
                }
            }
        }
        for i in 0..self.len() {
            if !self.view.is_up(i) && !self.wait_ready(i, Duration::from_secs(30)).await {
                problems.push(format!("node {} not ready after restore", self.id(i)));
            }
            if let Err(e) = self.heal(i).await {
                problems.push(e.to_string());
            }
        }
        problems
    }

    /// Stops every process (SIGCONT first for frozen ones, then SIGKILL).
    pub async fn stop_all(&mut self) {
        for i in 0..self.len() {
            if self.paused(i) {
                let _ = self.signal_pause(i, false).await;
            }
            let _ = self.kill(i).await;
        }
    }

    /// Removes the temp dir.
    pub fn remove_dir(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Path of node `i`'s log file.
    pub fn log_path(&self, i: usize) -> Option<&Path> {
        self.nodes.get(i).map(|n| n.log.as_path())
    }
}
