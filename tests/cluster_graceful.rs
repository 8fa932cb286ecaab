//! ISSUE 4, test 6: SIGTERM the leader during a steady trickle of emits through a follower
//! (one every 20 ms, retried on 503 up to 3 times): no emit answered 200 is lost.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster_common;
mod ports;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_common::{poll, Cluster};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leader_shutdown_loses_no_acknowledged_emit() {
    let mut c = Cluster::start("graceful", 3, &[]).await;
    let user = "frank";
    let leader = c.agreed_leader(&[1, 2, 3], Duration::from_secs(10)).await;
    let survivors: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let via = survivors[0];

    // The trickle: sequential emits through `via`, one every 20 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let trickle = {
        let (emitter, stop) = (c.emitter(via), stop.clone());
        tokio::spawn(async move {
            let mut accepted: Vec<(u64, u64)> = Vec::new();
            let mut answered_at: Vec<Duration> = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut lost_after_retries: Vec<(u64, String)> = Vec::new();
            let mut retried = 0u32;
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let mut tries = 0;
                loop {
                    let sent = Instant::now();
                    let r = emitter.emit_trade(user, i).await;
                    slowest = slowest.max(sent.elapsed());
                    match r {
                        Ok((200, v)) => {
                            accepted.push((i, v["offset"].as_u64().unwrap_or(0)));
                            answered_at.push(t0.elapsed());
                            break;
                        }
                        Ok((503, _)) if tries < 3 => {
                            tries += 1;
                            retried += 1;
                        }
                        other => {
                            lost_after_retries.push((i, format!("{other:?}")));
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, answered_at, slowest, lost_after_retries, retried)
        })
    };

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let term_at = Instant::now();
    c.node(leader).term();
    // The leader exits by itself within --shutdown-timeout (10 s).
    let mut status = None;
    while status.is_none() && term_at.elapsed() < Duration::from_secs(12) {
        status = c.node_mut(leader).wait_exit(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exited_in = term_at.elapsed();
    eprintln!("leader {leader} exited {exited_in:?} after SIGTERM: {status:?}");
    // Keep trickling a moment under the new leader.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (accepted, answered_at, slowest, failed, retried) =
        tokio::time::timeout(Duration::from_secs(40), trickle)
            .await
            .expect("trickle ends")
            .expect("trickle task");
    let term_off = term_at - t0;
    let exit_off = term_off + exited_in;
    let before = answered_at.iter().filter(|t| **t < term_off).count();
    let after = answered_at.iter().filter(|t| **t > exit_off).count();
    eprintln!(
        "trickle: {} emits answered 200 ({before} before SIGTERM, {after} after the leader exited), \
         slowest answer {slowest:?}, {retried} retries on 503, {} given up: {failed:?}",
        accepted.len(),
        failed.len()
    );
    assert!(
        before > 0 && after > 0,
        "the trickle did not span the handover"
    );
    let status = status.expect("the leader did not exit within 12 s of SIGTERM");
    assert!(status.success(), "leader exit status {status:?}");
    assert!(accepted.len() > 20, "too few accepted emits: {accepted:?}");

    // Every emit answered 200 is in both survivors' history, under the offset it was given.
    let new_leader = c.agreed_leader(&survivors, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let room = format!("user:{user}");
    for &s in &survivors {
        let ok = poll(Duration::from_secs(5), || async {
            let (_, events) = c.history(s, &room).await.ok()?;
            accepted
                .iter()
                .all(|(i, off)| {
                    events
                        .iter()
                        .any(|(o, d)| o == off && d == &json!({ "i": i }))
                })
                .then_some(())
        })
        .await;
        if ok.is_none() {
            let h = c.history(s, &room).await;
            let missing: Vec<_> = match &h {
                Ok((_, events)) => accepted
                    .iter()
                    .filter(|(i, off)| {
                        !events
                            .iter()
                            .any(|(o, d)| o == off && d == &json!({ "i": i }))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            panic!("node {s} lost emits answered 200: {missing:?}; history {h:?}");
        }
    }
    assert!(
        failed.is_empty(),
        "emits still failing after 3 retries on 503: {failed:?}"
    );
}
