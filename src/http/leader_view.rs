//! A follower cannot tell whether other followers are up (Raft followers only hear the
//! leader), so `/cluster/status` on a follower asks the leader for its view, bounded by a
//! short timeout, and falls back to its own when the leader does not answer.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: u64 = 1 << 20;

/// GETs `http://{addr}{path}` (HTTP/1.0, no keep-alive) and parses a JSON body.
pub(crate) async fn get_json(addr: &str, path: &str, timeout: Duration) -> Option<Value> {
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        stream.take(LIMIT).read_to_end(&mut buf).await.ok()?;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..split]).ok()?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        serde_json::from_slice(&buf[split + 4..]).ok()
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

/// Replaces each node's `reachable` in `view` by the leader's judgement, when the leader
/// (at its public address) answers.
pub(crate) async fn merge_leader_reachability(view: &mut Value) {
    let (Some(me), Some(leader)) = (view["nodeId"].as_u64(), view["leaderId"].as_u64()) else {
        return;
    };
    if me == leader {
        return;
    }
    let addr = view["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["id"].as_u64() == Some(leader)))
        .and_then(|n| n["addr"].as_str())
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let Some(addr) = addr else { return };
    let Some(theirs) = get_json(
        &addr,
        "/cluster/status?view=local",
        Duration::from_millis(500),
    )
    .await
    else {
        view["reachabilitySource"] = Value::from("local (leader did not answer)");
        return;
    };
    if let (Some(mine), Some(their_nodes)) =
        (view["nodes"].as_array_mut(), theirs["nodes"].as_array())
    {
        for n in mine.iter_mut() {
            if let Some(t) = their_nodes.iter().find(|t| t["id"] == n["id"]) {
                n["reachable"] = t["reachable"].clone();
            }
        }
    }
    view["reachabilitySource"] = Value::from("leader");
}
