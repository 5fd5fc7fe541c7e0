//! Why a link ended without success, and why a run stopped where it did: values the
//! engine hands on, rendered once for people (`Display`). The reporter matches on
//! them; the run record keeps their rendering.

use std::fmt;
use std::time::Duration;

use crate::attempt::signal_name;
use crate::policy::values::{format_duration, round_ms};

/// Why a `run` or `call` link ended without success: the chain goes on to the next
/// link, or after a critical one straight to `escalate`.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkFailure {
    /// The verdict on the last attempt allows no other: its rule says why.
    NotRetryable { rule: String },
    /// A `fallback.critical` rule matched: no fallback but escalation.
    Critical { rule: String },
    /// Every attempt `retry.max_attempts` allows was made.
    OutOfRetries { attempt: u32, max: u32 },
    /// `timeout.total` had passed before the next attempt could start.
    DeadlineReached,
    /// The next delay would end at or past `timeout.total`, so it was not started.
    WouldCrossDeadline { wait: Duration },
    /// The server asked for a longer wait (`rule`: the header) than
    /// `retry.retry_after.max` allows.
    RetryAfterOverMax {
        rule: String,
        wait: Duration,
        max: Duration,
    },
    /// The tree could not be put back between attempts: no later attempt could be
    /// trusted on it, so this is as critical as a critical failure.
    RestoreFailed { error: String },
    /// The next call could take more tokens than `budget.max_tokens` leaves.
    OverTokenBudget { max: u64, spent: u64, next: u64 },
    /// The next call could cost more than `budget.max_cost_usd` leaves.
    OverCostBudget { max: f64, spent: f64, next: f64 },
    /// A `call` link cannot be made: its model, provider or prompt is missing.
    CannotCall { why: String },
    /// The link's circuit breaker is open: it was skipped without an attempt.
    BreakerOpen { since_ms: u64, next_probe_ms: u64 },
    /// The retry budget shared across runs is exhausted: no retry was made.
    RetriesOff,
}

impl LinkFailure {
    /// Whether the chain skips every link but `escalate` after this.
    pub fn is_critical(&self) -> bool {
        matches!(
            self,
            LinkFailure::Critical { .. } | LinkFailure::RestoreFailed { .. }
        )
    }

    /// The words without the verdict's rule, for a reader who was just shown that rule
    /// with the attempt's failure: `not retryable`, `critical failure`.
    pub fn without_rule(&self) -> Option<&'static str> {
        match self {
            LinkFailure::NotRetryable { .. } => Some("not retryable"),
            LinkFailure::Critical { .. } => Some("critical failure"),
            _ => None,
        }
    }

    /// Why the delay the schedule offered was not waited, when that is why the link
    /// ended: the attempt's record gives it as its `delay_reason`.
    pub fn delay_refused(&self) -> Option<String> {
        match self {
            LinkFailure::WouldCrossDeadline { .. }
            | LinkFailure::RetryAfterOverMax { .. }
            | LinkFailure::RetriesOff => Some(self.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkFailure::NotRetryable { rule } => write!(f, "not retryable: {rule}"),
            LinkFailure::Critical { rule } => write!(f, "critical failure: {rule}"),
            LinkFailure::OutOfRetries { attempt, max } => {
                write!(f, "out of retries ({attempt}/{max})")
            }
            LinkFailure::DeadlineReached => f.write_str("timeout.total reached"),
            LinkFailure::WouldCrossDeadline { wait } => write!(
                f,
                "not waiting {}: it would cross timeout.total",
                format_duration(round_ms(*wait))
            ),
            LinkFailure::RetryAfterOverMax { rule, wait, max } => write!(
                f,
                "not waiting: {rule} asks for {}, over retry.retry_after.max ({})",
                format_duration(*wait),
                format_duration(*max)
            ),
            LinkFailure::RestoreFailed { error } => {
                write!(f, "could not restore the tree between attempts: {error}")
            }
            LinkFailure::OverTokenBudget { max, spent, next } => write!(
                f,
                "budget.max_tokens ({max}) would be exceeded: {spent} spent, the next call may take {next}"
            ),
            LinkFailure::OverCostBudget { max, spent, next } => write!(
                f,
                "budget.max_cost_usd (${max:.4}) would be exceeded: ${spent:.4} spent, the next call may cost ${next:.4}"
            ),
            LinkFailure::CannotCall { why } => f.write_str(why),
            LinkFailure::BreakerOpen {
                since_ms,
                next_probe_ms,
            } => write!(
                f,
                "breaker open since {}, next probe at {}",
                wall_time(*since_ms),
                wall_time(*next_probe_ms)
            ),
            LinkFailure::RetriesOff => f.write_str("retries off: the retry budget is exhausted"),
        }
    }
}

