//! Transport client: pooled authenticated connections per peer address, and openraft's
//! network factory on top.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, RaftNetwork, RaftNetworkFactory, Snapshot, Vote};
use tokio::net::TcpStream;

use super::wire::{read_frame, write_frame, Req, Resp, MAX_FRAME};
use super::{auth, FaultSwitch, NetError};
use crate::types::{NodeId, NodeInfo, TypeConfig};

/// Shared transport context of one node.
pub struct NetCtx {
    /// This node.
    pub me: NodeId,
    secret: String,
    fault: Option<FaultSwitch>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    contacts: Mutex<HashMap<NodeId, Instant>>,
}

/// Idle connections to one address.
struct Peer {
    addr: String,
    idle: Mutex<Vec<(TcpStream, NodeId)>>,
}

impl NetCtx {
    /// A context for node `me`.
    pub fn new(me: NodeId, secret: String, fault: Option<FaultSwitch>) -> Arc<Self> {
        Arc::new(NetCtx {
            me,
            secret,
            fault,
            peers: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    pub(crate) fn fault(&self) -> Option<&FaultSwitch> {
        self.fault.as_ref()
    }

    /// Record that `node` was heard from.
    pub fn touch(&self, node: NodeId) {
        if let Ok(mut c) = self.contacts.lock() {
            c.insert(node, Instant::now());
        }
    }

    /// When `node` was last heard from (a reply to us, or a request to us).
    pub fn last_contact(&self, node: NodeId) -> Option<Instant> {
        self.contacts
            .lock()
            .ok()
            .and_then(|c| c.get(&node).copied())
    }

    fn peer(&self, addr: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .entry(addr.to_owned())
            .or_insert_with(|| {
                Arc::new(Peer {
                    addr: addr.to_owned(),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// One request/response with the peer at `addr` (expected to be node `target` if known).
    pub async fn call(
        &self,
        addr: &str,
        target: Option<NodeId>,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        tokio::time::timeout(timeout, self.call_inner(addr, target, req))
            .await
            .map_err(|_| NetError::Timeout)?
    }

    async fn call_inner(
        &self,
        addr: &str,
        target: Option<NodeId>,
        req: &Req,
    ) -> Result<Resp, NetError> {
        if let Some(f) = &self.fault {
            let (drop, delay) = f.outgoing(target);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if drop {
                return Err(NetError::Injected);
            }
        }
        let peer = self.peer(addr);
        let pooled = peer.idle.lock().ok().and_then(|mut v| v.pop());
        let was_pooled = pooled.is_some();
        let (stream, peer_id) = match pooled {
            Some(c) => c,
            None => self.connect(&peer.addr).await?,
        };
        let (stream, peer_id, resp) =
            match exchange(stream, peer_id, req, self.fault.as_ref()).await {
                Ok(r) => r,
                // A pooled connection may have been closed by a restarted peer: retry once fresh.
                Err(NetError::Io(_)) if was_pooled => {
                    let (s, id) = self.connect(&peer.addr).await?;
                    exchange(s, id, req, self.fault.as_ref()).await?
                }
                Err(e) => return Err(e),
            };
        self.touch(peer_id);
        if let Ok(mut idle) = peer.idle.lock() {
            if idle.len() < 8 {
                idle.push((stream, peer_id));
            }
        }
        Ok(resp)
    }

    async fn connect(&self, addr: &str) -> Result<(TcpStream, NodeId), NetError> {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let id = auth::client(&mut s, &self.secret, self.me).await?;
        Ok((s, id))
    }
}

async fn exchange(
    mut stream: TcpStream,
    peer_id: NodeId,
    req: &Req,
    fault: Option<&FaultSwitch>,
) -> Result<(TcpStream, NodeId, Resp), NetError> {
    if fault.is_some_and(|f| f.outgoing(Some(peer_id)).0) {
        return Err(NetError::Injected);
    }
    write_frame(&mut stream, req).await?;
    let resp: Resp = read_frame(&mut stream, MAX_FRAME).await?;
    Ok((stream, peer_id, resp))
}

/// openraft's network factory.
#[derive(Clone)]
pub struct Network(pub Arc<NetCtx>);

/// A connection handle to one target for openraft.
pub struct PeerClient {
    ctx: Arc<NetCtx>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            ctx: self.0.clone(),
            target,
            addr: node.peer_addr.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

fn transport_err<E: std::error::Error>(e: NetError) -> RpcErr<E> {
    match e {
        NetError::Io(_) | NetError::Injected | NetError::Auth(_) => {
            RPCError::Unreachable(Unreachable::new(&AnyError::error(e.to_string())))
        }
        _ => RPCError::Network(NetworkError::new(&AnyError::error(e.to_string()))),
    }
}

fn remote_err<E: std::error::Error>(s: String) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&AnyError::error(format!("remote: {s}"))))
}

/// How long a whole snapshot of `bytes` may take to be sent and installed: at least 30 s
/// (and openraft's own timeout), and as long as it takes at 4 MiB/s. A fixed timeout would
/// be a cliff: a state big enough to miss it on a slow link would be sent again and again,
/// and the node would never catch up.
fn snapshot_ttl(hard: Duration, bytes: usize) -> Duration {
    let by_size = Duration::from_secs((bytes as u64) / (4 << 20));
    hard.max(Duration::from_secs(30)).max(by_size)
}

impl PeerClient {
    async fn rpc(&self, req: Req, ttl: Duration) -> Result<Resp, NetError> {
        self.ctx
            .call(&self.addr, Some(self.target), &req, ttl)
            .await
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.rpc(Req::Append(rpc), option.hard_ttl()).await {
            Ok(Resp::Append(Ok(r))) => Ok(r),
            Ok(Resp::Append(Err(s))) => Err(remote_err(s)),
            Ok(_) => Err(transport_err(NetError::Unexpected)),
            Err(e) => Err(transport_err(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        // Snapshots go whole through `full_snapshot`; the chunked RPC is not used.
        Err(remote_err(
            "chunked install_snapshot is not supported".into(),
        ))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.rpc(Req::Vote(rpc), option.hard_ttl()).await {
            Ok(Resp::Vote(Ok(r))) => Ok(r),
            Ok(Resp::Vote(Err(s))) => Err(remote_err(s)),
            Ok(_) => Err(transport_err(NetError::Unexpected)),
            Err(e) => Err(transport_err(e)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let data = snapshot.snapshot.into_inner();
        let ttl = snapshot_ttl(option.hard_ttl(), data.len());
        let req = Req::Snapshot {
            vote,
            meta: snapshot.meta,
            data,
        };
        let net = |e: String| NetworkError::new(&AnyError::error(e));
        tokio::select! {
            closed = cancel => Err(closed.into()),
            r = self.rpc(req, ttl) => match r {
                Ok(Resp::Snapshot(Ok(r))) => Ok(r),
                Ok(Resp::Snapshot(Err(s))) => Err(net(format!("remote: {s}")).into()),
                Ok(_) => Err(net("unexpected reply".into()).into()),
                Err(e @ (NetError::Io(_) | NetError::Injected | NetError::Auth(_))) => {
                    Err(Unreachable::new(&AnyError::error(e.to_string())).into())
                }
                Err(e) => Err(net(e.to_string()).into()),
            },
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_gets_time_in_proportion_to_its_size() {
        let ten = Duration::from_secs(10);
        assert_eq!(snapshot_ttl(ten, 1 << 20), Duration::from_secs(30));
        assert_eq!(
            snapshot_ttl(Duration::from_secs(60), 1 << 20),
            Duration::from_secs(60)
        );
        assert_eq!(snapshot_ttl(ten, 1 << 30), Duration::from_secs(256));
    }
}
