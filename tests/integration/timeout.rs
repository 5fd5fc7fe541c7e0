//! Timeouts: the whole process group is ended, 124 is reported, and the deadline
//! (`timeout.total`) bounds retries.

use std::time::{Duration, Instant};

use crate::helpers::{Test, attempts, leftovers, wait_bounded};

#[test]
fn a_timeout_kills_the_whole_process_group_and_exits_124() {
    let marker = "600.123";
    let out = Test::new()
        .policy(
            "version: 1\ntimeout: { attempt: 1s, kill_grace: 200ms }\nretry: { max_attempts: 1 }\n",
        )
        // The shell waits on a background grandchild: both are in the attempt's group.
        // (Output goes to /dev/null so that a process left running would not hold the
        // test's pipes open: the test then fails on the leftover rather than hang.)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("exec >/dev/null 2>&1; sleep {marker} & wait"),
        ])
        .status(124)
        .stderr_contains("timed out")
        .run();
    assert!(out.elapsed >= Duration::from_secs(1), "{:?}", out.elapsed);
    let left = leftovers(&format!("sleep {marker}"));
    assert!(left.is_empty(), "left running: {left:?}");
    let record = out.record();
    let attempts = attempts(&record);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["end"]["kind"], "timed_out");
    assert_eq!(attempts[0]["verdict"]["class"], "timeout");
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_kill_grace() {
    let marker = "600.124";
    let out = Test::new()
        .policy(
            "version: 1\ntimeout: { attempt: 300ms, kill_grace: 300ms }\nretry: { max_attempts: 1 }\n",
        )
        // `sleep` inherits the ignored SIGTERM; only SIGKILL ends it.
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!(
                "exec >/dev/null 2>&1; trap '' TERM; echo started >> $OUT/log; \
                 sleep {marker}; echo survived >> $OUT/log"
            ),
        ])
        .status(124)
        .run();
    assert_eq!(out.lines("log"), ["started"]);
    assert!(
        out.elapsed >= Duration::from_millis(600),
        "SIGKILL came before attempt + kill_grace: {:?}",
        out.elapsed
    );
    let left = leftovers(&format!("sleep {marker}"));
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_grandchild_that_ignores_sigterm_is_killed_with_its_group() {
    let marker = "600.125";
    Test::new()
        .policy(
            "version: 1\ntimeout: { attempt: 300ms, kill_grace: 200ms }\nretry: { max_attempts: 1 }\n",
        )
        // The shell dies of SIGTERM at once; its child ignores it and outlives it.
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("exec >/dev/null 2>&1; (trap '' TERM; sleep {marker}) & wait"),
        ])
        .status(124)
        .run();
    let left = leftovers(&format!("sleep {marker}"));
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_timeout_is_not_retried_when_retry_on_timeout_is_false() {
    let out = Test::new()
        .policy(
            "version: 1
timeout: { attempt: 200ms, kill_grace: 100ms }
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms }, on: { timeout: false } }
",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exec sleep 30",
        ])
        .status(124)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
    let record = out.record();
    let verdict = &attempts(&record)[0]["verdict"];
    assert_eq!(verdict["class"], "timeout");
    assert_eq!(verdict["retry"], false);
    assert_eq!(verdict["rule"], "retry.on.timeout is false");
}

#[test]
fn an_error_exit_is_still_retried_when_retry_on_timeout_is_false() {
    let out = Test::new()
        .policy(
            "version: 1
timeout: { attempt: 5s, kill_grace: 100ms }
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms }, on: { timeout: false } }
",
        )
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log; exit 1"])
        .status(1)
        .run();
    assert_eq!(out.lines("log").len(), 3);
    let record = out.record();
    assert_eq!(attempts(&record)[0]["verdict"]["class"], "exit");
    assert_eq!(attempts(&record)[0]["verdict"]["retry"], true);
}

/// Only timeouts are worth retrying: no exit code is.
const ONLY_TIMEOUTS: &str = "version: 1
timeout: { attempt: 200ms, kill_grace: 100ms }
retry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms }, on: { exit_codes: [], timeout: true } }
";

#[test]
fn a_timeout_is_retried_when_no_exit_code_is() {
    let out = Test::new()
        .policy(ONLY_TIMEOUTS)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exec sleep 30",
        ])
        .status(124)
        .run();
    assert_eq!(out.lines("log"), ["attempt", "attempt"]);
    let record = out.record();
    for a in attempts(&record) {
        assert_eq!(a["verdict"]["class"], "timeout", "{a:#}");
    }
    assert_eq!(attempts(&record)[0]["verdict"]["retry"], true);
}

#[test]
fn an_error_exit_is_not_retried_when_no_exit_code_is() {
    let out = Test::new()
        .policy(ONLY_TIMEOUTS)
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log; exit 1"])
        .status(1)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
    let record = out.record();
    assert_eq!(attempts(&record)[0]["verdict"]["class"], "exit");
    assert_eq!(attempts(&record)[0]["verdict"]["retry"], false);
}

