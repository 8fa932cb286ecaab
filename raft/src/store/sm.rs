//! The state machine on sled: applies entries with the pure state logic, writes each
//! `apply()` call's changes atomically across crashes ([`super::redo`]), then hands the
//! [`Applied`] events on ([`crate::events`]: a handler called there, or a channel whose
//! capacity it awaits).
//! Snapshots are a full dump of the state tree, read beside the applies
//! ([`super::capture`]) and kept in a file beside sled ([`super::snapfile`]); installing one
//! replaces the tree.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StoredMembership,
};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::capture::{Capture, Captures};
use super::redo;
use super::snapdump::{dump_and_encode, for_each_pair};
use super::snapfile::{SnapDir, SnapshotFile};
use super::{read_err, write_err, SledKv, StoreError};
use crate::events::EventOut;
use crate::state::keys::{dec, get, is_legacy, meta, put, LEGACY};
use crate::state::kv::{Changes, Overlay};
use crate::state::{self, apply_entry, Dedup};
use crate::types::{Applied, EntryResponse, NodeId, NodeInfo, TypeConfig};

/// Where older versions kept the snapshot itself (moved to the file at open).
const CURRENT: &[u8] = b"current";
const INSTALLING: &[u8] = b"installing";
/// Pairs written per sled batch when a snapshot is restored.
const RESTORE_BATCH: usize = 10_000;

/// The snapshot file, written off the async runtime.
#[derive(Clone)]
struct Files(Arc<SnapDir>);

impl Files {
    async fn write(&self, file: SnapshotFile) -> Result<SnapshotFile, StorageError<NodeId>> {
        let dir = self.0.clone();
        tokio::task::spawn_blocking(move || dir.write(&file).map(|_| file))
            .await
            .map_err(|e| write_err(std::io::Error::other(e)))?
            .map_err(write_err)
    }
}

/// The state machine store.
pub struct SmStore {
    db: sled::Db,
    kv: SledKv,
    snap: sled::Tree,
    out: Option<EventOut>,
    /// Whether applied events go out yet ([`SmStore::events_live`]).
    live: Arc<AtomicBool>,
    snap_seq: u64,
    files: Files,
    /// Pre-images for the snapshot dumps in progress.
    captures: Arc<Captures>,
    /// Held (shared) by a dump in progress; an install (which replaces the tree) waits for it.
    dump_lock: Arc<RwLock<()>>,
    /// Where the results kept for retried proposals are (rebuilt at open and install).
    dedup: Dedup,
    /// Whether every member reads the per-entry layouts of those results and of the history
    /// (the version gate).
    per_entry: Arc<AtomicBool>,
    /// Bytes of this node's current snapshot (built or installed; 0 without one).
    snapshot_bytes: Arc<AtomicU64>,
}

impl SmStore {
    pub(crate) fn new(db: &sled::Db, dir: &Path) -> Result<Self, StoreError> {
        let kv = SledKv(db.open_tree("sm")?);
        let snap = db.open_tree("sm_snapshot")?;
        let files = Files(Arc::new(SnapDir::new(dir)));
        files.0.clean();
        if let Some(old) = snap.get(CURRENT)? {
            // Written by an older version: move it to the file.
            if files.0.read()?.is_none() {
                files.0.write(&dec(&old)?)?;
            }
            snap.remove(CURRENT)?;
            db.flush()?;
        }
        if snap.get(INSTALLING)?.is_some() {
            // A crash interrupted a snapshot install: redo it from the stored snapshot.
            if let Some(file) = files.0.read()? {
                restore(&kv.0, &file.data)?;
            }
            snap.remove(redo::APPLYING)?;
            snap.remove(INSTALLING)?;
            db.flush()?;
        } else if redo::redo(&kv.0, &snap)? {
            // The last apply may have been cut short by a crash: it is now whole.
            db.flush()?;
        }
        // After the redo: the state is then whole, as of its applied index.
        let dropped = drop_legacy(&kv.0)? + convert_older_sockets(&kv)?;
        if dropped > 0 {
            tracing::info!(
                records = dropped,
                "dropped or converted the records of an older state layout"
            );
        }
        let recounted = recount(&kv)?;
        if recounted {
            tracing::warn!(
                "connection, user or room counters did not match the socket records; corrected"
            );
        }
        if dropped > 0 || recounted {
            db.flush()?;
        }
        let dedup = Dedup::load(&kv)?;
        let snapshot_bytes = Arc::new(AtomicU64::new(files.0.size()?));
        Ok(SmStore {
            db: db.clone(),
            kv,
            snap,
            out: None,
            live: Arc::new(AtomicBool::new(false)),
            snap_seq: 0,
            files,
            captures: Arc::new(Captures::default()),
            dump_lock: Arc::new(RwLock::new(())),
            dedup,
            per_entry: Arc::new(AtomicBool::new(false)),
            snapshot_bytes,
        })
    }

    /// Shared view of the size of this node's current snapshot, in bytes.
    pub(crate) fn snapshot_bytes(&self) -> Arc<AtomicU64> {
        self.snapshot_bytes.clone()
    }

