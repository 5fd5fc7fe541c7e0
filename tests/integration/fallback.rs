//! The fallback chain: order, one visit per link, critical failures, default and escalate.

use serde_json::Value;

use crate::helpers::{Test, attempts};

#[test]
fn links_run_in_order_each_once_and_the_first_success_wins() {
    let policy = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - run: "echo first-fallback >> $OUT/log; echo noise >&2; exit 1"
    - run: ["sh", "-c", "echo second-fallback >> $OUT/log; echo answer from the second fallback"]
    - run: "echo third-fallback >> $OUT/log; echo never"
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 1"])
        .status(0)
        .stdout("answer from the second fallback\n")
        .run();
    assert_eq!(
        out.lines("log"),
        ["primary", "first-fallback", "second-fallback"]
    );
    let record = out.record();
    assert_eq!(record["outcome"]["outcome"], "succeeded");
    assert_eq!(record["outcome"]["link"], 2);
}

#[test]
fn each_link_gets_its_own_retries() {
    let policy = r#"version: 1
retry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - run: "echo fallback $BACKSTOP_ATTEMPT >> $OUT/log; exit 1"
      retry: { max_attempts: 3 }
    - run: "echo last $BACKSTOP_ATTEMPT >> $OUT/log; exit 7"
"#;
    let out = Test::new()
        .policy(policy)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo primary $BACKSTOP_ATTEMPT >> $OUT/log; exit 1",
        ])
        .status(7)
        .run();
    assert_eq!(
        out.lines("log"),
        [
            "primary 1",
            "primary 2",
            "fallback 1",
            "fallback 2",
            "fallback 3",
            "last 1",
            "last 2"
        ]
    );
}

const CRITICAL_CHAIN: &str = r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }
fallback:
  critical: { exit_codes: [3], output: ["SECURITY VIOLATION"] }
  chain:
    - run: "echo fallback >> $OUT/log"
    - default: { stdout: "default answer\n" }
"#;

#[test]
fn a_critical_exit_code_skips_the_whole_chain() {
    let out = Test::new()
        .policy(CRITICAL_CHAIN)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 3"])
        .status(3)
        .stdout("")
        .run();
    assert_eq!(out.lines("log"), ["primary"], "no retry, no fallback");
    let record = out.record();
    assert_eq!(record["outcome"]["outcome"], "failed");
    assert_eq!(attempts(&record)[0]["verdict"]["critical"], true);
}

#[test]
fn a_critical_output_match_skips_the_whole_chain() {
    let out = Test::new()
        .policy(CRITICAL_CHAIN)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo primary >> $OUT/log; echo 'SECURITY VIOLATION: token leaked' >&2; exit 1",
        ])
        .status(1)
        .stdout("")
        .run();
    assert_eq!(out.lines("log"), ["primary"]);
}

#[test]
fn a_critical_failure_still_reaches_the_escalate_link() {
    let policy = r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }
fallback:
  critical: { exit_codes: [3] }
  chain:
    - run: "echo fallback >> $OUT/log"
    - default: { stdout: "default answer\n" }
    - escalate: { run: "echo escalated >> $OUT/log; cat > $OUT/summary.json" }
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 3"])
        // No exit_code on the escalate link: the final failure's code.
        .status(3)
        .stdout("")
        .run();
    assert_eq!(out.lines("log"), ["primary", "escalated"]);
    let summary: Value = serde_json::from_str(&out.read("summary.json")).expect("summary JSON");
    assert_eq!(summary["critical"], true);
}

#[test]
fn a_default_link_prints_its_answer_and_ends_with_its_exit_code() {
    let policy = r#"version: 1
retry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - default: { stdout: "degraded: no answer\n", stderr: "using the default\n", exit_code: 4 }
    - run: "echo after-default >> $OUT/log"
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 1"])
        .status(4)
        .stdout("degraded: no answer\n")
        .stderr_contains("using the default\n")
        .run();
    assert_eq!(out.lines("log"), ["primary", "primary"]);
    assert_eq!(out.record()["outcome"]["outcome"], "degraded");
}

#[test]
fn a_default_link_exits_zero_unless_told_otherwise() {
    let policy = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - default: { stdout: "cached answer\n" }
"#;
    Test::new()
        .policy(policy)
        .args(&["run", "--", "false"])
        .status(0)
        .stdout("cached answer\n")
        .run();
}

#[test]
fn the_escalate_hook_receives_the_failure_summary_on_stdin() {
    let policy = r#"version: 1
retry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - run: "echo fallback >> $OUT/log; exit 6"
      retry: { max_attempts: 1 }
    - escalate: { run: ["sh", "-c", "echo escalated $BACKSTOP_RUN_ID >> $OUT/log; cat > $OUT/summary.json"], exit_code: 9 }
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 5"])
        .status(9)
        .run();
    let record = out.record();
    let id = record["id"].as_str().expect("run id");
    assert_eq!(
        out.lines("log"),
        [
            "primary".to_string(),
            "primary".to_string(),
            "fallback".to_string(),
            format!("escalated {id}")
        ]
    );
    let summary: Value = serde_json::from_str(&out.read("summary.json"))
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", out.read("summary.json")));
    assert_eq!(summary["run_id"], id);
    assert_eq!(summary["attempts"], 3);
    assert_eq!(summary["critical"], false);
    assert_eq!(summary["final"]["exit_code"], 6);
    assert_eq!(summary["final"]["class"], "exit");
    assert!(
        summary["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{summary:#}"
    );
    assert_eq!(record["outcome"]["outcome"], "escalated");
    assert_eq!(record["outcome"]["exit_code"], 9);
}

#[test]
fn a_failing_escalate_hook_is_a_warning_not_the_runs_exit_code() {
    let policy = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - escalate: { run: "exit 42", exit_code: 9 }
"#;
    Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "exit 5"])
        .status(9)
        .stderr_contains("escalate hook")
        .run();
}
