//! Background duties, every 100 ms:
//! - any node: ask for a snapshot when its turn has come (`snapshots.rs`);
//! - any node: once the cluster is up, propose `NodeStarted{self}` (its sockets from a previous
//!   run become recovery records) and then count as ready;
//! - the leader: set the epoch if the cluster has none; propose `PurgeNode` for a member not
//!   heard from for `node_dead_after` (once per outage).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::types::{Command, NodeId, Response};

use super::Core;

const TICK: Duration = Duration::from_millis(100);

pub(crate) async fn run(core: Arc<Core>) {
    let mut stop = core.stop_rx.clone();
    let mut leader_since: Option<(u64, Instant)> = None;
    let mut purged: HashSet<NodeId> = HashSet::new();
    let mut epoch_proposed_term = None;
    let mut started_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut snapshots = super::snapshots::Scheduler::default();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let m = core.raft.metrics().borrow().clone();
        let is_leader = m.current_leader == Some(core.id);
        snapshots
            .tick(
                &core,
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map_or(0, |l| l.index),
            )
            .await;
        let epoch = core.reader.epoch();

        // NodeStarted once the cluster has a leader and an epoch.
        if core.started_index.load(Ordering::Relaxed) == 0
            && m.current_leader.is_some()
            && epoch.is_some()
            && started_task.as_ref().is_none_or(|t| t.is_finished())
        {
            let c = core.clone();
            started_task = Some(tokio::spawn(async move {
                let cmd = Command::NodeStarted {
                    node: c.id,
                    recoverable_for_ms: millis(c.cfg.recovery_window),
                };
                match c.submit(cmd, true).await {
                    Ok(r) => {
                        let idx = match r {
                            Response::NodeReset { index } => index,
                            _ => 1,
                        };
                        c.started_index.store(idx.max(1), Ordering::Relaxed);
                        c.ready.store(true, Ordering::Relaxed);
                        tracing::info!(node = c.id, "node started and ready");
                    }
                    Err(e) => tracing::info!(error = %e, "NodeStarted not yet committed, retrying"),
                }
            }));
        }

        if !is_leader {
            leader_since = None;
            purged.clear();
            continue;
        }
        let since = match leader_since {
            Some((term, t)) if term == m.current_term => t,
            _ => {
                let now = Instant::now();
                leader_since = Some((m.current_term, now));
                now
            }
        };

        if epoch.is_none() && epoch_proposed_term != Some(m.current_term) {
            epoch_proposed_term = Some(m.current_term);
            let c = core.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 8];
                rand::rng().fill_bytes(&mut b);
                let epoch: String = b.iter().map(|x| format!("{x:02x}")).collect();
                match c
                    .submit(
                        Command::SetEpoch {
                            epoch: epoch.clone(),
                        },
                        false,
                    )
                    .await
                {
                    Ok(Response::Ok) => tracing::info!(%epoch, "cluster epoch proposed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "set epoch"),
                }
            });
        }

        let membership = m.membership_config.membership().clone();
        for (id, _) in membership.nodes() {
            if *id == core.id {
                continue;
            }
            let last = core.net.last_contact(*id).map_or(since, |t| t.max(since));
            if last.elapsed() < core.cfg.node_dead_after {
                purged.remove(id);
                continue;
            }
            if purged.insert(*id) {
                tracing::warn!(node = id, "member unreachable: purging its sockets");
                let c = core.clone();
                let node = *id;
                tokio::spawn(async move {
                    let cmd = Command::PurgeNode {
                        node,
                        recoverable_for_ms: millis(c.cfg.recovery_window),
                    };
                    if let Err(e) = c.submit(cmd, false).await {
                        tracing::warn!(node, error = %e, "purge node");
                    }
                });
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
