//! Answers peer requests: Raft RPCs, forwarded proposals, joins and pings.

use crate::error::ProposeError;
use crate::network::wire::{ForwardRefused, JoinReply, LogState, Req, Resp};
use crate::network::Handler;
use crate::types::NodeId;

use super::{snapshot_of, Core};

impl Handler for Core {
    async fn handle(&self, from: NodeId, req: Req) -> Resp {
        match req {
            Req::Append(rpc) => Resp::Append(
                self.raft
                    .append_entries(rpc)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Req::Vote(rpc) => Resp::Vote(self.raft.vote(rpc).await.map_err(|e| e.to_string())),
            Req::Snapshot { vote, meta, data } => Resp::Snapshot(
                self.raft
                    .install_full_snapshot(vote, snapshot_of(meta, data))
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Req::Forward(cmds) => Resp::Forward(self.forwarded(cmds).await),
            Req::Join { node_id, info } => Resp::Join(self.join(from, node_id, info).await),
            Req::Ping => Resp::Pong {
                node_id: self.id,
                public_addr: self.info.public_addr.clone(),
                initialized: self.raft.is_initialized().await.unwrap_or(false),
            },
            Req::LogState => Resp::LogState(self.log_state()),
            Req::Version => Resp::Version(self.cfg.protocol),
        }
    }
}

impl Core {
    /// This node's view for [`super::failover`]: its leader, how long that leader has been
    /// silent, and its last log id.
    fn log_state(&self) -> LogState {
        let leader = self.raft.metrics().borrow().current_leader;
        let leader_silent_ms = leader
            .filter(|l| *l != self.id)
            .and_then(|l| self.net.last_contact(l))
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        LogState {
            leader,
            leader_silent_ms,
            last_log: self.raft.data_metrics().borrow().last_log,
        }
    }

    async fn forwarded(
        &self,
        cmds: Vec<(u64, crate::types::Command)>,
    ) -> Result<Vec<Result<crate::types::Response, ProposeError>>, ForwardRefused> {
        // A node whose Raft failed (a full disk) is on its way out: the follower routes the
        // proposals again, to the leader elected without it.
        if self.stopping() || self.failure().is_some() {
            return Err(ForwardRefused::ShuttingDown);
        }
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(ForwardRefused::NotLeader);
        }
        // One group: the batcher keeps it together (and in order) in its entries.
        Ok(self.submit_group(cmds, false).await)
    }

    async fn join(&self, from: NodeId, node_id: NodeId, info: crate::types::NodeInfo) -> JoinReply {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.id => {
                if let Err(why) = super::versions::may_join(self, node_id, &info.peer_addr).await {
                    tracing::warn!(node_id, from, %info, "join refused: {why}");
                    return JoinReply::Err(why);
                }
                tracing::info!(node_id, from, %info, "adding learner");
                // Older command forms until the new member has said which it reads.
                self.versions.membership_changing(node_id);
                match self.raft.add_learner(node_id, info, false).await {
                    Ok(_) => JoinReply::Ok,
                    Err(e) => JoinReply::Err(e.to_string()),
                }
            }
            Some(l) => match self.peer_addr_of(l) {
                Some(addr) => JoinReply::Redirect(addr),
                None => JoinReply::Err("leader address unknown".into()),
            },
            None => JoinReply::Err("no leader yet".into()),
        }
    }
}