/// A time in milliseconds since the Unix epoch, as RFC 3339 in UTC to the second.
pub fn wall_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Why the run stopped where it did, when it did not succeed: the summary's `reason`.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// The last link that failed, and why.
    Link(LinkFailure),
    /// A signal asked backstop to stop.
    Interrupted { signal: i32 },
    /// The reader of backstop's output went away.
    OutputClosed,
    /// A key was missing or refused: the policy's or the environment's fault, which a
    /// `default` link (`default_skipped`: there was one) does not answer for.
    ConfigError { default_skipped: bool },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Link(failure) => failure.fmt(f),
            StopReason::Interrupted { signal } => {
                write!(f, "interrupted by {}", signal_name(*signal))
            }
            StopReason::OutputClosed => f.write_str("the reader of backstop's output went away"),
            // The failure itself (`HTTP 401: invalid x-api-key`) is the summary's last
            // failure: say only what kind of failure it is.
            StopReason::ConfigError { default_skipped } => {
                f.write_str("a configuration error: the API key was refused or missing")?;
                if *default_skipped {
                    f.write_str("; a `default` link does not answer for it")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendering is what records and `--json` have always held.
    #[test]
    fn reasons_read_as_they_always_did() {
        let cases: [(StopReason, &str); 7] = [
            (
                StopReason::Link(LinkFailure::NotRetryable {
                    rule: "exit 2 is not in retry.on.exit_codes".into(),
                }),
                "not retryable: exit 2 is not in retry.on.exit_codes",
            ),
            (
                StopReason::Link(LinkFailure::OutOfRetries { attempt: 3, max: 3 }),
                "out of retries (3/3)",
            ),
            (
                StopReason::Link(LinkFailure::WouldCrossDeadline {
                    wait: Duration::from_micros(600_400),
                }),
                "not waiting 600ms: it would cross timeout.total",
            ),
            (
                StopReason::Link(LinkFailure::RetryAfterOverMax {
                    rule: "Retry-After".into(),
                    wait: Duration::from_secs(120),
                    max: Duration::from_secs(60),
                }),
                "not waiting: Retry-After asks for 2m, over retry.retry_after.max (1m)",
            ),
            (
                StopReason::Interrupted {
                    signal: libc::SIGTERM,
                },
                "interrupted by SIGTERM",
            ),
            (
                StopReason::OutputClosed,
                "the reader of backstop's output went away",
            ),
            (
                StopReason::ConfigError {
                    default_skipped: true,
                },
                "a configuration error: the API key was refused or missing; a `default` link does not answer for it",
            ),
        ];
        for (reason, want) in cases {
            assert_eq!(reason.to_string(), want, "{reason:?}");
        }
    }

    #[test]
    fn only_a_verdicts_failure_is_shortened_and_only_a_refused_delay_is_a_delay_reason() {
        let critical = LinkFailure::Critical {
            rule: "fallback.critical.exit_codes contains 3".into(),
        };
        assert_eq!(critical.without_rule(), Some("critical failure"));
        assert!(critical.is_critical() && critical.delay_refused().is_none());
        let restore = LinkFailure::RestoreFailed {
            error: "disk full".into(),
        };
        assert!(restore.is_critical() && restore.without_rule().is_none());
        let cross = LinkFailure::WouldCrossDeadline {
            wait: Duration::from_secs(1),
        };
        assert_eq!(cross.delay_refused(), Some(cross.to_string()));
        assert!(!cross.is_critical());
    }
}
