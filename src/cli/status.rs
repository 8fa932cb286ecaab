//! `raftcast status [--url URL] [--json] [--api-key KEY]`: the cluster at a glance.
//!
//! Asks the node at `--url` for `/cluster/status` and `/health/websocket`, then every other
//! member (at the public address the cluster lists for it) for its own `/health/websocket`,
//! and prints one row per node: role, reachability, health, term, applied index, lag behind
//! the leader's commit index, connections. With an API key it adds the cluster-wide
//! figures of `/api/stats`.
//!
//! Exit code (the Nagios convention, so monitoring can call it as a check):
//! `0` healthy, `1` degraded (serving, but a member is down, lagging or degraded),
//! `2` unhealthy (no leader or no quorum: durable writes fail), `3` the node at `--url`
//! could not be reached or did not answer like a raftcast node.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::StatusArgs;

/// Lag (in log entries) past which a member counts as lagging (as `/health/websocket`).
pub const LAG_WARN: u64 = 1000;

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Degraded,
    Unhealthy,
    Unreachable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Unhealthy => "unhealthy",
            Verdict::Unreachable => "unreachable",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Unhealthy => 2,
            Verdict::Unreachable => 3,
        }
    }
}

/// One member as seen by the asked node, plus what it says about itself.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: u64,
    pub addr: String,
    pub role: String,
    /// Whether the cluster (the leader's view) can reach it over the peer port.
    pub reachable: bool,
    pub connections: u64,
    /// The member's own `/health/websocket` answer, when its public address answered.
    pub health: Option<Value>,
    /// Why its health could not be read, otherwise.
    pub health_error: Option<String>,
    /// Whether this is the node `--url` points to.
    pub asked: bool,
}

impl NodeRow {
    fn health_status(&self) -> &str {
        match &self.health {
            Some(h) => h["status"].as_str().unwrap_or("?"),
            None => "n/a",
        }
    }

    fn raft_u64(&self, field: &str) -> Option<u64> {
        self.health.as_ref().and_then(|h| h["raft"][field].as_u64())
    }
}

/// Everything `raftcast status` learned.
#[derive(Debug, Clone)]
pub struct Report {
    pub url: String,
    pub cluster: Value,
    pub health: Value,
    pub stats: Option<Value>,
    pub stats_error: Option<String>,
    pub nodes: Vec<NodeRow>,
}

impl Report {
    /// The leader's commit index (from the leader's own health, else the asked node's view).
    pub fn leader_commit(&self) -> Option<u64> {
        let leader = self.cluster["leaderId"].as_u64();
        self.nodes
            .iter()
            .find(|n| Some(n.id) == leader)
            .and_then(|n| n.raft_u64("commitIndex"))
            .or_else(|| self.cluster["commitIndex"].as_u64())
    }

    /// How far `node` has applied behind the leader's commit index.
    pub fn lag(&self, node: &NodeRow) -> Option<u64> {
        if self.cluster["adapter"].as_str() != Some("raft") {
            return None;
        }
        let applied = node.raft_u64("appliedIndex")?;
        Some(self.leader_commit()?.saturating_sub(applied))
    }

    /// The verdict and the problems behind it, worst first.
    pub fn verdict(&self) -> (Verdict, Vec<String>) {
        let mut problems = Vec::new();
        let mut verdict = Verdict::Healthy;
        let asked_status = self.health["status"].as_str().unwrap_or("unknown");
        let raft = self.cluster["adapter"].as_str() == Some("raft");
        if asked_status == "unhealthy" {
            verdict = Verdict::Unhealthy;
            problems.push(format!(
                "the asked node reports unhealthy{}",
                if let Some(r) = self.health.get("redis") {
                    format!(" (redis: {r})")
                } else if raft {
                    " (no leader or no quorum: durable emits answer 503 NO_QUORUM)".to_owned()
                } else {
                    String::new()
                }
            ));
        }
        if raft && self.cluster["leaderId"].is_null() {
            verdict = Verdict::Unhealthy;
            problems.push("no leader known".to_owned());
        }
        if raft && self.cluster["hasQuorum"].as_bool() == Some(false) {
            verdict = Verdict::Unhealthy;
            problems.push("no quorum: a majority of voters cannot be reached".to_owned());
        }
        let mut degrade = |why: String, problems: &mut Vec<String>| {
            if verdict == Verdict::Healthy {
                verdict = Verdict::Degraded;
            }
            problems.push(why);
        };
        if asked_status == "degraded" {
            degrade("the asked node reports degraded".to_owned(), &mut problems);
        }
        for n in &self.nodes {
            if !n.reachable {
                degrade(
                    format!("node {} ({}) is unreachable from the cluster", n.id, n.addr),
                    &mut problems,
                );
                continue;
            }
            match n.health_status() {
                "healthy" | "n/a" => {}
                other => degrade(format!("node {} reports {other}", n.id), &mut problems),
            }
            if let Some(lag) = self.lag(n) {
                if lag > LAG_WARN {
                    degrade(
                        format!("node {} lags {lag} entries behind the leader", n.id),
                        &mut problems,
                    );
                }
            }
        }
        (verdict, problems)
    }

