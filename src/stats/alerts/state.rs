//! Which of a policy's alert rules are firing, kept in the store
//! (`alerts/<key>.json`) so that a rule is announced when it starts, not at every run.
//! Read and rewritten (atomically) only under the policy's alert lock.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Evaluation, Verdict};
use crate::policy::{Comparison, Policy};
use crate::store::{Durability, write_atomic};

/// The state file's format; another is read as no state at all.
const FORMAT: u32 = 1;

/// The most resolved alerts kept for the next `notify`: a rule that flaps with
/// nothing new firing must not grow the file without end.
const MAX_RESOLVED: usize = 64;

/// A rule as it started firing, or as it cleared: what `notify` is told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Its key in the policy (`alerts.critical.success_rate`).
    pub key: String,
    /// `critical` or `warning`.
    pub severity: String,
    pub metric: String,
    /// Rates from 0 to 1, latencies in milliseconds, dollars; `null`: no value.
    pub value: Option<f64>,
    pub threshold: f64,
    /// `below` or `above`.
    pub comparison: String,
    /// As written in the policy (`5m`).
    pub window: String,
    /// Decided runs in the window.
    pub runs: u64,
    /// The rule (`success_rate below 99.0% over 5m`).
    pub describe: String,
    /// What was said (`success_rate 95.0% below 99.0% over 5m (40 runs)`).
    pub message: String,
    /// When this was seen, in milliseconds since the epoch.
    pub at_ms: i64,
}

impl Alert {
    fn of(e: &Evaluation, now_ms: i64) -> Alert {
        let r = e.rule;
        Alert {
            key: r.key(),
            severity: r.severity.as_str().to_string(),
            metric: r.metric.as_str().to_string(),
            value: e.value,
            threshold: r.threshold,
            comparison: match r.comparison {
                Comparison::Below => "below".into(),
                Comparison::Above => "above".into(),
            },
            window: crate::policy::values::format_duration(r.window.0),
            runs: e.runs,
            describe: r.describe(),
            message: e.text(),
            at_ms: now_ms,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    /// The policy, for people and fsck.
    policy: String,
    /// Firing, by rule key.
    firing: BTreeMap<String, Alert>,
    /// Cleared since `notify` was last called.
    #[serde(default)]
    resolved: Vec<Alert>,
}

/// What changed since the last run looked.
#[derive(Debug, Default)]
pub struct Changes {
    pub started: Vec<Alert>,
    pub cleared: Vec<Alert>,
    /// Cleared since `notify` last ran: given to it now, when something started.
    pub resolved: Vec<Alert>,
}

/// Compares the evaluations with the state in `file`, rewrites it when something
/// changed, and says what did. The caller holds the policy's alert lock.
pub fn update(
    file: &Path,
    policy: &Policy,
    evaluations: &[Evaluation],
    now_ms: i64,
) -> Result<Changes> {
    let mut state = read(file);
    let mut changes = Changes::default();
    let mut firing = BTreeMap::new();
    for e in evaluations.iter().filter(|e| e.verdict == Verdict::Firing) {
        let key = e.rule.key();
        let alert = match state.firing.remove(&key) {
            Some(kept) => kept,
            None => {
                let a = Alert::of(e, now_ms);
                changes.started.push(a.clone());
                a
            }
        };
        firing.insert(key, alert);
    }
    // What is left was firing and is not now (or its rule left the policy).
    for (key, was) in std::mem::take(&mut state.firing) {
        let cleared = match evaluations.iter().find(|e| e.rule.key() == key) {
            Some(e) => Alert::of(e, now_ms),
            None => Alert {
                message: format!("{} (no longer in the policy)", was.describe),
                at_ms: now_ms,
                ..was
            },
        };
        changes.cleared.push(cleared);
    }
    let changed = !changes.started.is_empty() || !changes.cleared.is_empty();
    if policy.alerts.notify.is_some() {
        state.resolved.extend(changes.cleared.iter().cloned());
        let over = state.resolved.len().saturating_sub(MAX_RESOLVED);
        state.resolved.drain(..over);
        if !changes.started.is_empty() {
            changes.resolved = std::mem::take(&mut state.resolved);
        }
    }
    if changed {
        state.format = FORMAT;
        state.policy = super::policy_file(policy).display().to_string();
        state.firing = firing;
        let bytes = serde_json::to_vec_pretty(&state)?;
        write_atomic(file, &bytes, Durability::Atomic)
            .with_context(|| format!("cannot keep the firing alerts in {}", file.display()))?;
    }
    Ok(changes)
}

/// The state in `file`; none when there is none yet, or when it cannot be read (then
/// what fires is announced again, which is better than never).
fn read(file: &Path) -> State {
    let Ok(bytes) = crate::store::read_plain(file, "alert state", 16 << 20) else {
        return State::default();
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) if s.format == FORMAT => s,
        _ => State::default(),
    }
}
