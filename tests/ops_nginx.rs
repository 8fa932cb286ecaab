//! A real nginx (Debian's package, started here with a generated config on free loopback
//! ports: `nginx -p <tmpdir> -c <conf>`, not the system service) in front of three
//! `raftcast` processes, configured by `examples/nginx.conf` itself (addresses and port
//! replaced):
//!
//! - WebSocket clients through nginx are spread round-robin over the nodes and receive
//!   events published through nginx;
//! - long-polling through nginx stays on one node (the sticky upstream);
//! - when a node dies, its client reconnects through nginx to another node and recovers
//!   the events it missed with `since`.
//!
//! Skipped, with a message, only when nginx is not installed (CI installs it).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ops_common;
mod ports;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_common::Sio;
use ops_common::{free_port, temp_dir, Cluster};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn nginx_binary() -> Option<PathBuf> {
    ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// `examples/nginx.conf` with the three node addresses, a loopback listen port, and
/// pid / logs / temp paths inside `dir`.
fn config(dir: &Path, port: u16, nodes: [SocketAddr; 3]) -> String {
    let example = include_str!("../examples/nginx.conf");
    for needle in [
        "127.0.0.1:5000",
        "127.0.0.1:5001",
        "127.0.0.1:5002",
        "listen 8080;",
        "worker_processes auto;",
        "\nhttp {",
    ] {
        assert!(
            example.contains(needle),
            "examples/nginx.conf lacks {needle}"
        );
    }
    let d = dir.display();
    let globals = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;"
    );
    let temps = format!(
        "\nhttp {{\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    \
         fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
    );
    example
        .replace("127.0.0.1:5000", "@NODE1@")
        .replace("127.0.0.1:5001", "@NODE2@")
        .replace("127.0.0.1:5002", "@NODE3@")
        .replace("@NODE1@", &nodes[0].to_string())
        .replace("@NODE2@", &nodes[1].to_string())
        .replace("@NODE3@", &nodes[2].to_string())
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
        .replace("worker_processes auto;", &globals)
        .replacen("\nhttp {", &temps, 1)
}

