//! Proposal batching: concurrent proposals on a node are drained into one log entry
//! ([`Request`] with many commands). On the leader the batch goes to `client_write`; on a
//! follower it is forwarded whole to the leader, whose own batcher merges it with others.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::ProposeError;
use crate::network::wire::{ForwardRefused, Req, Resp};
use crate::node::Core;
use crate::types::{Command, Request, Response};

/// Most commands in one entry other than publishes. 64 rather than 512: with one entry in
/// flight the batches fill up during a subscription storm, and entries of hundreds of
/// membership commands (replicated in frames of up to `max_payload_entries` of them) left
/// more memory behind per connection (M1, 10,000 idle connections over 3 nodes, one run
/// each: 17.3 KB at 512, 11.2 KB at 64).
const MAX_BATCH: usize = 64;
/// Most commands in one entry when they are publishes (within [`MAX_BATCH_BYTES`]: 512
/// events of 512 bytes). With one entry in flight, the entry's size bounds the durable
/// path's throughput: capped at 64, three nodes committed 6,900-9,000 emits/s sent in
/// requests of 200 (entries full, one per commit time); at 512 they carry 10,000/s with
/// about a fifth less CPU per emit (docs/performance.md, session 20). Entries grow
/// this large only when proposals queue up behind a commit, so a light load waits for
/// nothing.
const MAX_PUBLISH_BATCH: usize = 512;
/// Most bytes of commands in one entry (beyond its first command): 64 events of up to
/// 64 KiB each would make a 4 MiB entry, which a follower must receive, decode, write and
/// fsync within the one heartbeat interval (100 ms) openraft allows a replication request.
/// Small events (a few hundred bytes) never reach it; large ones get entries of a few each.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Entries in flight at once per node. One: while an entry commits, the proposals that
/// arrive meanwhile queue up and become the next entry (group commit), so the entry rate
/// stays near one per commit time however many emits arrive, and every per-entry cost
/// (replication RPCs, an fsync on each node, an apply pass) is shared by the whole batch.
/// Measured against 4 (`bench/run.sh --scenarios crossnode`): the same or better
/// throughput with a lower p50 under load, and half as many entries.
const MAX_IN_FLIGHT: usize = 1;
/// Histogram (seconds) of the heartbeat round that proves leadership before each entry.
pub const QUORUM_CHECK_SECONDS: &str = "raftcast_raft_quorum_check_seconds";
/// Histogram (seconds) of `client_write`: append, replication to a majority, their fsyncs,
/// commit and apply on the leader.
pub const COMMIT_SECONDS: &str = "raftcast_raft_commit_seconds";
/// Histogram of the commands in each entry this node wrote as leader (batching at work).
pub const ENTRY_COMMANDS: &str = "raftcast_raft_entry_commands";

/// Longest wait for one forward to the leader before routing again.
const FORWARD_ATTEMPT: Duration = Duration::from_millis(1000);
/// Marker of a forwarded proposal that reached a node that is no longer the leader.
pub(crate) const NOT_LEADER: &str = "not leader";

pub(crate) type Outcome = Result<Response, ProposeError>;

/// One proposal waiting for its entry.
pub(crate) struct Item {
    pub cmd: Command,
    /// Unique id of the proposal, kept across retries and forwards (see [`Request::ids`]).
    pub id: u64,
    pub deadline: Instant,
    /// False for proposals forwarded to us: never forward them again.
    pub forwardable: bool,
    pub tx: oneshot::Sender<Outcome>,
}

/// Run the batcher until `rx` closes or the node stops. Proposals arrive in groups (one
/// per caller: a single proposal, a batch of emits, a follower's forwarded entry); a group
/// joins the entry being gathered whole, and what does not fit waits at the front of the
/// queue for the next entry, so a group keeps its order and spans as few entries as the
/// limits allow.
pub(crate) async fn run(core: Arc<Core>, mut rx: mpsc::Receiver<Vec<Item>>) {
    let sem = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut stop = core.stop_rx.clone();
    let mut pending: VecDeque<Item> = VecDeque::new();
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        if pending.is_empty() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                g = rx.recv() => match g { Some(g) => pending.extend(g), None => break },
            }
        }
        let items = gather(&mut pending, &mut rx);
        if items.is_empty() {
            continue;
        }
        let core = core.clone();
        tokio::spawn(async move {
            process(&core, items).await;
            drop(permit);
        });
    }
    // Fail whatever is still queued.
    rx.close();
    fail(pending.into_iter().collect(), ProposeError::ShuttingDown);
    while let Ok(g) = rx.try_recv() {
        fail(g, ProposeError::ShuttingDown);
    }
}

