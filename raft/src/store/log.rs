//! The Raft log on sled: entries keyed by big-endian index, plus vote, purge and commit
//! pointers in a meta tree.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, Vote};

use super::group_flush::GroupFlush;
use super::recent::Recent;
use super::{read_err, write_err, StoreError};
use crate::state::keys::{dec, enc};
use crate::types::{NodeId, TypeConfig};

/// Most bytes of log entries one replication request carries (beyond its first entry).
/// openraft gives an `AppendEntries` one heartbeat interval (100 ms) to be answered and
/// sends up to `max_payload_entries` (300) entries in it; a follower behind by hundreds of
/// entries of large events (64 KiB each, 64 per entry) would get tens of megabytes that it
/// cannot decode, write and fsync in time, the same request again after every timeout, and
/// no heartbeat meanwhile: it would never catch up, and would call elections. 512 KiB is
/// about 40 ms at 100 Mbit/s.
pub const MAX_APPEND_BYTES: usize = 512 * 1024;

const VOTE: &[u8] = b"vote";
const NODE_ID: &[u8] = b"node_id";
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
    /// The last entries appended, decoded (replication and apply read them from here).
    recent: Arc<Recent>,
    /// Encoded bytes of every entry appended since the store was opened (the snapshot
    /// schedule weighs the log written since a snapshot against the state's size).
    logged: Arc<AtomicU64>,
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
            recent: Arc::new(Recent::default()),
            logged: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Records `id` as the owner of this store on first use, and refuses any other id
    /// afterwards: a data dir started under another `--node-id` would give its log and its
    /// votes to a second identity, which Raft's safety does not survive. A store written
    /// before the id was recorded is claimed by the first id that opens it.
    pub(crate) fn claim_node_id(&self, id: NodeId) -> Result<(), StoreError> {
        match self.meta.get(NODE_ID)? {
            Some(v) => {
                let recorded: NodeId = dec(&v)?;
                if recorded == id {
                    Ok(())
                } else {
                    Err(StoreError::OtherNode {
                        recorded,
                        given: id,
                    })
                }
            }
            None => {
                self.meta.insert(NODE_ID, enc(&id)?)?;
                self.db.flush()?;
                Ok(())
            }
        }
    }

    /// The recent entries kept decoded (their expiry runs beside the node).
    pub(crate) fn recent(&self) -> Arc<Recent> {
        self.recent.clone()
    }

    /// Shared count of the encoded bytes appended since the store was opened.
    pub(crate) fn logged_bytes(&self) -> Arc<AtomicU64> {
        self.logged.clone()
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

impl LogStore {
    /// Entries in `range`, stopping once their encoded size reaches `max_bytes` (the first
    /// entry is always included, however large).
    fn entries<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        max_bytes: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        if let Some(es) = self.recent.get(&range, max_bytes) {
            return Ok(es);
        }
        let r = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.log.range::<[u8; 8], _>(r) {
            if bytes >= max_bytes {
                break;
            }
            let (_, v) = item.map_err(read_err)?;
            bytes = bytes.saturating_add(v.len());
            out.push(dec(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(range, usize::MAX)
    }

    /// What replication sends: at most [`MAX_APPEND_BYTES`] (and at least one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries(start..end, MAX_APPEND_BYTES)
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
                let size = v.len();
                self.log
                    .insert(e.log_id.index.to_be_bytes(), v)
                    .map_err(write_err)?;
                self.logged.fetch_add(size as u64, Ordering::Relaxed);
                self.recent.appended(e, size);
            }
            // Several: one atomic batch, so a crash never leaves a hole in the log.
            (Some(a), Some(b)) => {
                let mut batch = sled::Batch::default();
                let mut written = Vec::new();
                for e in [a, b].into_iter().chain(entries) {
                    let v = enc(&e).map_err(write_err)?;
                    let size = v.len();
                    batch.insert(&e.log_id.index.to_be_bytes(), v);
                    written.push((size, e));
                }
                self.log.apply_batch(batch).map_err(write_err)?;
                for (size, e) in written {
                    self.logged.fetch_add(size as u64, Ordering::Relaxed);
                    self.recent.appended(e, size);
                }
            }
        }
        // Acknowledged once on disk, by the group flusher (not awaited here: openraft's core
        // goes on while the fsync runs, and one fsync covers every append queued by then).
        self.flusher.after_next_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.recent.truncated(log_id.index);
        self.remove_range(log_id.index, u64::MAX)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge pointer first so a crash never leaves a hole unaccounted for.
        self.put_meta(PURGED, &Some(log_id), true).await?;
        self.recent.purged(log_id.index);
        self.remove_range(0, log_id.index)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::{Command, Request};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn store_with(payloads: &[usize]) -> LogStore {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::new(&db).unwrap();
        for (i, &n) in payloads.iter().enumerate() {
            let e: Entry<TypeConfig> = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Request {
                    ts_ms: 0,
                    cmds: vec![Command::Publish {
                        room: "r".into(),
                        event: "e".into(),
                        payload: vec![7; n],
                        durable: true,
                        history_max: 100,
                        history_ttl_ms: 0,
                    }],
                    ids: vec![0],
                }),
            };
            store
                .log
                .insert((i as u64 + 1).to_be_bytes(), enc(&e).unwrap())
                .unwrap();
        }
        store
    }

    fn indexes(es: &[Entry<TypeConfig>]) -> Vec<u64> {
        es.iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn a_store_belongs_to_the_node_that_first_used_it() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = LogStore::new(&db).unwrap();
        store.claim_node_id(2).unwrap();
        store.claim_node_id(2).unwrap();
        let again = LogStore::new(&db).unwrap();
        let err = again.claim_node_id(3).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::OtherNode {
                    recorded: 2,
                    given: 3
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("belongs to node 2") && msg.contains("--node-id 3"),
            "{msg}"
        );
        again.claim_node_id(2).unwrap();
    }

    #[tokio::test]
    async fn replication_reads_stop_at_the_byte_limit() {
        let mut s = store_with(&[100_000; 20]);
        let all = s.try_get_log_entries(1..21).await.unwrap();
        assert_eq!(indexes(&all), (1..=20).collect::<Vec<_>>());
        let sent = s.limited_get_log_entries(1, 21).await.unwrap();
        let n = sent.len() as u64;
        assert_eq!(indexes(&sent), (1..=n).collect::<Vec<_>>());
        // 100 kB each: the sixth passes 512 KiB, so no seventh is read.
        assert_eq!(n, 6, "{n} entries of 100 kB in one request");
        // From further on, the same.
        let next = s.limited_get_log_entries(n + 1, 21).await.unwrap();
        assert_eq!(indexes(&next), (n + 1..=2 * n).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn one_entry_goes_out_however_large_and_small_ones_fill_the_request() {
        let mut s = store_with(&[2_000_000, 10]);
        assert_eq!(
            indexes(&s.limited_get_log_entries(1, 3).await.unwrap()),
            [1]
        );
        let mut small = store_with(&[100; 300]);
        let sent = small.limited_get_log_entries(1, 301).await.unwrap();
        assert_eq!(sent.len(), 300, "small entries are not held back");
    }
}
