//! Prometheus's text exposition format: counters and histograms over runs, with
//! bounded labels (`policy`, `layer`, `outcome`, `error_type`, `model`, and a few
//! fixed words: never a run id, a command line or a path inside a tree).
//!
//! A [`Tally`] is what `stats --prometheus` prints for the runs it selects, and what
//! the store keeps (`metrics/tally.json`) to write a node_exporter textfile and push
//! to a Pushgateway after each run: there it is cumulative, one run added at a time,
//! so its counters only go up (gc removing records does not lower them).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Facts;
use super::class::RunClass;

/// Upper bounds of the run-duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0,
];

/// A series: its metric family and its labels (name, value), in a fixed order.
type Series = (&'static str, Vec<(&'static str, String)>);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// Per bucket (not cumulative), then the count over the last bound.
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// Counters, gauges and histograms, added to run by run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(with = "series_map")]
    counters: BTreeMap<Series, f64>,
    #[serde(with = "series_map")]
    gauges: BTreeMap<Series, f64>,
    #[serde(with = "series_map")]
    histograms: BTreeMap<Series, Hist>,
}

/// Every metric family: name, type, help. The README lists the same.
pub const FAMILIES: [(&str, &str, &str); 14] = [
    (
        "backstop_runs_total",
        "counter",
        "Finished runs, by the layer that settled them and their outcome.",
    ),
    (
        "backstop_attempts_total",
        "counter",
        "Attempts, by layer (l1: the command or model and its retries, l2: fallback links).",
    ),
    (
        "backstop_retries_total",
        "counter",
        "Attempts after a link's first, by layer.",
    ),
    (
        "backstop_attempt_errors_total",
        "counter",
        "Failed attempts by error type (and runs stopped by a budget).",
    ),
    (
        "backstop_run_duration_seconds",
        "histogram",
        "Wall time of decided runs, by the layer that settled them (none: failed).",
    ),
    (
        "backstop_backoff_seconds_total",
        "counter",
        "Time waited in backoff between attempts.",
    ),
    (
        "backstop_rollbacks_total",
        "counter",
        "Runs rolled back, by whether every path was put back.",
    ),
    (
        "backstop_step_rollbacks_total",
        "counter",
        "Failed steps of a task rolled back to their checkpoint.",
    ),
    (
        "backstop_rollback_seconds_total",
        "counter",
        "Time spent putting trees back.",
    ),
    (
        "backstop_model_calls_total",
        "counter",
        "Model calls, by model and result.",
    ),
    (
        "backstop_cost_usd_total",
        "counter",
        "What model calls cost, in US dollars, by model.",
    ),
    (
        "backstop_retry_cost_usd_total",
        "counter",
        "What failed model calls cost, in US dollars.",
    ),
    (
        "backstop_tokens_total",
        "counter",
        "Model tokens, by model and direction.",
    ),
    (
        "backstop_last_run_timestamp_seconds",
        "gauge",
        "When the last finished run started, in seconds since the epoch.",
    ),
];

