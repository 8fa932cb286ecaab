//! openraft's storage test suite against the sled stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftcast_raft::store::{self, LogStore, SmStore};
use raftcast_raft::{NodeId, TypeConfig};

/// Removes its directory on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder;

static SEQ: AtomicU64 = AtomicU64::new(0);

impl StoreBuilder<TypeConfig, LogStore, SmStore, (TempDir, sled::Db)> for Builder {
    async fn build(
        &self,
    ) -> Result<((TempDir, sled::Db), LogStore, SmStore), StorageError<NodeId>> {
        let dir = std::env::temp_dir().join(format!(
            "raftcast-suite-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let (db, log, sm) = store::open(&dir, store::DEFAULT_CACHE_BYTES).expect("open store");
        Ok(((TempDir(dir), db), log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Suite::test_all(Builder).expect("suite");
}
