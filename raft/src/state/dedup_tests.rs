//! Tests of the deduplication of retried proposals and of how its records are collected.
#![allow(clippy::unwrap_used)]

use super::keys::{self, Key, KeyReader};
use super::kv::KvRead;
use super::tests::{publish, Sm};
use super::{Dedup, DEDUP_WINDOW_MS};
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

/// An Sm writing the results kept for retries one record per entry (every member reads it).
fn per_entry_sm() -> Sm {
    let mut sm = Sm::new();
    sm.dedup.per_entry = true;
    sm
}

#[test]
fn one_record_per_entry_holds_its_results_and_answers_retries() {
    let mut sm = per_entry_sm();
    let cmds = (0..3).map(|_| publish("r", true, 100, 0)).collect();
    let first = sm.run_ids(1_000, cmds, vec![11, 12, 13]);
    assert_eq!(numbers_under(&sm, keys::RESULTS, 2), vec![vec![1_000, 2]]);
    assert!(numbers_under(&sm, keys::PROPOSAL, 1).is_empty());
    assert!(numbers_under(&sm, keys::PROPOSAL_ENTRY, 2).is_empty());
    assert_eq!(sm.dedup.indexed(), 3);
    // Retries of 12 and 11 (in that order) next to a new proposal.
    let again = sm.run_ids(
        2_000,
        (0..3).map(|_| publish("r", true, 100, 0)).collect(),
        vec![12, 14, 11],
    );
    assert_eq!((&again[0], &again[2]), (&first[1], &first[0]));
    assert_eq!(offset(&again[1]), 4);
    let history = super::read::history(&sm.kv, "r", 0).unwrap();
    assert_eq!(history.events.len(), 4, "the retries stored nothing");
    // After the window: records and index entries go; an old id is a new proposal again.
    let later = 2_000 + DEDUP_WINDOW_MS + 1;
    let third = sm.run_ids(later, vec![publish("r", true, 100, 0)], vec![11]);
    assert_eq!(offset(&third[0]), 5);
    assert_eq!(numbers_under(&sm, keys::RESULTS, 2), vec![vec![later, 4]]);
    assert_eq!(sm.dedup.indexed(), 1);
}

#[test]
fn the_index_is_rebuilt_from_the_records_at_open() {
    let mut sm = per_entry_sm();
    let first = sm.run_ids(1_000, vec![publish("r", true, 100, 0)], vec![42]);
    // A restart (or a snapshot install): the in-memory index comes from the records.
    sm.dedup = Dedup::load(&sm.kv).unwrap();
    sm.dedup.per_entry = true;
    assert_eq!(sm.dedup.indexed(), 1);
    let retry = sm.run_ids(1_500, vec![publish("r", true, 100, 0)], vec![42]);
    assert_eq!(retry[0], first[0]);
    // Without the index, the retry would have been applied again.
    let mut forgetful = per_entry_sm();
    forgetful.run_ids(1_000, vec![publish("r", true, 100, 0)], vec![42]);
    forgetful.dedup = Dedup::default();
    forgetful.dedup.per_entry = true;
    let twice = forgetful.run_ids(1_500, vec![publish("r", true, 100, 0)], vec![42]);
    assert_eq!(offset(&twice[0]), 2, "the control: no index, applied twice");
}

#[test]
fn switching_layouts_loses_no_result_and_collects_both() {
    let mut sm = Sm::new();
    let old = sm.run_ids(1_000, vec![publish("r", true, 100, 0)], vec![7]);
    sm.dedup.per_entry = true;
    let new = sm.run_ids(1_100, vec![publish("r", true, 100, 0)], vec![8]);
    // A node that opens this state (or installs it as a snapshot) finds both.
    let mut reopened = Dedup::load(&sm.kv).unwrap();
    reopened.per_entry = true;
    sm.dedup = reopened;
    let retries = sm.run_ids(
        1_200,
        vec![publish("r", true, 100, 0), publish("r", true, 100, 0)],
        vec![7, 8],
    );
    assert_eq!(retries, vec![old[0].clone(), new[0].clone()]);
    sm.run(
        1_100 + DEDUP_WINDOW_MS + 1,
        vec![publish("r", true, 100, 0)],
    );
    for tag in [keys::PROPOSAL, keys::PROPOSAL_ENTRY, keys::RESULTS] {
        assert!(numbers_under(&sm, tag, 1).is_empty(), "tag {}", tag as char);
    }
    assert_eq!(sm.dedup.indexed(), 0);
}

mod layouts {
    use proptest::prelude::*;

    use super::super::tests::{publish, Sm};
    use super::super::Dedup;

    /// One entry: the time step, and per command its room and proposal id (0: none).
    type Entry = (u64, Vec<(u8, u64)>);

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec(
            (
                0u64..40_000,
                prop::collection::vec((0u8..3, prop_oneof![Just(0u64), 1u64..12]), 1..5),
            ),
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The per-proposal layout, the per-entry layout, and a node that switches between
        /// them and restarts at random (rebuilding its index from its records) give the same
        /// results and the same histories, retries within the window answered once.
        #[test]
        fn every_layout_gives_the_same_results(
            plan in entries(),
            switches in prop::collection::vec(any::<(bool, bool)>(), 40),
        ) {
            let mut sms = [Sm::new(), Sm::new(), Sm::new()];
            sms[1].dedup.per_entry = true;
            let mut now = 1_000;
            for (k, (dt, cmds)) in plan.iter().enumerate() {
                now += dt;
                let (per_entry, restart) = switches[k];
                if restart {
                    sms[2].dedup = Dedup::load(&sms[2].kv).unwrap();
                }
                sms[2].dedup.per_entry = per_entry;
                let (rooms, ids): (Vec<_>, Vec<_>) = cmds.iter().copied().unzip();
                let answers: Vec<_> = sms
                    .iter_mut()
                    .map(|sm| {
                        let cmds = rooms
                            .iter()
                            .map(|r| publish(&format!("r{r}"), true, 100, 0))
                            .collect();
                        sm.run_ids(now, cmds, ids.clone())
                    })
                    .collect();
                prop_assert_eq!(&answers[0], &answers[1], "entry {}", k);
                prop_assert_eq!(&answers[0], &answers[2], "entry {}", k);
            }
            for r in 0..3 {
                let room = format!("r{r}");
                let h: Vec<_> = sms
                    .iter()
                    .map(|sm| super::super::read::history(&sm.kv, &room, 0).unwrap().events)
                    .collect();
                prop_assert_eq!(&h[0], &h[1]);
                prop_assert_eq!(&h[0], &h[2]);
            }
        }
    }
}
