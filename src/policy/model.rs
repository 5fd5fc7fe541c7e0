//! The validated policy the engine runs: every default filled in, every regex compiled.

use std::time::Duration;

use serde::Serialize;

pub use super::ops::{AlertMetric, AlertRule, Alerts, Comparison, Metrics, Otlp, Severity};
pub use super::raw::{
    BackoffKind, BetweenAttempts, Ignored, Jitter, OtlpProtocol, ProviderKind, RollbackOn,
    RollbackTo,
};
use super::values::{Argv, CodeSet, Dur, Pattern, Size};

#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// Where the policy came from: a file path, or `built-in`.
    #[serde(skip)]
    pub source: String,
    /// The policy file's absolute path, symlinks resolved (`None` for the built-in
    /// policy): how `stats` and alerts tell one policy's runs from another's.
    #[serde(skip)]
    pub path: Option<std::path::PathBuf>,
    /// BLAKE3 of the policy file's bytes (of the built-in text for the default).
    #[serde(skip)]
    pub digest: String,
    pub version: u32,
    pub retry: RetryPolicy,
    pub timeout: Timeouts,
    pub fallback: Fallback,
    pub rollback: Rollback,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub providers: std::collections::BTreeMap<String, Provider>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub models: std::collections::BTreeMap<String, Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub budget: Budget,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    #[serde(skip_serializing_if = "super::ops::Alerts::is_empty")]
    pub alerts: super::ops::Alerts,
    pub metrics: super::ops::Metrics,
    /// `breaker:`, `retry_budget:` and `state:`.
    #[serde(flatten)]
    pub guarding: super::guard::Guarding,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Provider {
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub anthropic_version: String,
    /// Extra request headers, by name as written (validated: none that carries the
    /// key or that backstop sets itself).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, super::values::HeaderValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// Its name in the policy.
    #[serde(skip)]
    pub name: String,
    pub provider: String,
    pub model: String,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Stop sequences (OpenAI's `stop`, Anthropic's `stop_sequences`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// Saturates at `f64::MAX`: the counts are the server's word, and one claiming
    /// 2^64 tokens at a large price made the cost infinite, which JSON cannot hold:
    /// records and `--json` said `null`, and `show` said "no price set".
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        let cost = (input_tokens as f64 * self.input_per_mtok
            + output_tokens as f64 * self.output_per_mtok)
            / 1e6;
        cost.min(f64::MAX)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Budget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub name: String,
    pub run: Argv,
    pub approve: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollback {
    /// The policy has a `rollback:` section: under CI only such a policy snapshots.
    #[serde(skip)]
    pub explicit: bool,
    /// `false`: the run takes no snapshot, journal or lock (`rollback.snapshot`).
    pub snapshot: bool,
    pub on: RollbackOn,
    pub scope: Scope,
    pub between_attempts: BetweenAttempts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate: Option<Argv>,
    pub to: RollbackTo,
}

/// Why a run took no snapshot: a value the record keeps, rendered once for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoSnapshot {
    /// The policy says `rollback: { snapshot: false }`.
    Policy,
    /// `CI` was set and the policy has no `rollback:` of its own.
    Ci,
}

impl NoSnapshot {
    /// Why, as a clause after "it took no snapshot".
    pub fn why(self) -> &'static str {
        match self {
            NoSnapshot::Policy => "its policy sets `rollback: { snapshot: false }`",
            NoSnapshot::Ci => "CI was set and its policy has no `rollback:`",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scope {
    /// `None`: the repository root (the nearest directory above the run's with a
    /// `.git`, as runs are keyed), else the run's directory.
    pub root: Option<std::path::PathBuf>,
    pub exclude: Vec<String>,
    pub ignored: Ignored,
    pub max_file_size: Size,
    pub max_total_size: Size,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub on: RetryOn,
    pub never: Never,
    pub fail_on: FailOn,
    pub retry_after: RetryAfter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_retry: Option<Argv>,
    /// Run instead of the link's command for every attempt after the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Argv>,
    /// `on.output`, `never.output`, `fallback.critical.output` and
    /// `fail_on.output` in that order, each compiled as a set when the policy loads.
    #[serde(skip)]
    pub scanner: crate::scan::Scanner,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub initial: Dur,
    pub multiplier: f64,
    pub step: Dur,
    pub max: Dur,
    pub jitter: Jitter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryOn {
    pub exit_codes: CodeSet,
    pub output: Vec<Pattern>,
    pub timeout: bool,
    pub signals: bool,
    pub status: Vec<u16>,
    pub network: bool,
    /// A failed `rollback.validate` is retried (its own rule, not the exit codes').
    pub validate: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Never {
    pub exit_codes: CodeSet,
    pub output: Vec<Pattern>,
    pub status: Vec<u16>,
}

/// Output that makes an exit 0 a failure.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FailOn {
    pub output: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryAfter {
    pub honor: bool,
    pub max: Dur,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Dur>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Dur>,
    pub kill_grace: Dur,
    /// Model calls: connecting, the first byte of the answer, silence mid-answer.
    pub connect: Dur,
    pub first_token: Dur,
    pub stall: Dur,
}

impl Timeouts {
    pub fn total(&self) -> Option<Duration> {
        self.total.map(|d| d.0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Fallback {
    pub critical: Critical,
    pub chain: Vec<Link>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Critical {
    pub exit_codes: CodeSet,
    pub output: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
    /// Only `run` links are retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Run(Argv),
    /// Ask a model.
    Call(CallLink),
    Default(DefaultAnswer),
    Escalate(Escalate),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallLink {
    /// The model's name under `models`.
    pub model: String,
    /// The prompt, for a `call` link in a `run` policy (a `backstop call` passes its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DefaultAnswer {
    pub stdout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    pub exit_code: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Escalate {
    pub run: Argv,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
}
