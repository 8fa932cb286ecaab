//! The state machine on sled: applies entries with the pure state logic, one atomic sled
//! batch per `apply()` call, then emits [`Applied`] events (awaiting channel capacity).
//! Snapshots are a full dump of the state tree; installing one replaces it.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{read_err, write_err, SledKv, StoreError};
use crate::state::keys::{dec, enc, get, meta, put};
use crate::state::kv::{Overlay, Pair};
use crate::state::{self, apply_entry};
use crate::types::{Applied, EntryResponse, NodeId, NodeInfo, TypeConfig};

const CURRENT: &[u8] = b"current";
const INSTALLING: &[u8] = b"installing";

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

/// The state machine store.
pub struct SmStore {
    db: sled::Db,
    kv: SledKv,
    snap: sled::Tree,
    tx: Option<mpsc::Sender<Applied>>,
    snap_seq: u64,
}

impl SmStore {
    pub(crate) fn new(db: &sled::Db) -> Result<Self, StoreError> {
        let kv = SledKv(db.open_tree("sm")?);
        let snap = db.open_tree("sm_snapshot")?;
        if snap.get(INSTALLING)?.is_some() {
            // A crash interrupted a snapshot install: redo it from the stored snapshot.
            if let Some(file) = snap.get(CURRENT)? {
                let file: SnapshotFile = dec(&file)?;
                restore(&kv.0, &file.data)?;
            }
            snap.remove(INSTALLING)?;
            db.flush()?;
        }
        Ok(SmStore {
            db: db.clone(),
            kv,
            snap,
            tx: None,
            snap_seq: 0,
        })
    }

    /// Send applied events to `tx` (without it, events are dropped: storage tests).
    pub fn with_events(mut self, tx: mpsc::Sender<Applied>) -> Self {
        self.tx = Some(tx);
        self
    }

    /// The state tree (for readers).
    pub fn kv(&self) -> SledKv {
        self.kv.clone()
    }

    async fn emit(&self, events: Vec<Applied>) {
        if let Some(tx) = &self.tx {
            for ev in events {
                if tx.send(ev).await.is_err() {
                    tracing::debug!("applied-events receiver dropped");
                    break;
                }
            }
        }
    }
}

fn restore(tree: &sled::Tree, data: &[u8]) -> Result<(), StoreError> {
    let pairs: Vec<Pair> = dec(data)?;
    tree.clear()?;
    let mut batch = sled::Batch::default();
    for (k, v) in pairs {
        batch.insert(k, v);
    }
    tree.apply_batch(batch)?;
    Ok(())
}

type Applied2 = (Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>);

fn applied_of(kv: &SledKv) -> Result<Applied2, StorageError<NodeId>> {
    // Both are stored as `Option`s.
    let applied: Option<Option<LogId<NodeId>>> =
        get(kv, &meta(state::meta::APPLIED)).map_err(read_err)?;
    let membership: Option<Option<StoredMembership<NodeId, NodeInfo>>> =
        get(kv, &meta(state::meta::MEMBERSHIP)).map_err(read_err)?;
    Ok((applied.flatten(), membership.flatten().unwrap_or_default()))
}

/// Builds a snapshot from a dump taken when the builder was created.
pub struct SnapBuilder {
    db: sled::Db,
    snap: sled::Tree,
    pairs: Vec<Pair>,
    applied: Applied2,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (last_log_id, last_membership) = self.applied.clone();
        let snapshot_id = match &last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("none-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let data = enc(&std::mem::take(&mut self.pairs)).map_err(write_err)?;
        let file = SnapshotFile { meta, data };
        self.snap
            .insert(CURRENT, enc(&file).map_err(write_err)?)
            .map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        tracing::info!(id = %file.meta.snapshot_id, bytes = file.data.len(), "snapshot built");
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = SnapBuilder;

    async fn applied_state(&mut self) -> Result<Applied2, StorageError<NodeId>> {
        applied_of(&self.kv)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EntryResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut events = Vec::new();
        let mut responses = Vec::new();
        let changes = {
            let mut ov = Overlay::new(&self.kv);
            for e in entries {
                put(&mut ov, meta(state::meta::APPLIED), &Some(e.log_id)).map_err(write_err)?;
                match e.payload {
                    EntryPayload::Blank => responses.push(Vec::new()),
                    EntryPayload::Normal(req) => {
                        let r = apply_entry(&mut ov, e.log_id.index, &req, &mut events)
                            .map_err(write_err)?;
                        responses.push(r);
                    }
                    EntryPayload::Membership(m) => {
                        let sm = StoredMembership::new(Some(e.log_id), m);
                        put(&mut ov, meta(state::meta::MEMBERSHIP), &Some(sm))
                            .map_err(write_err)?;
                        responses.push(Vec::new());
                    }
                }
            }
            ov.into_changes()
        };
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.kv.0.apply_batch(batch).map_err(write_err)?;
        self.emit(events).await;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // The dump is taken here, between applies, so it is a consistent view.
        self.snap_seq += 1;
        let (pairs, applied) = match (state::dump(&self.kv), applied_of(&self.kv)) {
            (Ok(p), Ok(a)) => (p, a),
            (Err(e), _) => {
                tracing::error!(error = %e, "snapshot dump failed");
                (Vec::new(), (None, StoredMembership::default()))
            }
            (_, Err(e)) => {
                tracing::error!(error = %e, "snapshot dump failed");
                (Vec::new(), (None, StoredMembership::default()))
            }
        };
        SnapBuilder {
            db: self.db.clone(),
            snap: self.snap.clone(),
            pairs,
            applied,
            seq: self.snap_seq,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta_in: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let file = SnapshotFile {
            meta: meta_in.clone(),
            data: snapshot.into_inner(),
        };
        self.snap
            .insert(CURRENT, enc(&file).map_err(write_err)?)
            .map_err(write_err)?;
        self.snap.insert(INSTALLING, &[1u8]).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        restore(&self.kv.0, &file.data).map_err(write_err)?;
        let mut ov = Overlay::new(&self.kv);
        put(&mut ov, meta(state::meta::APPLIED), &meta_in.last_log_id).map_err(write_err)?;
        put(
            &mut ov,
            meta(state::meta::MEMBERSHIP),
            &Some(meta_in.last_membership.clone()),
        )
        .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for (k, v) in ov.into_changes() {
            if let Some(v) = v {
                batch.insert(k, v);
            }
        }
        self.kv.0.apply_batch(batch).map_err(write_err)?;
        self.snap.remove(INSTALLING).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        tracing::info!(id = %meta_in.snapshot_id, "snapshot installed");
        self.emit(vec![Applied::SnapshotInstalled]).await;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        match self.snap.get(CURRENT).map_err(read_err)? {
            Some(b) => {
                let file: SnapshotFile = dec(&b).map_err(read_err)?;
                Ok(Some(Snapshot {
                    meta: file.meta,
                    snapshot: Box::new(Cursor::new(file.data)),
                }))
            }
            None => Ok(None),
        }
    }
}
