//! Fleets of client connections: open many concurrently (bounded), keep them running,
//! close them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use super::{bar, Env};
use crate::client::{self, ClientPlan, Shared};
use crate::hist::Histogram;
use crate::result::RunResult;

pub(super) struct Fleet {
    pub(super) stop: watch::Sender<bool>,
    pub(super) ok: usize,
    pub(super) failed: usize,
    pub(super) elapsed: Duration,
    pub(super) handshake: Arc<Histogram>,
    pub(super) first_error: Option<String>,
}

impl Fleet {
    pub(super) async fn close(self) {
        let _ = self.stop.send(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(super) async fn open_fleet(
    env: &Env,
    plans: Vec<ClientPlan>,
    shared: &Arc<Shared>,
    label: &str,
) -> Fleet {
    let n = plans.len();
    let (stop, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(env.profile.connect_concurrency.max(1)));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let handshake = Arc::new(Histogram::new());
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pb = bar(n as u64, format!("{}: {label}", env.system));
    let t0 = Instant::now();
    for plan in plans {
        let (sem, ok, failed, handshake, first_error, shared, stop_rx, pb) = (
            sem.clone(),
            ok.clone(),
            failed.clone(),
            handshake.clone(),
            first_error.clone(),
            shared.clone(),
            stop_rx.clone(),
            pb.clone(),
        );
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let t = Instant::now();
            match client::connect_with_retry(&plan, 3, Duration::from_secs(10)).await {
                Ok(ws) => {
                    handshake.record(t.elapsed().as_micros() as u64);
                    for r in &plan.rooms {
                        if let Some(m) = shared.room_members.get(*r) {
                            m.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                    drop(permit);
                    client::run(ws, plan.node, shared, stop_rx).await;
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                    if let Ok(mut g) = first_error.lock() {
                        g.get_or_insert_with(|| format!("{}: {e}", plan.addr));
                    }
                }
            }
        });
    }
    // Bounded: every handshake has 3 attempts of at most 10 s each.
    let deadline = t0 + Duration::from_secs(60 + (n as u64 / 20));
    while ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    pb.finish_and_clear();
    let first_error = first_error.lock().ok().and_then(|g| g.clone());
    Fleet {
        stop,
        ok: ok.load(Ordering::Relaxed),
        failed: n - ok.load(Ordering::Relaxed),
        elapsed,
        handshake,
        first_error,
    }
}

pub(super) fn note_fleet(res: &mut RunResult, what: &str, f: &Fleet) {
    res.notes.push(format!(
        "{what}: {} connected, {} failed in {:.2} s{}",
        f.ok,
        f.failed,
        f.elapsed.as_secs_f64(),
        f.first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
}