#[test]
fn the_deadline_stops_retries_long_before_the_attempt_cap() {
    // Each attempt fails after ~400ms; 10 attempts would take 4s, the deadline is 1s:
    // attempts start at ~0, ~0.4 and ~0.8s, and the third is cut at 1s.
    let out = Test::new()
        .policy(
            "version: 1
timeout: { total: 1s, kill_grace: 100ms }
retry: { max_attempts: 10, backoff: { initial: 1ms, max: 5ms } }
",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; sleep 0.4; exit 1",
        ])
        .status(124)
        .run();
    let started = out.lines("log").len();
    assert!(
        (2..=4).contains(&started),
        "{started} attempts under a 1s deadline"
    );
    let record = out.record();
    let attempts = attempts(&record);
    assert_eq!(attempts.len(), started);
    // The attempt the deadline cut short is recorded as such, and that is why 124.
    let last = attempts.last().expect("an attempt");
    assert_eq!(last["verdict"]["class"], "deadline", "{last:#}");
    assert_eq!(last["end"]["deadline"], true);
    // Loose on purpose: the cleanup after the cut is checked in
    // `a_timeout_ends_promptly_when_backstop_inherits_the_orphans`.
    let elapsed = record["outcome"]["elapsed_ms"]
        .as_u64()
        .expect("elapsed_ms");
    assert!(
        (1000..3500).contains(&elapsed),
        "the run took {elapsed}ms under a 1s deadline"
    );
}

/// `test`'s command, with backstop made a child subreaper before it starts: the
/// processes its attempts orphan are re-parented to backstop itself, as they are when
/// backstop is PID 1 of a container (`docker run image backstop run -- ...`).
fn as_subreaper(test: &Test) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = test.command();
    // SAFETY: prctl(2) is async-signal-safe; the setting survives execve(2).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

#[test]
fn a_timeout_ends_promptly_when_backstop_inherits_the_orphans() {
    // The group is SIGTERMed at 300ms and both processes die at once; the background
    // `sleep`, orphaned when its shell died, is now backstop's own child to reap. The
    // attempt should be over within its timeout, kill_grace and a little slack.
    let marker = "600.126";
    let test = Test::new()
        .policy(
            "version: 1\ntimeout: { attempt: 300ms, kill_grace: 100ms }\nretry: { max_attempts: 1 }\n",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("exec >/dev/null 2>&1; sleep {marker} & wait"),
        ]);
    let started = Instant::now();
    let mut child = as_subreaper(&test).spawn().expect("spawn backstop");
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert_eq!(status, 124);
    assert!(leftovers(&format!("sleep {marker}")).is_empty());
    assert!(
        elapsed < Duration::from_millis(300 + 100 + 1000),
        "a 300ms attempt with a 100ms kill_grace took {elapsed:?} to end"
    );
}

#[test]
fn a_failed_attempts_leftovers_are_ended_promptly_when_backstop_inherits_them() {
    // The command fails at once and leaves a background process, which backstop ends
    // (SIGTERM, which it does not resist). That should take less than kill_grace.
    let marker = "600.127";
    let test = Test::new()
        .policy(
            "version: 1\ntimeout: { kill_grace: 1s }\nretry: { max_attempts: 1 }\nrollback: { on: never }\n",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("exec >/dev/null 2>&1; sleep {marker} & exit 1"),
        ]);
    let started = Instant::now();
    let mut child = as_subreaper(&test).spawn().expect("spawn backstop");
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert_eq!(status, 1);
    assert!(leftovers(&format!("sleep {marker}")).is_empty());
    assert!(
        elapsed < Duration::from_secs(1),
        "ending a leftover that dies on SIGTERM took {elapsed:?} (kill_grace is 1s)"
    );
}

#[test]
fn a_delay_that_would_cross_the_deadline_is_not_waited() {
    // A 30s backoff under a 2s deadline: give up at once with the failure's own code.
    let out = Test::new()
        .policy(
            "version: 1
timeout: { total: 2s }
retry: { max_attempts: 3, backoff: { kind: constant, initial: 30s, max: 30s, jitter: none } }
",
        )
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log; exit 5"])
        .status(5)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
    let record = out.record();
    let reason = attempts(&record)[0]["delay_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("timeout.total"), "{reason:?}");
}

#[test]
fn a_deadline_shorter_than_the_attempt_timeout_wins() {
    let out = Test::new()
        .policy(
            "version: 1
timeout: { attempt: 30s, total: 300ms, kill_grace: 100ms }
retry: { max_attempts: 3 }
",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exec sleep 30",
        ])
        .status(124)
        .stderr_contains("deadline")
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
}

#[test]
fn after_the_deadline_run_links_are_skipped_but_the_default_answer_is_given() {
    let policy = r#"version: 1
timeout: { total: 300ms, kill_grace: 100ms }
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - run: "echo fallback >> $OUT/log"
    - default: { stdout: "too late, here is the default\n", exit_code: 3 }
"#;
    let out = Test::new()
        .policy(policy)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo primary >> $OUT/log; exec sleep 30",
        ])
        .status(3)
        .stdout("too late, here is the default\n")
        .run();
    assert_eq!(out.lines("log"), ["primary"]);
}

#[test]
fn a_links_own_timeout_overrides_the_attempt_timeout() {
    let policy = r#"version: 1
timeout: { attempt: 30s, kill_grace: 100ms }
retry: { max_attempts: 1 }
fallback:
  chain:
    - run: "echo fallback >> $OUT/log; exec sleep 30"
      timeout: 200ms
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", "echo primary >> $OUT/log; exit 1"])
        .status(124)
        .run();
    assert_eq!(out.lines("log"), ["primary", "fallback"]);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    let record = out.record();
    assert_eq!(attempts(&record)[1]["verdict"]["class"], "timeout");
}
