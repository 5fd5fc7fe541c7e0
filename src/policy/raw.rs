//! The policy file as written: every key optional, unknown keys rejected.
//!
//! These types are private to parsing; [`super::resolve`] validates them into the
//! public [`super::model`] types and fills in the defaults.

use schemars::JsonSchema;
use serde::Deserialize;

use super::values::{Argv, CodeSet, Dur, Pattern, Threshold};

/// Schema stand-ins for the leaf values, which parse from strings.
pub(crate) mod schema {
    use schemars::JsonSchema;

    /// A header's value: the text itself, or `{ env: VARIABLE }` to read it from the
    /// environment when the run starts (a secret then: never shown or recorded).
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[schemars(rename = "HeaderValue")]
    #[allow(dead_code)]
    pub enum HeaderValue {
        Literal(String),
        Env(EnvValue),
    }

    /// `{ env: VARIABLE }`.
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct EnvValue {
        env: String,
    }

    /// A duration such as `250ms`, `2s`, `5m` or `1m 30s`.
    #[derive(JsonSchema)]
    #[schemars(rename = "Duration")]
    #[allow(dead_code)]
    pub struct Duration(#[schemars(regex(pattern = r"^\s*[0-9]"))] String);

    /// An exit code from 0 to 255, or an inclusive range written `64..78`.
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[schemars(rename = "ExitCode")]
    #[allow(dead_code)]
    pub enum ExitCode {
        Code(#[schemars(range(min = 0, max = 255))] u8),
        Range(#[schemars(regex(pattern = r"^\d+\.\.=?\d+$"))] String),
    }

    /// A threshold: a number (a rate from 0 to 1, or US dollars), or a duration
    /// such as `1.5s` for a latency.
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[schemars(rename = "Threshold")]
    #[allow(dead_code)]
    pub enum Threshold {
        Number(f64),
        Duration(Duration),
    }

    /// A command: a list of arguments (run directly) or a string (run with `sh -c`).
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[schemars(rename = "Command")]
    #[allow(dead_code)]
    pub enum Command {
        Argv(Vec<String>),
        Shell(String),
    }
}

/// A backstop policy: how to retry, fall back and time out a task.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backstop policy")]
pub struct RawPolicy {
    /// The format version. Always 1.
    pub version: Option<u32>,
    /// How the command is retried (layer 1).
    pub retry: Option<RawRetry>,
    /// Time limits for each attempt and for the whole run.
    pub timeout: Option<RawTimeout>,
    /// What to do when the command is out of retries (layer 2).
    pub fallback: Option<RawFallback>,
    /// Snapshots and automatic rollback of the files a run touches (layer 3).
    pub rollback: Option<RawRollback>,
    /// A task of several steps, run in order with a checkpoint before each
    /// (`backstop run -p TASK.yaml`, no command).
    pub steps: Option<Vec<RawStep>>,
    /// Model APIs, by name: where they are and which variable holds the key.
    pub providers: Option<std::collections::BTreeMap<String, RawProvider>>,
    /// Models, by name, on those providers.
    pub models: Option<std::collections::BTreeMap<String, RawModel>>,
    /// The model `backstop call` uses when `-m` is not given.
    pub model: Option<String>,
    /// Limits on what model calls may spend.
    pub budget: Option<RawBudget>,
    /// A final failure of `backstop run` exits 0; the run is still recorded (and
    /// rolled back) as failed. An interruption still exits as its signal says.
    pub continue_on_error: Option<bool>,
    /// Thresholds over this policy's recent runs: checked by `backstop stats --check`
    /// and at the end of every run.
    pub alerts: Option<RawAlerts>,
    /// Where each run's figures go: a node_exporter textfile, a Pushgateway, an
    /// OpenTelemetry collector; the GitHub Actions step summary.
    pub metrics: Option<RawMetrics>,
    /// A circuit breaker per link, remembered across runs: after enough failures
    /// the link is skipped at once, until a probe finds it well.
    pub breaker: Option<super::guard::RawBreaker>,
    /// Retries allowed only while they stay within a share of first attempts,
    /// across runs.
    pub retry_budget: Option<super::guard::RawRetryBudget>,
    /// Where breakers and the retry budget are kept: this machine's store, or Redis.
    pub state: Option<super::guard::RawState>,
}

/// `alerts:`, in the design's shape: rules by severity, and who is told.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub critical: Option<RawAlertRules>,
    pub warning: Option<RawAlertRules>,
    /// Run once when rules start firing (not again until they clear), with the firing
    /// alerts as JSON on its stdin.
    #[schemars(with = "Option<schema::Command>")]
    pub notify: Option<Argv>,
}

/// The rules of one severity, by metric (the names `backstop stats` uses).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRules {
    /// Runs that succeeded (at any layer, a `default` answer included), of all runs.
    pub success_rate: Option<RawAlertRule>,
    /// The 95th percentile of a run's wall time (a duration).
    pub latency_p95: Option<RawAlertRule>,
    /// The 99th percentile of a run's wall time (a duration).
    pub latency_p99: Option<RawAlertRule>,
    /// What the window's model calls cost, in US dollars.
    pub cost_usd: Option<RawAlertRule>,
    /// Retries, of all attempts.
    pub retry_rate: Option<RawAlertRule>,
    /// Runs that went to a fallback link, of all runs.
    pub fallback_rate: Option<RawAlertRule>,
    /// Runs that were rolled back, of all runs.
    pub rollback_rate: Option<RawAlertRule>,
    /// Runs escalated to a human, of all runs.
    pub escalation_rate: Option<RawAlertRule>,
}

/// One threshold: `below` or `above` a value, over the runs that started in the
/// last `window`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    #[schemars(with = "Option<schema::Threshold>")]
    pub below: Option<Threshold>,
    #[schemars(with = "Option<schema::Threshold>")]
    pub above: Option<Threshold>,
    #[schemars(with = "schema::Duration")]
    pub window: Dur,
    /// Fewer runs than this in the window: the rule says nothing (default 1).
    pub min_runs: Option<u32>,
}

