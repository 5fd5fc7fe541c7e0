//! What follows an attempt, decided without side effects: the attempt's limit, the
//! verdict on how it ended (by the classifier of the link's kind), and then the
//! link's end or the delay before the next attempt.

use std::time::Duration;

use tokio::time::Instant;

use crate::attempt::{AttemptOutcome, CallReport, CallWork, End};
use crate::backoff::{Delay, Schedule, jitter_bounds};
use crate::classify::{FailureClass, LinkPatterns, Verdict, classify_call, classify_command};
use crate::events::Layer;
use crate::policy::values::{format_duration, millis, round_ms};
use crate::policy::{Critical, Jitter, RetryPolicy};
use crate::reason::LinkFailure;

/// What every attempt of a `run` or `call` link runs: it also picks the classifier.
pub(super) enum Work<'w> {
    Command(&'w [String]),
    Call(CallWork<'w>),
}

/// How a `run` or `call` link ended.
#[derive(Debug, PartialEq)]
pub(super) enum LinkEnd {
    Succeeded {
        attempt: u32,
        max: u32,
    },
    /// Go on to the next link, for this reason.
    Failed(LinkFailure),
    /// Stop the whole run (interrupted).
    Stop {
        signal: i32,
    },
    /// Stop the whole run: the reader of backstop's output is gone and the command
    /// died of SIGPIPE, as the rest of the pipeline expects.
    OutputClosed,
}

/// Where an attempt stands: its link in the chain, and its number within the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Position {
    pub(super) link: usize,
    pub(super) links: usize,
    /// 1-based.
    pub(super) attempt: u32,
    pub(super) max: u32,
}

impl Position {
    pub(super) fn layer(self) -> Layer {
        match (self.link, self.attempt) {
            (0, 1) => Layer::Primary,
            (0, _) => Layer::Retry,
            _ => Layer::Fallback,
        }
    }

    pub(super) fn next(self) -> Position {
        Position {
            attempt: self.attempt + 1,
            ..self
        }
    }
}

/// How long an attempt may take, and whether that limit is the run's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Limit {
    pub(super) timeout: Option<Duration>,
    pub(super) is_deadline: bool,
}

/// What one attempt did, its success checked by `rollback.validate`.
pub(super) struct Attempted {
    pub(super) outcome: AttemptOutcome,
    /// The attempt succeeded but `validate` did not: `outcome.end` is the check's.
    pub(super) validation_failed: bool,
}

/// What follows an attempt: another after a delay, or the link's end.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    Retry { delay: Duration, reason: String },
    End(LinkEnd),
}

impl Next {
    /// The attempt record's `delay_ms` and `delay_reason`.
    pub(super) fn delay(&self) -> (Option<u64>, Option<String>) {
        match self {
            Next::Retry { delay, reason } => (Some(millis(*delay)), Some(reason.clone())),
            Next::End(LinkEnd::Failed(failure)) => (None, failure.delay_refused()),
            Next::End(_) => (None, None),
        }
    }
}

