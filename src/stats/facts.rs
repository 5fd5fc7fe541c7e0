//! One run's figures, taken from its record once: what every aggregate is built
//! from, and what the index beside the records keeps so that a record is parsed only
//! when it changes.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::class::{ErrorType, Layer3, RunClass, error_type, layer3, run_class, stop_error};
use crate::attempt::End;
use crate::events::Layer;
use crate::record::RunRecord;

/// A run, as the figures need it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub id: String,
    /// When it started, in milliseconds since the epoch.
    pub started_ms: i64,
    /// The policy file it ran under, as it was named (`built-in` for the default).
    pub policy: String,
    /// That file's absolute path, when the record kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_path: Option<std::path::PathBuf>,
    pub class: RunClass,
    /// Made under `--chaos`: its failures were injected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chaos: bool,
    /// The fallback link that rescued it (a `Fallback` run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescued_by: Option<String>,
    /// Wall time, from the summary (backstop's own time after it excluded).
    pub elapsed_ms: u64,
    /// Waited in backoff between attempts.
    pub backoff_ms: u64,
    pub rollback_ms: u64,
    pub rolled_back: bool,
    pub rollback_incomplete: bool,
    pub steps_rolled_back: u32,
    pub attempts: u32,
    /// Attempts of a link after its first (layer 1 at work).
    pub retries: u32,
    /// Attempts of fallback links.
    pub fallback_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// What the failed attempts cost: the price of retrying.
    pub failed_cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Per model (the policy's name): its calls, cost and tokens.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelFacts>,
    /// Failed attempts by error type (and the run's own stop, for a budget).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<ErrorType, u32>,
    /// Failed attempts by exit code (commands).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exit_codes: BTreeMap<u8, u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    pub calls: u32,
    pub failed: u32,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Facts {
    pub fn of(r: &RunRecord) -> Facts {
        let class = run_class(r);
        let Layer3 {
            rolled_back,
            incomplete,
            steps_rolled_back,
            ..
        } = layer3(r);
        let summary = r.outcome.as_ref();
        let mut facts = Facts {
            id: r.id.clone(),
            started_ms: millis(r.started_at),
            policy: r.policy.source.clone(),
            policy_path: r.policy.path.clone(),
            class,
            chaos: r.chaos.is_some(),
            rescued_by: (class == RunClass::Fallback)
                .then(|| summary.map(|s| s.link_name.clone()))
                .flatten(),
            elapsed_ms: summary.map_or_else(|| elapsed(r), |s| s.elapsed_ms),
            backoff_ms: 0,
            rollback_ms: r.backstop_time.map_or(0, |t| t.rollback_ms),
            rolled_back,
            rollback_incomplete: incomplete,
            steps_rolled_back,
            attempts: r.attempts.len() as u32,
            retries: 0,
            fallback_attempts: 0,
            cost_usd: summary.and_then(|s| s.cost_usd),
            failed_cost_usd: 0.0,
            input_tokens: summary.map_or(0, |s| s.input_tokens),
            output_tokens: summary.map_or(0, |s| s.output_tokens),
            models: BTreeMap::new(),
            errors: BTreeMap::new(),
            exit_codes: BTreeMap::new(),
        };
        facts.add_attempts(r);
        if let Some(t) = stop_error(r) {
            *facts.errors.entry(t).or_default() += 1;
        }
        facts
    }

    fn add_attempts(&mut self, r: &RunRecord) {
        for (i, a) in r.attempts.iter().enumerate() {
            match a.layer {
                Layer::Retry => self.retries += 1,
                Layer::Fallback if a.attempt > 1 => self.retries += 1,
                _ => {}
            }
            if a.link > 0 {
                self.fallback_attempts += 1;
            }
            // A delay counts once waited: the next attempt is of the same link.
            if let Some(next) = r.attempts.get(i + 1)
                && next.link == a.link
            {
                self.backoff_ms = self.backoff_ms.saturating_add(a.delay_ms.unwrap_or(0));
            }
            let failed = a.verdict.is_some() || !a.end.success();
            if let Some(call) = &a.call {
                let m = self.models.entry(call.model.clone()).or_default();
                m.calls += 1;
                m.failed += u32::from(failed);
                m.cost_usd += call.cost_usd.unwrap_or(0.0);
                m.input_tokens = m.input_tokens.saturating_add(call.input_tokens);
                m.output_tokens = m.output_tokens.saturating_add(call.output_tokens);
                if failed {
                    self.failed_cost_usd += call.cost_usd.unwrap_or(0.0);
                }
            }
            if let Some(t) = error_type(a) {
                *self.errors.entry(t).or_default() += 1;
                if let End::Exited { code } = a.end {
                    *self.exit_codes.entry(code.clamp(0, 255) as u8).or_default() += 1;
                }
            }
        }
    }
}

/// Milliseconds since the epoch (negative before it): the one clock every start time,
/// window and query of the stats is read on.
pub fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// A run without a summary: from its start to its end, or to its last attempt's end.
fn elapsed(r: &RunRecord) -> u64 {
    let end = r.finished_at.or_else(|| {
        r.attempts
            .last()
            .map(|a| a.started_at + std::time::Duration::from_millis(a.duration_ms))
    });
    end.and_then(|e| e.duration_since(r.started_at).ok())
        .map_or(0, |d| d.as_millis() as u64)
}
