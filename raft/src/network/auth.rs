//! Mutual HMAC-SHA256 challenge-response on the cluster secret. The secret never crosses the
//! wire and is never logged; MACs are compared in constant time.
//!
//! client → Hello{node_id, nonce_c}; server → Challenge{nonce_s, mac(srv|nonce_c)};
//! client checks it → Proof{mac(cli|nonce_s|node_id)}; server checks it → Welcome{node_id}.

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::net::TcpStream;

use super::wire::{read_frame, write_frame};
use super::NetError;
use crate::types::NodeId;

const HS_LIMIT: usize = 1024;

#[derive(Serialize, Deserialize)]
enum Hs {
    Hello { node_id: NodeId, nonce: [u8; 32] },
    Challenge { nonce: [u8; 32], mac: Vec<u8> },
    Proof { mac: Vec<u8> },
    Welcome { node_id: NodeId },
}

fn mac(secret: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    for p in parts {
        m.update(p);
    }
    m
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rng().fill_bytes(&mut n);
    n
}

/// Client side: returns the peer's node id.
pub async fn client(s: &mut TcpStream, secret: &str, me: NodeId) -> Result<NodeId, NetError> {
    let nc = nonce();
    write_frame(
        s,
        &Hs::Hello {
            node_id: me,
            nonce: nc,
        },
    )
    .await?;
    let Hs::Challenge {
        nonce: ns,
        mac: smac,
    } = read_frame(s, HS_LIMIT).await?
    else {
        return Err(NetError::Auth("expected challenge".into()));
    };
    mac(secret, &[b"srv", &nc])
        .verify_slice(&smac)
        .map_err(|_| NetError::Auth("peer does not know the cluster secret".into()))?;
    let proof = mac(secret, &[b"cli", &ns, &me.to_be_bytes()])
        .finalize()
        .into_bytes()
        .to_vec();
    write_frame(s, &Hs::Proof { mac: proof }).await?;
    match read_frame(s, HS_LIMIT).await {
        Ok(Hs::Welcome { node_id }) => Ok(node_id),
        Ok(_) => Err(NetError::Auth("expected welcome".into())),
        Err(_) => Err(NetError::Auth("refused by peer".into())),
    }
}

/// Server side: returns the authenticated peer's node id.
pub async fn server(s: &mut TcpStream, secret: &str, me: NodeId) -> Result<NodeId, NetError> {
    let Hs::Hello { node_id, nonce: nc } = read_frame(s, HS_LIMIT).await? else {
        return Err(NetError::Auth("expected hello".into()));
    };
    let ns = nonce();
    let smac = mac(secret, &[b"srv", &nc]).finalize().into_bytes().to_vec();
    write_frame(
        s,
        &Hs::Challenge {
            nonce: ns,
            mac: smac,
        },
    )
    .await?;
    let Hs::Proof { mac: cmac } = read_frame(s, HS_LIMIT).await? else {
        return Err(NetError::Auth("expected proof".into()));
    };
    mac(secret, &[b"cli", &ns, &node_id.to_be_bytes()])
        .verify_slice(&cmac)
        .map_err(|_| NetError::Auth(format!("node {node_id} does not prove the cluster secret")))?;
    write_frame(s, &Hs::Welcome { node_id: me }).await?;
    Ok(node_id)
}