    /// Write the per-entry layouts of the results kept for retries and of the rooms' history
    /// while `flag` is set (by the version gate: every member reads them). Without it, one
    /// record per proposal and one per event.
    pub fn with_per_entry_layouts(mut self, flag: Arc<AtomicBool>) -> Self {
        self.per_entry = flag;
        self
    }

    /// How many proposal ids the in-memory index of kept results holds.
    pub fn dedup_indexed(&self) -> usize {
        self.dedup.indexed()
    }

    /// Send applied events to `tx` (without it, events are dropped: storage tests), once
    /// the returned switch is set.
    ///
    /// Until then they are dropped: openraft re-applies the committed entries the state
    /// had not applied before a restart inside `Raft::new`, before anyone drains `tx`, and
    /// a full channel would stop the node's start for good. What they would deliver went
    /// to sockets that ended with the process (clients recover it from the history).
    pub(crate) fn with_events(mut self, tx: EventOut) -> (Self, Arc<AtomicBool>) {
        self.out = Some(tx);
        let live = self.live.clone();
        (self, live)
    }

    /// The state tree (for readers).
    pub fn kv(&self) -> SledKv {
        self.kv.clone()
    }

    /// What applying `entries` changes in the state tree, their responses and the events
    /// they produce (nothing is written yet).
    fn changes_of<I: IntoIterator<Item = Entry<TypeConfig>>>(
        &mut self,
        entries: I,
    ) -> Result<(Changes, Vec<EntryResponse>, Vec<Applied>), StorageError<NodeId>> {
        let mut events = Vec::new();
        let mut responses = Vec::new();
        let mut ov = Overlay::new(&self.kv);
        let dedup = &mut self.dedup;
        let per_entry = self.per_entry.load(Ordering::Relaxed);
        dedup.per_entry = per_entry;
        for e in entries {
            put(&mut ov, meta(state::meta::APPLIED), &Some(e.log_id)).map_err(write_err)?;
            match e.payload {
                EntryPayload::Blank => responses.push(Vec::new()),
                EntryPayload::Normal(req) => {
                    let r =
                        apply_entry(&mut ov, dedup, e.log_id.index, &req, &mut events, per_entry)
                            .map_err(write_err)?;
                    responses.push(r);
                }
                EntryPayload::Membership(m) => {
                    let sm = StoredMembership::new(Some(e.log_id), m);
                    put(&mut ov, meta(state::meta::MEMBERSHIP), &Some(sm)).map_err(write_err)?;
                    responses.push(Vec::new());
                }
            }
        }
        Ok((ov.into_changes(), responses, events))
    }

    /// Writes one apply's changes (after recording their pre-images for the snapshot dumps
    /// in progress). `stop_after` (tests) cuts the write short as a crash would.
    fn write(
        &self,
        changes: &Changes,
        stop_after: Option<usize>,
    ) -> Result<(), StorageError<NodeId>> {
        self.captures
            .before_write(&self.kv.0, changes.keys().map(Vec::as_slice))
            .map_err(read_err)?;
        redo::write(&self.kv.0, &self.snap, changes, stop_after).map_err(write_err)
    }

    async fn emit(&self, events: Vec<Applied>) {
        if let Some(out) = &self.out {
            if !self.live.load(Ordering::Acquire) {
                if !events.is_empty() {
                    tracing::debug!(events = events.len(), "re-applied at start: not delivered");
                }
                return;
            }
            if !out.send(events).await {
                tracing::debug!("applied-events receiver dropped");
            }
        }
    }
}

/// Replaces the tree with a snapshot's pairs (without the records of an older layout, which
/// a snapshot made by an older version holds).
fn restore(tree: &sled::Tree, data: &[u8]) -> Result<(), StoreError> {
    tree.clear()?;
    // Decoded pair by pair and written in batches: the install holds the snapshot's bytes and
    // one batch, not a decoded copy of the whole state. Whole across a crash all the same:
    // the install's marker makes the next open restore it again from the snapshot file.
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    for_each_pair(data, |k, v| {
        if is_legacy(k) {
            return Ok(());
        }
        batch.insert(k, v);
        in_batch += 1;
        if in_batch == RESTORE_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
        Ok(())
    })?;
    tree.apply_batch(batch)?;
    convert_older_sockets(&SledKv(tree.clone()))?;
    Ok(())
}

/// Converts the socket records of an older layout
/// ([`state::sockets::convert_older_sockets`]); returns how many records it removed.
fn convert_older_sockets(kv: &SledKv) -> Result<usize, StoreError> {
    let mut ov = Overlay::new(kv);
    if state::sockets::convert_older_sockets(&mut ov)? == 0 {
        return Ok(0);
    }
    let changes = ov.into_changes();
    let removed = changes.values().filter(|v| v.is_none()).count();
    kv.0.apply_batch(batch_of(changes))?;
    Ok(removed)
}

/// An overlay's changes as one sled batch.
fn batch_of(changes: Changes) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in changes {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}

