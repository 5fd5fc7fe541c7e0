//! Issue 15, the CI engineer's part: no snapshot under CI unless the policy asks,
//! rollback messages that name what they put back, the shipped CI template,
//! constant backoff, the time split, `continue_on_error`, GitHub annotations.

use crate::helpers::Test;

/// Writes a test report, then fails in a way that is never retried.
const FAILS_WITH_REPORT: &str = "echo '<testsuite failures=\"1\"/>' > report.xml; exit 2";

/// backstop runs `FAILS_WITH_REPORT` with `CI` set to `ci`, and ends 2.
fn fails_with_report_under_ci(ci: &str) -> Test {
    Test::new()
        .env("CI", ci)
        .args(&["run", "--", "sh", "-c", FAILS_WITH_REPORT])
        .status(2)
}

#[test]
fn under_ci_the_built_in_policy_takes_no_snapshot_and_keeps_the_report() {
    let out = fails_with_report_under_ci("true")
        .stderr_lacks("rolled back")
        .run();
    let report = std::fs::read_to_string(out.path().join("report.xml")).unwrap_or_default();
    assert!(
        report.contains("failures=\"1\""),
        "the report is kept:\n{}",
        out.stderr
    );
    let notes = out.stderr.matches("CI is set").count();
    assert_eq!(notes, 1, "said once:\n{}", out.stderr);
    let record = out.record();
    assert!(record["snapshot"].is_null(), "no snapshot: {record}");
    assert_eq!(record["outcome"]["outcome"], "failed", "{record}");
}

#[test]
fn ci_false_or_zero_is_not_ci() {
    for value in ["false", "0", ""] {
        let out = fails_with_report_under_ci(value)
            .stderr_lacks("CI is set")
            .stderr_contains("rolled back 1 change(s) (report.xml)")
            .run();
        assert!(!out.path().join("report.xml").exists(), "CI={value:?}");
    }
}

#[test]
fn under_ci_a_policy_that_sets_rollback_decides() {
    let out = fails_with_report_under_ci("true")
        .policy("version: 1\nrollback: { on: failure }\n")
        .stderr_lacks("CI is set")
        .stderr_contains("rolled back 1 change(s) (report.xml)")
        .run();
    assert!(!out.path().join("report.xml").exists());
}

#[test]
fn under_ci_a_policy_without_rollback_takes_no_snapshot_either() {
    let out = fails_with_report_under_ci("1")
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .stderr_contains("backstop.yaml has no `rollback:`, so it takes no snapshot")
        .run();
    assert!(out.path().join("report.xml").exists());
}

#[test]
fn the_ci_note_is_silent_with_quiet() {
    Test::new()
        .env("CI", "true")
        .args(&["-q", "run", "--", "true"])
        .stderr("")
        .run();
}

#[test]
fn a_rollback_names_the_first_paths_and_counts_the_rest() {
    let out = Test::new()
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7; do echo x > f$i; done; exit 2",
        ])
        .status(2)
        .run();
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("rolled back 7 change(s) ("))
        .unwrap_or_else(|| panic!("no rollback line:\n{}", out.stderr));
    assert!(line.contains(" and 2 more)"), "{line}");
    let named = line
        .split_once("change(s) (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(names, _)| names);
    assert_eq!(named.matches(", ").count(), 4, "five named: {line}");
}

#[test]
fn explain_shows_a_constant_backoff_without_a_max_and_without_jitter() {
    let out = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 3, backoff: { kind: constant, initial: 1s } }\n",
        )
        .args(&["policy", "explain", "backstop.yaml"])
        .stdout_contains("3 attempts, constant backoff 1s, none jitter")
        .run();
    assert!(!out.stdout.contains(", up to"), "{}", out.stdout);
}

#[test]
fn a_constant_backoff_waits_its_initial_in_the_retry_line() {
    Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 300ms } }\n",
        )
        .args(&["run", "--", "false"])
        .status(1)
        .stderr_contains("; retrying in 300ms")
        .run();
}