/// The nginx master process; stopped (SIGTERM: fast shutdown, workers included) on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn start(bin: &Path, nodes: [SocketAddr; 3]) -> Nginx {
        let dir = temp_dir("nginx");
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, nodes)).expect("write nginx.conf");
        let test = Command::new(bin)
            .arg("-t")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .output()
            .expect("nginx -t");
        assert!(
            test.status.success(),
            "nginx -t refused the config:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        Nginx {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            eprintln!("===== nginx error.log =====\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTP call through nginx with the API key, retried (bounded) until it answers `want`.
async fn api_until(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    want: u16,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = http
            .post(url)
            .bearer_auth(ops_common::API_KEY)
            .json(body)
            .send()
            .await;
        let last = match r {
            Ok(r) if r.status().as_u16() == want => return r.json().await.expect("JSON"),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "POST {url} {body}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_of(s: &Sio) -> u64 {
    s.connected["nodeId"].as_u64().expect("connected.nodeId")
}

/// Subscribes to trades with ack id `ack`; the ack's first argument.
async fn subscribe_trades(s: &mut Sio, ack: u64) -> Value {
    s.emit("subscribe:trades", &[json!({})], Some(ack));
    s.ack(ack, T).await.expect("subscribe:trades ack")[0].clone()
}

/// `n` trade events: their `i` and their `meta`.
async fn trades(s: &mut Sio, n: usize) -> Vec<(u64, Value)> {
    let got = s.collect("trade:executed", n, T).await;
    assert_eq!(got.len(), n, "expected {n} trades, got {got:?}");
    got.into_iter()
        .map(|a| (a[0]["i"].as_u64().expect("i"), a[1].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_round_robin_and_failover_with_since() {
    let Some(nginx_bin) = nginx_binary() else {
        eprintln!(
            "SKIPPED ops_nginx: nginx is not installed (apt-get install -y nginx; .ci/run does it)"
        );
        return;
    };
    let mut c = Cluster::start("ops-nginx", 3).await;
    let leader = c.settled_leader(&[1, 2, 3], Duration::from_secs(20)).await;
    let nginx = Nginx::start(
        &nginx_bin,
        [c.node(1).addr(), c.node(2).addr(), c.node(3).addr()],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .expect("http");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get(&format!("{}/healthz", nginx.base())).await.is_none() {
        assert!(Instant::now() < deadline, "nginx does not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A session, created through nginx.
    let s = api_until(
        &http,
        &format!("{}/api/sessions", nginx.base()),
        &json!({ "userId": "nginx-alice" }),
        201,
        T,
    )
    .await;
    let auth = json!({ "sessionId": s["sessionId"] });

    // Long-polling through nginx: every request of the session lands on the same node.
    let poll = format!("{}/socket.io/?EIO=4&transport=polling", nginx.base());
    let open = http.get(&poll).send().await.expect("polling open");
    assert_eq!(open.status(), 200);
    let open = open.text().await.expect("open body");
    assert!(open.starts_with('0'), "{open}");
    let sid = serde_json::from_str::<Value>(&open[1..]).expect("open JSON")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let session_url = format!("{poll}&sid={sid}");
    let r = http
        .post(&session_url)
        .body(format!("40{auth}"))
        .send()
        .await
        .expect("polling CONNECT");
    assert_eq!(r.status(), 200, "POST through the sticky upstream");
    let mut polled = String::new();
    for _ in 0..4 {
        let r = http.get(&session_url).send().await.expect("poll");
        assert_eq!(r.status(), 200, "poll through the sticky upstream");
        polled.push_str(&r.text().await.expect("poll body"));
        if polled.contains("[\"connected\"") {
            break;
        }
    }
    assert!(
        polled.contains("40{"),
        "CONNECT answered over polling: {polled}"
    );
    assert!(
        polled.contains("[\"connected\""),
        "connected over polling: {polled}"
    );

    // Three WebSocket clients through nginx: round-robin puts them on three nodes.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            Sio::login(nginx.addr, &auth)
                .await
                .expect("login via nginx"),
        );
    }
    let spread: HashSet<u64> = clients.iter().map(node_of).collect();
    assert_eq!(spread.len(), 3, "round-robin over three nodes: {spread:?}");
    for (k, cl) in clients.iter_mut().enumerate() {
        let ack = subscribe_trades(cl, 1 + k as u64).await;
        assert!(ack["room"] == "user:nginx-alice", "{ack}");
    }

    // Events published through nginx reach every client, whatever its node.
    let emit_url = format!("{}/api/emit", nginx.base());
    for i in 1..=3u64 {
        let body =
            json!({ "userId": "nginx-alice", "event": "trade:executed", "data": { "i": i } });
        api_until(&http, &emit_url, &body, 200, T).await;
    }
    let mut last_meta = Vec::new();
    for cl in clients.iter_mut() {
        let got = trades(cl, 3).await;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        last_meta.push(got[2].1.clone());
    }

    // A (non-leader) node dies; its client's connection ends.
    let k = clients
        .iter()
        .position(|cl| node_of(cl) != leader)
        .expect("a client on a follower");
    let victim = node_of(&clients[k]);
    c.node_mut(victim).kill();
    let mut orphan = clients.remove(k);
    assert!(!orphan.is_closed());
    let since = last_meta.remove(k);
    assert!(
        orphan.closed_within(T).await,
        "the client of the killed node {victim} sees its connection end"
    );

    // Meanwhile the backend keeps publishing through nginx (it skips the dead node).
    for i in 4..=6u64 {
        let body =
            json!({ "userId": "nginx-alice", "event": "trade:executed", "data": { "i": i } });
        api_until(&http, &emit_url, &body, 200, Duration::from_secs(15)).await;
    }
    for cl in clients.iter_mut() {
        let got = trades(cl, 3).await;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![4, 5, 6]);
    }

    // The orphan reconnects through the same nginx address, lands on a live node, and
    // gets exactly what it missed, in order, before the confirmation.
    let mut back = Sio::login(nginx.addr, &auth)
        .await
        .expect("reconnect through nginx");
    assert_ne!(node_of(&back), victim, "nginx skipped the dead node");
    back.emit(
        "subscribe:trades",
        &[json!({ "since": { "offset": since["offset"], "epoch": since["epoch"] } })],
        Some(9),
    );
    let got = trades(&mut back, 3).await;
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![4, 5, 6]);
    let offsets: Vec<u64> = got
        .iter()
        .map(|g| g.1["offset"].as_u64().unwrap())
        .collect();
    let base = since["offset"].as_u64().unwrap();
    assert_eq!(
        offsets,
        vec![base + 1, base + 2, base + 3],
        "gapless offsets"
    );
    let ack = back.ack(9, T).await.expect("ack")[0].clone();
    assert_eq!(ack["recovered"], true, "{ack}");
}
