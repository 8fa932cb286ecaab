//! ISSUE 8, flood: with 5,000 connections plus a churn of garbage coming from this (another)
//! process, the node's `/health/websocket` keeps answering (p99 under 100 ms) and a control
//! client still receives every one of its `trade:executed` events.
//!
//! Heavy, so `#[ignore]`d in the plain `cargo test`; `make security` runs it:
//!
//!   cargo test --test security_flood -- --ignored --nocapture
//!
//! `FLOOD_CONNECTIONS` (default 5000) and `FLOOD_SECONDS` (default 15) size it. Connections
//! are spread over 127.0.0.2..=127.0.0.9 source addresses; every loop is bounded in count
//! and time.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod security_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use security_common::{frame, RawWs};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_raftcast");
const API_KEY: &str = "flood-api-key-0123456789";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Node {
    child: Child,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("node.log")) {
                for l in log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8))
}

async fn connect_from(addr: SocketAddr, ip: IpAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(ip, 0))?;
    s.connect(addr).await
}

/// One kind of garbage per call, on a fresh connection; bounded in time.
async fn garbage(addr: SocketAddr, kind: usize, n: usize) {
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let ip = source(n);
        match kind % 6 {
            0 => {
                // random bytes instead of HTTP
                if let Ok(mut s) = connect_from(addr, ip).await {
                    let junk: Vec<u8> = (0..512).map(|i| ((i * 7919 + n * 31) % 251) as u8).collect();
                    let _ = s.write_all(&junk).await;
                }
            }
            1 => {
                // an HTTP request with a broken header block
                if let Ok(mut s) = connect_from(addr, ip).await {
                    let _ = s.write_all(b"POST /api/emit HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\0\0\r\n\r\n").await;
                }
            }
            2 | 3 => {
                // a WebSocket that sends garbage frames
                if let Ok(mut ws) = RawWs::open_from(addr, Some(ip)).await {
                    let _ = ws.send(&frame(1, true, b"42[\"subscribe:portfolio\",{")).await;
                    let _ = ws.send(&frame(1, true, &[0xff, 0xfe, 0x00])).await;
                    let _ = ws.send(&[0x8f, 0xff, 0, 0, 0, 0, 0, 0, 0, 9]).await;
                }
            }
            4 => {
                // polling with a bad body
                if let Ok(mut s) = connect_from(addr, ip).await {
                    let body = "4\u{1e}\u{1e}bad";
                    let req = format!("POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    let _ = s.write_all(req.as_bytes()).await;
                }
            }
            _ => {
                // half a request, then silence (closed by the header timeout)
                if let Ok(mut s) = connect_from(addr, ip).await {
                    let _ = s.write_all(b"GET /health/websocket HTTP/1.1\r\nHo").await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    })
    .await;
}

/// The flood shares this machine's cores with the node (in production it would come from
/// elsewhere): its tokio workers run at nice 10 so they do not starve the node. The probe
/// runs on a thread of its own at normal priority.
fn deprioritise_flooders() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("tokio-runtime-w") {
            let _ = Command::new("renice")
                .args(["-n", "10", "-p", &t.file_name().to_string_lossy()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: run by `make security` (cargo test --test security_flood -- --ignored)"]
async fn health_and_delivery_hold_under_a_flood() {
    let conns = env_num("FLOOD_CONNECTIONS", 5000);
    let seconds = env_num("FLOOD_SECONDS", 15) as u64;
    deprioritise_flooders();
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("raftcast-flood-{}-{n:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A free port can be taken between the check and the bind: try a few.
    let mut spawned = None;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let log = std::fs::File::create(dir.join("node.log")).expect("log");
        let mut child = Command::new(BIN)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--backend",
                "local",
                "--api-key",
                API_KEY,
                "--data-dir",
                &dir.join("data").display().to_string(),
                "--max-connections",
                &(conns + 1000).to_string(),
                "--max-connections-per-ip",
                &(conns + 1000).to_string(),
                "--header-timeout",
                "2s",
                "--api-rate",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(300));
        if child.try_wait().ok().flatten().is_none() {
            spawned = Some((child, port));
            break;
        }
    }
    let (child, port) = spawned.expect("node did not start on any port");
    let _node = Node { child, dir };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(4)
        .build()
        .expect("http");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let session = |user: String| {
        let http = http.clone();
        let url = format!("{base}/api/sessions");
        async move {
            let r = http
                .post(url)
                .bearer_auth(API_KEY)
                .json(&json!({"userId": user}))
                .send()
                .await
                .expect("session");
            assert_eq!(r.status(), 201);
            let v: Value = r.json().await.expect("json");
            v["sessionId"].as_str().expect("sid").to_owned()
        }
    };

    // The control client (a normal library client on 127.0.0.1).
    let control_session = session("control".into()).await;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let tcp = TcpStream::connect(addr).await.expect("control tcp");
    let (mut control, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("control ws");
    let _open = control.next().await;
    control
        .send(Message::text(format!(
            "40{}",
            json!({"sessionId": control_session})
        )))
        .await
        .expect("send");
    let received = Arc::new(AtomicUsize::new(0));
    let (rx_count, stop) = (received.clone(), Arc::new(AtomicBool::new(false)));
    let control_task = tokio::spawn(async move {
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_secs(60), control.next()).await
        {
            if let Message::Text(t) = m {
                if t.as_str() == "2" {
                    let _ = control.send(Message::text("3")).await;
                } else if t.starts_with("42[\"trade:executed\"") {
                    rx_count.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });

    // Sessions for the flood: 50 users, their sockets share a session each.
    let mut flood_sessions = Vec::new();
    for u in 0..50 {
        flood_sessions.push(session(format!("flood{u}")).await);
    }
    let flood_sessions = Arc::new(flood_sessions);

    // Health probe: every 10 ms for the whole run, latency recorded. It runs on a thread
    // and runtime of its own so that the flooders' work in this process does not count as
    // the server's latency.
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::<(Duration, Duration)>::new()));
    let slow_at = Arc::new(parking_lot::Mutex::new(Vec::<(Duration, Duration)>::new()));
    let t_start = Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    let probe = {
        let (lat, fail, stop, slow_at) = (
            latencies.clone(),
            failures.clone(),
            stop.clone(),
            slow_at.clone(),
        );
        let url = format!("{base}/health/websocket");
        std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("probe runtime");
                rt.block_on(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .expect("probe http");
                    while !stop.load(Ordering::SeqCst) {
                        let t0 = Instant::now();
                        match http.get(&url).send().await {
                            Ok(r) if r.status().is_success() => {
                                let _ = r.bytes().await;
                                let took = t0.elapsed();
                                lat.lock().push((t0 - t_start, took));
                                if took > Duration::from_millis(50) {
                                    slow_at.lock().push((t0 - t_start, took));
                                }
                            }
                            _ => {
                                fail.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            })
            .expect("probe thread")
    };

    // Publisher: one trade:executed to the control user every 50 ms.
    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (http, sent, stop) = (http.clone(), sent.clone(), stop.clone());
        let url = format!("{base}/api/emit");
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let r = http
                    .post(&url)
                    .bearer_auth(API_KEY)
                    .json(
                        &json!({"userId": "control", "event": "trade:executed", "data": {"i": i}}),
                    )
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Garbage churn: `FLOOD_GARBAGE_WORKERS` (default 8) loops, each opening a garbage
    // connection every `FLOOD_GARBAGE_PAUSE_MS` (default 10 ms) until stopped.
    let garbage_done = Arc::new(AtomicUsize::new(0));
    let workers = env_num("FLOOD_GARBAGE_WORKERS", 8);
    let pause = Duration::from_millis(env_num("FLOOD_GARBAGE_PAUSE_MS", 10) as u64);
    let mut churn = Vec::new();
    for w in 0..workers {
        let (stop, done) = (stop.clone(), garbage_done.clone());
        churn.push(tokio::spawn(async move {
            let mut k = w;
            while !stop.load(Ordering::SeqCst) && k < 1_000_000 {
                garbage(addr, k, k).await;
                done.fetch_add(1, Ordering::SeqCst);
                k += workers;
                tokio::time::sleep(pause).await;
            }
        }));
    }

    // The flood: `conns` WebSockets, 100 opening at a time, each joining `/`.
    let started = Instant::now();
    let opened = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    let mut openers = Vec::new();
    for i in 0..conns {
        let (sem, opened, sessions) = (sem.clone(), opened.clone(), flood_sessions.clone());
        openers.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            let mut ws = tokio::time::timeout(
                Duration::from_secs(10),
                RawWs::open_from(addr, Some(source(i))),
            )
            .await
            .ok()?
            .ok()?;
            let sid = &sessions[i % sessions.len()];
            ws.send_text(&format!("40{}", json!({"sessionId": sid})))
                .await
                .ok()?;
            let answer = ws.read_text(Duration::from_secs(10)).await?;
            if answer.starts_with("40") {
                opened.fetch_add(1, Ordering::SeqCst);
            }
            Some(ws)
        }));
    }
    let mut flood = Vec::new();
    for o in openers {
        if let Ok(Some(ws)) = o.await {
            flood.push(ws);
        }
    }
    let ramp = started.elapsed();
    let open_now = opened.load(Ordering::SeqCst);
    // Hold the flood (and keep the garbage coming) for the rest of the run.
    let hold_until = started + Duration::from_secs(seconds);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats: Value = http
        .get(format!("{base}/api/stats"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stop.store(true, Ordering::SeqCst);
    let _ = publisher.await;
    let _ = probe.join();
    for c in churn {
        let _ = c.await;
    }
    // let the last events arrive
    let sent = sent.load(Ordering::SeqCst);
    let wait = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < sent && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.load(Ordering::SeqCst);
    control_task.abort();
    drop(flood);

    // Latencies of the whole run, and of the held flood (all sockets open, garbage going on).
    let all = latencies.lock().clone();
    let ramp_end = (started - t_start) + ramp;
    let mut lat: Vec<Duration> = all.iter().map(|(_, d)| *d).collect();
    let mut held: Vec<Duration> = all
        .iter()
        .filter(|(at, _)| *at >= ramp_end)
        .map(|(_, d)| *d)
        .collect();
    lat.sort();
    held.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let (p50, p99, max) = (pct(&lat, 0.50), pct(&lat, 0.99), *lat.last().unwrap());
    let (held_p99, held_max) = (pct(&held, 0.99), *held.last().unwrap());
    let summary = format!(
        "flood: {open_now}/{conns} sockets joined in {ramp:.1?}, held {seconds} s; {} garbage connections ({workers} workers, {pause:?} pause); \
         /health/websocket {} probes, {} failed, whole run p50 {p50:.1?} p99 {p99:.1?} max {max:.1?}, \
         held flood ({} probes) p99 {held_p99:.1?} max {held_max:.1?}; \
         control received {got}/{sent} trade:executed; node stats {}",
        garbage_done.load(Ordering::SeqCst),
        lat.len(),
        failures.load(Ordering::SeqCst),
        held.len(),
        stats["totalConnections"],
    );
    println!("{summary}");
    let slow: Vec<String> = slow_at
        .lock()
        .iter()
        .map(|(at, took)| format!("{at:.1?}:{took:.0?}"))
        .collect();
    println!(
        "flood: probes over 50 ms at (time since start: latency) {}",
        slow.join(" ")
    );
    assert!(open_now * 100 >= conns * 99, "{summary}");
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{summary}");
    // With every socket open and garbage coming: p99 under 100 ms.
    assert!(held_p99 < Duration::from_millis(100), "{summary}");
    // During the connection storm itself, an unoptimised build on two shared cores answers
    // within a second; an optimised one (the figure in docs/security.md) within 100 ms.
    if cfg!(debug_assertions) {
        assert!(max < Duration::from_secs(1), "{summary}");
    } else {
        assert!(p99 < Duration::from_millis(100), "{summary}");
    }
    assert!(sent > 0 && got == sent, "{summary}");
}
