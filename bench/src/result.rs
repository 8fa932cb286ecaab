//! What one scenario run writes: JSON that `report` aggregates into RESULTS.md and plots.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metric {
    /// Scenario id from the issue: M1 ... M7.
    pub id: String,
    /// Short machine-readable name, e.g. `rss_per_conn_bytes`.
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub higher_is_better: bool,
    /// CPU used by the load generator while this figure was measured, in % of one core.
    pub loadgen_cpu_pct: f64,
    /// CPU used by the system under test over the same window, in % of one core.
    pub server_cpu_pct: f64,
    /// CPU stolen by the hypervisor over the same window, in % of one core (absent in runs
    /// recorded before it was measured).
    #[serde(default)]
    pub steal_pct: Option<f64>,
    /// CPU used by anything else on the machine over the same window, in % of one core.
    #[serde(default)]
    pub other_cpu_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cdf {
    pub name: String,
    /// (milliseconds, cumulative fraction)
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub system: String,
    pub scenario: String,
    pub round: u32,
    pub profile: String,
    pub cpu_model: String,
    pub cores: usize,
    pub unix_time: u64,
    pub nodes: usize,
    pub metrics: Vec<Metric>,
    pub cdfs: Vec<Cdf>,
    /// Per-step details of ramps and any other raw numbers worth keeping.
    pub steps: Vec<serde_json::Value>,
    pub notes: Vec<String>,
}
