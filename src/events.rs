//! What the engine tells the outside world as a run goes: the reporter draws it,
//! the run record stores it.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::attempt::End;
use crate::classify::Verdict;
use crate::reason::LinkFailure;

/// Which layer of defence an attempt belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The first try of the command.
    Primary,
    /// A retry of the same link (L1).
    Retry,
    /// An attempt of a fallback link (L2).
    Fallback,
}

impl Layer {
    /// The name serde gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Primary => "primary",
            Layer::Retry => "retry",
            Layer::Fallback => "fallback",
        }
    }
}

/// One finished attempt, as reported and recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttemptReport {
    pub layer: Layer,
    /// 0 is the command itself, 1.. the fallback links.
    pub link: usize,
    pub link_name: String,
    /// 1-based within the link.
    pub attempt: u32,
    pub max_attempts: u32,
    #[serde(with = "crate::record::rfc3339")]
    pub started_at: SystemTime,
    pub duration_ms: u64,
    pub end: End,
    pub exit_code: u8,
    /// `None` when the attempt succeeded.
    pub verdict: Option<Verdict>,
    /// The delay before the next attempt, when there was one.
    pub delay_ms: Option<u64>,
    pub delay_reason: Option<String>,
    /// For a model call: status, tokens, cost, what the server asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<crate::attempt::CallReport>,
    /// The fault `--chaos` injected, described (`exit 1`, `HTTP 429`, `stream cut
    /// after 12 bytes`): the end above is what it made of the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected: Option<String>,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    /// A `default` link answered.
    Degraded,
    /// An `escalate` link took the failure.
    Escalated,
    Failed,
    /// A step was not approved at its prompt (answered no, or the input ended):
    /// exit 1, rolled back as a failure is.
    Declined,
    Interrupted,
    /// The reader of backstop's output went away and the command died of SIGPIPE, as
    /// a pipeline member does: not retried, not rolled back, exit 141.
    #[serde(rename = "output_closed")]
    OutputClosed,
}

impl Outcome {
    /// The name serde gives it, as records and `--json` hold it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Degraded => "degraded",
            Outcome::Escalated => "escalated",
            Outcome::Failed => "failed",
            Outcome::Declined => "declined",
            Outcome::Interrupted => "interrupted",
            Outcome::OutputClosed => "output_closed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// The link that produced the outcome.
    pub link: usize,
    pub link_name: String,
    pub links: usize,
    pub attempts: u32,
    /// Attempts of the link that produced the outcome.
    pub link_attempts: u32,
    pub link_max_attempts: u32,
    pub retries: u32,
    pub elapsed_ms: u64,
    /// The last failure, when there was one.
    pub last_failure: Option<String>,
    /// Why the chain stopped where it did, when it did not succeed at once.
    pub reason: Option<String>,
    /// A model's answer (never recorded: it goes to stdout).
    #[serde(skip)]
    pub answer: Option<String>,
    /// The policy's name of the model that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug)]
pub enum Event {
    AttemptStarted {
        link: usize,
        links: usize,
        link_name: String,
        attempt: u32,
        max_attempts: u32,
    },
    AttemptFinished(AttemptReport),
    /// The engine waits before the next attempt of the same link.
    Waiting {
        link: usize,
        links: usize,
        next_attempt: u32,
        max_attempts: u32,
        delay: Duration,
        reason: String,
    },
    /// The engine moves on to the next link.
    Fallback {
        from: usize,
        to: usize,
        links: usize,
        to_name: String,
        /// Why the last link that was tried failed (`None` if none was).
        reason: Option<LinkFailure>,
    },
    /// The tree was put back to the run's snapshot before another attempt.
    Restored {
        paths: usize,
    },
    /// The tree was rolled back to the snapshot before the run.
    RolledBack {
        paths: usize,
        /// The first few of those paths, quoted: a rollback never deletes silently.
        names: Vec<String>,
        /// What the tree is as it was before: `the run`, `step \`verify\``.
        before: String,
        /// Directories kept because they hold files outside the scope.
        kept: Vec<String>,
        /// Paths that could not be put back, and why.
        failed: Vec<(String, String)>,
    },
    /// A rollback wrote nothing: its root is not the directory it snapshotted.
    PutBackRefused {
        before: String,
        why: String,
    },
    /// A step of a task begins.
    StepStarted {
        index: usize,
        steps: usize,
        name: String,
    },
    /// A link was skipped without an attempt: its circuit breaker is open.
    BreakerSkipped(SkippedLink),
    /// The retry budget shared across runs is exhausted: this run makes no more
    /// retries (first attempts of later links still run).
    RetriesOff {
        link: usize,
        link_name: String,
    },
    Warning(String),
    Finished(RunSummary),
}

/// A link an open circuit breaker skipped, as the record keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedLink {
    pub link: usize,
    pub link_name: String,
    /// The breaker's key.
    pub key: String,
    /// When the breaker opened and when it lets a probe through, RFC 3339 (UTC).
    pub open_since: String,
    pub next_probe: String,
}

/// Receives the engine's events.
pub trait EventSink {
    fn event(&mut self, event: &Event);
}

/// Hands every event to each sink in turn.
pub struct Fanout<'a>(pub Vec<&'a mut dyn EventSink>);

impl EventSink for Fanout<'_> {
    fn event(&mut self, event: &Event) {
        for sink in &mut self.0 {
            sink.event(event);
        }
    }
}

/// Keeps every event, for tests.
#[cfg(test)]
#[derive(Default, Debug)]
pub struct Recorded(pub Vec<Event>);

#[cfg(test)]
impl EventSink for Recorded {
    fn event(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::{Layer, Outcome};
    use crate::policy::{BackoffKind, Jitter};

    /// `as_str` is serde's name, so a record, `--json` and a message never disagree.
    #[test]
    fn each_name_is_serdes() {
        fn serde_name(value: impl serde::Serialize) -> String {
            serde_json::to_value(value)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        }
        for layer in [Layer::Primary, Layer::Retry, Layer::Fallback] {
            assert_eq!(layer.as_str(), serde_name(layer));
        }
        for outcome in [
            Outcome::Succeeded,
            Outcome::Degraded,
            Outcome::Escalated,
            Outcome::Failed,
            Outcome::Declined,
            Outcome::Interrupted,
            Outcome::OutputClosed,
        ] {
            assert_eq!(outcome.as_str(), serde_name(outcome));
        }
        for kind in [
            BackoffKind::Constant,
            BackoffKind::Linear,
            BackoffKind::Exponential,
        ] {
            assert_eq!(kind.as_str(), serde_name(kind));
        }
        for jitter in [Jitter::None, Jitter::Full, Jitter::Equal] {
            assert_eq!(jitter.as_str(), serde_name(jitter));
        }
    }
}