impl Tally {
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a Facts>) -> Tally {
        let mut t = Tally::default();
        for f in runs {
            t.add(f);
        }
        t
    }

    /// Adds a finished run (an unfinished one has nothing to count yet).
    pub fn add(&mut self, f: &Facts) {
        if f.class == RunClass::Unfinished {
            return;
        }
        let p = || ("policy", f.policy.clone());
        let layer = f.class.layer();
        self.count(
            "backstop_runs_total",
            vec![
                p(),
                ("layer", layer.into()),
                ("outcome", f.class.as_str().into()),
            ],
            1.0,
        );
        let l1 = f.attempts.saturating_sub(f.fallback_attempts);
        for (layer, n) in [("l1", l1), ("l2", f.fallback_attempts)] {
            if n > 0 {
                self.count(
                    "backstop_attempts_total",
                    vec![p(), ("layer", layer.into())],
                    n.into(),
                );
            }
        }
        if f.retries > 0 {
            self.count("backstop_retries_total", vec![p()], f.retries.into());
        }
        for (t, n) in &f.errors {
            let labels = vec![p(), ("error_type", t.as_str().into())];
            self.count("backstop_attempt_errors_total", labels, (*n).into());
        }
        if f.class.decided() {
            let labels = vec![p(), ("layer", layer.into())];
            self.observe(
                "backstop_run_duration_seconds",
                labels,
                f.elapsed_ms as f64 / 1e3,
            );
        }
        if f.backoff_ms > 0 {
            self.count(
                "backstop_backoff_seconds_total",
                vec![p()],
                f.backoff_ms as f64 / 1e3,
            );
        }
        self.add_rollback(f);
        self.add_models(f);
        let at = ("backstop_last_run_timestamp_seconds", vec![p()]);
        let last = self.gauges.entry(at).or_insert(0.0);
        *last = last.max(f.started_ms as f64 / 1e3);
    }

    fn add_rollback(&mut self, f: &Facts) {
        let p = || ("policy", f.policy.clone());
        if f.rolled_back {
            let result = if f.rollback_incomplete {
                "incomplete"
            } else {
                "complete"
            };
            self.count(
                "backstop_rollbacks_total",
                vec![p(), ("result", result.into())],
                1.0,
            );
        }
        if f.steps_rolled_back > 0 {
            self.count(
                "backstop_step_rollbacks_total",
                vec![p()],
                f.steps_rolled_back.into(),
            );
        }
        if f.rollback_ms > 0 {
            self.count(
                "backstop_rollback_seconds_total",
                vec![p()],
                f.rollback_ms as f64 / 1e3,
            );
        }
    }

    fn add_models(&mut self, f: &Facts) {
        let p = || ("policy", f.policy.clone());
        for (model, m) in &f.models {
            let pm = || vec![p(), ("model", model.clone())];
            let ok = m.calls.saturating_sub(m.failed);
            for (result, n) in [("ok", ok), ("failed", m.failed)] {
                if n > 0 {
                    let mut l = pm();
                    l.push(("result", result.into()));
                    self.count("backstop_model_calls_total", l, n.into());
                }
            }
            self.count("backstop_cost_usd_total", pm(), m.cost_usd);
            for (direction, n) in [("input", m.input_tokens), ("output", m.output_tokens)] {
                let mut l = pm();
                l.push(("direction", direction.into()));
                self.count("backstop_tokens_total", l, n as f64);
            }
        }
        if f.failed_cost_usd > 0.0 {
            self.count(
                "backstop_retry_cost_usd_total",
                vec![p()],
                f.failed_cost_usd,
            );
        }
    }

    fn count(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, by: f64) {
        // A NaN or negative figure (a damaged record) must not break a counter.
        if by.is_finite() && by > 0.0 {
            *self.counters.entry((name, labels)).or_default() += by;
        }
    }

    fn observe(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, v: f64) {
        let h = self.histograms.entry((name, labels)).or_default();
        if h.buckets.len() != DURATION_BUCKETS.len() + 1 {
            h.buckets = vec![0; DURATION_BUCKETS.len() + 1];
        }
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        h.buckets[i] = h.buckets[i].saturating_add(1);
        h.sum += v;
        h.count = h.count.saturating_add(1);
    }

    /// The text exposition format (version 0.0.4), families in a fixed order, each
    /// with its HELP and TYPE even when it has no series yet.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match kind {
                "histogram" => self.render_histograms(&mut out, name),
                "gauge" => render_values(&mut out, name, &self.gauges),
                _ => render_values(&mut out, name, &self.counters),
            }
        }
        out
    }

    fn render_histograms(&self, out: &mut String, name: &str) {
        for ((n, labels), h) in &self.histograms {
            if *n != name {
                continue;
            }
            let mut cumulative = 0;
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += h.buckets.get(i).copied().unwrap_or(0);
                let le = format!("{bound}");
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {cumulative}",
                    label_set(labels, Some(&le))
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                label_set(labels, Some("+Inf")),
                h.count
            );
            let _ = writeln!(
                out,
                "{name}_sum{} {}",
                label_set(labels, None),
                number(h.sum)
            );
            let _ = writeln!(out, "{name}_count{} {}", label_set(labels, None), h.count);
        }
    }
}

fn render_values(out: &mut String, name: &str, values: &BTreeMap<Series, f64>) {
    for ((n, labels), v) in values {
        if *n == name {
            let _ = writeln!(out, "{name}{} {}", label_set(labels, None), number(*v));
        }
    }
}

fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

/// `{a="x",b="y"}` with values escaped as the format asks (backslash, quote,
/// newline), and `le` last for a bucket.
fn label_set(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The series maps as lists: JSON keys are strings, a series is not.
mod series_map {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry<V> {
        name: String,
        labels: Vec<(String, String)>,
        value: V,
    }

    pub fn serialize<S: Serializer, V: Serialize + Clone>(
        m: &BTreeMap<Series, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter().map(|((name, labels), v)| {
            Entry {
                name: (*name).to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.clone()))
                    .collect(),
                value: v.clone(),
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<Series, V>, D::Error> {
        let entries = Vec::<Entry<V>>::deserialize(d)?;
        // Only names and label keys this version knows are kept: both are `'static`,
        // and a family it does not render would only grow the file.
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let name = FAMILIES.iter().find(|f| f.0 == e.name)?.0;
                let labels = e
                    .labels
                    .into_iter()
                    .map(|(k, v)| Some((static_label(&k)?, v)))
                    .collect::<Option<Vec<_>>>()?;
                Some(((name, labels), e.value))
            })
            .collect())
    }

    fn static_label(k: &str) -> Option<&'static str> {
        [
            "policy",
            "layer",
            "outcome",
            "error_type",
            "model",
            "result",
            "direction",
        ]
        .into_iter()
        .find(|l| *l == k)
    }
}
