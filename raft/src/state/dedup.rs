//! The results kept for retried proposals.
//!
//! A proposal carries a random id; a retry of it (a forward whose answer was lost, a write
//! cut short by a leader change) carries the same id and must get the first result rather
//! than be applied twice. Every node keeps the results of the last [`DEDUP_WINDOW_MS`] of
//! log time, in one of two layouts:
//!
//! - one record per proposal (`P | id` → result) plus one per entry naming its ids
//!   (`q | ts | index` → ids), what versions up to peer protocol 2 write: a read, an insert
//!   and (after the window) a delete per proposal on every node (at 3,000 durable emits/s
//!   in batches, a build without any such record used a quarter less server CPU;
//!   docs/performance.md, session 13);
//! - one record per entry holding its ids and results (`Q | ts | index` → [(id, result)]),
//!   found through an in-memory index of the window's ids, rebuilt from those records when a
//!   state is opened or a snapshot installed: one insert per entry, and about 50 bytes of
//!   memory per proposal of the window (measured: 12 % less server CPU than the first
//!   layout at that rate).
//!
//! A node writes the second only while every member reads it ([`Dedup::per_entry`], set
//! from the version gate in `node/versions.rs`): an older node that installed a snapshot
//! holding only `Q` records would apply a retry twice. Both are always read, so a state that
//! holds either (a node that just switched, a snapshot from a node that had not) loses
//! nothing. Nodes may differ in layout; they never differ in which ids they find.
//!
//! [`DEDUP_WINDOW_MS`]: super::DEDUP_WINDOW_MS

use std::collections::HashMap;

use super::keys::{self, dec, get, put, Key, KeyReader};
use super::kv::{Kv, KvRead};
use super::StateError;
use crate::types::Response;

/// A proposal's result as kept for its retries.
pub type Outcome = Result<Response, String>;

/// Most ids collected per entry (a backlog after a long pause is worked off over entries).
const COLLECT_PER_ENTRY: usize = 1024;

/// Where the results of the window's proposals are, and which layout to write.
#[derive(Debug, Default)]
pub struct Dedup {
    /// Proposal id → (log time, index) of the `Q` record holding its result.
    at: HashMap<u64, (u64, u64)>,
    /// Whether `P` records (one per proposal) may exist, so must be looked up.
    legacy: bool,
    /// Write one record per entry (every member reads it); otherwise one per proposal.
    pub per_entry: bool,
}

impl Dedup {
    /// The index of the results `kv` holds (at open, and after a snapshot install).
    pub fn load<K: KvRead + ?Sized>(kv: &K) -> Result<Dedup, StateError> {
        let mut d = Dedup::default();
        for pair in kv.scan(&[keys::RESULTS], None, false) {
            let (k, v) = pair?;
            let mut r = KeyReader::new(&k);
            let at = (r.n()?, r.n()?);
            let results: Vec<(u64, Outcome)> = dec(&v)?;
            for (id, _) in results {
                d.at.insert(id, at);
            }
        }
        d.legacy = any_under(kv, keys::PROPOSAL)?;
        Ok(d)
    }

    /// How many proposal ids the in-memory index holds.
    pub fn indexed(&self) -> usize {
        self.at.len()
    }

    /// The first result of proposal `id`, while it is kept.
    pub(super) fn find<K: KvRead + ?Sized>(
        &self,
        kv: &K,
        id: u64,
    ) -> Result<Option<Outcome>, StateError> {
        if let Some(&(ts, index)) = self.at.get(&id) {
            let key = Key::tag(keys::RESULTS).n(ts).n(index).build();
            let results: Vec<(u64, Outcome)> = get(kv, &key)?.unwrap_or_default();
            return match results.into_iter().find(|(i, _)| *i == id) {
                Some((_, r)) => Ok(Some(r)),
                // The index and the records are written together: a miss is a bug, and
                // applying the proposal again could apply it twice.
                None => Err(StateError::Storage(format!(
                    "proposal {id} is indexed at entry {index} whose record does not hold it"
                ))),
            };
        }
        if self.legacy {
            return get(kv, &Key::tag(keys::PROPOSAL).n(id).build());
        }
        Ok(None)
    }

