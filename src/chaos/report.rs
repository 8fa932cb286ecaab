//! The run's report: what was run, the checker's findings, the faults and the clients, as a
//! JSON file and as a summary table for the terminal.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::check::{Findings, Percentiles};
use super::error::ChaosError;
use super::record::{ClientLog, FaultRecord, QuoteStats};

/// Pass or fail, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub passed: bool,
    pub failures: Vec<String>,
}

/// What was run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSettings {
    pub seed: u64,
    pub duration_s: f64,
    pub nodes: usize,
    pub clients: usize,
    pub users: usize,
    pub rate: u32,
    /// Emits per request (1: `POST /api/emit`; more: `POST /api/emit/batch`).
    pub batch: usize,
    pub quote_rate: u32,
    pub fault_every_s: f64,
    pub fault_hold_s: f64,
    pub faults: Vec<String>,
    pub binary: String,
    pub command: String,
    /// `--net` and its mechanisms in short, e.g. `netns: ip rule blackhole, tbf (no netem)`.
    pub net: String,
    /// How partitions were made (with `netns`: the layout and the mechanism per fault).
    pub net_detail: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub verdict: Verdict,
    pub settings: RunSettings,
    pub wall_s: f64,
    pub findings: Findings,
    pub faults: Vec<FaultRecord>,
    pub clients: Vec<ClientLog>,
    pub quotes: QuoteStats,
    pub skipped_emits: u64,
    /// Problems of the harness itself that did not stop the run (e.g. a late restart).
    pub harness_notes: Vec<String>,
    /// Where the cluster's data and logs were (kept when the run failed or with --keep).
    pub data_dir: Option<String>,
}

impl Report {
    /// Writes the JSON report.
    pub fn write_json(&self, path: &Path) -> Result<(), ChaosError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ChaosError::Report(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ChaosError::io(dir, e))?;
        }
        std::fs::write(path, text).map_err(|e| ChaosError::io(path, e))
    }

    /// The terminal summary.
    pub fn table(&self) -> String {
        let f = &self.findings;
        let s = &self.settings;
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "│ {k:<34} │ {v:<40} │");
        };
        let line = format!("├{}┼{}┤", "─".repeat(36), "─".repeat(42));
        let mut out = format!("┌{}┬{}┐\n", "─".repeat(36), "─".repeat(42));
        row(
            "verdict",
            if self.verdict.passed {
                "PASS".into()
            } else {
                "FAIL".into()
            },
        );
        row("seed", s.seed.to_string());
        row(
            "nodes / clients / users",
            format!("{} / {} / {}", s.nodes, s.clients, s.users),
        );
        row(
            "fault time / wall time",
            format!("{:.0} s / {:.0} s", s.duration_s, self.wall_s),
        );
        row("network (--net)", s.net.clone());
        row("faults injected", self.faults.len().to_string());
        out.push_str(&t);
        t.clear();
        out.push_str(&line);
        out.push('\n');
        let e = &f.emits;
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "│ {k:<34} │ {v:<40} │");
        };
        row("emits sent", e.total.to_string());
        row("  answered 200", e.ok.to_string());
        row(
            "  refused 503 (counted, not lost)",
            e.refused503.to_string(),
        );
        row(
            "  no answer / other status",
            format!("{} / {}", e.no_answer, e.other_status),
        );
        row("  committed without a 200", e.committed_unacked.to_string());
        row(
            "  skipped (too many in flight)",
            self.skipped_emits.to_string(),
        );
        row("deliveries received", f.deliveries.to_string());
        row("lost (acked, not delivered)", f.lost.to_string());
        row("lost from node histories", f.lost_from_history.to_string());
        row(
            "duplicates before dedup",
            f.duplicates_before_dedup.to_string(),
        );
        row(
            "duplicates after dedup",
            f.duplicates_after_dedup.to_string(),
        );
        row("ordering breaks", f.order_breaks.to_string());
        row("gaps left unfilled", f.gaps_unfilled.to_string());
        row("split brain (offset conflicts)", f.conflicts.to_string());
        row("epochs", f.epochs.len().to_string());
        row("node histories agree", f.histories_agree.to_string());
        row("emit latency ms (p50/p99/max)", pct(&f.emit_latency_ms));
        row(
            "delivery latency ms (p50/p99/max)",
            pct(&f.delivery_latency_ms),
        );
        for (kind, p) in &f.recovery_by_kind {
            row(
                &format!("fault→next 200 ms: {kind}"),
                format!("n={} {}", p.count, pct(p)),
            );
        }
        let q = &self.quotes;
        row(
            "quotes sent / accepted / failed",
            format!("{} / {} / {}", q.sent, q.accepted, q.failed),
        );
        let got: u64 = self.clients.iter().map(|c| c.quotes).sum();
        row("quote updates received", got.to_string());
        let reconnects: u32 = self
            .clients
            .iter()
            .map(|c| c.connects.saturating_sub(1))
            .sum();
        row("client reconnects", reconnects.to_string());
        out.push_str(&t);
        out.push_str(&format!("└{}┴{}┘\n", "─".repeat(36), "─".repeat(42)));
        if !self.faults.is_empty() {
            out.push_str("faults:\n");
            for (k, fault) in self.faults.iter().enumerate() {
                let rec = f
                    .recovery
                    .get(k)
                    .and_then(|r| r.ms)
                    .map_or("none".to_owned(), |ms| format!("{ms:.0} ms"));
                let _ = writeln!(
                    out,
                    "  {:>3}. t={:>6.1}s {:<16} {:<48} next 200 after {rec}",
                    k + 1,
                    fault.start_ms / 1000.0,
                    fault.kind.name(),
                    fault.detail
                );
            }
        }
        for fail in &self.verdict.failures {
            let _ = writeln!(out, "FAILED: {fail}");
        }
        for ex in f.examples.iter().take(10) {
            let _ = writeln!(out, "  e.g. {ex}");
        }
        for n in &self.harness_notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

fn pct(p: &Percentiles) -> String {
    format!("{:.1} / {:.1} / {:.1}", p.p50, p.p99, p.max)
}