/// `metrics:`: where a run's figures are sent when it ends. A failure to send is a
/// warning, never a failed run.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// A directory read by node_exporter's textfile collector: `backstop.prom` is
    /// rewritten there (atomically) after each run.
    pub textfile: Option<String>,
    /// A Prometheus Pushgateway's URL: the metrics are pushed after each run.
    pub pushgateway: Option<String>,
    /// An OpenTelemetry collector: each run is sent as a trace over OTLP/HTTP.
    pub otlp: Option<RawOtlp>,
    /// Under GitHub Actions, the step summary and outputs are written (default true).
    pub github: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`
    /// (traces go to `/v1/traces` under it, unless it already ends so).
    pub endpoint: String,
    /// `protobuf` (the default) or `json`.
    pub protocol: Option<OtlpProtocol>,
    /// Request headers, by name, each taken from the environment variable named
    /// (for a collector's auth: the value is never written anywhere).
    pub headers_env: Option<std::collections::BTreeMap<String, String>>,
    /// How long a send may take (default 2s).
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Option<Dur>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    #[default]
    Protobuf,
    Json,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The Anthropic Messages API (`/v1/messages`).
    Anthropic,
    /// OpenAI-compatible chat completions (`/chat/completions`): OpenAI, vLLM, Ollama,
    /// LiteLLM, OpenRouter.
    Openai,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: ProviderKind,
    /// e.g. `https://api.anthropic.com` or `https://api.openai.com/v1`.
    pub base_url: String,
    /// The environment variable that holds the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Refused: keys belong in the environment. Accepted here only to say so.
    #[schemars(skip)]
    pub api_key: Option<serde_yaml::Value>,
    /// Anthropic's `anthropic-version` header (default `2023-06-01`).
    pub anthropic_version: Option<String>,
    /// Request headers sent on every call to this provider, by name: a string, or
    /// `{ env: VARIABLE }` (read when the run starts, never shown or recorded).
    #[schemars(with = "Option<std::collections::BTreeMap<String, schema::HeaderValue>>")]
    pub headers: Option<std::collections::BTreeMap<String, super::values::HeaderValue>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: String,
    /// The provider's name for the model.
    pub model: String,
    pub max_tokens: Option<u32>,
    /// From 0 to 2 (Anthropic's models take 0 to 1).
    pub temperature: Option<f64>,
    /// Sequences that end the answer (OpenAI's `stop`, at most 4; Anthropic's
    /// `stop_sequences`).
    pub stop: Option<Vec<String>>,
    pub price: Option<RawPrice>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// US dollars per million input tokens.
    pub input_per_mtok: f64,
    /// US dollars per million output tokens.
    pub output_per_mtok: f64,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// No retry or fallback starts that could take the run's cost past this.
    pub max_cost_usd: Option<f64>,
    /// Nor past this many tokens, input and output.
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: String,
    #[schemars(with = "schema::Command")]
    pub run: Argv,
    /// Ask on the terminal before the step runs (`--yes` answers for a script).
    pub approve: Option<bool>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackTo {
    /// A failed step is put back to the checkpoint before it.
    Step,
    /// A failed step puts the whole task back to before its first step.
    Start,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackOn {
    /// Put the tree back when the run finally fails, is interrupted or fails validation.
    Failure,
    /// Never put it back by itself (`backstop undo` still can).
    Never,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ignored {
    /// Files that .gitignore and .ignore name are outside the scope.
    Respect,
    /// They are snapshotted and restored like any other.
    Include,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BetweenAttempts {
    /// Put the tree back before each retry and each fallback link.
    Restore,
    /// Each attempt starts from what the last one left.
    Keep,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    /// `false`: take no snapshot at all (no journal, no lock): retry and fallback
    /// only, and nothing for `backstop undo` to go back to. For a tree that is thrown
    /// away anyway, such as a CI checkout. Default `true`.
    pub snapshot: Option<bool>,
    /// Default `failure`; `never` when `snapshot: false`.
    pub on: Option<RollbackOn>,
    pub scope: Option<RawScope>,
    pub between_attempts: Option<BetweenAttempts>,
    /// Run after a success; if it fails, the attempt counts as failed.
    #[schemars(with = "Option<schema::Command>")]
    pub validate: Option<Argv>,
    /// For `steps`: where a failed step rolls back to.
    pub to: Option<RollbackTo>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    /// The directory snapshotted, relative to where backstop runs (default: the
    /// repository root, the nearest directory with `.git`, else `.`).
    pub root: Option<std::path::PathBuf>,
    /// gitignore-style globs left out of the scope.
    pub exclude: Option<Vec<String>>,
    pub ignored: Option<Ignored>,
    /// Larger files are listed in the run record but not kept (default 100MiB).
    #[schemars(with = "Option<String>")]
    pub max_file_size: Option<super::values::Size>,
    /// The most one snapshot may copy into the store (default 4GiB): a run started in
    /// the wrong directory stops instead of copying a home directory.
    #[schemars(with = "Option<String>")]
    pub max_total_size: Option<super::values::Size>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, the first try included. A hard cap.
    #[schemars(range(min = 1, max = 1000))]
    pub max_attempts: Option<u32>,
    pub backoff: Option<RawBackoff>,
    /// Failures that are worth another attempt.
    pub on: Option<RawOn>,
    /// Failures that are never retried, whatever `on` says.
    pub never: Option<RawNever>,
    /// Successes that are failures: a command that exits 0 but prints a line
    /// matching one of these failed (a coding agent that reports an API error and
    /// exits 0); `on.output` and `never.output` then decide whether it is retried.
    pub fail_on: Option<RawFailOn>,
    /// How a server's `Retry-After` is honoured (model calls).
    pub retry_after: Option<RawRetryAfter>,
    /// A command run before each retry; its failure is a warning only.
    #[schemars(with = "Option<schema::Command>")]
    pub on_retry: Option<Argv>,
    /// The command run for every attempt after the first, instead of the original
    /// (e.g. rerunning only the failed tests). For a `run` link's own `retry:`, that
    /// link's retries; never inherited by a link.
    #[schemars(with = "Option<schema::Command>")]
    pub command: Option<Argv>,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffKind {
    Constant,
    Linear,
    Exponential,
}

impl BackoffKind {
    /// The name serde gives it, as a policy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffKind::Constant => "constant",
            BackoffKind::Linear => "linear",
            BackoffKind::Exponential => "exponential",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// The delay as computed.
    None,
    /// A random delay between zero and the computed one.
    Full,
    /// Half the computed delay plus a random part of the other half.
    Equal,
}

impl Jitter {
    /// The name serde gives it, as a policy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub kind: Option<BackoffKind>,
    /// The first delay.
    #[schemars(with = "Option<schema::Duration>")]
    pub initial: Option<Dur>,
    /// Exponential: each delay is the previous one times this.
    #[schemars(range(min = 1.0))]
    pub multiplier: Option<f64>,
    /// Linear: each delay adds this (default: `initial`).
    #[schemars(with = "Option<schema::Duration>")]
    pub step: Option<Dur>,
    /// No delay of a linear or exponential backoff is longer than this (a constant
    /// one waits `initial`).
    #[schemars(with = "Option<schema::Duration>")]
    pub max: Option<Dur>,
    /// Default `none` for `kind: constant`, `full` for the others.
    pub jitter: Option<Jitter>,
    /// Seed for the jitter, to make a schedule reproducible.
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOn {
    /// Exit codes worth retrying (default: any non-zero code).
    #[schemars(with = "Option<Vec<schema::ExitCode>>")]
    pub exit_codes: Option<CodeSet>,
    /// Regexes over the attempt's stdout and stderr; a match makes the failure retryable.
    #[schemars(with = "Option<Vec<String>>")]
    pub output: Option<Vec<Pattern>>,
    /// Retry an attempt that timed out.
    pub timeout: Option<bool>,
    /// Retry an attempt that died of a signal (SIGINT never is).
    pub signals: Option<bool>,
    /// HTTP statuses worth retrying (model calls).
    pub status: Option<Vec<u16>>,
    /// Retry network errors (model calls).
    pub network: Option<bool>,
    /// Retry an attempt whose `rollback.validate` failed, whatever its exit code
    /// (default: true); `exit_codes` and `never.exit_codes` judge the command only.
    pub validate: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNever {
    #[schemars(with = "Option<Vec<schema::ExitCode>>")]
    pub exit_codes: Option<CodeSet>,
    #[schemars(with = "Option<Vec<String>>")]
    pub output: Option<Vec<Pattern>>,
    pub status: Option<Vec<u16>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFailOn {
    /// Regexes over the attempt's stdout and stderr; a match makes an exit 0 a failure.
    #[schemars(with = "Option<Vec<String>>")]
    pub output: Option<Vec<Pattern>>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetryAfter {
    pub honor: Option<bool>,
    #[schemars(with = "Option<schema::Duration>")]
    pub max: Option<Dur>,
}

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeout {
    /// Each attempt is ended after this long (SIGTERM, then SIGKILL after `kill_grace`).
    #[schemars(with = "Option<schema::Duration>")]
    pub attempt: Option<Dur>,
    /// The whole run, retries and fallbacks included, ends after this long.
    #[schemars(with = "Option<schema::Duration>")]
    pub total: Option<Dur>,
    /// Model calls: the longest wait for a connection to the provider (default 10s).
    #[schemars(with = "Option<schema::Duration>")]
    pub connect: Option<Dur>,
    /// Model calls: the longest wait, from sending the request, for the first byte of
    /// the answer's body or stream (default 5m).
    #[schemars(with = "Option<schema::Duration>")]
    pub first_token: Option<Dur>,
    /// Model calls: the longest silence between two chunks of an answer (default 1m).
    #[schemars(with = "Option<schema::Duration>")]
    pub stall: Option<Dur>,
    /// How long a timed-out attempt has between SIGTERM and SIGKILL.
    #[schemars(with = "Option<schema::Duration>")]
    pub kill_grace: Option<Dur>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    /// Failures that never degrade: they skip every link but `escalate`.
    pub critical: Option<RawCritical>,
    /// The alternatives tried in order once the command is out of retries.
    pub chain: Option<Vec<RawLink>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCritical {
    #[schemars(with = "Option<Vec<schema::ExitCode>>")]
    pub exit_codes: Option<CodeSet>,
    #[schemars(with = "Option<Vec<String>>")]
    pub output: Option<Vec<Pattern>>,
}

/// One link of the fallback chain: exactly one of `run`, `default` or `escalate`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    /// A name for reports (default: derived from the action).
    pub name: Option<String>,
    /// Run another command, with its own retries.
    #[schemars(with = "Option<schema::Command>")]
    pub run: Option<Argv>,
    /// Ask a model (by its name under `models`), with its own retries.
    pub call: Option<RawCall>,
    /// Answer with fixed output: a degraded success.
    pub default: Option<RawDefault>,
    /// Hand the failure to a human: run a hook with the failure summary as JSON on stdin.
    pub escalate: Option<RawEscalate>,
    /// Overrides of the policy's `retry` for this link.
    pub retry: Option<RawRetry>,
    /// The attempt timeout for this link.
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    pub model: String,
    /// The prompt (for `run` policies; `backstop call` passes its own).
    pub prompt: Option<String>,
    pub system: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefault {
    /// Written to stdout.
    pub stdout: Option<String>,
    /// Written to stderr.
    pub stderr: Option<String>,
    /// The run's exit code (default 0).
    pub exit_code: Option<u8>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEscalate {
    /// The hook; it reads the failure summary (JSON) on stdin.
    #[schemars(with = "schema::Command")]
    pub run: Argv,
    /// The run's exit code once escalated (default: the final failure's).
    pub exit_code: Option<u8>,
}
