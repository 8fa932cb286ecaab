//! Cluster formation: initialise a new group (lowest configured id, once a majority of the
//! listed peers answer), or join an existing one as a learner. A node whose store is already
//! initialised does nothing here: it rejoins through normal Raft traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::network::wire::{JoinReply, Req, Resp};
use crate::types::{NodeId, NodeInfo};

use super::{initial_voters, join_all, Core};

const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// After a majority answers, wait this long for the rest before initialising without them.
const WAIT_FOR_ALL: Duration = Duration::from_secs(2);

pub(crate) async fn run(core: Arc<Core>) {
    match core.raft.is_initialized().await {
        Ok(true) => {
            tracing::info!(node = core.id, "store already initialised: rejoining");
            return;
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "raft stopped before formation");
            return;
        }
    }
    if let Some(addr) = core.cfg.join.clone() {
        return join(&core, addr).await;
    }
    let voters = initial_voters(&core.cfg, &core.info);
    if voters.keys().next() != Some(&core.id) {
        tracing::info!(
            node = core.id,
            "waiting for the lowest-id peer to initialise the cluster"
        );
        return;
    }
    if voters.len() == 1 {
        let members = BTreeMap::from([(core.id, core.info.clone())]);
        if let Err(e) = core.raft.initialize(members).await {
            tracing::warn!(error = %e, "initialise single-member group");
        }
        return;
    }
    initialise(&core, voters).await;
}

async fn initialise(core: &Core, voters: BTreeMap<NodeId, String>) {
    let mut backoff = Duration::from_millis(100);
    let mut majority_since: Option<Instant> = None;
    loop {
        if core.stopping() {
            return;
        }
        let mut members = BTreeMap::from([(core.id, core.info.clone())]);
        let mut initialized_elsewhere = false;
        let pings = voters
            .iter()
            .filter(|(id, _)| **id != core.id)
            .map(|(id, addr)| async move {
                (
                    *id,
                    addr.clone(),
                    core.net
                        .call(addr, Some(*id), &Req::Ping, PING_TIMEOUT)
                        .await,
                )
            });
        for (id, addr, r) in join_all(pings).await {
            match r {
                Ok(Resp::Pong {
                    public_addr,
                    initialized,
                    ..
                }) => {
                    initialized_elsewhere |= initialized;
                    members.insert(
                        id,
                        NodeInfo {
                            peer_addr: addr,
                            public_addr,
                        },
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(peer = id, error = %e, "peer not answering yet"),
            }
        }
        if initialized_elsewhere {
            tracing::warn!("a peer is already initialised: not initialising (it will contact us)");
            return;
        }
        let have = members.len();
        tracing::info!(
            have,
            of = voters.len(),
            "cluster formation: peers answering"
        );
        if have * 2 > voters.len() {
            let since = *majority_since.get_or_insert_with(Instant::now);
            if have == voters.len() || since.elapsed() >= WAIT_FOR_ALL {
                // Members that did not answer are added with an unknown public address.
                for (id, addr) in &voters {
                    members.entry(*id).or_insert_with(|| NodeInfo {
                        peer_addr: addr.clone(),
                        public_addr: String::new(),
                    });
                }
                match core.raft.initialize(members).await {
                    Ok(()) => tracing::info!("cluster initialised"),
                    Err(e) => tracing::warn!(error = %e, "initialise"),
                }
                return;
            }
            backoff = Duration::from_millis(200);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn join(core: &Core, mut addr: String) {
    let mut backoff = Duration::from_millis(100);
    let req = Req::Join {
        node_id: core.id,
        info: core.info.clone(),
    };
    loop {
        if core.stopping() {
            return;
        }
        match core
            .net
            .call(&addr, None, &req, Duration::from_secs(5))
            .await
        {
            Ok(Resp::Join(JoinReply::Ok)) => {
                tracing::info!(via = %addr, "joined as learner");
                return;
            }
            Ok(Resp::Join(JoinReply::Redirect(a))) => {
                tracing::info!(leader = %a, "join redirected to the leader");
                addr = a;
                continue;
            }
            Ok(Resp::Join(JoinReply::Err(e))) => {
                tracing::info!(via = %addr, error = %e, "join refused, retrying")
            }
            Ok(_) => tracing::warn!(via = %addr, "unexpected join reply"),
            Err(e) => tracing::info!(via = %addr, error = %e, "join failed, retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
