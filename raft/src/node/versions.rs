//! Which commands this node may propose: those every member of the cluster can read.
//!
//! A version that adds a command cannot put it in the log while a member runs an older
//! version: that member could not decode the entry (as a follower it would stop applying; as
//! the leader it would refuse the forward, and with it every proposal of the batch). So each
//! node asks every other member which protocol it speaks ([`Req::Version`]; an older version
//! does not know the request and drops the connection), and proposes the newer commands only
//! while every member of the current membership has answered [`PROTOCOL`] or later. Until
//! then it proposes their older forms ([`Command::compatible`]), which every version reads.
//!
//! A member that once answered is not asked again (a node is not downgraded under a running
//! cluster: see docs/operations.md, "Upgrading a cluster"); a member that joins later is
//! asked before the newer commands are proposed again.
//!
//! [`Command::compatible`]: crate::types::Command::compatible

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{join_all, Core};

use crate::network::wire::{Req, Resp};
use crate::types::{Command, NodeId};

/// The peer protocol this version speaks. 2: the commands naming a socket's user
/// ([`Command::JoinOf`], [`Command::LeaveOf`], [`Command::SocketCloseOf`]). 3: the results
/// kept for retried proposals in one record per entry (`state/dedup.rs`), written only while
/// every member reads them (an older node that installed a snapshot of them would apply a
/// retry twice). 4: a room's history in one record per room per entry (`state/history.rs`),
/// likewise (an older node would lose that history). 5: a room's newest events in an open
/// record that later entries extend (`state/history.rs`), likewise. One gate for all: while
/// a member speaks an older protocol, the older command forms and layouts are written.
pub const PROTOCOL: u32 = 5;

/// How often the membership is checked (and unknown members asked).
const TICK: Duration = Duration::from_secs(1);

/// How long a member has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a node being added may take to show in the membership.
const JOIN_GRACE: Duration = Duration::from_secs(30);

/// What this node knows of the other members' versions.
#[derive(Default)]
pub(crate) struct Versions {
    /// Whether this node itself proposes the newer forms (not when it stands for an older
    /// version in a test: [`crate::RaftConfig::protocol`]).
    older: bool,
    /// Members that answered [`PROTOCOL`] or later.
    current: Mutex<BTreeSet<NodeId>>,
    /// Whether every member of the current membership did.
    all: AtomicBool,
    /// A node being added, and since when: until it shows in the membership (and is asked),
    /// the older forms are proposed.
    joining: Mutex<Option<(NodeId, Instant)>>,
    /// Shared with the state machine: write the results kept for retries and the rooms'
    /// history one record per entry (set while [`Versions::all`]).
    per_entry: Arc<AtomicBool>,
}

impl Versions {
    /// `cmd` as this node may propose it now.
    pub(crate) fn proposable(&self, cmd: Command) -> Command {
        if self.all() {
            cmd
        } else {
            cmd.compatible()
        }
    }

    /// Whether every member reads this version's commands (they are proposed as they are).
    pub(crate) fn all(&self) -> bool {
        !self.older && self.all.load(Ordering::Relaxed)
    }

    /// For a node that speaks `protocol`; `per_entry` is the state machine's layout switch.
    pub(crate) fn new(protocol: u32, per_entry: Arc<AtomicBool>) -> Versions {
        Versions {
            older: protocol < PROTOCOL,
            per_entry,
            ..Versions::default()
        }
    }

    /// Opens or closes the gate.
    fn set_all(&self, all: bool) -> bool {
        self.per_entry.store(all && !self.older, Ordering::Relaxed);
        self.all.swap(all, Ordering::Relaxed)
    }

    /// Members of `members` (other than `me`) not known to speak [`PROTOCOL`].
    fn unknown(&self, me: NodeId, members: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let current = self.current.lock().map(|c| c.clone()).unwrap_or_default();
        members
            .iter()
            .filter(|id| **id != me && !current.contains(id))
            .copied()
            .collect()
    }

    /// Called before `node` is added as a member: the older forms are proposed until it is
    /// in the membership and has answered (or for [`JOIN_GRACE`], if it never shows up).
    pub(crate) fn membership_changing(&self, node: NodeId) {
        if let Ok(mut j) = self.joining.lock() {
            *j = Some((node, Instant::now()));
        }
        self.set_all(false);
    }

    /// Whether a node being added is not yet in `members`.
    fn awaiting_join(&self, members: &BTreeSet<NodeId>) -> bool {
        let Ok(mut j) = self.joining.lock() else {
            return true;
        };
        match *j {
            Some((node, at)) if !members.contains(&node) && at.elapsed() < JOIN_GRACE => true,
            Some(_) => {
                *j = None;
                false
            }
            None => false,
        }
    }

    /// Records the members that answered, and whether `members` are now all known. A
    /// membership without this node (a cluster not yet formed) is not.
    fn update(&self, me: NodeId, members: &BTreeSet<NodeId>, answered: &[NodeId]) -> bool {
        if let Ok(mut c) = self.current.lock() {
            c.extend(answered);
        }
        let all = members.contains(&me)
            && self.unknown(me, members).is_empty()
            && !self.awaiting_join(members);
        let was = self.set_all(all);
        if all && !was {
            tracing::info!(
                protocol = PROTOCOL,
                "every member speaks this version's protocol: proposing its commands"
            );
        }
        all
    }
}

