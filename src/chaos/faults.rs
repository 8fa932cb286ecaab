//! Injecting and undoing one fault: picks its target(s) among the nodes (seeded), acts on
//! the processes (SIGKILL, SIGSTOP) or on the links between the nodes ([`super::links`]:
//! fault switches or network namespaces), and says how to undo it.

use std::time::Duration;

use super::cluster::Cluster;
use super::error::ChaosError;
use super::plan::{Dice, FaultKind};

/// Delay of a slow link, each way (fault switch; netns with netem).
pub const SLOW_LINK_MS: u64 = 200;

/// How to undo an injected fault.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Start the killed node again (same data dir).
    Restart(usize),
    /// SIGCONT the frozen node.
    Resume(usize),
    /// Heal every link fault of these nodes.
    Heal(Vec<usize>),
}

/// A fault in force.
#[derive(Debug, Clone)]
pub struct Injected {
    pub kind: FaultKind,
    /// Node ids hit.
    pub nodes: Vec<u64>,
    pub detail: String,
    pub leader_before: Option<u64>,
    pub undo: Undo,
}

/// Injects `kind`. `client_nodes` are the ids of the nodes clients are on now.
pub async fn inject(
    kind: FaultKind,
    cluster: &mut Cluster,
    dice: &mut Dice,
    client_nodes: &[u64],
) -> Result<Injected, ChaosError> {
    let up = cluster.view.up_from(0);
    if up.is_empty() {
        return Err(ChaosError::NotReady(
            "no node is up to inject a fault into".into(),
        ));
    }
    let leader = cluster.leader().await.filter(|l| up.contains(l));
    let leader_before = leader.map(|l| cluster.id(l));
    let lead = leader.unwrap_or_else(|| up[dice.pick(up.len())]);
    let followers: Vec<usize> = up.iter().copied().filter(|i| *i != lead).collect();
    let follower = if followers.is_empty() {
        lead
    } else {
        followers[dice.pick(followers.len())]
    };
    let l_id = cluster.id(lead);
    let injected = |nodes: Vec<u64>, detail: String, undo: Undo| Injected {
        kind,
        nodes,
        detail,
        leader_before,
        undo,
    };
    Ok(match kind {
        FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::KillClientNode => {
            let target = match kind {
                FaultKind::KillLeader => lead,
                FaultKind::KillFollower => follower,
                _ => busiest(cluster, &up, client_nodes, dice),
            };
            cluster.kill(target).await?;
            let id = cluster.id(target);
            injected(
                vec![id],
                format!("SIGKILL node {id}"),
                Undo::Restart(target),
            )
        }
        FaultKind::PauseLeader | FaultKind::PauseFollower => {
            let target = if kind == FaultKind::PauseLeader {
                lead
            } else {
                follower
            };
            cluster.signal_pause(target, true).await?;
            let id = cluster.id(target);
            injected(vec![id], format!("SIGSTOP node {id}"), Undo::Resume(target))
        }
        FaultKind::IsolateLeader => {
            let link = cluster.isolate(lead).await?;
            injected(vec![l_id], link.detail, Undo::Heal(link.heal))
        }
        FaultKind::OneWay => {
            let link = cluster.one_way(lead, follower).await?;
            let nodes = vec![l_id, cluster.id(follower)];
            injected(nodes, link.detail, Undo::Heal(link.heal))
        }
        FaultKind::SlowLink => {
            let link = cluster.slow_link(lead, follower).await?;
            let nodes = vec![l_id, cluster.id(follower)];
            injected(nodes, link.detail, Undo::Heal(link.heal))
        }
    })
}

/// The up node most clients are connected to (ties broken by the dice).
fn busiest(cluster: &Cluster, up: &[usize], client_nodes: &[u64], dice: &mut Dice) -> usize {
    let counts: Vec<(usize, usize)> = up
        .iter()
        .map(|&i| {
            (
                i,
                client_nodes.iter().filter(|n| **n == cluster.id(i)).count(),
            )
        })
        .collect();
    let best = counts.iter().map(|c| c.1).max().unwrap_or(0);
    let top: Vec<usize> = counts.iter().filter(|c| c.1 == best).map(|c| c.0).collect();
    top.get(dice.pick(top.len())).copied().unwrap_or(0)
}

/// Undoes a fault. A restarted node is marked up in the background once ready.
pub async fn undo(cluster: &mut Cluster, undo: &Undo) -> Result<(), ChaosError> {
    match undo {
        Undo::Restart(i) => {
            cluster.spawn(*i)?;
            let _ready = cluster.watch_ready(*i, Duration::from_secs(30));
            Ok(())
        }
        Undo::Resume(i) => cluster.signal_pause(*i, false).await,
        Undo::Heal(nodes) => {
            let mut first_err = None;
            for &i in nodes {
                if let Err(e) = cluster.heal(i).await {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }
    }
}
