//! The schedule a policy produces: for each link, each attempt's delay range and the
//! worst case so far; and the warnings a careful reader would want.

use std::fmt::Write;
use std::time::Duration;

use super::model::{Action, Backoff, BackoffKind, Policy, RetryPolicy, RollbackOn};
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
        write_link(&mut out, name, steps, retry);
        waits = waits.saturating_add(worst_wait(retry));
    }
    write_fallbacks(&mut out, policy);
    let worst = schedule
        .last()
        .and_then(|(_, s)| s.last())
        .and_then(|s| s.worst_case);
    write_bounds(&mut out, policy, worst, waits);
    write_rollback(&mut out, policy);
    for line in policy.guarding.describe() {
        let _ = writeln!(out, "{line}");
    }
    write_alerts(&mut out, policy);
    write_metrics(&mut out, &policy.metrics);
    for w in warnings(policy) {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// A duration as `explain` shows it: to the millisecond.
fn shown(d: Duration) -> String {
    format_duration(round_ms(d))
}

/// One link's retry: its backoff in a line, then each attempt's wait and worst case.
fn write_link(out: &mut String, name: &str, steps: &[Step], retry: &RetryPolicy) {
    let _ = writeln!(
        out,
        "\n{name}: {} attempts, {}",
        retry.max_attempts,
        backoff_shape(&retry.backoff),
    );
    let _ = writeln!(
        out,
        "  {:<8} {:<22} worst case at its end",
        "attempt", "wait before"
    );
    for s in steps {
        let wait = s.wait.map_or("-".to_string(), |(lo, hi)| {
            if lo == hi {
                shown(hi)
            } else {
                format!("{}..{}", shown(lo), shown(hi))
            }
        });
        let worst = s
            .worst_case
            .map_or("unbounded (no timeout.attempt)".to_string(), shown);
        let _ = writeln!(out, "  {:<8} {:<22} {}", s.attempt, wait, worst);
    }
    if let Some(command) = &retry.command {
        let _ = writeln!(
            out,
            "  attempts after the first run `{}` (retry.command)",
            crate::attempt::command_line(&command.0)
        );
    }
    let fail_on = retry.fail_on.output.len();
    if fail_on > 0 {
        let _ = writeln!(
            out,
            "  an exit 0 that prints a line matching retry.fail_on.output ({fail_on} pattern(s)) is a failure"
        );
    }
}

/// "exponential backoff from 1s, x2, up to 30s, full jitter".
fn backoff_shape(b: &Backoff) -> String {
    let shape = match b.kind {
        BackoffKind::Constant => format!("constant backoff {}", shown(b.initial.0)),
        BackoffKind::Linear => format!(
            "linear backoff from {}, step {}",
            shown(b.initial.0),
            shown(b.step.0)
        ),
        BackoffKind::Exponential => {
            format!(
                "exponential backoff from {}, x{}",
                shown(b.initial.0),
                b.multiplier
            )
        }
    };
    // `max` bounds only a delay that grows.
    let cap = match b.kind {
        BackoffKind::Constant => String::new(),
        _ => format!(", up to {}", shown(b.max.0)),
    };
    format!("{shape}{cap}, {} jitter", b.jitter.as_str())
}

/// The links that answer without running anything: a default answer, an escalation.
fn write_fallbacks(out: &mut String, policy: &Policy) {
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
}

/// The run's worst case (or what the waits alone add up to), its deadline, and what
/// `continue_on_error` does to the exit code.
fn write_bounds(out: &mut String, policy: &Policy, worst: Option<Duration>, waits: Duration) {
    let _ = writeln!(out);
    match worst {
        Some(w) => {
            let _ = writeln!(out, "worst case: {}", shown(w));
        }
        None => {
            let _ = writeln!(
                out,
                "worst case: unbounded; waits alone add up to {}",
                shown(waits)
            );
        }
    }
    match policy.timeout.total() {
        Some(total) => {
            let _ = writeln!(out, "deadline: timeout.total {}", shown(total));
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
}

/// What layer 3 does: the snapshot and when the tree goes back, or that there is none.
fn write_rollback(out: &mut String, policy: &Policy) {
    let r = &policy.rollback;
    let line = if !r.snapshot {
        "rollback: none (rollback.snapshot: false): no snapshot, journal or lock; retry and fallback only, and `backstop undo` has nothing to go back to".to_string()
    } else {
        let when = match r.on {
            RollbackOn::Failure => "put back when the run finally fails",
            RollbackOn::Never => "never put back by itself (`backstop undo` can)",
        };
        let ci = if r.explicit {
            ""
        } else {
            "; under CI (`CI` set) no snapshot, as there is no `rollback:`"
        };
        format!("rollback: the tree is snapshotted and {when}{ci}")
    };
    let _ = writeln!(out, "{line}");
}

/// The alert rules, checked at the end of every run and by `backstop stats --check`
/// over this file's runs in every tree, and who is told when one starts firing.
fn write_alerts(out: &mut String, policy: &Policy) {
    let alerts = &policy.alerts;
    if alerts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "alerts: over the runs of this policy file in every tree, after each run and by `backstop stats --check`"
    );
    for rule in &alerts.rules {
        let _ = writeln!(out, "  {}: {}", rule.severity.as_str(), rule.describe());
    }
    match &alerts.notify {
        Some(cmd) => {
            let _ = writeln!(
                out,
                "  notify: {} (once when rules start firing; {} at most)",
                crate::attempt::command_line(&cmd.0),
                format_duration(crate::stats::alerts::NOTIFY_LIMIT)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  notify: none (a rule that starts firing is only said on stderr)"
            );
        }
    }
}

/// Where each run's figures go when it ends: header names only, never values.
fn write_metrics(out: &mut String, m: &super::model::Metrics) {
    let _ = writeln!(out, "metrics:");
    if let Some(dir) = &m.textfile {
        let _ = writeln!(out, "  textfile: {}", dir.join("backstop.prom").display());
    }
    if let Some(url) = &m.pushgateway {
        let _ = writeln!(out, "  pushgateway: {url}");
    }
    match &m.otlp {
        Some(o) => {
            let protocol = match o.protocol {
                super::model::OtlpProtocol::Protobuf => "protobuf",
                super::model::OtlpProtocol::Json => "json",
            };
            let _ = writeln!(
                out,
                "  otlp: each run as a trace to {} ({protocol}, timeout {})",
                o.endpoint,
                shown(o.timeout.0)
            );
            for (name, var) in &o.headers_env {
                let _ = writeln!(out, "    header {name} from ${var}");
            }
        }
        None => {
            let _ = writeln!(out, "  otlp: off");
        }
    }
    let github = if m.github {
        "step summary and outputs under GitHub Actions (GITHUB_ACTIONS=true)"
    } else {
        "off (metrics.github: false)"
    };
    let _ = writeln!(out, "  github: {github}");
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
    out.extend(super::reports::ci_reports_warning(policy));
    out
}
