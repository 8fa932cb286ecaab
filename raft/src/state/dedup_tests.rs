//! Tests of the deduplication of retried proposals and of how its records are collected.
#![allow(clippy::unwrap_used)]

use super::keys::{self, Key, KeyReader};
use super::kv::KvRead;
use super::tests::{publish, Sm};
use super::DEDUP_WINDOW_MS;
use crate::types::Response;

/// The keys under `tag`, each read as its number components (`P`: id; `p`, `q`: ts, id or
/// index).
fn numbers_under(sm: &Sm, tag: u8, parts: usize) -> Vec<Vec<u64>> {
    sm.kv
        .scan(&[tag], None, false)
        .map(|pair| {
            let (k, _) = pair.unwrap();
            let mut r = KeyReader::new(&k);
            (0..parts).map(|_| r.n().unwrap()).collect()
        })
        .collect()
}

fn offset(r: &Result<Response, String>) -> u64 {
    match r {
        Ok(Response::Published { offset, .. }) => *offset,
        other => panic!("not published: {other:?}"),
    }
}

#[test]
fn a_retried_proposal_is_applied_once() {
    let mut sm = Sm::new();
    let first = sm.run_ids(1_000, vec![publish("r", true, 100, 0)], vec![42]);
    // The same proposal again (a retry after an unknown outcome), in a later entry and
    // next to a new one: the retry gets the first result, the new one the next offset.
    let again = sm.run_ids(
        2_000,
        vec![publish("r", true, 100, 0), publish("r", true, 100, 0)],
        vec![42, 43],
    );
    assert_eq!(again[0], first[0]);
    assert_eq!((offset(&first[0]), offset(&again[1])), (1, 2));
    let history = super::read::history(&sm.kv, "r", 0).unwrap();
    assert_eq!(history.events.len(), 2, "the retry stored nothing");
    // After the dedup window the id is forgotten and every record of the old results
    // collected: what is left is the new proposal's.
    let later = 2_000 + DEDUP_WINDOW_MS + 1;
    let third = sm.run_ids(later, vec![publish("r", true, 100, 0)], vec![42]);
    assert_eq!(offset(&third[0]), 3);
    assert_eq!(numbers_under(&sm, keys::PROPOSAL, 1), vec![vec![42]]);
    assert_eq!(
        numbers_under(&sm, keys::PROPOSAL_ENTRY, 2),
        vec![vec![later, 4]]
    );
}

#[test]
fn an_entry_indexes_its_results_in_one_record() {
    let mut sm = Sm::new();
    let cmds = (0..5).map(|_| publish("r", true, 100, 0)).collect();
    sm.run_ids(1_000, cmds, vec![11, 12, 13, 14, 15]);
    assert_eq!(numbers_under(&sm, keys::PROPOSAL, 1).len(), 5);
    assert_eq!(
        numbers_under(&sm, keys::PROPOSAL_ENTRY, 2),
        vec![vec![1_000, 2]]
    );
    assert!(numbers_under(&sm, keys::PROPOSAL_EXP, 2).is_empty());
    // Commands without an id (idempotent, or from a proposer that sends none) store nothing.
    sm.run(1_001, vec![publish("r", true, 100, 0)]);
    assert_eq!(numbers_under(&sm, keys::PROPOSAL_ENTRY, 2).len(), 1);
}

/// A state written by an older version indexed each result on its own (`p | ts | id`).
/// Those results still answer retries and are collected after the window.
#[test]
fn results_an_older_version_stored_still_dedup_and_are_collected() {
    let mut sm = Sm::new();
    let first = sm.run_ids(1_000, vec![publish("r", true, 100, 0)], vec![7]);
    // Rewrite the entry's record in the older layout.
    let q = Key::tag(keys::PROPOSAL_ENTRY).n(1_000).n(2).build();
    assert!(sm.kv.map.remove(&q).is_some());
    let p = Key::tag(keys::PROPOSAL_EXP).n(1_000).n(7).build();
    sm.kv.map.insert(p, keys::enc(&()).unwrap());

    let retry = sm.run_ids(1_500, vec![publish("r", true, 100, 0)], vec![7]);
    assert_eq!(retry[0], first[0]);
    sm.run(
        1_000 + DEDUP_WINDOW_MS + 1,
        vec![publish("r", true, 100, 0)],
    );
    assert!(numbers_under(&sm, keys::PROPOSAL, 1).is_empty());
    assert!(numbers_under(&sm, keys::PROPOSAL_EXP, 2).is_empty());
}
