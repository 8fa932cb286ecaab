//! The harness's HTTP calls to the cluster's nodes: status and leader, the fault switch
//! (`POST /cluster/fault`), sessions, and room histories.

use std::time::Duration;

use serde_json::{json, Value};

use super::cluster::Cluster;
use super::error::ChaosError;

impl Cluster {
    /// `GET /cluster/status` of node `i`.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/cluster/status", self.url(i)))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?;
        r.json::<Value>().await.ok()
    }

    /// The leader's index, as the most up nodes report it (None when they disagree or none).
    pub async fn leader(&self) -> Option<usize> {
        let mut votes: Vec<(u64, usize)> = Vec::new();
        for i in self.view.up_from(0) {
            if let Some(l) = self.status(i).await.and_then(|s| s["leaderId"].as_u64()) {
                match votes.iter_mut().find(|(id, _)| *id == l) {
                    Some(v) => v.1 += 1,
                    None => votes.push((l, 1)),
                }
            }
        }
        votes.sort_by_key(|v| std::cmp::Reverse(v.1));
        votes.first().and_then(|(id, _)| self.index_of(*id))
    }

    /// `POST /cluster/fault` on node `i`.
    pub async fn fault(
        &self,
        i: usize,
        action: &str,
        peer: Option<u64>,
        delay_ms: Option<u64>,
    ) -> Result<(), ChaosError> {
        let body = json!({ "action": action, "peer": peer, "delayMs": delay_ms });
        let r = self
            .http
            .post(format!("{}/cluster/fault", self.url(i)))
            .bearer_auth(&self.api_key)
            .json(&body)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| ChaosError::http(format!("fault {action} on node {}", self.id(i)), e))?;
        if r.status().as_u16() != 200 {
            return Err(ChaosError::http(
                format!("fault {action} on node {}", self.id(i)),
                format!("status {}", r.status()),
            ));
        }
        Ok(())
    }

    /// `POST /api/sessions` through any up node.
    pub async fn create_session(&self, user: &str) -> Result<String, ChaosError> {
        let mut last = String::from("no node up");
        for i in self.view.up_from(0) {
            let r = self
                .http
                .post(format!("{}/api/sessions", self.url(i)))
                .bearer_auth(&self.api_key)
                .json(&json!({ "userId": user, "ttlSeconds": 86_400 }))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 201 => {
                    let v: Value = r.json().await.map_err(|e| ChaosError::http("session", e))?;
                    if let Some(s) = v["sessionId"].as_str() {
                        return Ok(s.to_owned());
                    }
                    last = format!("no sessionId in {v}");
                }
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ChaosError::http(format!("session for {user}"), last))
    }

    /// A room's whole retained history on node `i`: `(epoch, [(offset, event, seq)])`.
    pub async fn history(
        &self,
        i: usize,
        room: &str,
    ) -> Result<(String, Vec<(u64, String, Option<u64>)>), ChaosError> {
        let what = format!("history of {room} on node {}", self.id(i));
        let r = self
            .http
            .get(format!("{}/api/rooms/{room}/history?since=0", self.url(i)))
            .bearer_auth(&self.api_key)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| ChaosError::http(&what, e))?;
        if r.status().as_u16() != 200 {
            return Err(ChaosError::http(&what, format!("status {}", r.status())));
        }
        let v: Value = r.json().await.map_err(|e| ChaosError::http(&what, e))?;
        let epoch = v["epoch"].as_str().unwrap_or_default().to_owned();
        let events = v["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["offset"].as_u64().unwrap_or(0),
                            e["event"].as_str().unwrap_or_default().to_owned(),
                            e["data"]["seq"].as_u64(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((epoch, events))
    }

    /// A room's last offset on node `i` (cheap: history after a high offset).
    pub async fn last_offset(&self, i: usize, room: &str) -> Option<u64> {
        let r = self
            .http
            .get(format!(
                "{}/api/rooms/{room}/history?since={}",
                self.url(i),
                u64::MAX / 2
            ))
            .bearer_auth(&self.api_key)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        v["offset"].as_u64()
    }
}
