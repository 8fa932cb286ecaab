//! The fault plan: which kinds of fault exist, how `--faults` names them, and the seeded
//! schedule (each selected kind once, in a seeded order, then seeded random picks).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::error::ChaosError;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the leader, restart it after the hold.
    KillLeader,
    /// SIGKILL a follower, restart it after the hold.
    KillFollower,
    /// SIGKILL the node most clients are connected to, restart it after the hold.
    KillClientNode,
    /// SIGSTOP the leader, SIGCONT after the hold (a frozen process).
    PauseLeader,
    /// SIGSTOP a follower, SIGCONT after the hold.
    PauseFollower,
    /// Cut the leader off from every peer (both ways) through the fault switch.
    IsolateLeader,
    /// Drop what the leader sends to one follower (one-way loss).
    OneWay,
    /// Delay the link between the leader and one follower (slow link).
    SlowLink,
}

impl FaultKind {
    /// Every kind, in documentation order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillClientNode,
        FaultKind::PauseLeader,
        FaultKind::PauseFollower,
        FaultKind::IsolateLeader,
        FaultKind::OneWay,
        FaultKind::SlowLink,
    ];

    /// The `--faults` name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillFollower => "kill-follower",
            FaultKind::KillClientNode => "kill-client-node",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::PauseFollower => "pause-follower",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::OneWay => "one-way",
            FaultKind::SlowLink => "slow-link",
        }
    }

    /// Whether the fault takes the leader away (the recovery time then includes an election).
    pub fn hits_leader(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::IsolateLeader
        )
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `--faults`: `all` or a comma-separated list of kind names.
pub fn parse_kinds(s: &str) -> Result<Vec<FaultKind>, ChaosError> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("all") {
        return Ok(FaultKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let kind = FaultKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == part)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                ChaosError::Args(format!(
                    "unknown fault kind {part:?}; expected all or some of {}",
                    names.join(", ")
                ))
            })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err(ChaosError::Args("--faults names no fault kind".into()));
    }
    Ok(out)
}

/// The seeded source of every random choice of a run (schedule and targets).
pub struct Dice(StdRng);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(StdRng::seed_from_u64(seed))
    }

    /// A uniform pick among `n` (n ≥ 1).
    pub fn pick(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            self.0.random_range(0..n)
        }
    }

    /// The schedule: `count` faults, each selected kind once first (seeded order), then
    /// seeded random picks.
    pub fn schedule(&mut self, kinds: &[FaultKind], count: usize) -> Vec<FaultKind> {
        let mut first = kinds.to_vec();
        first.shuffle(&mut self.0);
        let mut out: Vec<FaultKind> = first.into_iter().take(count).collect();
        while out.len() < count {
            out.push(kinds[self.pick(kinds.len())]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_all() {
        assert_eq!(parse_kinds("all").map(|v| v.len()).ok(), Some(8));
        assert_eq!(
            parse_kinds("kill-leader, pause-follower,kill-leader").ok(),
            Some(vec![FaultKind::KillLeader, FaultKind::PauseFollower])
        );
        assert!(parse_kinds("meteor").is_err());
    }

    #[test]
    fn schedule_is_seeded_and_covers_every_kind() {
        let kinds = parse_kinds("kill-leader,pause-follower,isolate-leader").unwrap_or_default();
        let a = Dice::new(1).schedule(&kinds, 10);
        let b = Dice::new(1).schedule(&kinds, 10);
        assert_eq!(a, b);
        for k in &kinds {
            assert!(a[..3].contains(k));
        }
    }
}