    /// Keeps the results of the entry at `index` (log time `now`) in this node's layout.
    pub(super) fn record<K: Kv + ?Sized>(
        &mut self,
        kv: &mut K,
        now: u64,
        index: u64,
        results: Vec<(u64, Outcome)>,
    ) -> Result<(), StateError> {
        if results.is_empty() {
            return Ok(());
        }
        if self.per_entry {
            for (id, _) in &results {
                self.at.insert(*id, (now, index));
            }
            return put(
                kv,
                Key::tag(keys::RESULTS).n(now).n(index).build(),
                &results,
            );
        }
        let ids: Vec<u64> = results.iter().map(|(id, _)| *id).collect();
        for (id, r) in &results {
            put(kv, Key::tag(keys::PROPOSAL).n(*id).build(), r)?;
        }
        self.legacy = true;
        put(
            kv,
            Key::tag(keys::PROPOSAL_ENTRY).n(now).n(index).build(),
            &ids,
        )
    }

    /// Forgets the results kept at or before log time `horizon` (a bounded number per call).
    pub(super) fn collect<K: Kv + ?Sized>(
        &mut self,
        kv: &mut K,
        horizon: u64,
    ) -> Result<(), StateError> {
        for (key, at, ids) in due(kv, keys::RESULTS, horizon, |_, v| {
            let results: Vec<(u64, Outcome)> = dec(v)?;
            Ok(results.into_iter().map(|(id, _)| id).collect())
        })? {
            kv.del(key);
            for id in ids {
                // An id proposed again after the window points at its newer record.
                if self.at.get(&id) == Some(&at) {
                    self.at.remove(&id);
                }
            }
        }
        if !self.legacy {
            return Ok(());
        }
        // One record per entry listing its ids, and the one-per-id records of still older
        // versions (`p | ts | id`: the id is the key's second number).
        let per_entry = due(kv, keys::PROPOSAL_ENTRY, horizon, |_, v| dec(v))?;
        let per_id = due(kv, keys::PROPOSAL_EXP, horizon, |r, _| Ok(vec![r.n()?]))?;
        let collected = !per_entry.is_empty() || !per_id.is_empty();
        for (key, _, ids) in per_entry.into_iter().chain(per_id) {
            kv.del(key);
            for id in ids {
                kv.del(Key::tag(keys::PROPOSAL).n(id).build());
            }
        }
        if collected && self.per_entry {
            self.legacy = any_under(kv, keys::PROPOSAL)?;
        }
        Ok(())
    }
}

/// Whether any key starts with `tag`.
fn any_under<K: KvRead + ?Sized>(kv: &K, tag: u8) -> Result<bool, StateError> {
    kv.scan(&[tag], None, false)
        .next()
        .transpose()
        .map(|p| p.is_some())
}

/// A due record: its key, its (log time, index) and the proposal ids it names.
type DueRecord = (Vec<u8>, (u64, u64), Vec<u64>);

/// The records under `tag` (`tag | ts | n`) kept at or before `horizon`, with the ids each
/// names (`ids_of` reads them from the rest of the key or the value); at most about
/// [`COLLECT_PER_ENTRY`] ids per call.
fn due<K: Kv + ?Sized>(
    kv: &K,
    tag: u8,
    horizon: u64,
    ids_of: impl Fn(&mut KeyReader, &[u8]) -> Result<Vec<u64>, StateError>,
) -> Result<Vec<DueRecord>, StateError> {
    let (mut out, mut ids) = (Vec::new(), 0);
    for pair in kv.scan(&[tag], None, false) {
        let (k, v) = pair?;
        let mut r = KeyReader::new(&k);
        let ts = r.n()?;
        if ts > horizon || ids >= COLLECT_PER_ENTRY {
            break;
        }
        let n = {
            let mut again = KeyReader::new(&k);
            again.n()?;
            again.n()?
        };
        let named = ids_of(&mut r, &v)?;
        ids += named.len();
        out.push((k.to_vec(), (ts, n), named));
    }
    Ok(out)
}
