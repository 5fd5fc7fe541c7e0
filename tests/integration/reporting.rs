//! What backstop itself prints on stderr: nothing under `-q`, plain lines when
//! stderr is not a terminal, `::warning` annotations under GitHub Actions.

use crate::helpers::Test;

const FLAKY: &str = "version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n";

/// Fails twice (printing to both streams), then succeeds on attempt 3.
const SUCCEEDS_ON_THIRD: &str = "echo out $BACKSTOP_ATTEMPT; echo err $BACKSTOP_ATTEMPT >&2; \
                                 test $BACKSTOP_ATTEMPT -ge 3";

#[test]
fn quiet_silences_backstop_but_not_the_child() {
    Test::new()
        .policy(FLAKY)
        .args(&["-q", "run", "--", "sh", "-c", SUCCEEDS_ON_THIRD])
        .stdout("out 1\nout 2\nout 3\n")
        .stderr("err 1\nerr 2\nerr 3\n")
        .run();
}

#[test]
fn quiet_after_the_subcommand_works_too() {
    Test::new()
        .policy(FLAKY)
        .args(&["run", "-q", "--", "sh", "-c", "echo err >&2; exit 1"])
        .status(1)
        .stderr("err\nerr\nerr\nerr\n")
        .run();
}

#[test]
fn plain_output_has_one_line_per_retry_and_a_summary() {
    let out = Test::new()
        .policy(FLAKY)
        .args(&["run", "--", "sh", "-c", SUCCEEDS_ON_THIRD])
        .stdout("out 1\nout 2\nout 3\n")
        .stderr_lacks("\u{1b}[")
        .run();
    let ours: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("backstop:"))
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "two retry lines and a summary:\n{}",
        out.stderr
    );
    assert!(
        ours[0].starts_with("backstop: attempt 1/4 failed: exit 1 (")
            && ours[0].contains("; retrying in "),
        "{}",
        ours[0]
    );
    assert!(
        ours[1].starts_with("backstop: attempt 2/4 failed: exit 1 ("),
        "{}",
        ours[1]
    );
    assert!(
        ours[2].starts_with("backstop: succeeded on attempt 3/4 after 2 retries in "),
        "{}",
        ours[2]
    );
    // The child's stderr is untouched around backstop's lines.
    let theirs: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("backstop:"))
        .collect();
    assert_eq!(theirs, ["err 1", "err 2", "err 3"]);
}

#[test]
fn a_first_try_success_prints_only_the_summary() {
    Test::new()
        .policy(FLAKY)
        .args(&["run", "--", "true"])
        .stderr_contains("backstop: succeeded on attempt 1/4 in ")
        .stderr_lacks("retrying")
        .run();
}

#[test]
fn a_final_failure_is_summarised_with_its_reason() {
    Test::new()
        .policy(FLAKY)
        .args(&["run", "--", "sh", "-c", "exit 9"])
        .status(9)
        .stderr_contains("backstop: failed: exit 9 after 4 attempts")
        .stderr_contains("out of retries (4/4)")
        .run();
}

#[test]
fn a_fallback_is_announced_on_its_own_line() {
    let policy = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - name: plan-b
      run: "true"
"#;
    Test::new()
        .policy(policy)
        .args(&["run", "--", "false"])
        .stderr_contains("falling back to 1/1: plan-b")
        .stderr_contains("backstop: succeeded via fallback 1/1 (plan-b)")
        .run();
}

#[test]
fn github_actions_gets_a_warning_annotation_per_retry() {
    let out = Test::new()
        .policy(FLAKY)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "--", "sh", "-c", SUCCEEDS_ON_THIRD])
        .run();
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("::warning"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", out.stderr);
    assert!(
        warnings[0].starts_with("::warning title=backstop retry::attempt 1/4 failed"),
        "{}",
        warnings[0]
    );
}

#[test]
fn no_annotations_outside_github_actions() {
    Test::new()
        .policy(FLAKY)
        .args(&["run", "--", "sh", "-c", SUCCEEDS_ON_THIRD])
        .stderr_lacks("::warning")
        .run();
}

#[test]
fn quiet_silences_annotations_too() {
    Test::new()
        .policy(FLAKY)
        .env("GITHUB_ACTIONS", "true")
        .args(&["-q", "run", "--", "sh", "-c", SUCCEEDS_ON_THIRD])
        .stderr("err 1\nerr 2\nerr 3\n")
        .run();
}

#[test]
fn color_always_colours_backstops_lines_even_off_a_terminal() {
    Test::new()
        .policy(FLAKY)
        .args(&["--color", "always", "run", "--", "true"])
        .stderr_contains("\u{1b}[")
        .run();
}
