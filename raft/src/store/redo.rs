//! Writes one `apply()` call's changes to the state tree as plain sled writes, made atomic
//! across a crash by a redo record written first.
//!
//! Why not `Tree::apply_batch`: in sled 0.34 every batch seals the current I/O buffer before
//! it and writes a manifest after it, two buffer writes on sled's I/O pool, each of which
//! wakes all of the pool's idle threads. With about one entry per commit, that was most of
//! a follower's disk writes and a large share of its CPU (docs/performance.md, session 9).
//!
//! How it stays atomic: sled recovers a prefix of its writes after a crash. The record
//! ([`APPLYING`], in the meta tree) holds every change of the call and is written (one
//! insert, atomic on its own) before the first change. After a crash either the record is
//! missing, and so is every change after it, or it is there and [`redo`] at open writes all
//! of its changes again: they are final values, so writing them twice is harmless. A
//! snapshot install removes the record (the tree it described is gone), after marking
//! itself as installing.
//!
//! Readers may see one call's changes appear one by one (a batch hid them from point reads,
//! though not from a scan in progress). Nothing relies on seeing them together: an entry's
//! events are delivered only once all its changes are written, and connection state
//! recovery replays only entries up to the last one delivered. The record stays until the
//! next call replaces it: its size is that of the last call's changes.

use crate::state::keys::{dec, enc};
use crate::state::kv::Changes;
use crate::state::StateError;

/// Key (in the meta tree) of the redo record of the last `apply()` call.
pub(crate) const APPLYING: &[u8] = b"applying";

/// One change: the key and its new value (`None`: deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);

/// Writes one change to `tree`.
fn put_change(tree: &sled::Tree, key: &[u8], value: Option<&[u8]>) -> Result<(), sled::Error> {
    match value {
        Some(v) => tree.insert(key, v).map(drop),
        None => tree.remove(key).map(drop),
    }
}

/// Errors writing or replaying a redo record.
#[derive(Debug, thiserror::Error)]
pub enum RedoError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The record could not be encoded or decoded.
    #[error("redo record: {0}")]
    Codec(#[from] StateError),
}

/// Writes `changes` to `tree`: the redo record into `meta`, then each change. `stop_after`
/// (tests only) stops after that many changes, as a crash would.
pub(crate) fn write(
    tree: &sled::Tree,
    meta: &sled::Tree,
    changes: &Changes,
    stop_after: Option<usize>,
) -> Result<(), RedoError> {
    if changes.is_empty() {
        return Ok(());
    }
    let view: Vec<(&[u8], Option<&[u8]>)> = changes
        .iter()
        .map(|(k, v)| (&k[..], v.as_deref()))
        .collect();
    meta.insert(APPLYING, enc(&view)?)?;
    for (n, (k, v)) in changes.iter().enumerate() {
        if stop_after.is_some_and(|s| n >= s) {
            break;
        }
        put_change(tree, k, v.as_deref())?;
    }
    Ok(())
}

/// At open: writes the changes of the last `apply()` call again (an interrupted one is then
/// whole) and removes its record. Returns whether there was one.
pub(crate) fn redo(tree: &sled::Tree, meta: &sled::Tree) -> Result<bool, RedoError> {
    let Some(record) = meta.get(APPLYING)? else {
        return Ok(false);
    };
    let changes: Vec<Change> = dec(&record)?;
    for (k, v) in changes {
        put_change(tree, &k, v.as_deref())?;
    }
    meta.remove(APPLYING)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn changes(n: u8) -> Changes {
        (0..n)
            .map(|i| {
                let v = (i % 3 != 0).then(|| vec![i; 40]);
                (vec![b'k', i], v)
            })
            .collect()
    }

    fn pairs(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|p| p.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_apply_interrupted_after_any_change_is_whole_after_the_redo() {
        let ch = changes(12);
        let db = sled::Config::new().temporary(true).open().unwrap();
        let full = db.open_tree("full").unwrap();
        // Keys the changes delete exist beforehand.
        for k in ch.keys() {
            full.insert(k, b"old".to_vec()).unwrap();
        }
        let scratch = db.open_tree("meta-full").unwrap();
        write(&full, &scratch, &ch, None).unwrap();
        let expected = pairs(&full);
        assert!(expected.len() < ch.len(), "some changes are deletions");
        for stop in 0..ch.len() {
            let tree = db.open_tree(format!("t{stop}")).unwrap();
            let meta = db.open_tree(format!("m{stop}")).unwrap();
            for k in ch.keys() {
                tree.insert(k, b"old".to_vec()).unwrap();
            }
            write(&tree, &meta, &ch, Some(stop)).unwrap();
            assert_ne!(pairs(&tree), expected, "stopped after {stop} changes");
            assert!(redo(&tree, &meta).unwrap());
            assert_eq!(pairs(&tree), expected, "stopped after {stop} changes");
            assert!(meta.get(APPLYING).unwrap().is_none(), "record removed");
            assert!(!redo(&tree, &meta).unwrap(), "nothing left to redo");
        }
    }

    #[test]
    fn nothing_to_write_leaves_no_record() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, meta) = (db.open_tree("t").unwrap(), db.open_tree("m").unwrap());
        write(&tree, &meta, &Changes::new(), None).unwrap();
        assert!(meta.get(APPLYING).unwrap().is_none());
    }
}
