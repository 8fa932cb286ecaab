//! Storage on sled: the Raft log ([`LogStore`]), the state machine ([`SmStore`]) and the
//! on-disk adapter that lets the pure state logic run over a sled tree.
//!
//! Durability: log appends and votes are acknowledged only after they are flushed to disk
//! (appends by one group fsync per batch of appends, [`group_flush`]). The state
//! machine's writes of one `apply()` call are made atomic by a redo record ([`redo`]) and
//! are not flushed on every apply: sled recovers a consistent prefix of its writes after a
//! crash, and whatever the state machine lost is re-applied from the (flushed) log, which is
//! only purged up to a snapshot that is itself flushed. sled survives process kills; it does not promise
//! durability across power loss.

// openraft's trait methods return its own (large) `StorageError`; helpers share that type.
#![allow(clippy::result_large_err)]

mod capture;
mod group_flush;
mod log;
mod recent;
mod redo;
mod sm;
mod snapdump;
mod snapfile;

use std::fmt::Display;
use std::path::Path;

use openraft::{AnyError, StorageError, StorageIOError};

pub use log::LogStore;
pub use redo::RedoError;
pub use sm::SmStore;

use crate::state::kv::{KvRead, PairIter};
use crate::state::StateError;
use crate::types::NodeId;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Creating the data directory failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Stored state could not be read back.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// The last apply's redo record could not be replayed.
    #[error("redo: {0}")]
    Redo(#[from] RedoError),
    /// The data dir was made by another node: two nodes would share one Raft identity.
    #[error(
        "this data dir belongs to node {recorded}, but this node was started with --node-id \
         {given}: start it with --node-id {recorded}, or give node {given} a data dir of its own"
    )]
    OtherNode {
        /// The id recorded when the data dir was first used.
        recorded: NodeId,
        /// The id this process was started with.
        given: NodeId,
    },
    /// Another process holds the database's lock: two nodes were given one data dir.
    #[error(
        "the data dir {} is in use by another process (it holds the lock on {}): stop that \
         raftcast, or give each node its own --data-dir",
        dir.display(),
        lock.display()
    )]
    InUse {
        /// The store's directory.
        dir: std::path::PathBuf,
        /// The locked file.
        lock: std::path::PathBuf,
    },
}

/// The default of [`open`]'s `cache_bytes`: what sled keeps of the log and the state in
/// memory before it leaves pages to the disk. sled's own default (1 GiB) let a node with a
/// large history grow past 1 GB of RSS (docs/performance.md, session 17).
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Open (creating if needed) the sled database in `dir` and the two stores on it; sled's
/// page cache holds at most about `cache_bytes`.
pub fn open(dir: &Path, cache_bytes: u64) -> Result<(sled::Db, LogStore, SmStore), StoreError> {
    std::fs::create_dir_all(dir)?;
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| in_use(e, dir))?;
    let log = LogStore::new(&db)?;
    let sm = SmStore::new(&db, dir)?;
    Ok((db, log, sm))
}

/// Hands what sled deferred on this thread to crossbeam-epoch's global queue and collects
/// what is safe to free (among it the I/O buffers of sealed log segments, 512 KiB each),
/// instead of leaving it in the thread's local bag until 64 more deferrals fill it. Cheap
/// (no measurable CPU when called on every tokio worker park, session 18); in a process
/// that never used sled it only registers the thread with crossbeam's collector, once.
pub fn release_deferred() {
    sled::crossbeam_pin().flush();
}

/// sled reports a held lock only as an I/O error with this text (sled 0.34 `Config::try_lock`).
fn in_use(e: sled::Error, dir: &Path) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock") => {
            StoreError::InUse {
                dir: dir.to_path_buf(),
                lock: dir.join("db"),
            }
        }
        _ => StoreError::Sled(e),
    }
}

/// A sled tree seen through the state logic's key-value trait.
#[derive(Clone)]
pub struct SledKv(pub sled::Tree);

impl KvRead for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.0
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StateError::Storage(e.to_string()))
    }

    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>, rev: bool) -> PairIter<'a> {
        let start = match from {
            Some(f) if !rev && f > prefix => f.to_vec(),
            _ => prefix.to_vec(),
        };
        let iter = match crate::state::kv::prefix_end(prefix) {
            Some(end) => self.0.range(start..end),
            None => self.0.range(start..),
        };
        let map = |r: Result<(sled::IVec, sled::IVec), sled::Error>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| StateError::Storage(e.to_string()))
        };
        if rev {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }
}

/// A storage read error for openraft.
pub(crate) fn read_err(e: impl Display) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::error(e.to_string())).into()
}

/// A storage write error for openraft.
pub(crate) fn write_err(e: impl Display) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::state::keys::{dec, enc};
    use crate::types::TypeConfig;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
    use std::collections::BTreeSet;

    #[test]
    fn openraft_types_roundtrip_bincode() {
        let lid = LogId::new(CommittedLeaderId::new(1, 2), 3);
        let b = enc(&lid).unwrap();
        let back: LogId<u64> = dec(&b).unwrap();
        assert_eq!(back, lid);
        let v0 = Vote::new(1, 0);
        assert_eq!(dec::<Vote<u64>>(&enc(&v0).unwrap()).unwrap(), v0);
        let v = Vote::new(1, 2);
        assert_eq!(dec::<Vote<u64>>(&enc(&v).unwrap()).unwrap(), v);
        let e: Entry<TypeConfig> = Entry {
            log_id: lid,
            payload: EntryPayload::Blank,
        };
        let _: Entry<TypeConfig> = dec(&enc(&e).unwrap()).unwrap();
        let m = Membership::<u64, crate::NodeInfo>::new(vec![BTreeSet::from([1u64, 2])], None);
        let e: Entry<TypeConfig> = Entry {
            log_id: lid,
            payload: EntryPayload::Membership(m),
        };
        let _: Entry<TypeConfig> = dec(&enc(&e).unwrap()).unwrap();
        let sm = openraft::StoredMembership::new(
            Some(lid),
            Membership::<u64, crate::NodeInfo>::new(vec![BTreeSet::from([1u64, 2])], None),
        );
        let b = enc(&Some(sm.clone())).unwrap();
        let back: Option<openraft::StoredMembership<u64, crate::NodeInfo>> = dec(&b).unwrap();
        assert_eq!(back, Some(sm));
    }

    #[test]
    fn a_data_dir_in_use_is_named_in_the_error() {
        let dir =
            std::env::temp_dir().join(format!("raftcast-inuse-{:016x}", rand::random::<u64>()));
        let first = super::open(&dir, super::DEFAULT_CACHE_BYTES).unwrap();
        let err = match super::open(&dir, super::DEFAULT_CACHE_BYTES) {
            Ok(_) => panic!("a second open of {} succeeded", dir.display()),
            Err(e) => e,
        };
        assert!(
            matches!(&err, super::StoreError::InUse { dir: d, .. } if *d == dir),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("in use by another process"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(msg.contains("--data-dir"), "{msg}");
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
