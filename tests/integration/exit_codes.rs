//! Exit codes: the child's own on final failure, 126/127 never retried, 128+N for signals.

use crate::helpers::{Test, attempts};

#[test]
fn success_on_the_first_try_exits_zero_after_one_attempt() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt $BACKSTOP_ATTEMPT >> $OUT/log; echo done",
        ])
        .status(0)
        .stdout("done\n")
        .run();
    assert_eq!(out.lines("log"), ["attempt 1"]);
}

#[test]
fn the_final_failures_exit_code_passes_through_after_every_attempt() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt $BACKSTOP_ATTEMPT >> $OUT/log; exit 3",
        ])
        .status(3)
        .run();
    assert_eq!(
        out.lines("log"),
        ["attempt 1", "attempt 2", "attempt 3", "attempt 4"]
    );
}

#[test]
fn the_last_attempts_code_is_the_one_passed_through() {
    // Each attempt fails with a different code: the run ends with the last one's.
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo $BACKSTOP_ATTEMPT >> $OUT/log; exit $((10 + BACKSTOP_ATTEMPT))",
        ])
        .status(13)
        .run();
    assert_eq!(out.lines("log"), ["1", "2", "3"]);
}

/// A policy that would retry any exit code at all, so only the 126/127 rule can stop it.
const RETRY_EVERYTHING: &str = "version: 1
retry:
  max_attempts: 4
  backoff: { initial: 1ms, max: 5ms }
  on: { exit_codes: [0..255] }
  never: { exit_codes: [] }
";

#[test]
fn command_not_found_exits_127_after_exactly_one_attempt() {
    let out = Test::new()
        .policy(RETRY_EVERYTHING)
        .args(&["run", "--", "./no-such-command-here"])
        .status(127)
        .stderr_contains("no-such-command-here")
        .run();
    let record = out.record();
    let attempts = attempts(&record);
    assert_eq!(attempts.len(), 1, "{record:#}");
    assert_eq!(attempts[0]["exit_code"], 127);
    assert_eq!(attempts[0]["verdict"]["class"], "not-found");
    assert_eq!(attempts[0]["verdict"]["retry"], false);
}

#[test]
fn a_file_without_the_execute_bit_exits_126_after_exactly_one_attempt() {
    let out = Test::new()
        .policy(RETRY_EVERYTHING)
        .write_mode("script.sh", "#!/bin/sh\necho ran >> $OUT/log\n", 0o644)
        .args(&["run", "--", "./script.sh"])
        .status(126)
        .run();
    assert!(!out.exists("log"), "the script must not have run");
    let record = out.record();
    let attempts = attempts(&record);
    assert_eq!(attempts.len(), 1, "{record:#}");
    assert_eq!(attempts[0]["exit_code"], 126);
    assert_eq!(attempts[0]["verdict"]["class"], "not-executable");
}

#[test]
fn a_wrapper_that_exits_127_itself_is_not_retried_by_default() {
    // The common case: a shell script whose inner command is missing.
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exec ./no-such-inner-command",
        ])
        .status(127)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
}

#[test]
fn a_wrapper_that_exits_126_itself_is_not_retried_by_default() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exit 126",
        ])
        .status(126)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
}

#[test]
fn usage_exit_code_2_is_not_retried_by_default() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log; exit 2"])
        .status(2)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
}

#[test]
fn death_by_signal_exits_128_plus_the_signal() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; kill -KILL $$",
        ])
        .status(128 + 9)
        .run();
    // Signals are retryable by default (retry.on.signals: true).
    assert_eq!(out.lines("log"), ["attempt", "attempt"]);
    let record = out.record();
    assert_eq!(attempts(&record)[1]["verdict"]["class"], "signal");
}

#[test]
fn signals_are_not_retried_when_the_policy_says_so() {
    let out = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms }, on: { signals: false } }\n",
        )
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log; kill -TERM $$"])
        .status(128 + 15)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
}

/// The README's exit-code table names every code backstop has of its own, so a user
/// can look any of them up.
#[test]
fn the_readme_table_lists_every_exit_code_backstop_has() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a section headed Exit codes");
    let rows: Vec<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(" |").next())
        .collect();
    let source = std::fs::read_to_string(format!("{root}/src/exit_code.rs")).unwrap();
    let mut seen = 0;
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let (name, value) = rest.split_once(": u8 = ").unwrap();
        let value = value.trim_end_matches(';');
        let cell = if name == "SIGNAL_BASE" {
            "128+N".to_string()
        } else {
            value.to_string()
        };
        assert!(
            rows.contains(&cell.as_str()),
            "exit_code::{name} ({value}) is not in the README's table: {rows:?}"
        );
        seen += 1;
    }
    assert!(seen >= 8, "read {seen} codes from src/exit_code.rs");
    for code in ["0", "N", "130"] {
        assert!(rows.contains(&code), "{code} missing: {rows:?}");
    }
}
