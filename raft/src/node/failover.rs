//! Fast failover: when the leader falls silent, one follower — the one with the most complete
//! log among the voters that also lost the leader — starts the election as soon as the voters'
//! leader lease has run out.
//!
//! Left to itself, openraft 0.9 waits the leader lease (`election_timeout_max`) *plus* a random
//! election timeout before a follower campaigns, and when both followers of a three-node group
//! campaign at once (same term) or the one with the shorter log goes first, the election is
//! lost and retried a full timeout later: 0.9–1.2 s after a leader dies, up to ~3 s with a
//! collision (measured by `raftcast chaos --faults kill-leader`). Here every follower that has
//! not heard from its leader for longer than the lease asks the other voters (`Req::LogState`)
//! what they know; when a majority agrees the leader is silent, the one with the greatest last
//! log id (lowest node id on a tie) triggers the election at once, so it wins in one round
//! about `election_timeout_max` after the last heartbeat. If anything goes wrong (a lost
//! vote, a peer that does not answer), openraft's own timers still elect a leader as before:
//! this only ever starts an election earlier, never prevents one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::network::wire::{LogState, Req, Resp};
use crate::types::NodeId;

use super::Core;

/// How often a follower checks on its leader.
const TICK: Duration = Duration::from_millis(20);
/// Silence beyond the lease before we act: absorbs the difference between the moments the
/// followers last heard the leader, so their leases have expired when our vote request lands.
const MARGIN: Duration = Duration::from_millis(40);
/// Longest wait for a voter's `LogState`.
const ASK_TIMEOUT: Duration = Duration::from_millis(100);

pub(crate) async fn run(core: Arc<Core>) {
    let mut stop = core.stop_rx.clone();
    let lease = Duration::from_millis(core.cfg.election_timeout_ms.1);
    let mut last_trigger: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if last_trigger.is_some_and(|t| t.elapsed() < lease * 2) {
            continue;
        }
        let Some((leader, others)) = silent_leader(&core, lease + MARGIN) else {
            continue;
        };
        if should_campaign(&core, leader, &others, lease).await {
            last_trigger = Some(Instant::now());
            core.fast_elections.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                node = core.id,
                leader,
                "leader silent past its lease; this node has the most complete log: starting an election"
            );
            if let Err(e) = core.raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
        }
    }
}

/// The leader we follow and the other voters, when we are a voter and have not heard from that
/// leader for at least `after`.
fn silent_leader(core: &Core, after: Duration) -> Option<(NodeId, Vec<NodeId>)> {
    let m = core.raft.metrics().borrow().clone();
    let leader = m.current_leader.filter(|l| *l != core.id)?;
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    if !voters.contains(&core.id) {
        return None;
    }
    let last = core.net.last_contact(leader)?;
    if last.elapsed() < after {
        return None;
    }
    let others = voters
        .into_iter()
        .filter(|v| *v != core.id && *v != leader)
        .collect();
    Some((leader, others))
}

/// Ask the other voters; true when a majority of voters lost `leader` and we rank first.
async fn should_campaign(core: &Core, leader: NodeId, others: &[NodeId], lease: Duration) -> bool {
    let asks = others.iter().map(|id| async move {
        let addr = core.peer_addr_of(*id)?;
        match core
            .net
            .call(&addr, Some(*id), &Req::LogState, ASK_TIMEOUT)
            .await
        {
            Ok(Resp::LogState(s)) => Some((*id, s)),
            _ => None,
        }
    });
    let answers: Vec<(NodeId, LogState)> =
        super::join_all(asks).await.into_iter().flatten().collect();
    let mine = LogState {
        leader: Some(leader),
        leader_silent_ms: None,
        last_log: core.raft.data_metrics().borrow().last_log,
    };
    let voters = others.len() + 2;
    decide(core.id, leader, &mine, &answers, voters, lease)
}

/// Pure decision (unit-tested): `answers` are the other voters' states (the silent leader
/// excluded), `voters` counts every voter including the leader and us.
fn decide(
    me: NodeId,
    leader: NodeId,
    mine: &LogState,
    answers: &[(NodeId, LogState)],
    voters: usize,
    lease: Duration,
) -> bool {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    // A voter grants our vote only once its own lease on the leader has run out; one that
    // follows nobody or someone else means an election is already under way: leave it alone.
    let agreeing: Vec<&(NodeId, LogState)> = answers
        .iter()
        .filter(|(_, s)| {
            s.leader == Some(leader) && s.leader_silent_ms.is_some_and(|ms| ms > lease_ms)
        })
        .collect();
    if agreeing.len() + 1 < voters / 2 + 1 {
        return false;
    }
    agreeing.iter().all(|(id, s)| {
        (mine.last_log, std::cmp::Reverse(me)) > (s.last_log, std::cmp::Reverse(*id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn st(leader: Option<NodeId>, silent: Option<u64>, last: Option<LogId<NodeId>>) -> LogState {
        LogState {
            leader,
            leader_silent_ms: silent,
            last_log: last,
        }
    }

    const LEASE: Duration = Duration::from_millis(600);

    #[test]
    fn the_follower_with_the_longer_log_campaigns_and_the_other_does_not() {
        let a = st(Some(1), None, log(3, 10));
        let b = st(Some(1), Some(700), log(3, 11));
        assert!(!decide(2, 1, &a, &[(3, b.clone())], 3, LEASE));
        let a_seen = st(Some(1), Some(700), log(3, 10));
        assert!(decide(3, 1, &b, &[(2, a_seen)], 3, LEASE));
    }

    #[test]
    fn equal_logs_go_to_the_lowest_id() {
        let a = st(Some(1), Some(700), log(3, 10));
        assert!(decide(2, 1, &a, &[(3, a.clone())], 3, LEASE));
        assert!(!decide(3, 1, &a, &[(2, a.clone())], 3, LEASE));
    }

    #[test]
    fn no_campaign_while_another_voter_still_hears_the_leader() {
        let mine = st(Some(1), None, log(3, 12));
        let other = st(Some(1), Some(150), log(3, 10));
        assert!(!decide(2, 1, &mine, &[(3, other)], 3, LEASE));
    }

    #[test]
    fn no_campaign_without_a_majority_of_answers() {
        let mine = st(Some(1), None, log(3, 12));
        // Five voters: the silent leader, us, and only one of three others answered.
        let other = st(Some(1), Some(900), log(3, 10));
        assert!(!decide(2, 1, &mine, &[(3, other.clone())], 5, LEASE));
        assert!(decide(
            2,
            1,
            &mine,
            &[(3, other.clone()), (4, other)],
            5,
            LEASE
        ));
    }

    #[test]
    fn no_campaign_when_a_voter_already_follows_someone_else_or_campaigns() {
        let mine = st(Some(1), None, log(3, 12));
        let other = st(Some(3), Some(5), log(4, 13));
        assert!(!decide(2, 1, &mine, &[(3, other)], 3, LEASE));
        let candidate = st(None, None, log(3, 10));
        assert!(!decide(2, 1, &mine, &[(3, candidate)], 3, LEASE));
    }
}