pub(crate) fn ci_template() -> String {
    format!(
        "{}/policies/ci-flaky-tests.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn the_ci_template_fits_its_own_total_timeout() {
    let out = Test::new()
        .args(&["policy", "explain", &ci_template()])
        .stdout_contains("deadline: timeout.total 50m")
        .run();
    assert!(
        !out.stdout.to_lowercase().contains("warning")
            && !out.stderr.to_lowercase().contains("warning"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn the_ci_template_retries_a_failed_test_run() {
    // pytest's exit 1 on the first attempt, then a pass; `timeout` bounds the test.
    let out = Test::new()
        .args(&[
            "run",
            "-p",
            &ci_template(),
            "--",
            "sh",
            "-c",
            "echo 'FAILED test_x.py::test_flaky' ; test $BACKSTOP_ATTEMPT -ge 2 || exit 1",
        ])
        .stderr_contains("attempt 1/3 failed: exit 1")
        .stderr_contains("retrying in 2s")
        .stderr_contains("succeeded on attempt 2/3")
        .run();
    assert!(out.elapsed < std::time::Duration::from_secs(30));
}

#[test]
fn the_ci_template_never_retries_a_build_that_does_not_compile() {
    Test::new()
        .args(&[
            "run",
            "-p",
            &ci_template(),
            "--",
            "sh",
            "-c",
            "echo 'error[E0425]: cannot find value `x`' >&2; exit 101",
        ])
        .status(101)
        .stderr_contains("after 1 attempt")
        .run();
}

const FLAKY: &str =
    "version: 1\nretry: { max_attempts: 3, backoff: { kind: constant, initial: 1ms } }\n";

#[test]
fn under_github_actions_a_retry_is_one_warning_line_not_two() {
    let out = Test::new()
        .policy(FLAKY)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "--", "sh", "-c", "test $BACKSTOP_ATTEMPT -ge 2"])
        .run();
    let ours = lines_starting(&out.stderr, &["backstop:", "::"]);
    assert_eq!(ours.len(), 2, "a retry and the summary:\n{}", out.stderr);
    assert!(
        ours[0].starts_with("::warning title=backstop retry::attempt 1/3 failed: exit 1"),
        "{}",
        ours[0]
    );
    assert!(
        ours[1].starts_with("backstop: succeeded on attempt 2/3"),
        "{}",
        ours[1]
    );
}

#[test]
fn under_github_actions_a_final_failure_is_an_error_annotation() {
    let out = Test::new()
        .policy(FLAKY)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "--", "false"])
        .status(1)
        .run();
    let errors = lines_starting(&out.stderr, &["::error"]);
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].starts_with("::error title=backstop::failed: exit 1 after 3 attempts"),
        "{}",
        errors[0]
    );
    assert!(
        !out.stderr.contains("backstop: failed"),
        "no plain line besides it:\n{}",
        out.stderr
    );
}

#[test]
fn the_summary_reports_backstops_own_time_apart_and_the_record_keeps_it() {
    let out = Test::new()
        .args(&["run", "--", "sh", "-c", FAILS_WITH_REPORT])
        .status(2)
        .run();
    let ours = lines_starting(&out.stderr, &["backstop:"]);
    let last = ours.last().copied().unwrap_or_default();
    // One line, after the rollback, with both times: the command's and backstop's.
    assert!(
        ours.iter().any(|l| l.contains("rolled back")),
        "{}",
        out.stderr
    );
    assert!(
        last.starts_with("backstop: failed: exit 2 after 1 attempt in ")
            && last.contains(" backstop: snapshot "),
        "{}",
        out.stderr
    );
    let record = out.record();
    let time = &record["backstop_time"];
    assert!(
        time["snapshot_ms"].is_u64() && time["rollback_ms"].is_u64(),
        "{record}"
    );
    assert!(record["outcome"]["elapsed_ms"].is_u64(), "{record}");
}

#[test]
fn without_a_snapshot_the_summary_has_no_backstop_time() {
    let out = Test::new()
        .env("CI", "true")
        .args(&["run", "--", "true"])
        .stderr_contains("backstop: succeeded on attempt 1/4 in ")
        .stderr_lacks(" backstop: snapshot")
        .run();
    assert!(out.record()["backstop_time"].is_null());
}

#[test]
fn continue_on_error_exits_0_but_records_and_rolls_back_the_failure() {
    let out = Test::new()
        .policy("version: 1\ncontinue_on_error: true\nretry: { max_attempts: 1 }\n")
        .args(&["run", "--", "sh", "-c", "echo x > made; exit 3"])
        .status(0)
        .stderr_contains("backstop: failed: exit 3 after 1 attempt")
        .stderr_contains("continue_on_error: the run failed (exit 3)")
        .stderr_contains("rolled back 1 change(s) (made)")
        .run();
    let record = out.record();
    assert_eq!(record["outcome"]["outcome"], "failed", "{record}");
    assert_eq!(record["outcome"]["exit_code"], 3, "{record}");
    assert!(!out.path().join("made").exists());
}