/// The next entry's proposals: from the front of `pending`, then from the groups already
/// queued behind it, up to [`MAX_PUBLISH_BATCH`] commands of which at most [`MAX_BATCH`]
/// are not publishes, and up to [`MAX_BATCH_BYTES`] (the first always goes in, however
/// large). What does not fit stays at the front of `pending`.
fn gather(pending: &mut VecDeque<Item>, rx: &mut mpsc::Receiver<Vec<Item>>) -> Vec<Item> {
    let mut bytes = 0usize;
    let mut others = 0usize;
    let mut items = Vec::new();
    let full = |len: usize, others: usize, bytes: usize| {
        len >= MAX_PUBLISH_BATCH || others >= MAX_BATCH || bytes >= MAX_BATCH_BYTES
    };
    loop {
        while let Some(next) = pending.pop_front() {
            if !items.is_empty() && full(items.len(), others, bytes) {
                pending.push_front(next);
                return items;
            }
            bytes = bytes.saturating_add(next.cmd.approx_bytes());
            if !matches!(next.cmd, Command::Publish { .. }) {
                others += 1;
            }
            items.push(next);
        }
        if full(items.len(), others, bytes) {
            return items;
        }
        match rx.try_recv() {
            Ok(g) => pending.extend(g),
            Err(_) => return items,
        }
    }
}

fn fail(items: Vec<Item>, e: ProposeError) {
    for i in items {
        let _ = i.tx.send(Err(e.clone()));
    }
}

