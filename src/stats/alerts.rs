//! Alert rules over a policy's recent runs: `backstop stats --check`, and the check
//! at the end of every run.
//!
//! A policy is known by its file (its absolute path), so a rule is evaluated over the
//! runs made under that file in every tree of the store. The runs are read once, for
//! the longest window, and each rule takes the ones that started within its own.
//! `--check` only reads; the end of a run also keeps which rules are firing
//! (`state.rs`) and tells the policy's `notify` command of those that start
//! (`notify.rs`).

mod notify;
mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::events::{Event, EventSink};
use crate::policy::{AlertRule, Comparison, Policy, Severity};
use crate::reporter::Reporter;
use crate::snapshot::lock::FileLock;
use crate::stats::{PolicyKey, Selection, Summary, Trees};
use crate::store::layout;

pub use notify::LIMIT as NOTIFY_LIMIT;
pub use state::Alert;

/// What a rule says over its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Firing,
    Clear,
    /// Fewer decided runs than `min_runs`, or no value (no latency, no attempt).
    NotEnoughRuns,
}

/// One rule, evaluated.
#[derive(Clone, Debug)]
pub struct Evaluation<'p> {
    pub rule: &'p AlertRule,
    pub value: Option<f64>,
    /// Decided runs in the window.
    pub runs: u64,
    pub verdict: Verdict,
}

impl Evaluation<'_> {
    /// For people: `success_rate 95.0% below 99.0% over 5m (40 runs)`.
    pub fn text(&self) -> String {
        let r = self.rule;
        let m = r.metric.as_str();
        let cmp = match r.comparison {
            Comparison::Below => "below",
            Comparison::Above => "above",
        };
        let threshold = r.metric.show(r.threshold);
        let window = crate::policy::values::format_duration(r.window.0);
        let runs = plural(self.runs, "run");
        match (self.verdict, self.value) {
            (Verdict::Firing, Some(v)) => {
                format!(
                    "{m} {} {cmp} {threshold} over {window} ({runs})",
                    r.metric.show(v)
                )
            }
            (Verdict::Clear, Some(v)) => format!(
                "{m} {}, not {cmp} {threshold} over {window} ({runs})",
                r.metric.show(v)
            ),
            (_, None) if self.runs >= u64::from(r.min_runs) => {
                format!("{m} {cmp} {threshold} over {window}: not enough runs (no value in {runs})")
            }
            _ => format!(
                "{m} {cmp} {threshold} over {window}: not enough runs ({} of {})",
                self.runs, r.min_runs
            ),
        }
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The name a policy's firing state is kept under: its file, or the built-in's name.
fn policy_file(policy: &Policy) -> PathBuf {
    policy
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&policy.source))
}

/// Evaluates every rule of `policy` at `now_ms`, over its runs in every tree.
/// Also gives how many runs (decided or not) the longest window holds, and how many
/// records could not be read.
pub fn evaluate<'p>(
    store: &Path,
    policy: &'p Policy,
    now_ms: i64,
) -> Result<(Vec<Evaluation<'p>>, usize, usize)> {
    let rules = &policy.alerts.rules;
    let window_ms = |r: &AlertRule| i64::try_from(r.window.0.as_millis()).unwrap_or(i64::MAX);
    let longest = rules.iter().map(window_ms).max().unwrap_or(0);
    let sel = Selection {
        trees: Trees::All,
        from_ms: Some(now_ms.saturating_sub(longest)),
        to_ms: None,
        policy: Some(PolicyKey::of(policy)),
        chaos: false,
    };
    let crate::stats::Selected {
        runs, unreadable, ..
    } = crate::stats::select(store, &sel)?;
    // One summary per window: rules on the same window (a warning and a critical
    // threshold, say) read the same one.
    let mut summaries: std::collections::BTreeMap<i64, Summary> = Default::default();
    let evaluations = rules
        .iter()
        .map(|rule| {
            // Oldest first: the rule's window is a suffix of the list.
            let from = now_ms.saturating_sub(window_ms(rule));
            let summary = summaries.entry(from).or_insert_with(|| {
                let start = runs.partition_point(|f| f.started_ms < from);
                Summary::of(&runs[start..])
            });
            let value = summary.metric(rule.metric);
            let decided = summary.runs.decided;
            let verdict = match value {
                _ if decided < u64::from(rule.min_runs) => Verdict::NotEnoughRuns,
                None => Verdict::NotEnoughRuns,
                Some(v) if rule.breached(v) => Verdict::Firing,
                Some(_) => Verdict::Clear,
            };
            Evaluation {
                rule,
                value,
                runs: decided,
                verdict,
            }
        })
        .collect();
    Ok((evaluations, runs.len(), unreadable.len()))
}

