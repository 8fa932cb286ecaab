//! Which rate a ramp (M2, M5) tries next: up by a factor per step until a step fails, then
//! a few steps that narrow the gap between the highest rate that passed and the lowest that
//! failed. Pure, so the sequence is tested apart from the steps that run it.

/// How a ramp is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RampSpec {
    /// Growth per step until a step fails.
    pub(super) factor: f64,
    /// Steps before the first failure, at most.
    pub(super) max_steps: usize,
    /// Steps after the first failure, each at the geometric middle of the highest rate that
    /// passed and the lowest that failed: the ceiling is then known to within
    /// `factor^(1/2^refine)` instead of `factor`.
    pub(super) refine: usize,
}

/// The rates of one ramp, given each step's outcome.
#[derive(Debug, Clone)]
pub(super) struct RampPlan {
    spec: RampSpec,
    /// The first step's rate.
    start: f64,
    /// Growing steps run so far.
    grown: usize,
    /// Refining steps run so far.
    refined: usize,
    /// The highest rate that passed.
    low: Option<f64>,
    /// The lowest rate that failed.
    high: Option<f64>,
    /// The rate handed out last, awaiting its outcome.
    pending: Option<f64>,
}

impl RampPlan {
    /// A ramp from `start` (emits/s).
    pub(super) fn new(spec: RampSpec, start: f64) -> Self {
        RampPlan {
            spec,
            start,
            grown: 0,
            refined: 0,
            low: None,
            high: None,
            pending: None,
        }
    }

    /// The next rate to run, or `None` when the ramp is over. Call [`RampPlan::record`]
    /// with its outcome before asking again.
    pub(super) fn next_rate(&mut self) -> Option<f64> {
        let rate = match (self.low, self.high) {
            // Growing: until a step fails or max_steps ran.
            (low, None) => {
                if self.grown >= self.spec.max_steps {
                    return None;
                }
                self.grown += 1;
                low.map_or(self.start, |l| l * self.spec.factor)
            }
            // Refining between the two; not below the start (if the first step failed,
            // there is no lower end and nothing to refine).
            (Some(low), Some(high)) => {
                if self.refined >= self.spec.refine {
                    return None;
                }
                self.refined += 1;
                (low * high).sqrt()
            }
            (None, Some(_)) => return None,
        };
        self.pending = Some(rate);
        Some(rate)
    }

    /// The outcome of the rate [`RampPlan::next_rate`] gave last. A rate that passes is
    /// above every rate that passed before it (the ramp grows, and refines above its lower
    /// end).
    pub(super) fn record(&mut self, pass: bool) {
        let Some(rate) = self.pending.take() else {
            return;
        };
        if pass {
            self.low = Some(self.low.map_or(rate, |l| l.max(rate)));
        } else {
            self.high = Some(self.high.map_or(rate, |h| h.min(rate)));
        }
    }

    /// Whether a step failed (false: every step passed, the ceiling is above the last).
    pub(super) fn failed(&self) -> bool {
        self.high.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_steps: usize, refine: usize) -> RampSpec {
        RampSpec {
            factor: 1.5,
            max_steps,
            refine,
        }
    }

    /// Runs a plan against a system whose ceiling is `ceiling`; returns the rates tried.
    fn run(spec: RampSpec, ceiling: f64) -> (Vec<f64>, RampPlan) {
        let mut plan = RampPlan::new(spec, 200.0);
        let mut rates = Vec::new();
        while let Some(r) = plan.next_rate() {
            rates.push(r.round());
            plan.record(r <= ceiling);
        }
        (rates, plan)
    }

    #[test]
    fn grows_until_a_failure_then_halves_the_gap_twice() {
        let (rates, plan) = run(spec(10, 2), 1_700.0);
        // 200 300 450 675 1012 1519 pass, 2278 fails; then sqrt(1519*2278) = 1860 fails,
        // sqrt(1519*1860) = 1681 passes.
        assert_eq!(
            rates,
            vec![200.0, 300.0, 450.0, 675.0, 1013.0, 1519.0, 2278.0, 1860.0, 1681.0]
        );
        assert!(plan.failed());
    }

    #[test]
    fn a_passing_refinement_raises_the_lower_end() {
        let (rates, _) = run(spec(10, 2), 2_000.0);
        assert_eq!(&rates[6..], &[2278.0, 1860.0, 2059.0]);
    }

    #[test]
    fn without_refinement_it_stops_at_the_first_failure() {
        let (rates, plan) = run(spec(10, 0), 500.0);
        assert_eq!(rates, vec![200.0, 300.0, 450.0, 675.0]);
        assert!(plan.failed());
    }

    #[test]
    fn a_failing_first_step_is_not_refined() {
        let (rates, plan) = run(spec(10, 2), 100.0);
        assert_eq!(rates, vec![200.0]);
        assert!(plan.failed());
    }

    #[test]
    fn a_ramp_that_never_fails_ends_at_max_steps_unrefined() {
        let (rates, plan) = run(spec(3, 2), 1e9);
        assert_eq!(rates, vec![200.0, 300.0, 450.0]);
        assert!(!plan.failed());
    }
}