/// Whether node `node_id` (its peer transport at `addr`) may join: always while the cluster
/// proposes the older forms; once it proposes this version's commands, or may be about to
/// (another node is joining, which closed the gate until it has answered), only if the node
/// answers this protocol or later (an older one could not read the log). The error says why,
/// for the joiner's log and the leader's; a joiner refused while another joined retries.
pub(crate) async fn may_join(core: &Core, node_id: NodeId, addr: &str) -> Result<(), String> {
    let joining = core.versions.joining.lock().map_or(true, |j| j.is_some());
    if !core.versions.all.load(Ordering::Relaxed) && !joining {
        return Ok(());
    }
    match core
        .net
        .call(addr, Some(node_id), &Req::Version, ASK_TIMEOUT)
        .await
    {
        Ok(r) if speaks_current(&r) => Ok(()),
        answer => Err(format!(
            "this cluster proposes the commands of peer protocol {PROTOCOL}, which node \
             {node_id} does not read (it answered {}): run the cluster's version of \
             raftcast or a newer one on it",
            match answer {
                Ok(Resp::Version(v)) => format!("protocol {v}"),
                Ok(_) => "something else".to_owned(),
                Err(e) => format!("no protocol: {e}"),
            }
        )),
    }
}

/// Whether an answer to [`Req::Version`] says the member reads this version's commands.
fn speaks_current(resp: &Resp) -> bool {
    matches!(resp, Resp::Version(v) if *v >= PROTOCOL)
}

pub(crate) async fn run(core: Arc<Core>) {
    let mut stop = core.stop_rx.clone();
    loop {
        let members: BTreeSet<NodeId> = {
            let m = core.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect()
        };
        let unknown = core.versions.unknown(core.id, &members);
        // Older forms from now on if a member is not known (yet), not only after the asking.
        core.versions.update(core.id, &members, &[]);
        let asks = unknown.iter().filter_map(|id| {
            let addr = core.peer_addr_of(*id)?;
            let core = &core;
            Some(async move {
                match core
                    .net
                    .call(&addr, Some(*id), &Req::Version, ASK_TIMEOUT)
                    .await
                {
                    Ok(r) if speaks_current(&r) => Some(*id),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!(peer = id, error = %e, "no protocol version from member");
                        None
                    }
                }
            })
        });
        let answered: Vec<NodeId> = join_all(asks).await.into_iter().flatten().collect();
        core.versions.update(core.id, &members, &answered);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn join() -> Command {
        Command::JoinOf {
            sid: "s".into(),
            user_id: "u".into(),
            rooms: vec!["r".into()],
        }
    }

    #[test]
    fn the_newer_commands_wait_for_every_member() {
        let v = Versions::default();
        let members = BTreeSet::from([1, 2, 3]);
        assert!(matches!(v.proposable(join()), Command::Join { .. }));
        assert!(!v.update(1, &members, &[2]), "node 3 has not answered");
        assert!(matches!(v.proposable(join()), Command::Join { .. }));
        assert_eq!(v.unknown(1, &members), vec![3]);
        assert!(v.update(1, &members, &[3]));
        assert!(matches!(v.proposable(join()), Command::JoinOf { .. }));
        // A member that joins later is asked before the newer commands are proposed again.
        let grown = BTreeSet::from([1, 2, 3, 4]);
        assert!(!v.update(1, &grown, &[]));
        assert!(matches!(v.proposable(join()), Command::Join { .. }));
        assert!(v.update(1, &grown, &[4]));
    }

    #[test]
    fn the_per_entry_results_follow_the_gate_on_a_current_node_only() {
        let flag = Arc::new(AtomicBool::new(false));
        let v = Versions::new(PROTOCOL, flag.clone());
        let members = BTreeSet::from([1, 2]);
        assert!(!v.update(1, &members, &[]));
        assert!(!flag.load(Ordering::Relaxed), "node 2 has not answered");
        assert!(v.update(1, &members, &[2]));
        assert!(flag.load(Ordering::Relaxed));
        v.membership_changing(3);
        assert!(!flag.load(Ordering::Relaxed), "a joining node closes it");
        // A node standing for an older version never writes them.
        let older_flag = Arc::new(AtomicBool::new(false));
        let older = Versions::new(PROTOCOL - 1, older_flag.clone());
        assert!(older.update(1, &members, &[2]));
        assert!(!older_flag.load(Ordering::Relaxed));
    }

    #[test]
    fn a_single_node_speaks_with_itself() {
        let v = Versions::default();
        assert!(v.update(1, &BTreeSet::from([1]), &[]));
    }

    #[test]
    fn a_cluster_not_yet_formed_proposes_the_older_forms() {
        let v = Versions::default();
        assert!(!v.update(1, &BTreeSet::new(), &[]));
        assert!(!v.update(3, &BTreeSet::from([1, 2]), &[1, 2]));
        assert!(matches!(v.proposable(join()), Command::Join { .. }));
    }

    #[test]
    fn a_member_being_added_closes_the_gate_until_the_next_check() {
        let v = Versions::default();
        let members = BTreeSet::from([1, 2]);
        assert!(v.update(1, &members, &[2]));
        v.membership_changing(3);
        assert!(matches!(v.proposable(join()), Command::Join { .. }));
        assert!(
            !v.update(1, &members, &[]),
            "node 3 is not in the membership yet"
        );
        let grown = BTreeSet::from([1, 2, 3]);
        assert!(!v.update(1, &grown, &[]), "node 3 has not answered");
        assert!(v.update(1, &grown, &[3]));
    }

    #[test]
    fn only_an_answer_of_this_protocol_or_later_counts() {
        assert!(speaks_current(&Resp::Version(PROTOCOL)));
        assert!(speaks_current(&Resp::Version(PROTOCOL + 1)));
        assert!(!speaks_current(&Resp::Version(1)));
        assert!(!speaks_current(&Resp::Join(
            crate::network::wire::JoinReply::Ok
        )));
    }
}
