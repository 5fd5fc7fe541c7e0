//! The definitions every figure is built on: which layer a run ended in, and what
//! kind of error a failed attempt had. `stats`, alerts and every export use these,
//! and the README writes them out.

use serde::{Deserialize, Serialize};

use crate::attempt::{CallError, End};
use crate::classify::FailureClass;
use crate::events::{AttemptReport, Outcome};
use crate::record::{RunRecord, Status, TreeState};

/// Where a finished run's result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunClass {
    /// L1: the command (or the policy's model) succeeded on its first attempt.
    FirstTry,
    /// L1: it succeeded on a later attempt of the same link.
    Retried,
    /// L2: a fallback link (`run` or `call`) succeeded.
    Fallback,
    /// L2: a `default` link answered: degraded, but the run succeeded.
    Degraded,
    /// L2: an `escalate` link handed the failure to a person.
    Escalated,
    /// Every link failed (or a step was declined at its prompt).
    Failed,
    /// Stopped by a signal, or by the reader of its output going away: neither a
    /// success nor a failure of the defence, and left out of every rate.
    Interrupted,
    /// No result yet: still running, or its backstop died.
    Unfinished,
}

impl RunClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RunClass::FirstTry => "first_try",
            RunClass::Retried => "retried",
            RunClass::Fallback => "fallback",
            RunClass::Degraded => "degraded",
            RunClass::Escalated => "escalated",
            RunClass::Failed => "failed",
            RunClass::Interrupted => "interrupted",
            RunClass::Unfinished => "unfinished",
        }
    }

    /// The layer of defence that settled the run: `l1`, `l2`, or `none`.
    pub fn layer(self) -> &'static str {
        match self {
            RunClass::FirstTry | RunClass::Retried => "l1",
            RunClass::Fallback | RunClass::Degraded | RunClass::Escalated => "l2",
            RunClass::Failed | RunClass::Interrupted | RunClass::Unfinished => "none",
        }
    }

    /// A success of the defence: a result, degraded or not.
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            RunClass::FirstTry | RunClass::Retried | RunClass::Fallback | RunClass::Degraded
        )
    }

    /// Counted in the rates: the run has a result the defence is answerable for.
    pub fn decided(self) -> bool {
        !matches!(self, RunClass::Interrupted | RunClass::Unfinished)
    }

    /// The primary link did not give the result, so layer 2 was needed.
    pub fn reached_l2(self) -> bool {
        matches!(
            self,
            RunClass::Fallback | RunClass::Degraded | RunClass::Escalated | RunClass::Failed
        )
    }
}

/// The class of a run from its record.
pub fn run_class(r: &RunRecord) -> RunClass {
    let Some(summary) = r.outcome.as_ref().filter(|_| r.status == Status::Finished) else {
        return RunClass::Unfinished;
    };
    match summary.outcome {
        Outcome::Succeeded if summary.link > 0 => RunClass::Fallback,
        Outcome::Succeeded if summary.retries > 0 || summary.attempts > 1 => {
            // A task's steps each get their own retries; any retry at all is L1 work.
            RunClass::Retried
        }
        Outcome::Succeeded => RunClass::FirstTry,
        Outcome::Degraded => RunClass::Degraded,
        Outcome::Escalated => RunClass::Escalated,
        Outcome::Failed | Outcome::Declined => RunClass::Failed,
        Outcome::Interrupted | Outcome::OutputClosed => RunClass::Interrupted,
    }
}

/// What layer 3 did for a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layer3 {
    /// The whole run's changes were taken back.
    pub rolled_back: bool,
    /// A rollback left paths it could not put back.
    pub incomplete: bool,
    /// Rollbacks of a failed step to its checkpoint (the run's own excluded).
    pub steps_rolled_back: u32,
}

pub fn layer3(r: &RunRecord) -> Layer3 {
    let Some(s) = &r.snapshot else {
        return Layer3::default();
    };
    let rollbacks: Vec<_> = s.rollbacks().collect();
    // A run of one command has no rollback but its own, whatever a later undo or redo
    // made of the tree. For a task, the state tells: rolled back to its start, the last
    // rollback was the run's; every other one was a failed step's, put back to its
    // checkpoint (and an undo of a task keeps its single rollback in `restores`).
    let run_rollback = !rollbacks.is_empty()
        && (r.steps.is_empty()
            || s.state == TreeState::RolledBack
            || (s.state == TreeState::Undone
                && rollbacks.len() == 1
                && r.outcome
                    .as_ref()
                    .is_some_and(|o| o.outcome != Outcome::Succeeded)));
    let steps = rollbacks.len() as u32 - u32::from(run_rollback && !rollbacks.is_empty());
    Layer3 {
        rolled_back: run_rollback,
        incomplete: rollbacks.iter().any(|x| x.not_restored > 0),
        steps_rolled_back: if r.steps.is_empty() { 0 } else { steps },
    }
}