/// The exit codes of a monitoring plugin.
pub const OK: u8 = 0;
pub const WARNING: u8 = 1;
pub const CRITICAL: u8 = 2;
pub const UNKNOWN: u8 = 3;

/// `backstop stats --check`: the monitoring-plugin convention (0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN), one line per rule. Whatever stops the check (no store, an
/// invalid policy, no rule) is UNKNOWN with the reason, never backstop's own 125.
/// It only reads: no `notify`, no change to the firing state.
pub fn check(store: Option<PathBuf>, policy: Option<&Path>) -> u8 {
    let (code, text) = match checked(store, policy) {
        Ok(out) => out,
        Err(e) => {
            let why = format!("{e:#}").replace('\n', " ");
            (UNKNOWN, format!("BACKSTOP UNKNOWN - {why}\n"))
        }
    };
    // A monitoring system that stops reading is no reason to panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    code
}

fn checked(store: Option<PathBuf>, policy: Option<&Path>) -> Result<(u8, String)> {
    let policy = match policy {
        Some(p) => crate::policy::load_file(p)?,
        None => crate::policy::choose(&crate::policy::PolicyChoice::Implicit)?,
    };
    if policy.alerts.is_empty() {
        anyhow::bail!(
            "{} has no alert rules (add `alerts.critical` or `alerts.warning`)",
            policy.source
        );
    }
    let store = crate::store::Store::locate(store)?;
    let now = crate::stats::facts::millis(SystemTime::now());
    let (evaluations, total, unreadable) = evaluate(store.dir(), &policy, now)
        .with_context(|| format!("cannot read the runs in {}", store.dir().display()))?;
    if unreadable > 0 {
        eprintln!(
            "backstop: warning: {unreadable} record(s) cannot be read and are left out (see `backstop fsck`)"
        );
    }
    Ok(report(&policy, &evaluations, total))
}

