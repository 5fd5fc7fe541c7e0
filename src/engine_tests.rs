//! The engine against a scripted attempter, on tokio's paused clock: delays and
//! deadlines are checked to the millisecond without sleeping for real.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::Engine;
use super::decide::{
    Attempted, Limit, LinkEnd, Next, Position, Work, attempt_limit, judge, next_step,
};
use crate::attempt::{
    AttemptOutcome, AttemptSpec, Attempter, CallReport, CallWork, End, Prompt, StdinFrom,
};
use crate::backoff::Schedule;
use crate::classify::{FailureClass, LinkPatterns, Verdict};
use crate::events::{Event, Outcome, Recorded, RunSummary};
use crate::policy::{self, DefaultAnswer};
use crate::reason::LinkFailure;

/// One scripted attempt: how it ends, and how long it takes (on the paused clock).
#[derive(Clone)]
struct Step {
    end: End,
    takes: Duration,
}

fn fails(code: i32) -> Step {
    Step {
        end: End::Exited { code },
        takes: Duration::ZERO,
    }
}

fn ok() -> Step {
    fails(0)
}

/// What the engine asked for, and when.
#[derive(Debug)]
struct Call {
    argv: Vec<String>,
    at: Duration,
    timeout: Option<Duration>,
    stdin: Option<Vec<u8>>,
}

struct Scripted {
    start: Instant,
    steps: VecDeque<Step>,
    calls: Vec<Call>,
    answers: Vec<String>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Scripted {
        Scripted {
            start: Instant::now(),
            steps: steps.into_iter().collect(),
            calls: Vec::new(),
            answers: Vec::new(),
        }
    }
}

impl Attempter for &mut Scripted {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let started = Instant::now();
        self.calls.push(Call {
            argv: spec.argv.to_vec(),
            at: started - self.start,
            timeout: spec.timeout,
            stdin: match spec.stdin {
                StdinFrom::Bytes(b) => Some(b),
                _ => None,
            },
        });
        let step = self.steps.pop_front().unwrap_or_else(ok);
        let end = match spec.timeout {
            Some(t) if step.takes > t => {
                tokio::time::sleep(t).await;
                End::TimedOut {
                    after_ms: t.as_millis() as u64,
                    deadline: spec.timeout_is_deadline,
                }
            }
            _ => {
                tokio::time::sleep(step.takes).await;
                step.end
            }
        };
        AttemptOutcome {
            end,
            matched: Vec::new(),
            started_at: SystemTime::now(),
            duration: started.elapsed(),
            no_retry: None,
            output_closed: false,
            injected: None,
            call: None,
        }
    }

    async fn answer(&mut self, answer: &DefaultAnswer) -> Option<i32> {
        self.answers.push(answer.stdout.clone());
        None
    }
}

async fn run(yaml: &str, script: &mut Scripted) -> (RunSummary, Vec<Event>) {
    let policy = policy::load_str(yaml, "test.yaml").unwrap();
    let (_tx, rx) = watch::channel(None);
    let mut events = Recorded::default();
    script.start = Instant::now();
    let command = vec!["cmd".to_string()];
    let summary = Engine::new(&policy, script, &mut events, rx, "run".into())
        .run(&command)
        .await;
    (summary, events.0)
}

