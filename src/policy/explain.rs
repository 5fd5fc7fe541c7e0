//! The schedule a policy produces: for each link, each attempt's delay range and the
//! worst case so far; and the warnings a careful reader would want.

use std::fmt::Write;
use std::time::Duration;

use super::model::{Action, BackoffKind, Policy, RetryPolicy};
use super::values::{format_duration, round_ms};
use crate::backoff::{base_delay, jitter_bounds};

/// One attempt of a link in the schedule.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub attempt: u32,
    /// The wait before this attempt: (shortest, longest) after jitter.
    pub wait: Option<(Duration, Duration)>,
    /// The longest the run can have taken when this attempt ends, if it is bounded.
    pub worst_case: Option<Duration>,
}

/// The worst case of each `run` link's attempts, in chain order (link 0 is the command).
pub fn schedule(policy: &Policy) -> Vec<(String, Vec<Step>)> {
    let mut links = vec![(
        "the command".to_string(),
        &policy.retry,
        policy.timeout.attempt,
    )];
    for link in &policy.fallback.chain {
        if let (Action::Run(_) | Action::Call(_), Some(retry)) = (&link.action, &link.retry) {
            links.push((
                link.name.clone(),
                retry,
                link.timeout.or(policy.timeout.attempt),
            ));
        }
    }
    let mut so_far = Some(Duration::ZERO);
    let mut out = Vec::new();
    for (name, retry, timeout) in links {
        let mut steps = Vec::new();
        for attempt in 1..=retry.max_attempts {
            let wait = (attempt > 1).then(|| {
                jitter_bounds(
                    retry.backoff.jitter,
                    base_delay(&retry.backoff, attempt - 1),
                )
            });
            so_far = match (so_far, timeout) {
                (Some(t), Some(limit)) => Some(
                    t.saturating_add(wait.map_or(Duration::ZERO, |w| w.1))
                        .saturating_add(limit.0),
                ),
                _ => None,
            };
            steps.push(Step {
                attempt,
                wait,
                worst_case: so_far,
            });
        }
        out.push((name, steps));
    }
    out
}

/// The longest the waits alone can add up to.
fn worst_wait(retry: &RetryPolicy) -> Duration {
    (1..retry.max_attempts)
        .map(|n| jitter_bounds(retry.backoff.jitter, base_delay(&retry.backoff, n)).1)
        .fold(Duration::ZERO, Duration::saturating_add)
}

pub fn explain(policy: &Policy) -> String {
    let mut out = String::new();
    let fmt = |d: Duration| format_duration(round_ms(d));
    let _ = writeln!(out, "policy {}", policy.source);
    let mut waits = Duration::ZERO;
    let schedule = schedule(policy);
    let retries: Vec<&RetryPolicy> = std::iter::once(&policy.retry)
        .chain(
            policy
                .fallback
                .chain
                .iter()
                .filter_map(|l| l.retry.as_ref()),
        )
        .collect();
    for ((name, steps), retry) in schedule.iter().zip(&retries) {
        let b = &retry.backoff;
        let shape = match b.kind {
            BackoffKind::Constant => format!("constant backoff {}", fmt(b.initial.0)),
            BackoffKind::Linear => format!(
                "linear backoff from {}, step {}",
                fmt(b.initial.0),
                fmt(b.step.0)
            ),
            BackoffKind::Exponential => {
                format!(
                    "exponential backoff from {}, x{}",
                    fmt(b.initial.0),
                    b.multiplier
                )
            }
        };
        let jitter = b.jitter.as_str();
        // `max` bounds only a delay that grows.
        let cap = match b.kind {
            BackoffKind::Constant => String::new(),
            _ => format!(", up to {}", fmt(b.max.0)),
        };
        let _ = writeln!(
            out,
            "\n{name}: {} attempts, {shape}{cap}, {jitter} jitter",
            retry.max_attempts,
        );
        let _ = writeln!(
            out,
            "  {:<8} {:<22} worst case at its end",
            "attempt", "wait before"
        );
        for s in steps {
            let wait = s.wait.map_or("-".to_string(), |(lo, hi)| {
                if lo == hi {
                    fmt(hi)
                } else {
                    format!("{}..{}", fmt(lo), fmt(hi))
                }
            });
            let worst = s
                .worst_case
                .map_or("unbounded (no timeout.attempt)".to_string(), fmt);
            let _ = writeln!(out, "  {:<8} {:<22} {}", s.attempt, wait, worst);
        }
        if let Some(command) = &retry.command {
            let _ = writeln!(
                out,
                "  attempts after the first run `{}` (retry.command)",
                crate::attempt::command_line(&command.0)
            );
        }
        waits = waits.saturating_add(worst_wait(retry));
    }
    for (i, link) in policy.fallback.chain.iter().enumerate() {
        match &link.action {
            Action::Default(d) => {
                let _ = writeln!(
                    out,
                    "\nfallback {}: default answer, exit {}",
                    i + 1,
                    d.exit_code
                );
            }
            Action::Escalate(e) => {
                let _ = writeln!(
                    out,
                    "\nfallback {}: escalate to `{}`",
                    i + 1,
                    e.run.0.join(" ")
                );
            }
            Action::Run(_) | Action::Call(_) => {}
        }
    }
    let worst = schedule
        .last()
        .and_then(|(_, s)| s.last())
        .and_then(|s| s.worst_case);
    let _ = writeln!(out);
    match worst {
        Some(w) => {
            let _ = writeln!(out, "worst case: {}", fmt(w));
        }
        None => {
            let _ = writeln!(
                out,
                "worst case: unbounded; waits alone add up to {}",
                fmt(waits)
            );
        }
    }
    match policy.timeout.total() {
        Some(total) => {
            let _ = writeln!(out, "deadline: timeout.total {}", fmt(total));
        }
        None => {
            let _ = writeln!(out, "deadline: none (set timeout.total to bound the run)");
        }
    }
    if policy.continue_on_error {
        let _ = writeln!(
            out,
            "continue_on_error: a final failure exits 0 (recorded as failed, rolled back as `rollback.on` says)"
        );
    }
    for w in warnings(policy) {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// What is legal but probably not meant.
pub fn warnings(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    let schedule = schedule(policy);
    let worst = schedule
        .last()
        .and_then(|(_, s)| s.last())
        .and_then(|s| s.worst_case);
    let waits: Duration = std::iter::once(&policy.retry)
        .chain(
            policy
                .fallback
                .chain
                .iter()
                .filter_map(|l| l.retry.as_ref()),
        )
        .map(worst_wait)
        .fold(Duration::ZERO, Duration::saturating_add);
    if let Some(total) = policy.timeout.total() {
        let fmt = |d: Duration| format_duration(round_ms(d));
        if let Some(w) = worst.filter(|w| *w > total) {
            out.push(format!(
                "the worst case ({}) overruns timeout.total ({}): the deadline will cut the schedule short",
                fmt(w),
                fmt(total)
            ));
        } else if worst.is_none() && waits > total {
            out.push(format!(
                "the waits alone ({}) overrun timeout.total ({})",
                fmt(waits),
                fmt(total)
            ));
        }
    }
    if let Some(i) = policy
        .fallback
        .chain
        .iter()
        .position(|l| matches!(l.action, Action::Default(_)))
    {
        for (j, link) in policy.fallback.chain.iter().enumerate().skip(i + 1) {
            if matches!(link.action, Action::Run(_) | Action::Call(_)) {
                out.push(format!(
                    "fallback {} ({}) comes after a default answer and is never reached",
                    j + 1,
                    link.name
                ));
            }
        }
    }
    out
}