/// The plugin's output: the status line with its perfdata, then a line per rule,
/// those firing first.
fn report(policy: &Policy, evaluations: &[Evaluation], total: usize) -> (u8, String) {
    let firing = |s: Severity| {
        evaluations
            .iter()
            .filter(move |e| e.verdict == Verdict::Firing && e.rule.severity == s)
    };
    let (code, status) = if firing(Severity::Critical).next().is_some() {
        (CRITICAL, "CRITICAL")
    } else if firing(Severity::Warning).next().is_some() {
        (WARNING, "WARNING")
    } else {
        (OK, "OK")
    };
    let mut lines: Vec<String> = firing(Severity::Critical)
        .chain(firing(Severity::Warning))
        .map(|e| format!("{}: {}", e.rule.severity.as_str().to_uppercase(), e.text()))
        .collect();
    let shown = lines.len();
    let summary = match lines.first() {
        None => format!(
            "{}, none firing ({} in the last {})",
            plural(evaluations.len() as u64, "rule"),
            plural(total as u64, "run"),
            crate::policy::values::format_duration(longest_window(policy))
        ),
        Some(first) => {
            let first = first.split_once(": ").map_or(first.as_str(), |(_, t)| t);
            match shown {
                1 => first.to_string(),
                n => format!("{first}; and {} more", n - 1),
            }
        }
    };
    lines.extend(
        evaluations
            .iter()
            .filter(|e| e.verdict != Verdict::Firing)
            .map(|e| format!("OK: {}", e.text())),
    );
    let mut out = format!(
        "BACKSTOP {status} - {summary} | {}\n",
        perfdata(evaluations)
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    (code, out)
}

fn longest_window(policy: &Policy) -> std::time::Duration {
    let windows = policy.alerts.rules.iter().map(|r| r.window.0);
    windows.max().unwrap_or_default()
}

/// Nagios perfdata, one label per metric: `value;warn;crit`, the thresholds as
/// ranges (`0.99:` is "alert below 0.99", `0.2` "alert above 0.2"), latencies in
/// milliseconds, `U` for no value.
fn perfdata(evaluations: &[Evaluation]) -> String {
    let mut metrics = Vec::new();
    for e in evaluations {
        if !metrics.contains(&e.rule.metric) {
            metrics.push(e.rule.metric);
        }
    }
    let range = |e: Option<&Evaluation>| {
        e.map_or(String::new(), |e| match e.rule.comparison {
            Comparison::Below => format!("{}:", number(e.rule.threshold)),
            Comparison::Above => number(e.rule.threshold),
        })
    };
    let labels: Vec<String> = metrics
        .into_iter()
        .map(|m| {
            let of = |s: Severity| {
                evaluations
                    .iter()
                    .find(|e| e.rule.metric == m && e.rule.severity == s)
            };
            let (crit, warn) = (of(Severity::Critical), of(Severity::Warning));
            let unit = if m.as_str().starts_with("latency") {
                "ms"
            } else {
                ""
            };
            let value = crit.or(warn).and_then(|e| e.value);
            let value = value.map_or("U".to_string(), |v| format!("{}{unit}", number(v)));
            format!("{}={value};{};{}", m.as_str(), range(warn), range(crit))
        })
        .collect();
    labels.join(" ")
}

/// Up to four decimals, without trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

/// At the end of a run (`backstop run`, `backstop call`), once its record is final:
/// evaluates the policy's rules, says which start firing and which clear, and runs
/// `notify` once for those that start. Nothing here changes the run's exit code or
/// its record; whatever goes wrong is one warning.
pub fn after_run(store: &Path, policy: &Policy, reporter: &mut Reporter) {
    if policy.alerts.is_empty() {
        return;
    }
    let changes = match update_state(store, policy) {
        Ok(c) => c,
        Err(e) => {
            reporter.event(&Event::Warning(format!(
                "the alert rules of {} were not evaluated: {e:#}",
                policy.source
            )));
            return;
        }
    };
    for a in &changes.started {
        let level = if a.severity == Severity::Critical.as_str() {
            "error"
        } else {
            "warning"
        };
        let text = format!("{}: {}", a.severity, a.message);
        reporter.annotate(level, "backstop alert", &format!("alert: {text}"), &text);
    }
    for a in &changes.cleared {
        reporter.note(&format!("alert cleared: {}: {}", a.severity, a.message));
    }
    if let (Some(cmd), false) = (&policy.alerts.notify, changes.started.is_empty()) {
        let payload = notify::payload(policy, &changes.started, &changes.resolved);
        if let Err(why) = notify::run(&cmd.0, &payload, notify::LIMIT) {
            reporter.event(&Event::Warning(format!("alerts.notify: {why}")));
        }
    }
}

/// Under the policy's alert lock: evaluates the rules and records which fire, so that
/// of several runs ending at once exactly one sees a rule start.
fn update_state(store: &Path, policy: &Policy) -> Result<state::Changes> {
    let file = policy_file(policy);
    let _lock = FileLock::exclusive(&layout::alert_lock_file(store, &file))?;
    let now = crate::stats::facts::millis(SystemTime::now());
    let (evaluations, _, _) = evaluate(store, policy, now)?;
    state::update(
        &layout::alert_state_file(store, &file),
        policy,
        &evaluations,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.95), "0.95");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1500.0), "1500");
        assert_eq!(number(0.123456), "0.1235");
    }
}
