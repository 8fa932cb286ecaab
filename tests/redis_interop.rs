//! Interoperation with Node's `@socket.io/redis-adapter`: a Node server on `socket.io` +
//! the adapter (tests/redis-interop/server.js) and a raftcast node share one Redis, and a
//! room broadcast from either reaches the clients of both.
//!
//! Needs `redis-server`, `node` and `npm` (the test runs `npm ci` in tests/redis-interop
//! when its node_modules is missing). Outside CI a missing tool skips the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
#[path = "cluster_common/mod.rs"]
mod cluster_common;
mod ports;
mod redis_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use redis_support::{free_port, jwt, poll, require_redis, RcNode, Redis, Sio};

const T: Duration = Duration::from_secs(5);

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/redis-interop")
}

/// Installs the Node server's packages from its lockfile when needed; false when Node is
/// not available here (outside CI).
fn node_ready() -> bool {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("node") || !have("npm") {
        assert!(std::env::var_os("CI").is_none(), "node and npm are needed");
        eprintln!("skipped: node/npm not installed");
        return false;
    }
    let dir = interop_dir();
    if !dir.join("node_modules/@socket.io/redis-adapter").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in {}", dir.display());
    }
    true
}

/// The Node Socket.IO server process.
struct NodeServer {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl NodeServer {
    async fn start(redis_url: &str) -> NodeServer {
        let port = free_port();
        let log = redis_support::temp_dir("nodejs").join("node.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("node")
            .arg("server.js")
            .current_dir(interop_dir())
            .env("PORT", port.to_string())
            .env("REDIS_URL", redis_url)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn node server.js");
        let s = NodeServer { port, child, log };
        let url = format!("http://127.0.0.1:{port}/ready");
        let up = poll(Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
        if up.is_none() {
            redis_support::dump(&s.log);
            panic!("the Node server did not start");
        }
        s
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn emit(&self, room: &str, event: &str, data: Value) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/emit", self.port))
            .json(&json!({ "room": room, "event": event, "data": data }))
            .send()
            .await
            .expect("node emit");
        assert_eq!(r.status(), 200);
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== node.js server log");
            redis_support::dump(&self.log);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_adapter_and_raftcast_share_room_broadcasts() {
    if !require_redis() || !node_ready() {
        return;
    }
    let redis = Redis::start("interop").await;
    let node_js = NodeServer::start(&redis.url()).await;
    let rc = RcNode::spawn(1, &redis.url(), &format!("i{}", rand::random::<u32>()), &[]);
    rc.wait_ready().await;

    // A raftcast client of user erin (room user:erin) and a Node client in the same room.
    let mut on_rc = Sio::login(rc.addr(), &json!({ "token": jwt("erin") }))
        .await
        .unwrap();
    let mut on_node = Sio::open(node_js.addr()).await.unwrap();
    on_node
        .connect(&json!({ "rooms": ["user:erin"] }))
        .await
        .unwrap();
    on_node.event("joined", T).await.unwrap();

    // raftcast → both: a durable event published through the raftcast API.
    let (s, v) = rc
        .emit(json!({ "userId": "erin", "event": "trade:executed", "data": { "n": 1 } }))
        .await;
    assert_eq!(s, 200, "{v}");
    let got = on_rc.event("trade:executed", T).await.unwrap();
    assert_eq!(got[0], json!({ "n": 1 }));
    let got = on_node.event("trade:executed", T).await.unwrap();
    assert_eq!(
        got[0],
        json!({ "n": 1 }),
        "the Node server's client got raftcast's broadcast"
    );
    assert_eq!(got[1]["room"], "user:erin");
    assert_eq!(got[1]["offset"], v["offset"]);
    assert_eq!(got[1]["epoch"], v["epoch"]);

    // Node → both: io.to(room).emit on the Node server. The adapter subscribes
    // asynchronously after the room is joined; retry until it is heard.
    let mut heard = None;
    for i in 0..20 {
        node_js
            .emit("user:erin", "news", json!({ "h": "hi", "i": i }))
            .await;
        if let Ok(a) = on_rc.event("news", Duration::from_millis(500)).await {
            heard = Some(a);
            break;
        }
    }
    let got = heard.expect("raftcast's client got the Node server's broadcast");
    assert_eq!(got[0]["h"], "hi");
    assert_eq!(
        got[1]["room"], "user:erin",
        "delivered with raftcast's meta"
    );
    let got = on_node.event("news", T).await.unwrap();
    assert_eq!(got[0]["h"], "hi");

    // A room only Node clients are in still gets raftcast broadcasts (and vice versa).
    let mut watch = Sio::open(node_js.addr()).await.unwrap();
    watch
        .connect(&json!({ "rooms": ["watchlist:AAPL"] }))
        .await
        .unwrap();
    watch.event("joined", T).await.unwrap();
    let (s, _) = rc
        .api(
            reqwest::Method::POST,
            "/api/quotes",
            Some(json!({ "symbol": "AAPL", "quote": { "price": 1.5 } })),
        )
        .await;
    assert!(s == 202 || s == 200, "quote accepted: {s}");
    let got = watch.event("quote:update", T).await.unwrap();
    assert_eq!(got[0]["symbol"], "AAPL");
}
