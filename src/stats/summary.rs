//! The figures of a set of runs: outcome by layer, latency, cost, errors and rates,
//! as `backstop stats` prints them and as alert rules read them. Every definition is
//! in `class.rs` and written out in the README.

use std::collections::BTreeMap;

use serde::Serialize;

use super::class::RunClass;
use super::facts::{Facts, ModelFacts};
use crate::policy::AlertMetric;

/// The `--json` document's format; a change that breaks readers bumps it.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub runs: Runs,
    /// Succeeded (any layer, a `default` answer included) of decided runs; `null`
    /// with no decided run.
    pub success_rate: Option<f64>,
    pub layers: Layers,
    pub latency_ms: Latency,
    pub cost: Cost,
    pub errors: Errors,
    pub rates: Rates,
    pub attempts: Attempts,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Runs {
    pub total: u64,
    /// Runs with a result the defence answers for (not interrupted, not unfinished).
    pub decided: u64,
    pub succeeded: u64,
    pub by_class: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Layers {
    pub l1: L1,
    pub l2: L2,
    pub l3: L3,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct L1 {
    pub first_try: u64,
    pub retried: u64,
    /// Settled by layer 1, of decided runs.
    pub success_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct L2 {
    /// Decided runs whose primary link did not give the result.
    pub reached: u64,
    pub fallback: u64,
    /// Runs rescued, by the fallback link that rescued them.
    pub by_link: BTreeMap<String, u64>,
    pub degraded: u64,
    pub escalated: u64,
    /// Rescued (a fallback link or a `default` answer), of the runs that reached it.
    pub rescue_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct L3 {
    pub rolled_back: u64,
    /// Rollbacks that left paths they could not put back.
    pub incomplete: u64,
    pub steps_rolled_back: u64,
}

/// Percentiles by the nearest-rank method, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Every decided run.
    pub overall: Percentiles,
    /// By the layer that settled the run (`failed`: none did).
    pub l1: Percentiles,
    pub l2: Percentiles,
    pub failed: Percentiles,
    /// Waited in backoff, over every run.
    pub backoff_total: u64,
    /// Putting trees back, per run that rolled back.
    pub rollback: Percentiles,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cost {
    pub total_usd: f64,
    /// Over the runs that had a cost.
    pub per_run_usd: CostPercentiles,
    /// What failed attempts cost.
    pub retry_cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub by_model: BTreeMap<String, ModelFacts>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CostPercentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p95: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_type: BTreeMap<&'static str, u64>,
    /// The five most frequent exit codes of failed attempts, most frequent first.
    pub top_exit_codes: Vec<ExitCount>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExitCount {
    pub code: u8,
    pub count: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Rates {
    /// Retries, of all attempts.
    pub retry_rate: Option<f64>,
    /// Decided runs that went past their primary link (a fallback, `default` or
    /// `escalate` link), of decided runs.
    pub fallback_rate: Option<f64>,
    /// Decided runs rolled back, of decided runs.
    pub rollback_rate: Option<f64>,
    /// Decided runs escalated to a person, of decided runs.
    pub escalation_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Attempts {
    pub total: u64,
    pub retries: u64,
    pub fallback: u64,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl Summary {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a Facts>) -> Summary {
        let mut s = Summary::default();
        let mut lat = LatencyLists::default();
        let mut costs = Vec::new();
        let mut exit_codes: BTreeMap<u8, u64> = BTreeMap::new();
        let mut fell_back = 0u64;
        for f in runs {
            s.add(f, &mut lat, &mut costs, &mut exit_codes, &mut fell_back);
        }
        s.finish(lat, costs, exit_codes, fell_back);
        s
    }

    fn add(
        &mut self,
        f: &Facts,
        lat: &mut LatencyLists,
        costs: &mut Vec<f64>,
        exit_codes: &mut BTreeMap<u8, u64>,
        fell_back: &mut u64,
    ) {
        self.runs.total += 1;
        *self.runs.by_class.entry(f.class.as_str()).or_default() += 1;
        self.attempts.total += u64::from(f.attempts);
        self.attempts.retries += u64::from(f.retries);
        self.attempts.fallback += u64::from(f.fallback_attempts);
        self.latency_ms.backoff_total = self.latency_ms.backoff_total.saturating_add(f.backoff_ms);
        self.add_cost(f, costs);
        for (t, n) in &f.errors {
            *self.errors.by_type.entry(t.as_str()).or_default() += u64::from(*n);
            self.errors.total += u64::from(*n);
        }
        for (code, n) in &f.exit_codes {
            *exit_codes.entry(*code).or_default() += u64::from(*n);
        }
        if f.rolled_back {
            self.layers.l3.rolled_back += 1;
            lat.rollback.push(f.rollback_ms);
        }
        self.layers.l3.incomplete += u64::from(f.rollback_incomplete);
        self.layers.l3.steps_rolled_back += u64::from(f.steps_rolled_back);
        if !f.class.decided() {
            return;
        }
        self.runs.decided += 1;
        self.runs.succeeded += u64::from(f.class.succeeded());
        lat.overall.push(f.elapsed_ms);
        match f.class.layer() {
            "l1" => lat.l1.push(f.elapsed_ms),
            "l2" if f.class != RunClass::Escalated => lat.l2.push(f.elapsed_ms),
            _ => lat.failed.push(f.elapsed_ms),
        }
        if f.class.reached_l2() {
            self.layers.l2.reached += 1;
        }
        if f.fallback_attempts > 0 || f.class.layer() == "l2" {
            *fell_back += 1;
        }
        match f.class {
            RunClass::FirstTry => self.layers.l1.first_try += 1,
            RunClass::Retried => self.layers.l1.retried += 1,
            RunClass::Fallback => {
                self.layers.l2.fallback += 1;
                let link = f.rescued_by.clone().unwrap_or_default();
                *self.layers.l2.by_link.entry(link).or_default() += 1;
            }
            RunClass::Degraded => self.layers.l2.degraded += 1,
            RunClass::Escalated => self.layers.l2.escalated += 1,
            _ => {}
        }
    }

    fn add_cost(&mut self, f: &Facts, costs: &mut Vec<f64>) {
        if let Some(c) = f.cost_usd {
            self.cost.total_usd += c;
            costs.push(c);
        }
        self.cost.retry_cost_usd += f.failed_cost_usd;
        self.cost.input_tokens = self.cost.input_tokens.saturating_add(f.input_tokens);
        self.cost.output_tokens = self.cost.output_tokens.saturating_add(f.output_tokens);
        for (name, m) in &f.models {
            let t = self.cost.by_model.entry(name.clone()).or_default();
            t.calls = t.calls.saturating_add(m.calls);
            t.failed = t.failed.saturating_add(m.failed);
            t.cost_usd += m.cost_usd;
            t.input_tokens = t.input_tokens.saturating_add(m.input_tokens);
            t.output_tokens = t.output_tokens.saturating_add(m.output_tokens);
        }
    }

    fn finish(
        &mut self,
        lat: LatencyLists,
        mut costs: Vec<f64>,
        exit_codes: BTreeMap<u8, u64>,
        fell_back: u64,
    ) {
        let decided = self.runs.decided;
        self.success_rate = ratio(self.runs.succeeded, decided);
        let l1 = &mut self.layers.l1;
        l1.success_rate = ratio(l1.first_try + l1.retried, decided);
        let l2 = &mut self.layers.l2;
        l2.rescue_rate = ratio(l2.fallback + l2.degraded, l2.reached);
        self.rates = Rates {
            retry_rate: ratio(self.attempts.retries, self.attempts.total),
            fallback_rate: ratio(fell_back, decided),
            rollback_rate: ratio(self.layers.l3.rolled_back, decided),
            escalation_rate: ratio(self.layers.l2.escalated, decided),
        };
        self.latency_ms.overall = percentiles(lat.overall);
        self.latency_ms.l1 = percentiles(lat.l1);
        self.latency_ms.l2 = percentiles(lat.l2);
        self.latency_ms.failed = percentiles(lat.failed);
        self.latency_ms.rollback = percentiles(lat.rollback);
        costs.sort_by(f64::total_cmp);
        self.cost.per_run_usd = CostPercentiles {
            count: costs.len() as u64,
            mean: (!costs.is_empty()).then(|| costs.iter().sum::<f64>() / costs.len() as f64),
            p95: rank(&costs, 0.95).copied(),
        };
        let mut codes: Vec<ExitCount> = exit_codes
            .into_iter()
            .map(|(code, count)| ExitCount { code, count })
            .collect();
        codes.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
        codes.truncate(5);
        self.errors.top_exit_codes = codes;
    }

    /// The value an alert rule compares, `None` when there is nothing to measure.
    pub fn metric(&self, m: AlertMetric) -> Option<f64> {
        match m {
            AlertMetric::SuccessRate => self.success_rate,
            AlertMetric::LatencyP95 => self.latency_ms.overall.p95.map(|v| v as f64),
            AlertMetric::LatencyP99 => self.latency_ms.overall.p99.map(|v| v as f64),
            AlertMetric::CostUsd => Some(self.cost.total_usd),
            AlertMetric::RetryRate => self.rates.retry_rate,
            AlertMetric::FallbackRate => self.rates.fallback_rate,
            AlertMetric::RollbackRate => self.rates.rollback_rate,
            AlertMetric::EscalationRate => self.rates.escalation_rate,
        }
    }
}

#[derive(Default)]
struct LatencyLists {
    overall: Vec<u64>,
    l1: Vec<u64>,
    l2: Vec<u64>,
    failed: Vec<u64>,
    rollback: Vec<u64>,
}

/// The nearest-rank percentile of a sorted list: the smallest value with at least
/// `p` of the list at or below it.
fn rank<T>(sorted: &[T], p: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
    sorted.get(i)
}

fn percentiles(mut v: Vec<u64>) -> Percentiles {
    v.sort_unstable();
    Percentiles {
        count: v.len() as u64,
        mean: (!v.is_empty()).then(|| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64),
        p50: rank(&v, 0.50).copied(),
        p95: rank(&v, 0.95).copied(),
        p99: rank(&v, 0.99).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        let p = percentiles(v);
        assert_eq!((p.p50, p.p95, p.p99), (Some(50), Some(95), Some(99)));
        let p = percentiles(vec![7]);
        assert_eq!((p.p50, p.p95, p.p99), (Some(7), Some(7), Some(7)));
        let p = percentiles(Vec::new());
        assert_eq!((p.count, p.p50, p.mean), (0, None, None));
        let p = percentiles(vec![10, 20, 30, 40]);
        assert_eq!((p.p50, p.p95), (Some(20), Some(40)));
    }
}
