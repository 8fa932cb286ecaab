//! Group commit of log appends: one fsync acknowledges every append made before it.
//!
//! openraft 0.9 calls `append` from its core task and awaits it, so an append that waited
//! for its own `flush_async` held up the whole node (heartbeats, replies, the next append)
//! for one fsync (≈ 2.7 ms here) per entry, and capped a node at one entry per fsync. Now
//! `append` writes the entries into sled's in-memory log and hands openraft's callback to
//! this flusher, which runs on its own thread: it takes every callback queued so far, makes
//! sled durable once (`Db::flush` covers every write made before it starts) and then
//! completes them in order. An append is still acknowledged only once it is on disk.

use std::sync::mpsc;

use openraft::storage::LogFlushed;

use crate::types::TypeConfig;

/// Hands append callbacks to the flusher thread. Cheap to clone; the thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub(crate) struct GroupFlush {
    tx: mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl GroupFlush {
    /// Start the flusher thread for `db`.
    pub(crate) fn start(db: sled::Db) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run(&db, &rx))?;
        Ok(GroupFlush { tx })
    }

    /// Complete `cb` once everything written to sled so far is on disk.
    pub(crate) fn after_next_flush(&self, cb: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(cb)) = self.tx.send(cb) {
            // The thread is gone only if it panicked: say so to openraft rather than hang.
            cb.log_io_completed(Err(std::io::Error::other("the log flusher thread stopped")));
        }
    }
}

fn run(db: &sled::Db, rx: &mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        match db.flush() {
            Ok(_) => {
                for cb in waiting {
                    cb.log_io_completed(Ok(()));
                }
                // The flush sealed sled's buffer on this thread; free what that replaced.
                super::release_deferred();
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, appends = waiting.len(), "raft log flush failed");
                for cb in waiting {
                    cb.log_io_completed(Err(std::io::Error::other(msg.clone())));
                }
            }
        }
    }
}