/// This node's Raft has failed: proposals forwarded to it go back to their followers as "not
/// leader", to be routed to the leader elected without it (safe with their ids: applied at
/// most once); this node's own get `ours`.
fn fail_failed(items: Vec<Item>, ours: ProposeError) {
    let (own, forwarded): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| i.forwardable);
    fail(forwarded, ProposeError::NoQuorum(NOT_LEADER.into()));
    fail(own, ours);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn process(core: &Core, mut items: Vec<Item>) {
    let Some(deadline) = items.iter().map(|i| i.deadline).min() else {
        return;
    };
    // The server metrics (leader, vote, membership) rather than the full ones: a forward
    // in flight waits on their changes, and the full metrics change several times per entry.
    let mut metrics = core.raft.server_metrics();
    loop {
        if core.stopping() {
            return fail(items, ProposeError::ShuttingDown);
        }
        if let Some(why) = core.failure() {
            // Nothing is proposed, so "nothing written" holds for our own proposals; those
            // forwarded to us go back to be routed to the next leader.
            return fail_failed(
                items,
                ProposeError::NoQuorum(format!(
                    "this node's Raft stopped ({why}) and the node is shutting down: send to \
                     another node"
                )),
            );
        }
        let now = Instant::now();
        if now >= deadline {
            return fail(
                items,
                ProposeError::NoQuorum("timed out waiting for a leader with quorum".into()),
            );
        }
        let left = deadline - now;
        let leader = metrics.borrow().current_leader;
        match leader {
            Some(l) if l == core.id => {
                if !core.leader_has_quorum() {
                    return fail(
                        items,
                        ProposeError::NoQuorum("leader cannot reach a majority".into()),
                    );
                }
                // Prove, by a heartbeat round, that a majority follows us right now: a write
                // refused with NO_QUORUM is then never appended (so never applied later).
                // Not skippable on a recent reply: a lease of even one heartbeat interval let
                // a write made right after two of three nodes died be appended, answered 503
                // and committed after the heal (tests/cluster_quorum.rs caught it).
                let checking = Instant::now();
                let checked = tokio::time::timeout(left, core.raft.get_read_log_id()).await;
                metrics::histogram!(QUORUM_CHECK_SECONDS).record(checking.elapsed().as_secs_f64());
                match checked {
                    Ok(Ok(_)) => {}
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
                        continue;
                    }
                    Ok(Err(e)) => {
                        return fail(
                            items,
                            ProposeError::NoQuorum(format!(
                                "leader cannot confirm a majority: {e}"
                            )),
                        )
                    }
                    Err(_) => {
                        return fail(
                            items,
                            ProposeError::NoQuorum("no majority answered the leader".into()),
                        )
                    }
                }
                let cmds: Vec<Command> = items.iter().map(|i| i.cmd.clone()).collect();
                let ids: Vec<u64> = items.iter().map(|i| i.id).collect();
                let n = cmds.len() as u64;
                let req = Request {
                    ts_ms: now_ms(),
                    cmds,
                    ids,
                };
                let writing = Instant::now();
                let written = tokio::time::timeout(left, core.raft.client_write(req)).await;
                match written {
                    Ok(Ok(resp)) => {
                        metrics::histogram!(COMMIT_SECONDS).record(writing.elapsed().as_secs_f64());
                        metrics::histogram!(ENTRY_COMMANDS).record(n as f64);
                        core.batch_entries.fetch_add(1, Ordering::Relaxed);
                        core.batch_commands.fetch_add(n, Ordering::Relaxed);
                        let mut results = resp.data.into_iter();
                        for i in items {
                            let r = match results.next() {
                                Some(Ok(r)) => Ok(r),
                                Some(Err(s)) => Err(ProposeError::Rejected(s)),
                                None => Err(ProposeError::Fatal("missing response".into())),
                            };
                            let _ = i.tx.send(r);
                        }
                        return;
                    }
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        // Leadership moved while proposing: route again.
                        continue;
                    }
                    // A leader that is stopping answers "shutting down": the proposal is routed
                    // again (to the next leader) by whoever forwarded it — safe with ids.
                    Ok(Err(_)) if core.stopping() => {
                        return fail(items, ProposeError::ShuttingDown)
                    }
                    // Our Raft failed under this write (a full disk): whether the entry still
                    // commits elsewhere is unknown. Forwarded proposals go back to their
                    // followers to be routed to the next leader, which is safe with their ids
                    // (applied at most once); our own can only report the failure.
                    Ok(Err(e)) if core.failure().is_some() => {
                        return fail_failed(items, ProposeError::Fatal(e.to_string()));
                    }
                    Ok(Err(e)) => return fail(items, ProposeError::Fatal(e.to_string())),
                    Err(_) => {
                        return fail(
                            items,
                            ProposeError::NoQuorum(
                                "not committed within the propose timeout (the majority was lost \
                                 after this write was appended: it may still be applied if the \
                                 majority returns)"
                                    .into(),
                            ),
                        )
                    }
                }
            }
            Some(l) => {
                let (mine, others): (Vec<Item>, Vec<Item>) =
                    items.into_iter().partition(|i| i.forwardable);
                fail(others, ProposeError::NoQuorum(NOT_LEADER.into()));
                items = mine;
                if items.is_empty() {
                    return;
                }
                let Some(addr) = core.peer_addr_of(l) else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let cmds: Vec<(u64, Command)> =
                    items.iter().map(|i| (i.id, i.cmd.clone())).collect();
                // Retries are safe (proposal ids), so a frozen or partitioned leader costs at
                // most one attempt before the proposal is routed again.
                // A forward in flight to a leader that has since been replaced (frozen or cut
                // off, so it does not answer) is abandoned at once and routed to the new one.
                let req = Req::Forward(cmds);
                let call = core
                    .net
                    .call(&addr, Some(l), &req, left.min(FORWARD_ATTEMPT));
                let answer = tokio::select! {
                    r = call => r,
                    () = leader_replaced(&mut metrics, l) => continue,
                };
                match answer {
                    Ok(Resp::Forward(Ok(results))) => {
                        let mut retry = Vec::new();
                        for (i, r) in items.into_iter().zip(results) {
                            match r {
                                Err(ProposeError::NoQuorum(s)) if s == NOT_LEADER => retry.push(i),
                                Err(ProposeError::ShuttingDown) => retry.push(i),
                                r => {
                                    let _ = i.tx.send(r);
                                }
                            }
                        }
                        items = retry;
                        if items.is_empty() {
                            return;
                        }
                    }
                    Ok(Resp::Forward(Err(
                        ForwardRefused::NotLeader | ForwardRefused::ShuttingDown,
                    )))
                    | Ok(_) => {}
                    Err(e) => tracing::debug!(leader = l, error = %e, "forward failed"),
                }
                // Wait a little (or for a leader change) before routing again.
                let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
            }
            None => {
                let _ =
                    tokio::time::timeout(left.min(Duration::from_millis(100)), metrics.changed())
                        .await;
            }
        }
    }
}

