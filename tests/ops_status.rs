//! `raftcast status` against a real three-node cluster (separate processes): the table
//! names the leader, `--json` parses, and the exit code follows health — 0 healthy,
//! 1 degraded (a member down), 2 unhealthy (no quorum), 3 unreachable. Also the operator
//! routes behind the status page: `GET /` and `GET /cluster/errors`, without an API key.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod ops_common;
mod ports;

use std::time::{Duration, Instant};

use ops_common::{free_port, metric, run_cli, Cluster, API_KEY};
use serde_json::Value;

/// Runs `status` until its exit code is `want` (bounded); the last (code, stdout).
async fn status_until(url: &str, want: i32, within: Duration) -> (i32, String) {
    status_until_shows(url, want, within, |_| true).await
}

/// Like [`status_until`], until the exit code is `want` and `shows` holds for the output
/// (the verdict and the per-node columns come from different signals: the asked node's
/// health may say degraded before the leader stops counting a dead peer as reachable).
async fn status_until_shows(
    url: &str,
    want: i32,
    within: Duration,
    shows: impl Fn(&str) -> bool,
) -> (i32, String) {
    let deadline = Instant::now() + within;
    loop {
        let (code, out, _) = run_cli(&["status", "--url", url]).await;
        if (code == want && shows(&out)) || Instant::now() >= deadline {
            return (code, out);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cli_follows_cluster_health() {
    let mut c = Cluster::start("ops-status", 3).await;
    let leader = c.settled_leader(&[1, 2, 3], Duration::from_secs(20)).await;
    let asked = if leader == 1 { 2 } else { 1 };
    let url = c.node(asked).base();

    // Healthy: the table, with the leader's row, exit 0.
    let (code, out) = status_until(&url, 0, Duration::from_secs(10)).await;
    assert_eq!(code, 0, "healthy cluster, exit 0:\n{out}");
    assert!(out.contains("HEALTHY"), "{out}");
    assert!(out.contains(&format!("leader {leader} ")), "{out}");
    let leader_row = out
        .lines()
        .find(|l| l.starts_with(&leader.to_string()) && l.contains(" leader "))
        .unwrap_or_else(|| panic!("no row for leader {leader}:\n{out}"));
    assert!(
        leader_row.contains(&c.node(leader).port.to_string()),
        "{leader_row}"
    );
    assert!(leader_row.contains("healthy"), "{leader_row}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" follower ")).count(),
        2,
        "{out}"
    );

    // --json for scripts.
    let (code, json, _) = run_cli(&["status", "--url", &url, "--json", "--api-key", API_KEY]).await;
    assert_eq!(code, 0, "{json}");
    let v: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(v["status"], "healthy", "{v}");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["leaderId"], leader);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    assert_eq!(nodes.iter().filter(|n| n["role"] == "leader").count(), 1);
    assert!(
        nodes
            .iter()
            .all(|n| n["health"] == "healthy" && n["lag"].is_u64()),
        "{v}"
    );
    assert!(
        v["stats"]["totalConnections"].is_u64(),
        "stats with --api-key: {v}"
    );

    // The leader's /metrics shows where a durable emit's time goes: the heartbeat round that
    // proves leadership, the commit, and the commands per entry. Ten concurrent emits through
    // a follower (forwarded): every one is counted, in as many entries as the batching made.
    let emits = (0..10).map(|i| {
        c.api(
            asked,
            reqwest::Method::POST,
            "/api/emit",
            Some(serde_json::json!({"room": "ops-metrics", "event": "tick", "data": {"i": i}})),
        )
    });
    for (status, body) in futures_util::future::join_all(emits).await {
        assert_eq!(status, 200, "{body}");
    }
    let text = c
        .http
        .get(format!("{}/metrics", c.node(leader).base()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let sample = |name: &str| -> f64 {
        metric(&text, name).unwrap_or_else(|| panic!("no {name} in the leader's /metrics:\n{text}"))
    };
    let entries = sample("raftcast_raft_commit_seconds_count");
    assert!(entries >= 1.0, "{entries}");
    assert!(sample("raftcast_raft_quorum_check_seconds_count") >= entries);
    // every emit is a command of an entry the leader wrote (plus the cluster's own commands)
    assert!(sample("raftcast_raft_entry_commands_sum") >= 10.0);
    assert!(sample("raftcast_raft_entry_commands_count") >= 1.0);
    assert!(
        text.contains("raftcast_raft_commit_seconds_bucket{le=\"0.005\"}"),
        "commit time has histogram buckets:\n{text}"
    );

    // A member dies: degraded (exit 1), its row says so.
    let victim = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader && id != asked)
        .unwrap();
    c.node_mut(victim).kill();
    let victim_row_says_no = |out: &str| {
        out.lines()
            .find(|l| l.starts_with(&victim.to_string()))
            .is_some_and(|row| row.contains("NO"))
    };
    let (code, out) =
        status_until_shows(&url, 1, Duration::from_secs(20), victim_row_says_no).await;
    assert_eq!(code, 1, "one member down, exit 1:\n{out}");
    assert!(out.contains("DEGRADED"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&victim.to_string()))
        .unwrap_or_else(|| panic!("no row for {victim}:\n{out}"));
    assert!(row.contains("NO"), "{row}");
    assert!(
        out.contains(&format!("node {victim}")),
        "problems name the node:\n{out}"
    );

    // The majority is gone: unhealthy (exit 2) on the survivor.
    let survivor = asked;
    c.node_mut(leader).kill();
    let surl = c.node(survivor).base();
    let (code, out) = status_until(&surl, 2, Duration::from_secs(30)).await;
    assert_eq!(code, 2, "no quorum, exit 2:\n{out}");
    assert!(out.contains("UNHEALTHY"), "{out}");
    let (code, json, _) = run_cli(&["status", "--url", &surl, "--json"]).await;
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["status"], "unhealthy");
}

#[tokio::test]
async fn status_cli_unreachable_node() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, out, _) = run_cli(&["status", "--url", &url]).await;
    assert_eq!(code, 3, "nothing listening, exit 3:\n{out}");
    assert!(out.contains("UNREACHABLE"), "{out}");
    let (code, json, _) = run_cli(&["status", "--url", &url, "--json"]).await;
    assert_eq!(code, 3);
    let v: Value = serde_json::from_str(&json).expect("--json prints JSON even then");
    assert_eq!(v["status"], "unreachable");
}

#[tokio::test]
async fn status_page_and_errors_route_need_no_key() {
    let c = Cluster::start("ops-page", 1).await;
    let base = c.node(1).base();
    let r = c.http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(r.status(), 200);
    let ctype = r.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let html = r.text().await.expect("body");
    for needle in [
        "id=\"nodes\"",
        "/cluster/status",
        "/metrics",
        "/cluster/errors",
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    assert!(
        !html.contains("http://cdn") && !html.contains("https://"),
        "no external resources"
    );

    let r = c
        .http
        .get(format!("{base}/cluster/errors"))
        .send()
        .await
        .expect("GET errors");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("JSON");
    assert!(v["events"].is_array() && v["capacity"].is_u64(), "{v}");
    assert!(v["warnTotal"].is_u64() && v["errorTotal"].is_u64(), "{v}");
    // Nothing secret in it: the API key and cluster secret never appear.
    let text = v.to_string();
    assert!(!text.contains(API_KEY) && !text.contains(ops_common::SECRET));
}