/// Corrects the counters kept beside the socket records ([`state::sockets::recount`]).
fn recount(kv: &SledKv) -> Result<bool, StoreError> {
    let mut ov = Overlay::new(kv);
    if !state::sockets::recount(&mut ov)? {
        return Ok(false);
    }
    kv.0.apply_batch(batch_of(ov.into_changes()))?;
    Ok(true)
}

/// Removes the records an older version wrote and this one no longer reads or updates
/// ([`crate::state::keys::LEGACY`]); returns how many there were.
fn drop_legacy(tree: &sled::Tree) -> Result<usize, StoreError> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for tag in LEGACY {
        for pair in tree.scan_prefix([tag]) {
            batch.remove(pair?.0);
            n += 1;
        }
    }
    if n > 0 {
        tree.apply_batch(batch)?;
    }
    Ok(n)
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

/// Builds a snapshot of the state as of the applied index at which it was created: the
/// dump is read in the builder's task while applies go on, and corrected by the capture.
pub struct SnapBuilder {
    db: sled::Db,
    tree: sled::Tree,
    files: Files,
    /// Started when the builder was created (between applies); taken by the build.
    capture: Option<Capture>,
    /// Keeps an install from replacing the tree while the dump reads it.
    guard: Option<OwnedRwLockReadGuard<()>>,
    applied: Applied2,
    seq: u64,
    snapshot_bytes: Arc<AtomicU64>,
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
        let t0 = std::time::Instant::now();
        let (tree, applied) = (self.tree.clone(), self.applied.0);
        let (capture, guard) = (self.capture.take(), self.guard.take());
        let Some(capture) = capture else {
            return Err(write_err("snapshot builder used twice"));
        };
        let (data, dump_ms) = tokio::task::spawn_blocking(move || {
            let r = dump_and_encode(&tree, capture, applied);
            drop(guard);
            r
        })
        .await
        .map_err(|e| write_err(std::io::Error::other(e)))??;
        let file = self.files.write(SnapshotFile { meta, data }).await?;
        // The state machine's own writes up to the dump reach the disk before openraft
        // purges the log the snapshot covers (they are not flushed on every apply).
        let write_ms = t0.elapsed().as_millis().saturating_sub(dump_ms);
        self.db.flush_async().await.map_err(write_err)?;
        self.snapshot_bytes
            .store(file.data.len() as u64, Ordering::Relaxed);
        tracing::info!(
            id = %file.meta.snapshot_id,
            bytes = file.data.len(),
            dump_ms,
            write_ms,
            total_ms = t0.elapsed().as_millis(),
            "snapshot built"
        );
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
        let (changes, responses, events) = self.changes_of(entries)?;
        self.write(&changes, None)?;
        self.emit(events).await;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the capture starts at the state as of the last applied
        // entry, and the dump itself runs in the builder's task without holding applies up.
        self.snap_seq += 1;
        let guard = self.dump_lock.clone().read_owned().await;
        let capture = self.captures.start();
        let applied = applied_of(&self.kv).unwrap_or_else(|e| {
            tracing::error!(error = %e, "snapshot: cannot read the applied log id");
            (None, StoredMembership::default())
        });
        SnapBuilder {
            db: self.db.clone(),
            tree: self.kv.0.clone(),
            files: self.files.clone(),
            capture: Some(capture),
            guard: Some(guard),
            applied,
            seq: self.snap_seq,
            snapshot_bytes: self.snapshot_bytes.clone(),
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
        // A dump in progress reads the tree this replaces: let it finish first.
        let _replacing = self.dump_lock.write().await;
        let file = self
            .files
            .write(SnapshotFile {
                meta: meta_in.clone(),
                data: snapshot.into_inner(),
            })
            .await?;
        self.snap.insert(INSTALLING, &[1u8]).map_err(write_err)?;
        // The last apply's redo record describes the tree this install replaces.
        self.snap.remove(redo::APPLYING).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        restore(&self.kv.0, &file.data).map_err(write_err)?;
        self.dedup = Dedup::load(&self.kv).map_err(read_err)?;
        let mut ov = Overlay::new(&self.kv);
        put(&mut ov, meta(state::meta::APPLIED), &meta_in.last_log_id).map_err(write_err)?;
        put(
            &mut ov,
            meta(state::meta::MEMBERSHIP),
            &Some(meta_in.last_membership.clone()),
        )
        .map_err(write_err)?;
        self.kv
            .0
            .apply_batch(batch_of(ov.into_changes()))
            .map_err(write_err)?;
        self.snap.remove(INSTALLING).map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        self.snapshot_bytes
            .store(file.data.len() as u64, Ordering::Relaxed);
        tracing::info!(id = %meta_in.snapshot_id, "snapshot installed");
        self.emit(vec![Applied::SnapshotInstalled]).await;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let dir = self.files.0.clone();
        let file = tokio::task::spawn_blocking(move || dir.read())
            .await
            .map_err(|e| read_err(std::io::Error::other(e)))?
            .map_err(read_err)?;
        Ok(file.map(|file| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[cfg(test)]
#[path = "sm_tests.rs"]
mod tests;
