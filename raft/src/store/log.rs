//! The Raft log on sled: entries keyed by big-endian index, plus vote, purge and commit
//! pointers in a meta tree.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, Vote};

use super::group_flush::GroupFlush;
use super::{read_err, write_err, StoreError};
use crate::state::keys::{dec, enc};
use crate::types::{NodeId, TypeConfig};

const VOTE: &[u8] = b"vote";
const PURGED: &[u8] = b"last_purged";
const COMMITTED: &[u8] = b"committed";

/// The log store. Cheap to clone; clones share the trees.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    committed: Arc<AtomicU64>,
    flusher: GroupFlush,
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db) -> Result<Self, StoreError> {
        let meta = db.open_tree("raft_meta")?;
        let committed = match meta.get(COMMITTED)? {
            Some(v) => dec::<Option<LogId<NodeId>>>(&v)?
                .map(|l| l.index)
                .unwrap_or(0),
            None => 0,
        };
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta,
            committed: Arc::new(AtomicU64::new(committed)),
            flusher: GroupFlush::start(db.clone())?,
        })
    }

    /// Shared view of the committed index (updated when openraft saves it).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => dec(&v).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
        flush: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let b = enc(v).map_err(write_err)?;
        self.meta.insert(key, b).map_err(write_err)?;
        if flush {
            self.db.flush_async().await.map_err(write_err)?;
        }
        Ok(())
    }

    fn remove_range(&self, from: u64, to_incl: u64) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(from.to_be_bytes()..=to_incl.to_be_bytes()) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)
    }
}

fn bound_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let r = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut out = Vec::new();
        for item in self.log.range::<[u8; 8], _>(r) {
            let (_, v) = item.map_err(read_err)?;
            out.push(dec(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(PURGED)?.flatten();
        let last = match self.log.last().map_err(read_err)? {
            Some((_, v)) => Some(dec::<Entry<TypeConfig>>(&v).map_err(read_err)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.committed
            .store(committed.map(|l| l.index).unwrap_or(0), Ordering::Relaxed);
        // Not flushed: the committed pointer is an optimisation, it may lag after a crash.
        self.put_meta(COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut entries = entries.into_iter();
        match (entries.next(), entries.next()) {
            (None, _) => {}
            // One entry (the usual case with one entry in flight): a plain insert is atomic
            // by itself. sled's `apply_batch` seals its I/O buffer before and after the
            // batch, i.e. two more buffer writes (each a `sync_file_range` on sled's pool,
            // which wakes all its idle threads) for every entry on every node.
            (Some(e), None) => {
                let v = enc(&e).map_err(write_err)?;
                self.log
                    .insert(e.log_id.index.to_be_bytes(), v)
                    .map_err(write_err)?;
            }
            // Several: one atomic batch, so a crash never leaves a hole in the log.
            (Some(a), Some(b)) => {
                let mut batch = sled::Batch::default();
                for e in [a, b].into_iter().chain(entries) {
                    batch.insert(&e.log_id.index.to_be_bytes(), enc(&e).map_err(write_err)?);
                }
                self.log.apply_batch(batch).map_err(write_err)?;
            }
        }
        // Acknowledged once on disk, by the group flusher (not awaited here: openraft's core
        // goes on while the fsync runs, and one fsync covers every append queued by then).
        self.flusher.after_next_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_range(log_id.index, u64::MAX)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge pointer first so a crash never leaves a hole unaccounted for.
        self.put_meta(PURGED, &Some(log_id), true).await?;
        self.remove_range(0, log_id.index)?;
        Ok(())
    }
}
