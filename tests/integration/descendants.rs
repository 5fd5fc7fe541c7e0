//! Nothing outlives its attempt: processes that leave the attempt's process group
//! (`setsid`, a double fork) are ended before a retry, a rollback or backstop's exit.
//!
//! Each command sends its output to /dev/null, so that a process backstop failed to
//! end cannot hold the test's pipes: the test then fails on what it finds, not a hang.

use std::time::Duration;

use crate::helpers::{Test, leftovers};

/// A daemon, started by `setsid` from a background subshell (a double fork: its
/// parent exits at once, so it is nobody's child and in no group of the attempt's),
/// that appends `tick` to `$OUT/log` every 20ms. It ignores SIGTERM when `stubborn`.
fn daemon(marker: &str, stubborn: bool) -> String {
    let trap = if stubborn { "trap \"\" TERM; " } else { "" };
    format!(
        "(setsid sh -c '{trap}while :; do echo tick >> $OUT/log; sleep 0.02; done; sleep {marker}' &)"
    )
}

#[test]
fn a_setsid_grandchild_under_a_timeout_never_writes_after_backstop_exits() {
    let marker = "601.101";
    let out = Test::new()
        .policy(
            "version: 1\ntimeout: { attempt: 400ms, kill_grace: 100ms }\nretry: { max_attempts: 1 }\n",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!(
                "exec >/dev/null 2>&1; setsid sh -c 'sleep 1; echo LATE > late.txt; \
                 echo LATE >> $OUT/log; sleep {marker}' & sleep 60"
            ),
        ])
        .status(124)
        .stderr_contains("timed out")
        .run();
    // The grandchild would write at 1s; backstop is done at about 0.5s.
    assert!(out.elapsed < Duration::from_secs(1), "{:?}", out.elapsed);
    std::thread::sleep(Duration::from_millis(1500) - out.elapsed);
    assert!(
        !out.path().join("late.txt").exists(),
        "written after the rollback"
    );
    assert_eq!(out.lines("log"), Vec::<String>::new());
    let left = leftovers(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_daemon_from_a_failed_attempt_is_gone_before_the_retry_starts() {
    // The daemon ignores SIGTERM, so this is the SIGKILL after kill_grace too.
    let marker = "601.102";
    let script = format!(
        "exec >/dev/null 2>&1
if [ \"$BACKSTOP_ATTEMPT\" = 1 ]; then
  {}
  sleep 0.1
  exit 1
fi
echo start >> $OUT/log
sleep 0.2
echo end >> $OUT/log
",
        daemon(marker, true)
    );
    let out = Test::new()
        .policy(
            "version: 1\ntimeout: { kill_grace: 100ms }\nretry: { max_attempts: 2, backoff: { initial: 1ms, max: 1ms } }\n",
        )
        .write("attempt.sh", &script)
        .args(&["run", "--", "sh", "attempt.sh"])
        .run();
    let log = out.lines("log");
    let start = log
        .iter()
        .position(|l| l == "start")
        .expect("the retry ran");
    assert!(start > 0, "the daemon never ticked: {log:?}");
    assert_eq!(log[start..], ["start", "end"], "ticks during the retry");
    let left = leftovers(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_daemon_from_a_successful_attempt_is_ended_before_backstop_exits() {
    let marker = "601.103";
    let out = Test::new()
        .policy("version: 1\ntimeout: { kill_grace: 100ms }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!(
                "exec >/dev/null 2>&1; {}; sleep {marker}.5 & sleep 0.1; exit 0",
                daemon(marker, false)
            ),
        ])
        .run();
    let ticks = out.lines("log").len();
    assert!(ticks > 0, "the daemon never ticked");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        out.lines("log").len(),
        ticks,
        "the daemon outlived backstop"
    );
    // Both the daemon and the plain background job of the attempt's own group.
    let left = leftovers(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_daemon_started_by_a_validate_command_is_ended_too() {
    let marker = "601.104";
    let out = Test::new()
        .policy(&format!(
            "version: 1\ntimeout: {{ kill_grace: 100ms }}\nrollback: {{ validate: [\"sh\", \"-c\", \"exec >/dev/null 2>&1; {}; sleep 0.1\"] }}\n",
            daemon(marker, false).replace('"', "\\\"")
        ))
        .args(&["run", "--", "true"])
        .run();
    let ticks = out.lines("log").len();
    assert!(ticks > 0, "the daemon never ticked");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        out.lines("log").len(),
        ticks,
        "the daemon outlived backstop"
    );
    let left = leftovers(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn a_backstop_ends_only_its_own_descendants() {
    // Backstop A's attempt sleeps (under a daemon of its own, as a setsid child
    // would be) while backstop B, in another tree, ends a daemon of its own: B's
    // reaper must leave A's processes alone.
    let a = Test::new().args(&[
        "run",
        "--",
        "sh",
        "-c",
        "exec >/dev/null 2>&1; setsid sleep 1.2 & wait $!; sleep 0.1 && echo ok >> $OUT/log",
    ]);
    let mut first = a
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn backstop A");
    std::thread::sleep(Duration::from_millis(300));
    let marker = "601.105";
    let b = Test::new()
        .policy("version: 1\ntimeout: { kill_grace: 100ms }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            &format!("exec >/dev/null 2>&1; {}; sleep 0.1", daemon(marker, false)),
        ])
        .run();
    assert!(b.elapsed < Duration::from_secs(1), "{:?}", b.elapsed);
    let status = crate::helpers::wait_bounded(&mut first, Duration::from_secs(30));
    assert_eq!(status, 0);
    assert_eq!(a.lines("log"), ["ok"], "backstop B ended A's processes");
    let left = leftovers(marker);
    assert!(left.is_empty(), "left running: {left:?}");
}
