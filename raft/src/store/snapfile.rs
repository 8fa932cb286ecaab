//! The current snapshot, kept in a file of its own next to the sled database.
//!
//! It used to be one sled value: every snapshot (the whole state, megabytes) then went
//! through sled's log, and every Raft log append waiting on `flush_async` waited for it to
//! reach the disk — a commit-latency spike on every node at every snapshot. A file written
//! aside (temporary name, `fsync`, atomic rename, `fsync` of the directory) costs the disk the
//! same bytes but holds no lock the log needs. It is encoded straight into the file and
//! decoded straight from it: no second copy of the state in memory either way.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use openraft::{LogId, SnapshotMeta};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::state::StateError;
use crate::types::{NodeId, NodeInfo};

/// A snapshot as stored: its metadata and the encoded state.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: SnapshotMeta<NodeId, NodeInfo>,
    /// One bytes field: the same bincode bytes as a sequence of `u8`, without a call per byte.
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// Where the current snapshot lives. Writers are serialized here: a snapshot built by this
/// node may finish while a newer one from the leader is being installed.
#[derive(Debug)]
pub(crate) struct SnapDir {
    dir: PathBuf,
    /// The last log id of the snapshot this process last wrote (None before the first).
    written: Mutex<Option<LogId<NodeId>>>,
}

impl SnapDir {
    pub(crate) fn new(dir: &Path) -> SnapDir {
        SnapDir {
            dir: dir.to_path_buf(),
            written: Mutex::new(None),
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.join("snapshot.current")
    }

    /// Bytes of the current snapshot's file (0 without one): about its state's size.
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        match std::fs::metadata(self.current()) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The current snapshot, if one was written.
    pub(crate) fn read(&self) -> Result<Option<SnapshotFile>, StoreError> {
        let f = match std::fs::File::open(self.current()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        bincode::serde::decode_from_std_read(&mut BufReader::new(f), bincode::config::standard())
            .map(Some)
            .map_err(|e| StateError::Decode(e.to_string()).into())
    }

    /// Makes `file` the current snapshot, durably: when this returns, a crash leaves either
    /// it or nothing newer, never a torn file. A snapshot older than the one last written
    /// is not written (false): the current one never goes back.
    pub(crate) fn write(&self, file: &SnapshotFile) -> Result<bool, StoreError> {
        // Poisoned only by a panic in here; the value is still a plain log id.
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.is_some() && *written > file.meta.last_log_id {
            return Ok(false);
        }
        let tmp = self.dir.join("snapshot.tmp");
        let result = (|| {
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            bincode::serde::encode_into_std_write(file, &mut w, bincode::config::standard())
                .map_err(std::io::Error::other)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.current())?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        *written = file.meta.last_log_id;
        Ok(true)
    }

    /// Removes temporary files a crash left behind.
    pub(crate) fn clean(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("snapshot.tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn temp() -> PathBuf {
        let n: u64 = rand::random();
        let d = std::env::temp_dir().join(format!("raftcast-snapfile-{n:016x}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn file(index: u64, data: &[u8]) -> SnapshotFile {
        SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("1-{index}"),
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn the_last_written_snapshot_is_read_back_and_crash_leftovers_are_removed() {
        let d = temp();
        let s = SnapDir::new(&d);
        assert!(s.read().unwrap().is_none(), "no snapshot yet");
        assert!(s.write(&file(10, b"first")).unwrap());
        assert!(s.write(&file(20, b"second")).unwrap());
        // An older snapshot finishing late (a build racing an install) does not replace it.
        assert!(!s.write(&file(15, b"late")).unwrap());
        let back = s.read().unwrap().unwrap();
        assert_eq!(back.meta.snapshot_id, "1-20");
        assert_eq!(back.data, b"second");
        // A crash between create and rename leaves a temporary file: never read, removed.
        std::fs::write(d.join("snapshot.tmp"), b"torn").unwrap();
        let s = SnapDir::new(&d);
        s.clean();
        assert!(!d.join("snapshot.tmp").exists());
        assert_eq!(s.read().unwrap().unwrap().data, b"second");
        // A corrupt current file is an error, not an empty snapshot.
        std::fs::write(d.join("snapshot.current"), b"\xff\xff").unwrap();
        assert!(s.read().is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_snapshot_file_written_by_an_older_version_reads_back() {
        /// The layout older versions wrote: the data as a sequence of `u8`.
        #[derive(Serialize)]
        struct Older {
            meta: SnapshotMeta<NodeId, NodeInfo>,
            data: Vec<u8>,
        }
        let d = temp();
        let f = file(7, &[0, 1, 2, 250, 251, 255]);
        let older = Older {
            meta: f.meta.clone(),
            data: f.data.clone(),
        };
        let bytes = bincode::serde::encode_to_vec(&older, bincode::config::standard()).unwrap();
        std::fs::write(d.join("snapshot.current"), bytes).unwrap();
        let back = SnapDir::new(&d).read().unwrap().unwrap();
        assert_eq!((back.meta, back.data), (f.meta, f.data));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