/// Resolves once the node follows a leader other than `l` (never, if the metrics close).
async fn leader_replaced(
    metrics: &mut tokio::sync::watch::Receiver<
        openraft::metrics::RaftServerMetrics<crate::types::NodeId, crate::types::NodeInfo>,
    >,
    l: crate::types::NodeId,
) {
    loop {
        if metrics
            .borrow_and_update()
            .current_leader
            .is_some_and(|x| x != l)
        {
            return;
        }
        if metrics.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(payload: usize) -> Item {
        let (tx, _rx) = oneshot::channel();
        Item {
            cmd: Command::Publish {
                room: "r".into(),
                event: "e".into(),
                payload: vec![0; payload],
                durable: true,
                history_max: 100,
                history_ttl_ms: 0,
            },
            id: 1,
            deadline: Instant::now(),
            forwardable: true,
            tx,
        }
    }

    /// Groups of the given payload sizes queued on a channel.
    fn queue(groups: &[&[usize]]) -> mpsc::Receiver<Vec<Item>> {
        let (tx, rx) = mpsc::channel(1024);
        for g in groups {
            tx.try_send(g.iter().map(|&p| item(p)).collect())
                .ok()
                .unwrap();
        }
        rx
    }

    fn sizes(items: &[Item]) -> Vec<usize> {
        items.iter().map(|i| i.cmd.approx_bytes()).collect()
    }

    /// A membership change (any command but a publish), told apart by its room's length.
    fn member(room_len: usize) -> Item {
        let (tx, _rx) = oneshot::channel();
        Item {
            cmd: Command::Join {
                sid: "s".into(),
                rooms: vec!["r".repeat(room_len)],
            },
            id: 1,
            deadline: Instant::now(),
            forwardable: true,
            tx,
        }
    }

    #[test]
    fn a_batch_stops_at_the_command_limit_for_small_events() {
        let n = MAX_PUBLISH_BATCH + 100;
        let mut rx = queue(&[&vec![200; n]]);
        let mut pending = VecDeque::new();
        let b = gather(&mut pending, &mut rx);
        assert_eq!(b.len(), MAX_PUBLISH_BATCH);
        assert_eq!(pending.len(), 100, "the rest wait for the next entry");
        assert_eq!(gather(&mut pending, &mut rx).len(), 100);
        assert!(gather(&mut pending, &mut rx).is_empty());
    }

    #[test]
    fn membership_changes_keep_the_smaller_limit_and_publishes_fill_in_around_them() {
        // A subscription storm: 100 membership changes make entries of MAX_BATCH.
        let (tx, mut rx) = mpsc::channel(1024);
        tx.try_send((0..100).map(member).collect()).ok().unwrap();
        let mut pending = VecDeque::new();
        assert_eq!(gather(&mut pending, &mut rx).len(), MAX_BATCH);
        assert_eq!(gather(&mut pending, &mut rx).len(), 100 - MAX_BATCH);
        assert!(gather(&mut pending, &mut rx).is_empty());
        // Publishes and membership changes mixed: the entry closes at MAX_BATCH of the
        // latter, whatever the publishes between them.
        let mixed: Vec<Item> = (0..200)
            .map(|i| if i % 2 == 0 { member(i) } else { item(i) })
            .collect();
        tx.try_send(mixed).ok().unwrap();
        let first = gather(&mut pending, &mut rx);
        let others = first
            .iter()
            .filter(|i| !matches!(i.cmd, Command::Publish { .. }))
            .count();
        assert_eq!(others, MAX_BATCH);
        assert_eq!(
            first.len(),
            2 * MAX_BATCH - 1,
            "publishes between them joined too"
        );
        assert_eq!(gather(&mut pending, &mut rx).len(), 200 - first.len());
    }

    #[test]
    fn a_batch_stops_at_the_byte_limit_for_large_events() {
        let mut rx = queue(&[&[60_000; 21]]);
        let mut pending = VecDeque::new();
        // 60 kB each: the fifth passes 256 KiB, so no sixth joins.
        assert_eq!(gather(&mut pending, &mut rx).len(), 5);
        assert_eq!(
            gather(&mut pending, &mut rx).len(),
            5,
            "the rest make the next entries"
        );
        // One event over the limit still makes an entry by itself.
        let mut rx = queue(&[&[300_000], &[10]]);
        let mut pending = VecDeque::new();
        assert_eq!(gather(&mut pending, &mut rx).len(), 1);
        assert_eq!(gather(&mut pending, &mut rx).len(), 1);
    }

    #[test]
    fn groups_join_an_entry_in_order_and_the_rest_comes_first_in_the_next() {
        // Groups of 1, 300, 300 and 3 commands, told apart by their sizes (small enough
        // that the command limit, not the byte limit, closes the first entry).
        let a: Vec<usize> = (0..300).map(|i| 10 + i).collect();
        let b: Vec<usize> = (0..300).map(|i| 400 + i).collect();
        let mut rx = queue(&[&[1], &a, &b, &[800, 801, 802]]);
        let mut pending = VecDeque::new();
        let first = gather(&mut pending, &mut rx);
        let second = gather(&mut pending, &mut rx);
        let all: Vec<usize> = sizes(&first).into_iter().chain(sizes(&second)).collect();
        let mut want = vec![1];
        want.extend(&a);
        want.extend(&b);
        want.extend([800, 801, 802]);
        let want: Vec<usize> = want
            .into_iter()
            .map(|p| item(p).cmd.approx_bytes())
            .collect();
        assert_eq!(first.len(), MAX_PUBLISH_BATCH);
        assert_eq!(all, want, "commands out of their groups' order");
        assert!(gather(&mut pending, &mut rx).is_empty());
    }
}