#[test]
fn continue_on_error_does_not_hide_an_interruption() {
    // SIGTERM to backstop itself: the run is interrupted, not failed.
    let t = Test::new()
        .policy("version: 1\ncontinue_on_error: true\n")
        .args(&["run", "--", "sh", "-c", "touch \"$OUT/started\"; sleep 30"]);
    let mut child = t.command().spawn().expect("spawn backstop");
    let started =
        crate::helpers::eventually(std::time::Duration::from_secs(20), || t.exists("started"));
    assert!(started, "the command never started");
    let pid = i32::try_from(child.id()).expect("a pid fits i32");
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let code = crate::helpers::wait_bounded(&mut child, std::time::Duration::from_secs(20));
    assert_eq!(code, 143);
}

#[test]
fn retry_command_runs_for_attempts_after_the_first() {
    let out = Test::new()
        .policy(
            "version: 1\nretry:\n  max_attempts: 3\n  backoff: { kind: constant, initial: 1ms }\n  command: [sh, -c, 'echo retry $BACKSTOP_ATTEMPT >> \"$OUT/log\"; test $BACKSTOP_ATTEMPT -ge 3']\n",
        )
        .args(&["run", "--", "sh", "-c", "echo first >> \"$OUT/log\"; exit 1"])
        .stderr_contains("succeeded on attempt 3/3")
        .run();
    assert_eq!(out.lines("log"), ["first", "retry 2", "retry 3"]);
}

#[test]
fn retry_command_is_not_inherited_by_a_fallback_link() {
    let out = Test::new()
        .policy(
            "version: 1\nretry:\n  max_attempts: 2\n  backoff: { kind: constant, initial: 1ms }\n  command: 'echo again >> \"$OUT/log\"; exit 1'\nfallback:\n  chain:\n    - run: 'echo plan-b >> \"$OUT/log\"; exit 1'\n",
        )
        .args(&["run", "--", "sh", "-c", "echo first >> \"$OUT/log\"; exit 1"])
        .status(1)
        .run();
    assert_eq!(out.lines("log"), ["first", "again", "plan-b", "plan-b"]);
}

#[test]
fn explain_shows_continue_on_error_and_retry_command() {
    Test::new()
        .policy("version: 1\ncontinue_on_error: true\nretry: { command: 'pytest --lf' }\n")
        .args(&["policy", "explain", "backstop.yaml"])
        .stdout_contains("attempts after the first run `sh -c 'pytest --lf'` (retry.command)")
        .stdout_contains("continue_on_error: a final failure exits 0")
        .run();
}

#[test]
fn retry_command_on_a_call_link_or_with_steps_is_refused_by_key() {
    Test::new()
        .policy("version: 1\nretry: { command: 'true' }\nsteps:\n  - { name: a, run: 'true' }\n")
        .args(&["policy", "check", "backstop.yaml"])
        .status(125)
        .stderr_contains("backstop.yaml:2:10: retry.command: a policy with `steps:`")
        .run();
    Test::new()
        .policy("version: 1\nfallback:\n  chain:\n    - call: { model: m }\n      retry: { command: 'x' }\n")
        .args(&["policy", "check", "backstop.yaml"])
        .status(125)
        .stderr_contains("fallback.chain[0].retry.command")
        .run();
}

#[test]
fn a_tasks_step_summary_comes_before_the_next_step() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\nsteps:\n  - { name: a, run: 'true' }\n  - { name: b, run: 'exit 4' }\n")
        .args(&["run"])
        .status(4)
        .run();
    let ours = lines_starting(&out.stderr, &["backstop:"]);
    let at = |prefix: &str| {
        ours.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?}:\n{}", out.stderr))
    };
    assert!(at("backstop: step 1/2: a") < at("backstop: succeeded on attempt 1/1"));
    assert!(at("backstop: succeeded on attempt 1/1") < at("backstop: step 2/2: b"));
    assert!(
        ours.last()
            .is_some_and(|l| l.starts_with("backstop: failed: exit 4")),
        "{}",
        out.stderr
    );
}

/// The lines of `text` that start with one of `prefixes`.
fn lines_starting<'a>(text: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect()
}