fn at_ms(script: &Scripted) -> Vec<u128> {
    script.calls.iter().map(|c| c.at.as_millis()).collect()
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_without_jitter_waits_exactly() {
    let mut s = Scripted::new([fails(1), fails(1), fails(1), fails(1)]);
    let yaml = "version: 1\nretry: { backoff: { initial: 100ms, max: 2s, jitter: none } }\n";
    let (summary, _) = run(yaml, &mut s).await;
    assert_eq!(at_ms(&s), [0, 100, 300, 700]);
    assert_eq!(summary.outcome, Outcome::Failed);
    assert_eq!(summary.exit_code, 1);
    assert_eq!(summary.attempts, 4);
    assert_eq!(summary.elapsed_ms, 700);
}

#[tokio::test(start_paused = true)]
async fn the_cap_bounds_each_delay() {
    let mut s = Scripted::new(vec![fails(1); 5]);
    let yaml = "version: 1\nretry: { max_attempts: 5, backoff: { initial: 1s, multiplier: 10, max: 3s, jitter: none } }\n";
    run(yaml, &mut s).await;
    assert_eq!(at_ms(&s), [0, 1000, 4000, 7000, 10000]);
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_its_bounds_and_the_record_tells_the_truth() {
    for (jitter, low_half) in [("full", false), ("equal", true)] {
        let mut s = Scripted::new(vec![fails(1); 8]);
        let yaml = format!(
            "version: 1\nretry: {{ max_attempts: 8, backoff: {{ initial: 100ms, max: 1s, jitter: {jitter}, seed: 42 }} }}\n"
        );
        let (_, events) = run(&yaml, &mut s).await;
        let waits: Vec<Duration> = events
            .iter()
            .filter_map(|e| match e {
                Event::Waiting { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect();
        assert_eq!(waits.len(), 7);
        for (i, pair) in s.calls.windows(2).enumerate() {
            let gap = pair[1].at - pair[0].at;
            let base = Duration::from_millis(100 * 2u64.pow(i as u32)).min(Duration::from_secs(1));
            let lo = if low_half { base / 2 } else { Duration::ZERO };
            assert!(
                gap >= lo && gap <= base,
                "{jitter}: gap {gap:?} outside {lo:?}..={base:?}"
            );
            // The clock advances as far as the reported delay (tokio's timer rounds
            // up to whole milliseconds).
            let slack = gap.abs_diff(waits[i]);
            assert!(
                slack <= Duration::from_millis(1),
                "{jitter}: retry {i}: {gap:?} vs {:?}",
                waits[i]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_retries_before_the_cap() {
    // Instant failures, 600ms apart: the second delay would cross the 1s deadline,
    // so it is not started and the run ends at 600ms with the failure's own code.
    let mut s = Scripted::new(vec![fails(7); 10]);
    let yaml = "version: 1\nretry: { max_attempts: 10, backoff: { kind: constant, initial: 600ms, jitter: none } }\ntimeout: { total: 1s }\n";
    let (summary, events) = run(yaml, &mut s).await;
    assert_eq!(at_ms(&s), [0, 600]);
    assert_eq!(summary.exit_code, 7);
    assert_eq!(summary.elapsed_ms, 600);
    let last = events.iter().rev().find_map(|e| match e {
        Event::AttemptFinished(r) => Some(r.clone()),
        _ => None,
    });
    let reason = last.unwrap().delay_reason.unwrap();
    assert!(reason.contains("would cross timeout.total"), "{reason}");
}

/// The longest durations a policy may write, everywhere at once: the deadline and
/// every wait are added to the clock without overflow, a year's wait crossing a
/// year's deadline is not started, and the run ends with the failure's code.
#[tokio::test(start_paused = true)]
async fn the_longest_durations_neither_overflow_nor_wait() {
    let mut s = Scripted::new(vec![fails(7); 3]);
    let yaml = "version: 1\nretry: { max_attempts: 1000, backoff: { initial: 365days, max: 365days, multiplier: 1.0e300, jitter: none } }\ntimeout: { total: 365days, attempt: 365days, kill_grace: 365days }\n";
    let (summary, events) = run(yaml, &mut s).await;
    assert_eq!(at_ms(&s), [0]);
    assert_eq!(summary.exit_code, 7);
    let reason = events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::AttemptFinished(r) => r.delay_reason.clone(),
            _ => None,
        })
        .unwrap();
    assert!(reason.contains("would cross timeout.total"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_is_cut_at_the_deadline_and_reports_124() {
    let slow = Step {
        end: End::Exited { code: 1 },
        takes: Duration::from_millis(400),
    };
    let mut s = Scripted::new(vec![slow; 10]);
    let yaml = "version: 1\nretry: { max_attempts: 10, backoff: { kind: constant, initial: 100ms, jitter: none } }\ntimeout: { total: 1s }\n";
    let (summary, _) = run(yaml, &mut s).await;
    // 0..400, wait, 500..900: the next wait would end at the deadline, so it is not
    // started, and the second attempt's own failure is the final one.
    assert_eq!(at_ms(&s), [0, 500]);
    assert_eq!(s.calls[1].timeout, Some(Duration::from_millis(500)));
    assert_eq!(summary.exit_code, 1);

    let slower = Step {
        end: End::Exited { code: 1 },
        takes: Duration::from_millis(700),
    };
    let mut s = Scripted::new(vec![slower; 10]);
    let (summary, _) = run(yaml, &mut s).await;
    assert_eq!(at_ms(&s), [0, 800]);
    assert_eq!(summary.exit_code, 124, "the final failure was the deadline");
    assert_eq!(summary.elapsed_ms, 1000);
}

#[tokio::test(start_paused = true)]
async fn fallback_links_run_in_order_each_once_and_the_first_success_wins() {
    let mut s = Scripted::new([fails(1), fails(1), fails(5), ok(), fails(9)]);
    let yaml = r#"version: 1
retry: { max_attempts: 2, backoff: { initial: 1ms, jitter: none } }
fallback:
  chain:
    - run: [second]
      retry: { max_attempts: 1 }
    - run: [third]
    - run: [fourth]
"#;
    let (summary, events) = run(yaml, &mut s).await;
    let argv: Vec<&str> = s.calls.iter().map(|c| c.argv[0].as_str()).collect();
    assert_eq!(argv, ["cmd", "cmd", "second", "third"]);
    assert_eq!(summary.outcome, Outcome::Succeeded);
    assert_eq!(summary.exit_code, 0);
    assert_eq!(summary.link, 2);
    let fallbacks: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Fallback { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(fallbacks, [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_default_link_answers_and_later_links_are_not_reached() {
    let mut s = Scripted::new([fails(1)]);
    let yaml = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - default: { stdout: "degraded", exit_code: 0 }
    - escalate: { run: [oncall], exit_code: 3 }
"#;
    let (summary, _) = run(yaml, &mut s).await;
    assert_eq!(summary.outcome, Outcome::Degraded);
    assert_eq!(summary.exit_code, 0);
    assert_eq!(s.answers, ["degraded"]);
    assert_eq!(s.calls.len(), 1, "the escalation hook did not run");
}

#[tokio::test(start_paused = true)]
async fn a_critical_failure_skips_to_the_escalation() {
    let mut s = Scripted::new([fails(3), ok()]);
    let yaml = r#"version: 1
fallback:
  critical: { exit_codes: [3] }
  chain:
    - run: [other]
    - default: { stdout: "degraded" }
    - escalate: { run: [oncall], exit_code: 42 }
"#;
    let (summary, _) = run(yaml, &mut s).await;
    let argv: Vec<&str> = s.calls.iter().map(|c| c.argv[0].as_str()).collect();
    assert_eq!(argv, ["cmd", "oncall"], "no retry, no fallback, no default");
    assert!(s.answers.is_empty());
    assert_eq!(summary.outcome, Outcome::Escalated);
    assert_eq!(summary.exit_code, 42);
    let stdin: serde_json::Value =
        serde_json::from_slice(s.calls[1].stdin.as_ref().unwrap()).unwrap();
    assert_eq!(stdin["critical"], true);
    assert_eq!(stdin["final"]["exit_code"], 3);
    assert_eq!(stdin["run_id"], "run");
}

#[tokio::test(start_paused = true)]
async fn a_critical_failure_without_escalation_ends_the_run() {
    let mut s = Scripted::new([fails(3)]);
    let yaml =
        "version: 1\nfallback:\n  critical: { exit_codes: [3] }\n  chain:\n    - run: [other]\n";
    let (summary, _) = run(yaml, &mut s).await;
    assert_eq!(s.calls.len(), 1);
    assert_eq!(summary.outcome, Outcome::Failed);
    assert_eq!(summary.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_backoff_stops_at_once() {
    let policy = policy::load_str(
        "version: 1\nretry: { backoff: { kind: constant, initial: 1h, max: 1h, jitter: none } }\n",
        "t.yaml",
    )
    .unwrap();
    let (tx, rx) = watch::channel(None);
    let mut events = Recorded::default();
    let mut s = Scripted::new([fails(1)]);
    let command = vec!["cmd".to_string()];
    let engine = Engine::new(&policy, &mut s, &mut events, rx, "run".into());
    let start = Instant::now();
    let (summary, ()) = tokio::join!(engine.run(&command), async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(Some(libc::SIGINT)).unwrap();
    });
    assert_eq!(summary.outcome, Outcome::Interrupted);
    assert_eq!(summary.exit_code, 130);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(s.calls.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_on_retry_hook_is_a_warning_only() {
    let mut s = Scripted::new([fails(1), fails(1), ok()]);
    let yaml = "version: 1\nretry: { backoff: { initial: 1ms }, on_retry: [cleanup] }\n";
    let (summary, events) = run(yaml, &mut s).await;
    let argv: Vec<&str> = s.calls.iter().map(|c| c.argv[0].as_str()).collect();
    assert_eq!(argv, ["cmd", "cleanup", "cmd"]);
    assert_eq!(summary.outcome, Outcome::Succeeded);
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Warning(w) if w.contains("on_retry hook `cleanup` failed"))
        )
    );
}

#[tokio::test(start_paused = true)]
async fn not_found_is_never_retried_but_falls_back() {
    let missing = Step {
        end: End::SpawnFailed {
            code: 127,
            message: "command not found: cmd".into(),
        },
        takes: Duration::ZERO,
    };
    let mut s = Scripted::new([missing, ok()]);
    let yaml = "version: 1\nfallback:\n  chain:\n    - run: [other]\n";
    let (summary, _) = run(yaml, &mut s).await;
    let argv: Vec<&str> = s.calls.iter().map(|c| c.argv[0].as_str()).collect();
    assert_eq!(argv, ["cmd", "other"]);
    assert_eq!(summary.exit_code, 0);
}

/// A command that fails once, then a `call` link, under `extra`.
fn with_call_link(extra: &str) -> String {
    format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\n\
         providers: {{ p: {{ kind: openai, base_url: \"http://127.0.0.1:9\" }} }}\n\
         models: {{ m: {{ provider: p, model: m-1 }} }}\n{extra}"
    )
}

#[tokio::test(start_paused = true)]
async fn a_call_link_gets_a_limit_of_its_own_unless_one_is_set_or_the_deadline_is_nearer() {
    let minutes = |m: u64| Some(Duration::from_secs(60 * m));
    for (chain, total, want) in [
        ("- call: { model: m, prompt: p }", "1h", minutes(10)),
        (
            "- { call: { model: m, prompt: p }, timeout: 20m }",
            "1h",
            minutes(20),
        ),
        ("- call: { model: m, prompt: p }", "5m", minutes(5)),
    ] {
        let yaml = with_call_link(&format!(
            "timeout: {{ total: {total} }}\nfallback:\n  chain:\n    {chain}\n"
        ));
        let mut s = Scripted::new(vec![fails(7), ok()]);
        let (summary, _) = run(&yaml, &mut s).await;
        assert_eq!(summary.exit_code, 0, "{chain}");
        assert_eq!(s.calls[1].timeout, want, "{chain} under {total}");
    }
}

#[tokio::test(start_paused = true)]
async fn validate_follows_commands_not_call_links() {
    let yaml = with_call_link(
        "rollback: { validate: [checker] }\nfallback:\n  chain:\n    - call: { model: m, prompt: p }\n",
    );
    // The command fails; the call answers; the checker would fail, but is not run.
    let mut s = Scripted::new(vec![fails(7), ok(), fails(1)]);
    let (summary, _) = run(&yaml, &mut s).await;
    assert_eq!(summary.exit_code, 0);
    assert_eq!(summary.outcome, Outcome::Succeeded);
    assert_eq!(
        s.calls.len(),
        2,
        "no validate after the call: {:?}",
        s.calls
    );
    assert!(s.calls[1].argv.is_empty(), "the second attempt is the call");

    // After a command's success it still runs.
    let mut s = Scripted::new(vec![ok(), ok()]);
    let (summary, _) = run(
        &with_call_link("rollback: { validate: [checker] }\n"),
        &mut s,
    )
    .await;
    assert_eq!(summary.exit_code, 0);
    assert_eq!(s.calls[1].argv, ["checker"]);
}

// The steps of a link, one by one.

fn outcome(end: End) -> AttemptOutcome {
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at: SystemTime::now(),
        duration: Duration::ZERO,
        no_retry: None,
        output_closed: false,
        injected: None,
        call: None,
    }
}

fn attempted(end: End) -> Attempted {
    Attempted {
        outcome: outcome(end),
        validation_failed: false,
    }
}

/// The verdict on `attempted` for a link of `work`'s kind under `p`.
fn judged(p: &policy::Policy, work: &Work<'_>, attempted: &Attempted) -> Option<Verdict> {
    let patterns = LinkPatterns::new(&p.retry, &p.fallback.critical);
    judge(work, attempted, &patterns, &p.retry, &p.fallback.critical)
}

fn call_work(p: &policy::Policy) -> CallWork<'_> {
    let model = &p.models["m"];
    CallWork {
        model,
        provider: &p.providers[&model.provider],
        prompt: Prompt::default(),
        idempotency_key: "k".into(),
        connect: Duration::from_secs(1),
        first_token: Duration::from_secs(1),
        stall: Duration::from_secs(1),
        cut: None,
    }
}

/// The classifier is the link's kind's: an HTTP 503 is a server error worth another
/// try from a call, and from a command (which never has one) nothing a rule names.
#[test]
fn the_link_kind_picks_the_classifier() {
    let p = policy::load_str(&with_call_link(""), "t.yaml").unwrap();
    let command = ["cmd".to_string()];
    let status = attempted(End::Status {
        status: 503,
        message: None,
    });
    let from_call = judged(&p, &Work::Call(call_work(&p)), &status).unwrap();
    assert_eq!(
        (from_call.class, from_call.retry),
        (FailureClass::Status, true)
    );
    let from_command = judged(&p, &Work::Command(&command), &status).unwrap();
    assert_eq!(
        (from_command.class, from_command.retry),
        (FailureClass::Exit, false)
    );
    // Either kind's success is a success, whichever classifier sees it.
    for work in [Work::Command(&command), Work::Call(call_work(&p))] {
        assert_eq!(judged(&p, &work, &attempted(End::Answered)), None);
        assert_eq!(judged(&p, &work, &attempted(End::Exited { code: 0 })), None);
    }
}

#[test]
fn what_overrides_the_classifiers_rule() {
    let p = policy::load_str("version: 1\nretry: { on: { validate: false } }\n", "t.yaml").unwrap();
    let command = ["cmd".to_string()];
    let work = Work::Command(&command);

    let mut a = attempted(End::Exited { code: 1 });
    a.validation_failed = true;
    let v = judged(&p, &work, &a).unwrap();
    assert_eq!((v.class, v.retry), (FailureClass::Validation, false));
    assert_eq!(
        v.rule,
        "rollback.validate failed (exit 1); retry.on.validate is false"
    );

    let mut a = attempted(End::Exited { code: 1 });
    a.outcome.no_retry = Some("stdin is too large to replay".into());
    let v = judged(&p, &work, &a).unwrap();
    assert!(!v.retry);
    assert_eq!(v.rule, "stdin is too large to replay");

    let mut a = attempted(End::Signaled {
        signal: libc::SIGPIPE,
    });
    a.outcome.output_closed = true;
    let v = judged(&p, &work, &a).unwrap();
    assert!(!v.retry);
    assert_eq!(v.rule, "the reader of backstop's output went away");
}

fn failure(retry: bool, critical: bool, stop: bool) -> Verdict {
    Verdict {
        class: FailureClass::Exit,
        retry,
        critical,
        stop,
        rule: "the rule".into(),
    }
}

const AT_1_OF_3: Position = Position {
    link: 0,
    links: 1,
    attempt: 1,
    max: 3,
};

/// `next_step` for one verdict, with a fresh schedule of `yaml`'s link 0.
fn next_for(
    yaml: &str,
    verdict: Option<&Verdict>,
    outcome: &AttemptOutcome,
    deadline: Option<Instant>,
) -> Next {
    let p = policy::load_str(yaml, "t.yaml").unwrap();
    let mut schedule = Schedule::new(&p.retry.backoff, p.retry.max_attempts);
    next_step(
        verdict,
        outcome,
        AT_1_OF_3,
        &p.retry,
        &mut schedule,
        deadline,
    )
}

const NO_JITTER: &str = "version: 1\nretry: { backoff: { initial: 100ms, jitter: none } }\n";

#[tokio::test(start_paused = true)]
async fn a_verdict_ends_the_link_or_picks_the_delay() {
    let failed = outcome(End::Exited { code: 1 });
    let end = |e| Next::End(e);
    let fail = |f| Next::End(LinkEnd::Failed(f));
    let rule = || "the rule".to_string();
    assert_eq!(
        next_for(NO_JITTER, None, &failed, None),
        end(LinkEnd::Succeeded { attempt: 1, max: 3 })
    );
    let stopped = outcome(End::Interrupted {
        signal: libc::SIGTERM,
    });
    let stop = failure(false, false, true);
    assert_eq!(
        next_for(NO_JITTER, Some(&stop), &stopped, None),
        end(LinkEnd::Stop {
            signal: libc::SIGTERM
        })
    );
    let critical = failure(false, true, false);
    assert_eq!(
        next_for(NO_JITTER, Some(&critical), &failed, None),
        fail(LinkFailure::Critical { rule: rule() })
    );
    let not_retried = failure(false, false, false);
    assert_eq!(
        next_for(NO_JITTER, Some(&not_retried), &failed, None),
        fail(LinkFailure::NotRetryable { rule: rule() })
    );
    let retried = failure(true, false, false);
    let next = next_for(NO_JITTER, Some(&retried), &failed, None);
    assert_eq!(
        next,
        Next::Retry {
            delay: Duration::from_millis(100),
            reason: "exponential backoff: 100ms".into()
        }
    );
    assert_eq!(
        next.delay(),
        (Some(100), Some("exponential backoff: 100ms".into()))
    );
    let once = "version: 1\nretry: { max_attempts: 1 }\n";
    assert_eq!(
        next_for(once, Some(&retried), &failed, None),
        fail(LinkFailure::OutOfRetries { attempt: 1, max: 3 })
    );
}

#[tokio::test(start_paused = true)]
async fn the_servers_wait_and_the_deadline_decide_over_the_backoff() {
    let retried = failure(true, false, false);
    let mut asked = outcome(End::Status {
        status: 429,
        message: None,
    });
    asked.call = Some(CallReport {
        retry_after_ms: Some(2_000),
        retry_after_rule: Some("Retry-After".into()),
        ..CallReport::default()
    });
    assert_eq!(
        next_for(NO_JITTER, Some(&retried), &asked, None),
        Next::Retry {
            delay: Duration::from_secs(2),
            reason: "Retry-After: 2s".into()
        }
    );
    let short_max = "version: 1\nretry: { retry_after: { max: 1s } }\n";
    let over = next_for(short_max, Some(&retried), &asked, None);
    assert_eq!(
        over,
        Next::End(LinkEnd::Failed(LinkFailure::RetryAfterOverMax {
            rule: "Retry-After".into(),
            wait: Duration::from_secs(2),
            max: Duration::from_secs(1),
        }))
    );
    assert_eq!(
        over.delay(),
        (
            None,
            Some("not waiting: Retry-After asks for 2s, over retry.retry_after.max (1s)".into())
        )
    );
    let ignored = "version: 1\nretry: { retry_after: { honor: false, max: 1s }, backoff: { initial: 100ms, jitter: none } }\n";
    assert!(matches!(
        next_for(ignored, Some(&retried), &asked, None),
        Next::Retry { delay, .. } if delay == Duration::from_millis(100)
    ));

    // 100ms left: a delay that would end at the deadline is not started.
    tokio::time::advance(Duration::from_secs(5)).await;
    let failed = outcome(End::Exited { code: 1 });
    let deadline = Instant::now() + Duration::from_millis(100);
    let crossing = next_for(NO_JITTER, Some(&retried), &failed, Some(deadline));
    assert_eq!(
        crossing,
        Next::End(LinkEnd::Failed(LinkFailure::WouldCrossDeadline {
            wait: Duration::from_millis(100)
        }))
    );
    assert_eq!(
        crossing.delay(),
        (
            None,
            Some("not waiting 100ms: it would cross timeout.total".into())
        )
    );
    let later = Instant::now() + Duration::from_millis(101);
    assert!(matches!(
        next_for(NO_JITTER, Some(&retried), &failed, Some(later)),
        Next::Retry { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn an_attempts_limit_is_its_own_or_the_time_left() {
    let own = |t| Limit {
        timeout: t,
        is_deadline: false,
    };
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(attempt_limit(None, false, None), Some(own(None)));
    assert_eq!(attempt_limit(secs(5), false, None), Some(own(secs(5))));
    assert_eq!(
        attempt_limit(None, true, None),
        Some(own(Some(crate::call::client::DEFAULT_CALL_ATTEMPT)))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    assert_eq!(
        attempt_limit(secs(5), false, Some(deadline)),
        Some(own(secs(5)))
    );
    tokio::time::advance(Duration::from_secs(7)).await;
    let cut = Limit {
        timeout: secs(3),
        is_deadline: true,
    };
    assert_eq!(attempt_limit(secs(5), false, Some(deadline)), Some(cut));
    assert_eq!(attempt_limit(None, false, Some(deadline)), Some(cut));
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(attempt_limit(secs(5), true, Some(deadline)), None);
}

/// Every attempt is told started once and finished once, in order, whichever way it
/// ended: retried, not retryable, the link's success.
#[tokio::test(start_paused = true)]
async fn each_attempt_is_told_finished_once() {
    let mut s = Scripted::new([fails(1), fails(2), fails(1), ok()]);
    let yaml = r#"version: 1
retry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms } }
fallback:
  chain:
    - run: [second]
"#;
    let (summary, events) = run(yaml, &mut s).await;
    assert_eq!(summary.outcome, Outcome::Succeeded);
    let told: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::AttemptStarted { .. } => "started",
            Event::AttemptFinished(_) => "finished",
            Event::Waiting { .. } => "waiting",
            Event::Fallback { .. } => "fallback",
            Event::Finished(_) => "summary",
            _ => "other",
        })
        .collect();
    assert_eq!(
        told,
        [
            "started", "finished", "waiting", "started", "finished", "fallback", "started",
            "finished", "waiting", "started", "finished", "summary"
        ]
    );
    let fallback_reason = events.iter().find_map(|e| match e {
        Event::Fallback { reason, .. } => reason.clone(),
        _ => None,
    });
    assert_eq!(
        fallback_reason,
        Some(LinkFailure::NotRetryable {
            rule: "retry.never.exit_codes contains 2".into()
        })
    );
}

/// Runs `command` under `yaml` with `guard`, as one run of several that share it.
async fn run_guarded(
    yaml: &str,
    script: &mut Scripted,
    guard: &mut crate::state::Guard,
) -> (RunSummary, Vec<Event>) {
    let policy = policy::load_str(yaml, "test.yaml").unwrap();
    let (_tx, rx) = watch::channel(None);
    let mut events = Recorded::default();
    let command = vec!["cmd".to_string()];
    let summary = Engine::new(&policy, script, &mut events, rx, "run".into())
        .with_guard(guard)
        .run(&command)
        .await;
    (summary, events.0)
}

fn memory_guard(yaml: &str) -> crate::state::Guard {
    let policy = policy::load_str(yaml, "test.yaml").unwrap();
    let memory = crate::state::memory::Memory::new(policy.guarding.clone());
    crate::state::Guard::with_backend(Box::new(memory))
}

const BREAKER: &str = "version: 1\nretry: { max_attempts: 1 }\n\
    fallback: { chain: [ { name: fb, run: [fb] } ] }\n\
    breaker: { failures: 2, within: 1m, cooldown: 30s }\n";

#[tokio::test(start_paused = true)]
async fn an_open_breaker_skips_its_link_without_an_attempt_until_the_cooldown() {
    let mut guard = memory_guard(BREAKER);
    let mut s = Scripted::new([fails(1), ok(), fails(1), ok()]);
    run_guarded(BREAKER, &mut s, &mut guard).await;
    run_guarded(BREAKER, &mut s, &mut guard).await;
    let calls = |s: &Scripted| {
        s.calls
            .iter()
            .map(|c| c.argv[0].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(calls(&s), ["cmd", "fb", "cmd", "fb"]);

    let (summary, events) = run_guarded(BREAKER, &mut s, &mut guard).await;
    assert_eq!(
        calls(&s)[4..],
        ["fb"],
        "link 0 skipped, straight to the fallback"
    );
    assert_eq!(summary.attempts, 1, "a skipped link is no attempt");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::BreakerSkipped(k) if k.link == 0))
    );
    let fallback = events.iter().find_map(|e| match e {
        Event::Fallback { reason, .. } => reason.clone(),
        _ => None,
    });
    assert!(matches!(fallback, Some(LinkFailure::BreakerOpen { .. })));

    // After the cooldown one probe goes through; its success closes the breaker.
    tokio::time::advance(Duration::from_secs(30)).await;
    s.steps = [ok(), ok()].into();
    let (summary, _) = run_guarded(BREAKER, &mut s, &mut guard).await;
    assert_eq!((summary.link, calls(&s)[5].as_str()), (0, "cmd"));
    run_guarded(BREAKER, &mut s, &mut guard).await;
    assert_eq!(calls(&s)[6], "cmd", "closed");
}

/// An attempt the run's own stop ended (Ctrl-C passed on to it) says nothing of the
/// service: two of them leave a breaker that opens after two failures closed.
#[tokio::test(start_paused = true)]
async fn an_interrupted_attempt_is_not_a_failure_of_the_breaker() {
    let mut guard = memory_guard(BREAKER);
    let interrupted = || Step {
        end: End::Interrupted {
            signal: libc::SIGINT,
        },
        takes: Duration::ZERO,
    };
    let mut s = Scripted::new([interrupted(), interrupted(), ok()]);
    for _ in 0..2 {
        let (summary, _) = run_guarded(BREAKER, &mut s, &mut guard).await;
        assert_eq!(summary.outcome, Outcome::Interrupted);
    }
    let (summary, events) = run_guarded(BREAKER, &mut s, &mut guard).await;
    assert_eq!((summary.outcome, summary.link), (Outcome::Succeeded, 0));
    assert!(
        !events.iter().any(|e| matches!(e, Event::BreakerSkipped(_))),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_turns_retries_off_and_the_record_says_why() {
    let yaml = "version: 1\nretry: { max_attempts: 3, backoff: { initial: 10ms, jitter: none } }\n\
        fallback: { chain: [ { name: fb, run: [fb] } ] }\n\
        retry_budget: { ratio: 0.5, min_per_second: 0, window: 10s }\n";
    let mut guard = memory_guard(yaml);
    let mut s = Scripted::new([fails(1), fails(1), fails(1)]);
    let (summary, events) = run_guarded(yaml, &mut s, &mut guard).await;
    // 0.5 retries for one first attempt: none; off for the rest of the run, so the
    // fallback (1.0 by then) is not retried either, and it is told once.
    assert_eq!(summary.attempts, 2, "one first attempt per link");
    let told: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::RetriesOff { .. }))
        .collect();
    assert!(
        matches!(told[..], [Event::RetriesOff { link: 0, .. }]),
        "{told:?}"
    );
    let last = events.iter().rev().find_map(|e| match e {
        Event::AttemptFinished(r) => Some(r.clone()),
        _ => None,
    });
    let last = last.expect("an attempt");
    assert_eq!(last.delay_ms, None);
    assert_eq!(
        last.delay_reason.as_deref(),
        Some("retries off: the retry budget is exhausted")
    );
}
