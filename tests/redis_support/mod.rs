//! Support for the Redis-mode tests: a real `redis-server` on a free port (stopped and
//! started again at will, always on the same port), raftcast nodes in Redis mode as real
//! processes, and HTTP helpers. The raw Socket.IO client comes from `cluster_common`.
//! Every process is killed on drop; a failing test prints the tail of every log.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::cluster_common::{free_port, poll, Sio};

pub const API_KEY: &str = "redis-test-api-key-0123456789";
pub const JWT_SECRET: &str = "redis-test-jwt-secret-0123456789";
pub const REDIS_PASSWORD: &str = "redis-test-password";
const BIN: &str = env!("CARGO_BIN_EXE_raftcast");

pub fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!(
        "raftcast-redis-{tag}-{}-{n:016x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Whether `redis-server` can be run here.
pub fn have_redis() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips the test (with a message) when `redis-server` is missing, unless `CI` is set, where
/// a missing server is a failure.
pub fn require_redis() -> bool {
    if have_redis() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "redis-server is not installed (apt-get install -y redis-server)"
    );
    eprintln!("skipped: redis-server is not installed");
    false
}

/// A `redis-server` process without persistence, with a password.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(tag: &str) -> Redis {
        let dir = temp_dir(tag);
        let mut r = Redis {
            port: free_port(),
            log: dir.join("redis.log"),
            dir,
            child: None,
        };
        r.restart().await;
        r
    }

    /// `redis://default:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://default:{REDIS_PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("redis log");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                REDIS_PASSWORD,
                "--dir",
                self.dir.to_str().expect("utf-8 dir"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let port = self.port;
        let up = poll(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "redis-server did not start on port {port}");
    }

    /// Kills the server (SIGKILL: as abrupt as a crash).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raftcast node in Redis mode.
pub struct RcNode {
    pub id: u64,
    pub port: u16,
    pub log: PathBuf,
    /// The node's temp dir (data and log), removed when the node is dropped.
    dir: PathBuf,
    child: Option<Child>,
}

impl RcNode {
    pub fn spawn(id: u64, redis_url: &str, prefix: &str, extra: &[&str]) -> RcNode {
        let dir = temp_dir(&format!("node{id}"));
        let port = free_port();
        let log = dir.join("node.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let err = out.try_clone().expect("log clone");
        let mut args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--node-id",
            &id.to_string(),
            "--port",
            &port.to_string(),
            "--peer-port",
            &free_port().to_string(),
            "--data-dir",
            dir.join("data").to_str().expect("utf-8"),
            "--redis-url",
            redis_url,
            "--redis-prefix",
            prefix,
            "--api-key",
            API_KEY,
            "--jwt-secret",
            JWT_SECRET,
            "--ping-interval-ms",
            "300",
            "--ping-timeout-ms",
            "200",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let child = Command::new(BIN)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("REDIS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn raftcast");
        RcNode {
            id,
            port,
            log,
            dir,
            child: Some(child),
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base());
        let ok = poll(Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let r = reqwest::get(&url).await.ok()?;
                (r.status() == 200).then_some(())
            }
        })
        .await;
        if ok.is_none() {
            dump(&self.log);
            panic!("node {} not ready", self.id);
        }
    }

    /// An API call: (status, body).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let c = reqwest::Client::new();
        let mut req = c
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(API_KEY)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("http");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    pub async fn emit(&self, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, "/api/emit", Some(body))
            .await
    }

    pub async fn session(&self, user: &str) -> String {
        let (s, v) = self
            .api(
                reqwest::Method::POST,
                "/api/sessions",
                Some(json!({ "userId": user })),
            )
            .await;
        assert_eq!(s, 201, "session: {v}");
        v["sessionId"].as_str().expect("sessionId").to_owned()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RcNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== node {} log", self.id);
            dump(&self.log);
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints the last 60 lines of a log.
pub fn dump(path: &PathBuf) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(60)..] {
        eprintln!("{l}");
    }
}

/// A JWT (HS256) for `user`, valid for an hour.
pub fn jwt(user: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("jwt")
}

/// Waits for the event `name` whose first argument satisfies `pred`.
pub async fn event_where(
    s: &mut Sio,
    name: &str,
    within: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let a = s.event(name, left).await?;
        if pred(&a) {
            return Ok(a);
        }
    }
}

/// Waits for a frame equal to `text` (e.g. `41`, the server's DISCONNECT); whether it came.
pub async fn frame(s: &mut Sio, text: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match s.recv(left).await {
            Some(crate::cluster_common::Msg::Text(t)) if t == text => return true,
            Some(crate::cluster_common::Msg::Text(_)) => {}
            _ => return false,
        }
    }
}
