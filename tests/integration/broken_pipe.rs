//! `backstop run -- cmd | head -1`: a command killed by SIGPIPE because the reader of
//! backstop's output went away ends the run as the pipeline expects (exit 141, not
//! retried, its work kept); one that dies of SIGPIPE on its own is a signal death.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Test, wait_bounded};

const RETRY: &str = "version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 1ms }, on: { exit_codes: [1, 141] } }\n";
const SCANNING: &str = "version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 1ms }, on: { exit_codes: [1, 141], output: ['zzz-never'] } }\n";

/// Runs `script` under `policy` with backstop's stdout read for one line and then
/// closed, as `| head -1` does; the exit code and stderr.
fn run_into_head(test: &Test) -> (i32, String) {
    let mut child = test
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backstop");
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read a line");
    assert_eq!(line, "y\n");
    drop(out);
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (status, stderr)
}

fn the_reader_went_away(policy: &str, command: &str) {
    let test = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", command]);
    let (status, stderr) = run_into_head(&test);
    assert_eq!(status, 141, "stderr:\n{stderr}");
    assert_eq!(test.lines("log"), ["attempt"], "not retried");
    assert_eq!(
        std::fs::read_to_string(test.path().join("work.txt")).unwrap_or_default(),
        "work\n",
        "the work stands, as without backstop; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("reader of backstop's output went away"),
        "stderr:\n{stderr}"
    );
    let record = test.record();
    assert_eq!(record["outcome"]["outcome"], "output_closed", "{record:#}");
    assert_eq!(record["outcome"]["exit_code"], 141);
}

const YES: &str = r#"echo attempt >> "$OUT/log"; echo work > work.txt; exec yes"#;
const YES_IN_SHELL: &str = r#"echo attempt >> "$OUT/log"; echo work > work.txt; yes"#;

#[test]
fn a_command_killed_by_sigpipe_because_the_reader_left_is_not_retried_nor_rolled_back() {
    the_reader_went_away(RETRY, YES);
}

#[test]
fn a_shell_reporting_a_sigpipe_death_because_the_reader_left_ends_the_run_the_same() {
    the_reader_went_away(RETRY, YES_IN_SHELL);
}

#[test]
fn with_output_patterns_a_reader_that_left_ends_the_run_as_a_pipeline_does() {
    the_reader_went_away(SCANNING, YES);
}

#[test]
fn a_command_that_dies_of_sigpipe_on_its_own_is_a_signal_death_and_rolled_back() {
    // backstop's stdout is fine: the command's own pipe broke.
    Test::new()
        .policy(RETRY)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            r#"echo attempt >> "$OUT/log"; echo work > work.txt; exec sh -c 'kill -PIPE $$'"#,
        ])
        .status(141)
        .stderr_contains("killed by SIGPIPE")
        .stderr_contains("rolled back")
        .stderr_lacks("went away")
        .run();
}