/// An attempt's limit: its own timeout, cut to the time left before the deadline.
/// `None` once the deadline has passed.
pub(super) fn attempt_limit(
    own: Option<Duration>,
    is_call: bool,
    deadline: Option<Instant>,
) -> Option<Limit> {
    // A model call never goes without a limit of its own (see `call::client`).
    let own = own.or(is_call.then_some(crate::call::client::DEFAULT_CALL_ATTEMPT));
    let Some(deadline) = deadline else {
        return Some(Limit {
            timeout: own,
            is_deadline: false,
        });
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(match own {
        Some(t) if t <= left => Limit {
            timeout: Some(t),
            is_deadline: false,
        },
        _ => Limit {
            timeout: Some(left),
            is_deadline: true,
        },
    })
}

/// The verdict on an attempt: `None` for a success. The link's kind picks the
/// classifier; then what overrides its rule: a failed `validate`, stdin that cannot
/// be replayed, a reader of backstop's output that went away.
pub(super) fn judge(
    work: &Work<'_>,
    attempted: &Attempted,
    patterns: &LinkPatterns,
    retry: &RetryPolicy,
    critical: &Critical,
) -> Option<Verdict> {
    let outcome = &attempted.outcome;
    let mut verdict = match work {
        Work::Command(_) => {
            classify_command(&outcome.end, &outcome.matched, patterns, retry, critical)
        }
        Work::Call(_) => {
            let unknown = CallReport::default();
            let report = outcome.call.as_ref().unwrap_or(&unknown);
            classify_call(&outcome.end, report, retry)
        }
    }?;
    if attempted.validation_failed {
        validation_failed(&mut verdict, &outcome.end, retry);
    }
    if let Some(why) = &outcome.no_retry
        && verdict.retry
    {
        verdict.retry = false;
        verdict.rule = why.clone();
    }
    if output_went_away(outcome) {
        // Killed only because its output had nowhere to go: as without backstop, the
        // pipeline's end is the command's end.
        verdict.retry = false;
        verdict.rule = "the reader of backstop's output went away".into();
    }
    Some(verdict)
}

/// A success that `rollback.validate` (which ended with `end`) failed.
fn validation_failed(verdict: &mut Verdict, end: &End, retry: &RetryPolicy) {
    verdict.class = FailureClass::Validation;
    // The check's exit code says nothing of whether the command would do better on
    // another try (`cargo check` exits 101, `test -f` 1): its own rule decides. A
    // stop or a critical failure stays one.
    verdict.rule = if !verdict.stop && !verdict.critical {
        verdict.retry = retry.on.validate;
        format!(
            "rollback.validate failed ({}); retry.on.validate is {}",
            end.describe(),
            retry.on.validate
        )
    } else {
        format!(
            "rollback.validate failed ({}); {}",
            end.describe(),
            verdict.rule
        )
    };
}

/// What follows an attempt judged `verdict`: the link's end, or the delay before
/// its next attempt. The one place that decides both.
pub(super) fn next_step(
    verdict: Option<&Verdict>,
    outcome: &AttemptOutcome,
    pos: Position,
    retry: &RetryPolicy,
    schedule: &mut Schedule,
    deadline: Option<Instant>,
) -> Next {
    let failed = |failure| Next::End(LinkEnd::Failed(failure));
    let Some(verdict) = verdict else {
        return Next::End(LinkEnd::Succeeded {
            attempt: pos.attempt,
            max: pos.max,
        });
    };
    if output_went_away(outcome) {
        return Next::End(LinkEnd::OutputClosed);
    }
    if verdict.stop {
        let signal = match outcome.end {
            End::Interrupted { signal } | End::Signaled { signal } => signal,
            _ => libc::SIGINT,
        };
        return Next::End(LinkEnd::Stop { signal });
    }
    let rule = verdict.rule.clone();
    if verdict.critical {
        return failed(LinkFailure::Critical { rule });
    }
    if !verdict.retry {
        return failed(LinkFailure::NotRetryable { rule });
    }
    let Some(delay) = schedule.next() else {
        return failed(LinkFailure::OutOfRetries {
            attempt: pos.attempt,
            max: pos.max,
        });
    };
    match choose_delay(retry, &delay, outcome.call.as_ref(), deadline) {
        Ok((delay, reason)) => Next::Retry { delay, reason },
        Err(failure) => failed(failure),
    }
}

/// The wait before the next attempt, and why: the backoff's, or the server's
/// (Retry-After). An error when the link ends instead of waiting.
fn choose_delay(
    retry: &RetryPolicy,
    delay: &Delay,
    call: Option<&CallReport>,
    deadline: Option<Instant>,
) -> Result<(Duration, String), LinkFailure> {
    let mut chosen = (delay.chosen, delay_reason(retry, delay));
    // The server's word on when to come back beats the backoff's guess.
    let asked = call.and_then(|c| Some((c.retry_after_ms?, c.retry_after_rule.clone()?)));
    if let Some((ms, rule)) = asked.filter(|_| retry.retry_after.honor) {
        let wait = Duration::from_millis(ms);
        let max = retry.retry_after.max.0;
        if wait > max {
            return Err(LinkFailure::RetryAfterOverMax { rule, wait, max });
        }
        chosen = (wait, format!("{rule}: {}", format_duration(wait)));
    }
    if let Some(d) = deadline
        && Instant::now().checked_add(chosen.0).is_none_or(|t| t >= d)
    {
        return Err(LinkFailure::WouldCrossDeadline { wait: chosen.0 });
    }
    Ok(chosen)
}

/// The command died only because the reader of backstop's output went away.
pub(super) fn output_went_away(outcome: &AttemptOutcome) -> bool {
    outcome.output_closed && died_of_sigpipe(&outcome.end)
}

/// Killed by SIGPIPE, or a shell's report of a child that was (`sh -c 'yes'`: 141).
fn died_of_sigpipe(end: &End) -> bool {
    let shell_code = 128 + libc::SIGPIPE;
    matches!(end, End::Signaled { signal } if *signal == libc::SIGPIPE)
        || matches!(end, End::Exited { code } if *code == shell_code)
}

/// Why a delay is what it is, for the record: `exponential backoff 400ms, full jitter: 123ms`.
fn delay_reason(retry: &RetryPolicy, delay: &Delay) -> String {
    let b = &retry.backoff;
    let kind = b.kind.as_str();
    let chosen = format_duration(round_ms(delay.chosen));
    let base = format_duration(round_ms(delay.base));
    match b.jitter {
        Jitter::None => format!("{kind} backoff: {base}"),
        j => {
            let (lo, hi) = jitter_bounds(j, delay.base);
            format!(
                "{kind} backoff {base}, {} jitter in {}..{}: {chosen}",
                j.as_str(),
                format_duration(round_ms(lo)),
                format_duration(round_ms(hi)),
            )
        }
    }
}