/// What kind of error ended a failed attempt: the `error_type` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    Network,
    /// 429 or 529, the server's Retry-After honoured.
    RateLimit,
    /// 429 or 529 whose Retry-After was over `retry_after.max`.
    RateLimitOverCap,
    Server5xx,
    TimeoutAttempt,
    TimeoutFirstToken,
    TimeoutStall,
    TimeoutDeadline,
    ContextLength,
    ContentPolicy,
    /// Any other 4xx, the key refused included.
    Client4xx,
    /// A stream that broke off or was malformed.
    Stream,
    ExitCode,
    Signal,
    /// Could not start: not found, not executable.
    Spawn,
    Validation,
    Budget,
    Other,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Network => "network",
            ErrorType::RateLimit => "rate_limit",
            ErrorType::RateLimitOverCap => "rate_limit_over_cap",
            ErrorType::Server5xx => "server_5xx",
            ErrorType::TimeoutAttempt => "timeout_attempt",
            ErrorType::TimeoutFirstToken => "timeout_first_token",
            ErrorType::TimeoutStall => "timeout_stall",
            ErrorType::TimeoutDeadline => "timeout_deadline",
            ErrorType::ContextLength => "context_length",
            ErrorType::ContentPolicy => "content_policy",
            ErrorType::Client4xx => "client_4xx",
            ErrorType::Stream => "stream",
            ErrorType::ExitCode => "exit_code",
            ErrorType::Signal => "signal",
            ErrorType::Spawn => "spawn",
            ErrorType::Validation => "validation",
            ErrorType::Budget => "budget",
            ErrorType::Other => "other",
        }
    }
}

/// The error type of a failed attempt; `None` for one that succeeded.
pub fn error_type(a: &AttemptReport) -> Option<ErrorType> {
    let verdict = a.verdict.as_ref()?;
    let call = a.call.as_ref();
    let status = call.and_then(|c| c.status);
    Some(match verdict.class {
        FailureClass::Network => ErrorType::Network,
        FailureClass::Status => match status {
            Some(429 | 529) if over_cap(a) => ErrorType::RateLimitOverCap,
            Some(429 | 529) => ErrorType::RateLimit,
            Some(500..=599) => ErrorType::Server5xx,
            _ => ErrorType::Client4xx,
        },
        FailureClass::ContextLength => ErrorType::ContextLength,
        FailureClass::ContentPolicy => ErrorType::ContentPolicy,
        FailureClass::Auth => ErrorType::Client4xx,
        FailureClass::Stream => match &a.end {
            End::TimedOut { .. } | End::CallTimedOut { .. } => timeout_kind(a),
            _ => ErrorType::Stream,
        },
        FailureClass::Timeout => timeout_kind(a),
        FailureClass::Deadline => ErrorType::TimeoutDeadline,
        FailureClass::Exit => ErrorType::ExitCode,
        FailureClass::Signal => ErrorType::Signal,
        FailureClass::NotFound | FailureClass::NotExecutable => ErrorType::Spawn,
        FailureClass::Validation => ErrorType::Validation,
        FailureClass::Interrupted => ErrorType::Other,
    })
    .map(|t| match (t, call.and_then(|c| c.error)) {
        (ErrorType::Client4xx, Some(CallError::ContextLength)) => ErrorType::ContextLength,
        (ErrorType::Client4xx, Some(CallError::ContentPolicy)) => ErrorType::ContentPolicy,
        (t, _) => t,
    })
}

/// A timeout's kind, from the limit that was hit.
fn timeout_kind(a: &AttemptReport) -> ErrorType {
    match &a.end {
        End::TimedOut { deadline: true, .. } => ErrorType::TimeoutDeadline,
        End::CallTimedOut { limit, .. } if limit.ends_with("first_token") => {
            ErrorType::TimeoutFirstToken
        }
        End::CallTimedOut { limit, .. } if limit.ends_with("stall") => ErrorType::TimeoutStall,
        // Not even connected: the network's failure, not the model's.
        End::CallTimedOut { limit, .. } if limit.ends_with("connect") => ErrorType::Network,
        _ => ErrorType::TimeoutAttempt,
    }
}

/// A rate-limited attempt whose Retry-After was more than the policy would wait:
/// the delay it was not given says so.
fn over_cap(a: &AttemptReport) -> bool {
    a.delay_reason
        .as_deref()
        .is_some_and(|r| r.contains("retry.retry_after.max"))
}

/// The run-level stops that are errors of their own: a budget that refused the next
/// call, `timeout.total` reached before an attempt could start.
pub fn stop_error(r: &RunRecord) -> Option<ErrorType> {
    let reason = r.outcome.as_ref()?.reason.as_deref()?;
    if reason.starts_with("budget.") {
        Some(ErrorType::Budget)
    } else {
        None
    }
}
