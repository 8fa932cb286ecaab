//! Partition-style faults — isolation, one-way loss, slow link — and healing, made either
//! through the nodes' fault switches (`POST /cluster/fault`, `--net switch`) or as real
//! network faults between the nodes' namespaces (`--net netns`, see [`super::netns`]).
//! Either way only node-to-node traffic is hit: the harness still reaches every node.

use super::cluster::Cluster;
use super::error::ChaosError;
use super::faults::SLOW_LINK_MS;

/// A link fault in force: what it is, and the nodes to heal afterwards.
#[derive(Debug, Clone)]
pub struct LinkFault {
    pub detail: String,
    pub heal: Vec<usize>,
}

impl Cluster {
    /// Cuts node `target` off from every other node, both ways. With the fault switch only
    /// the nodes that are up take part (a dead node has no switch to call).
    pub async fn isolate(&self, target: usize) -> Result<LinkFault, ChaosError> {
        let id = self.id(target);
        let others: Vec<usize> = (0..self.len()).filter(|i| *i != target).collect();
        let mut heal = vec![target];
        if let Some(net) = self.netns() {
            for &o in &others {
                // Heal as we go: a half-made partition is still undone.
                heal.push(o);
                net.cut(target, o).await?;
                net.cut(o, target).await?;
            }
            return Ok(LinkFault {
                detail: format!(
                    "isolate node {id} from every peer ({})",
                    net.netem().cut_short()
                ),
                heal,
            });
        }
        self.fault(target, "isolate_all", None, None).await?;
        for &o in others.iter().filter(|o| self.view.is_up(**o)) {
            heal.push(o);
            self.fault(o, "isolate", Some(id), None).await?;
        }
        Ok(LinkFault {
            detail: format!("isolate node {id} from every peer"),
            heal,
        })
    }

    /// Drops what node `from` sends to node `to`.
    pub async fn one_way(&self, from: usize, to: usize) -> Result<LinkFault, ChaosError> {
        let (f, t) = (self.id(from), self.id(to));
        if let Some(net) = self.netns() {
            net.cut(from, to).await?;
            return Ok(LinkFault {
                detail: format!(
                    "drop what node {f} sends to node {t} ({})",
                    net.netem().cut_short()
                ),
                heal: vec![from, to],
            });
        }
        self.fault(from, "drop_outgoing", Some(t), None).await?;
        Ok(LinkFault {
            detail: format!("drop what node {f} sends to node {t}"),
            heal: vec![from],
        })
    }

    /// Slows the link between nodes `a` and `b`, each way.
    pub async fn slow_link(&self, a: usize, b: usize) -> Result<LinkFault, ChaosError> {
        let (ia, ib) = (self.id(a), self.id(b));
        if let Some(net) = self.netns() {
            net.slow(a, b).await?;
            net.slow(b, a).await?;
            return Ok(LinkFault {
                detail: format!(
                    "slow link node {ia} <-> node {ib}, each way ({})",
                    net.netem().slow_short()
                ),
                heal: vec![a, b],
            });
        }
        self.fault(a, "delay", Some(ib), Some(SLOW_LINK_MS)).await?;
        self.fault(b, "delay", Some(ia), Some(SLOW_LINK_MS)).await?;
        Ok(LinkFault {
            detail: format!("delay node {ia} <-> node {ib} by {SLOW_LINK_MS} ms each way"),
            heal: vec![a, b],
        })
    }

    /// Removes every link fault from node `i` (fault switch `heal_all`, or its namespace's
    /// rules and qdiscs).
    pub async fn heal(&self, i: usize) -> Result<(), ChaosError> {
        match self.netns() {
            Some(net) => Ok(net.heal(i).await?),
            None => self.fault(i, "heal_all", None, None).await,
        }
    }
}