    /// The `--json` document.
    pub fn to_json(&self) -> Value {
        let (verdict, problems) = self.verdict();
        let nodes: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "addr": n.addr,
                    "role": n.role,
                    "reachable": n.reachable,
                    "connections": n.connections,
                    "health": n.health.as_ref().map(|h| h["status"].clone()),
                    "healthError": n.health_error,
                    "term": n.raft_u64("term"),
                    "appliedIndex": n.raft_u64("appliedIndex"),
                    "lag": self.lag(n),
                    "asked": n.asked,
                })
            })
            .collect();
        json!({
            "url": self.url,
            "status": verdict.as_str(),
            "exitCode": verdict.exit_code(),
            "problems": problems,
            "nodeId": self.cluster["nodeId"],
            "leaderId": self.cluster["leaderId"],
            "term": self.cluster["term"],
            "commitIndex": self.cluster["commitIndex"],
            "adapter": self.health["stats"]["adapter"],
            "nodes": nodes,
            "stats": self.stats,
            "statsError": self.stats_error,
            "cluster": self.cluster,
            "health": self.health,
        })
    }

    /// The terminal table.
    pub fn to_table(&self) -> String {
        let (verdict, problems) = self.verdict();
        let mut out = String::new();
        out.push_str(&format!(
            "raftcast at {} — {}\n",
            self.url,
            verdict.as_str().to_uppercase()
        ));
        let leader = match self.cluster["leaderId"].as_u64() {
            Some(l) => l.to_string(),
            None => "none".to_owned(),
        };
        out.push_str(&format!(
            "leader {leader} · term {} · commit {} · adapter {} · asked node {}\n",
            show(&self.cluster["term"]),
            show(&self.cluster["commitIndex"]),
            show(&self.health["stats"]["adapter"]),
            show(&self.cluster["nodeId"]),
        ));
        if let Some(s) = &self.stats {
            out.push_str(&format!(
                "connections {} · unique users {} · rooms {} · events/min {}\n",
                show(&s["totalConnections"]),
                show(&s["uniqueUsers"]),
                show(&s["roomCount"]),
                show(&s["eventsPerMinute"]),
            ));
        } else if let Some(e) = &self.stats_error {
            out.push_str(&format!("(cluster-wide stats unavailable: {e})\n"));
        }
        out.push('\n');
        let header = [
            "NODE",
            "ADDRESS",
            "ROLE",
            "REACHABLE",
            "HEALTH",
            "TERM",
            "APPLIED",
            "LAG",
            "CONNECTIONS",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
        for n in &self.nodes {
            rows.push(vec![
                format!("{}{}", n.id, if n.asked { "*" } else { "" }),
                n.addr.clone(),
                n.role.clone(),
                if n.reachable { "yes" } else { "NO" }.to_owned(),
                n.health_status().to_owned(),
                opt(n.raft_u64("term")),
                opt(n.raft_u64("appliedIndex")),
                opt(self.lag(n)),
                n.connections.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str("(* = the node asked)\n");
        for n in &self.nodes {
            if let Some(e) = &n.health_error {
                out.push_str(&format!(
                    "note: node {} health not read from http://{}: {e}\n",
                    n.id, n.addr
                ));
            }
        }
        if !problems.is_empty() {
            out.push_str("\nproblems:\n");
            for p in &problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".to_owned())
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| describe(&e))?;
    let code = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| describe(&e))?;
    let v = serde_json::from_str(&text).map_err(|_| {
        format!(
            "HTTP {code}, not JSON: {}",
            text.chars().take(80).collect::<String>()
        )
    })?;
    Ok((code, v))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused or host unreachable".to_owned()
    } else {
        e.to_string()
    }
}

/// Asks the node at `url` and the members it lists.
pub async fn gather(url: &str, api_key: Option<&str>, timeout: Duration) -> Result<Report, String> {
    let base = url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let (code, cluster) = get_json(&http, &format!("{base}/cluster/status"), None).await?;
    if code != 200 || !cluster["nodes"].is_array() {
        return Err(format!("/cluster/status answered HTTP {code}: {cluster}"));
    }
    let (_, health) = get_json(&http, &format!("{base}/health/websocket"), None).await?;
    let asked_id = cluster["nodeId"].as_u64();
    let empty = Vec::new();
    let listed = cluster["nodes"].as_array().unwrap_or(&empty);
    let fetches = listed.iter().map(|n| {
        let http = http.clone();
        let id = n["id"].as_u64().unwrap_or(0);
        let addr = n["addr"].as_str().unwrap_or_default().to_owned();
        let own = health.clone();
        async move {
            if Some(id) == asked_id {
                return (Some(own), None);
            }
            if addr.is_empty() {
                return (None, Some("no public address listed".to_owned()));
            }
            match get_json(&http, &format!("http://{addr}/health/websocket"), None).await {
                Ok((_, v)) if v["status"].is_string() => (Some(v), None),
                Ok((c, _)) => (None, Some(format!("HTTP {c}"))),
                Err(e) => (None, Some(e)),
            }
        }
    });
    let healths = futures_util::future::join_all(fetches).await;
    let nodes = listed
        .iter()
        .zip(healths)
        .map(|(n, (h, err))| NodeRow {
            id: n["id"].as_u64().unwrap_or(0),
            addr: n["addr"].as_str().unwrap_or_default().to_owned(),
            role: n["role"].as_str().unwrap_or("?").to_owned(),
            reachable: n["reachable"].as_bool().unwrap_or(false),
            connections: n["connections"].as_u64().unwrap_or(0),
            health: h,
            health_error: err,
            asked: n["id"].as_u64() == asked_id,
        })
        .collect();
    let (stats, stats_error) = match api_key {
        Some(k) => match get_json(&http, &format!("{base}/api/stats"), Some(k)).await {
            Ok((200, v)) => (Some(v), None),
            Ok((c, v)) => (None, Some(format!("HTTP {c} {}", v["code"]))),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    Ok(Report {
        url: base,
        cluster,
        health,
        stats,
        stats_error,
        nodes,
    })
}

/// The subcommand: prints the table (or JSON) to stdout and returns the exit code.
pub async fn run(args: StatusArgs) -> ExitCode {
    let key = args.api_key.as_ref().map(|k| k.expose().to_owned());
    match gather(&args.url, key.as_deref(), Duration::from_secs(3)).await {
        Ok(report) => {
            let (verdict, _) = report.verdict();
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
                );
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::from(verdict.exit_code())
        }
        Err(e) => {
            if args.json {
                let v = json!({
                    "url": args.url,
                    "status": Verdict::Unreachable.as_str(),
                    "exitCode": Verdict::Unreachable.exit_code(),
                    "problems": [format!("cannot read {}: {e}", args.url)],
                    "nodes": [],
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("raftcast at {} — UNREACHABLE", args.url);
                println!(
                    "cannot read {}/cluster/status: {e}",
                    args.url.trim_end_matches('/')
                );
                println!("is the node running, and is --url its public port (default http://127.0.0.1:5000)?");
            }
            ExitCode::from(Verdict::Unreachable.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, role: &str, reachable: bool, applied: Option<u64>) -> NodeRow {
        NodeRow {
            id,
            addr: format!("127.0.0.1:500{id}"),
            role: role.to_owned(),
            reachable,
            connections: id,
            health: applied.map(|a| {
                json!({ "status": "healthy", "raft": { "term": 2, "commitIndex": 50, "appliedIndex": a } })
            }),
            health_error: applied.is_none().then(|| "timed out".to_owned()),
            asked: id == 1,
        }
    }

    fn report(nodes: Vec<NodeRow>, leader: Value) -> Report {
        Report {
            url: "http://127.0.0.1:5001".into(),
            cluster: json!({ "nodeId": 1, "leaderId": leader, "term": 2, "commitIndex": 50, "adapter": "raft", "hasQuorum": true, "nodes": [] }),
            health: json!({ "status": "healthy", "stats": { "adapter": "raft" } }),
            stats: None,
            stats_error: None,
            nodes,
        }
    }

    #[test]
    fn healthy_cluster_table() {
        let r = report(
            vec![
                row(1, "leader", true, Some(50)),
                row(2, "follower", true, Some(48)),
                row(3, "follower", true, Some(50)),
            ],
            json!(1),
        );
        assert_eq!(r.verdict().0, Verdict::Healthy);
        let t = r.to_table();
        assert!(t.contains("HEALTHY"), "{t}");
        assert!(t.contains("leader 1"), "{t}");
        assert!(
            t.lines().any(|l| l.starts_with("2 ") && l.contains(" 2 ")),
            "{t}"
        );
        assert_eq!(r.to_json()["nodes"][1]["lag"], 2);
    }

    #[test]
    fn member_down_is_degraded_no_leader_is_unhealthy() {
        let r = report(
            vec![
                row(1, "leader", true, Some(50)),
                row(2, "follower", false, None),
            ],
            json!(1),
        );
        let (v, p) = r.verdict();
        assert_eq!(v, Verdict::Degraded);
        assert!(p[0].contains("node 2"), "{p:?}");
        let r = report(vec![row(1, "follower", true, Some(50))], Value::Null);
        assert_eq!(r.verdict().0, Verdict::Unhealthy);
        assert_eq!(r.to_json()["exitCode"], 2);
    }
}
