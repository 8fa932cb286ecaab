//! Unit tests of the checker on hand-made journals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::chaos::plan::FaultKind;

fn ok(seq: u64, offset: u64, sent: f64) -> EmitRecord {
    EmitRecord {
        seq,
        room: "user:a".into(),
        node: 1,
        sent_ms: sent,
        done_ms: sent + 5.0,
        outcome: EmitOutcome::Ok {
            offset,
            epoch: "E".into(),
        },
    }
}

fn d(offset: u64, seq: u64, conn: u32, pre: bool) -> Delivery {
    Delivery {
        offset,
        epoch: "E".into(),
        seq: Some(seq),
        at_ms: 100.0 + offset as f64,
        node: 1,
        conn,
        pre_confirm: pre,
    }
}

fn client(ds: Vec<Delivery>) -> ClientLog {
    ClientLog {
        id: 0,
        user: "a".into(),
        room: "user:a".into(),
        start_offset: Some(0),
        start_epoch: Some("E".into()),
        deliveries: ds,
        ..ClientLog::default()
    }
}

fn hist(node: u64, n: u64) -> NodeHistory {
    NodeHistory {
        node,
        room: "user:a".into(),
        epoch: "E".into(),
        events: (1..=n)
            .map(|o| (o, "trade:executed".to_owned(), Some(o)))
            .collect(),
    }
}

#[test]
fn a_clean_run_passes() {
    let emits: Vec<_> = (1..=3).map(|i| ok(i, i, i as f64)).collect();
    // A reconnect: live 3 raced the replay of 2..3, all before the confirmation.
    let c = client(vec![
        d(1, 1, 1, false),
        d(3, 3, 2, true),
        d(2, 2, 2, true),
        d(3, 3, 2, true),
    ]);
    let f = check(&emits, &[c], &[hist(1, 3), hist(2, 3)], &[]);
    assert!(
        f.failures().is_empty(),
        "{:?} {:?}",
        f.failures(),
        f.examples
    );
    assert_eq!(f.duplicates_before_dedup, 1);
    assert!(f.histories_agree);
}

#[test]
fn loss_order_and_split_brain_are_found() {
    let emits: Vec<_> = (1..=4).map(|i| ok(i, i, i as f64)).collect();
    let c = client(vec![
        d(1, 1, 1, false),
        d(3, 3, 1, false),
        d(2, 2, 1, false),
    ]);
    let mut h2 = hist(2, 4);
    h2.events[3].2 = Some(99);
    let f = check(&emits, &[c], &[hist(1, 4), h2], &[]);
    assert_eq!(f.lost, 1);
    assert_eq!(f.order_breaks, 1);
    assert!(f.conflicts >= 1);
    assert!(!f.failures().is_empty());
}

#[test]
fn a_seq_at_two_offsets_is_a_duplicate_after_dedup() {
    let emits = vec![ok(1, 1, 1.0)];
    let mut h = hist(1, 2);
    h.events[1].2 = Some(1);
    let f = check(&emits, &[], &[h], &[]);
    assert_eq!(f.duplicates_after_dedup, 1);
}

#[test]
fn recovery_is_time_to_next_ok_emit() {
    let mut emits = vec![ok(1, 1, 0.0), ok(2, 2, 1500.0)];
    emits.push(EmitRecord {
        outcome: EmitOutcome::Refused,
        ..ok(3, 0, 1100.0)
    });
    let fault = FaultRecord {
        kind: FaultKind::KillLeader,
        nodes: vec![1],
        detail: String::new(),
        start_ms: 1000.0,
        end_ms: 2000.0,
        leader_before: Some(1),
    };
    let f = check(&emits, &[], &[hist(1, 2)], &[fault]);
    assert_eq!(f.recovery[0].ms, Some(505.0));
    assert_eq!(f.emits.refused503, 1);
    assert_eq!(Percentiles::of(vec![1.0, 2.0, 3.0, 4.0]).p50, 2.0);
}
