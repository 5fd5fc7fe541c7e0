//! Which failures are retried: exit-code allowlists and ranges, output patterns.

use crate::helpers::{Output, Test, attempts};

/// Runs `sh -c 'echo attempt >> $OUT/log; <rest>'` under `policy` and checks the exit code.
#[track_caller]
fn attempt_then(policy: &str, rest: &str, status: i32) -> Output {
    let script = format!("echo attempt >> $OUT/log; {rest}");
    Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", &script])
        .status(status)
        .run()
}

const ALLOW_75: &str = "version: 1
retry:
  max_attempts: 3
  backoff: { initial: 1ms, max: 5ms }
  on: { exit_codes: [75] }
";

#[test]
fn an_allowlisted_exit_code_is_retried_up_to_max_attempts() {
    let out = attempt_then(ALLOW_75, "exit 75", 75);
    assert_eq!(out.lines("log").len(), 3);
    let record = out.record();
    assert_eq!(
        attempts(&record)[0]["verdict"]["rule"],
        "retry.on.exit_codes contains 75"
    );
}

#[test]
fn an_exit_code_missing_from_the_allowlist_is_not_retried() {
    let out = attempt_then(ALLOW_75, "exit 1", 1);
    assert_eq!(out.lines("log").len(), 1);
    let record = out.record();
    let first = &attempts(&record)[0];
    assert_eq!(first["verdict"]["retry"], false);
    assert_eq!(
        first["verdict"]["rule"],
        "exit 1 is not in retry.on.exit_codes"
    );
}

const RANGE: &str = "version: 1
retry:
  max_attempts: 2
  backoff: { initial: 1ms, max: 5ms }
  on: { exit_codes: [64..78, \"90..=91\"] }
";

#[test]
fn exit_code_ranges_are_inclusive_at_both_ends() {
    for code in [64, 70, 78, 90, 91] {
        let out = attempt_then(RANGE, &format!("exit {code}"), code);
        assert_eq!(out.lines("log").len(), 2, "exit {code} should be retried");
    }
}

#[test]
fn exit_codes_outside_the_ranges_are_not_retried() {
    for code in [1, 63, 79, 89, 92] {
        let out = attempt_then(RANGE, &format!("exit {code}"), code);
        assert_eq!(
            out.lines("log").len(),
            1,
            "exit {code} should not be retried"
        );
    }
}

const RATE_LIMIT: &str = "version: 1
retry:
  max_attempts: 3
  backoff: { initial: 1ms, max: 5ms }
  on: { exit_codes: [75], output: [\"(?i)rate limit\"] }
";

#[test]
fn a_stderr_match_makes_an_otherwise_final_failure_retryable() {
    let out = attempt_then(
        RATE_LIMIT,
        "echo 'Error: Rate Limit exceeded' >&2; exit 1",
        1,
    );
    assert_eq!(out.lines("log").len(), 3);
    // The scanned output still reaches backstop's stderr, every time.
    assert_eq!(out.stderr.matches("Error: Rate Limit exceeded").count(), 3);
    let record = out.record();
    assert_eq!(
        attempts(&record)[0]["verdict"]["rule"],
        "retry.on.output matched `(?i)rate limit`"
    );
}

#[test]
fn a_stdout_match_also_makes_a_failure_retryable() {
    let out = attempt_then(RATE_LIMIT, "echo 'rate limit'; exit 1", 1);
    assert_eq!(out.lines("log").len(), 3);
    assert_eq!(out.stdout, "rate limit\n".repeat(3));
}

#[test]
fn without_the_match_the_same_failure_is_not_retried() {
    let out = attempt_then(RATE_LIMIT, "echo 'some other error' >&2; exit 1", 1);
    assert_eq!(out.lines("log").len(), 1);
}

#[test]
fn a_retry_never_output_match_wins_over_retry_on() {
    let policy = "version: 1
retry:
  max_attempts: 3
  backoff: { initial: 1ms, max: 5ms }
  on: { output: [\"rate limit\"] }
  never: { output: [\"quota gone for good\"] }
";
    let out = attempt_then(
        policy,
        "echo 'rate limit; quota gone for good' >&2; exit 1",
        1,
    );
    assert_eq!(out.lines("log").len(), 1);
}

#[test]
fn the_attempt_that_succeeds_ends_the_retries() {
    let out = attempt_then(
        "version: 1\nretry: { max_attempts: 5, backoff: { initial: 1ms, max: 5ms } }\n",
        "test $BACKSTOP_ATTEMPT -ge 2",
        0,
    );
    assert_eq!(out.lines("log").len(), 2);
}

#[test]
fn the_on_retry_hook_runs_before_each_retry_only() {
    let policy = "version: 1
retry:
  max_attempts: 3
  backoff: { initial: 1ms, max: 5ms }
  on_retry: \"echo hook before $BACKSTOP_ATTEMPT >> $OUT/log\"
";
    let out = Test::new()
        .policy(policy)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt $BACKSTOP_ATTEMPT >> $OUT/log; exit 1",
        ])
        .status(1)
        .run();
    assert_eq!(
        out.lines("log"),
        [
            "attempt 1",
            "hook before 2",
            "attempt 2",
            "hook before 3",
            "attempt 3"
        ]
    );
}
