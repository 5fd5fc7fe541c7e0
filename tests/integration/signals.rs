//! SIGINT and SIGTERM sent to backstop reach the attempt, stop the run, and give
//! 128+N; no further attempt starts.

use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::helpers::{Test, eventually, wait_bounded};

const RETRY_FAST: &str =
    "version: 1\nretry: { max_attempts: 4, backoff: { initial: 1ms, max: 5ms } }\n";

/// A backstop started in the background, its stderr collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: JoinHandle<()>,
}

/// Starts `test` with stdin at /dev/null (not a terminal) and stderr piped.
fn spawn(test: &Test) -> Running {
    let mut child = test
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backstop");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("stderr lock")
                .extend_from_slice(&buf[..n]);
        }
    });
    Running {
        child,
        stderr,
        reader,
    }
}

impl Running {
    fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }

    fn send(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits for backstop to exit; its exit code and all of its stderr.
    #[track_caller]
    fn finish(mut self) -> (i32, String) {
        let status = wait_bounded(&mut self.child, Duration::from_secs(20));
        // The reader ends when the last holder of the pipe is gone: the commands
        // below loop for 10s at most, so a child that outlived backstop cannot hang
        // the test for longer than that.
        let _ = self.reader.join();
        let stderr =
            String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned();
        (status, stderr)
    }
}

/// Waits until the log file has a line `line`, failing after a few seconds.
#[track_caller]
fn wait_for_line(test: &Test, line: &str) {
    let log = test.out_path().join("log");
    let seen = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.lines().any(|l| l == line))
    });
    assert!(seen, "the command never logged {line:?}");
}

/// Runs a command that traps `signal_name`, sends `signal` to backstop once the trap
/// is set, and checks the exit code, the trap, and that no other attempt started.
fn signal_reaches_the_child(signal: i32, signal_name: &str, code: i32) {
    let script = format!(
        "trap 'echo trapped >> $OUT/log; exit {code}' {signal_name}; echo ready >> $OUT/log; \
         i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo outlived >> $OUT/log"
    );
    let test = Test::new()
        .policy(RETRY_FAST)
        .args(&["run", "--", "sh", "-c", &script]);
    let running = spawn(&test);
    wait_for_line(&test, "ready");
    running.send(signal);
    let (status, stderr) = running.finish();
    assert_eq!(status, code, "stderr:\n{stderr}");
    let log = test.read("log");
    assert_eq!(
        log, "ready\ntrapped\n",
        "the trap must run and no further attempt start"
    );
    assert!(stderr.contains("interrupted"), "stderr:\n{stderr}");
}

#[test]
fn sigint_reaches_the_child_and_backstop_exits_130() {
    signal_reaches_the_child(libc::SIGINT, "INT", 130);
}

#[test]
fn sigterm_reaches_the_child_and_backstop_exits_143() {
    signal_reaches_the_child(libc::SIGTERM, "TERM", 143);
}

#[test]
fn sighup_reaches_the_child_and_backstop_exits_129() {
    signal_reaches_the_child(libc::SIGHUP, "HUP", 129);
}

#[test]
fn sigint_during_a_backoff_wait_ends_the_run_without_another_attempt() {
    // A 60s backoff: the signal must cut the wait short (no real waiting here).
    let test = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 3, backoff: { kind: constant, initial: 60s, max: 60s, jitter: none } }\n",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt $BACKSTOP_ATTEMPT >> $OUT/log; exit 1",
        ]);
    let running = spawn(&test);
    // backstop prints "retrying in 1m" just before it starts waiting.
    let waiting = eventually(Duration::from_secs(10), || {
        running.stderr_so_far().contains("retrying in 1m")
    });
    assert!(waiting, "stderr:\n{}", running.stderr_so_far());
    running.send(libc::SIGINT);
    let (status, stderr) = running.finish();
    assert_eq!(status, 130, "stderr:\n{stderr}");
    let log = test.read("log");
    assert_eq!(log, "attempt 1\n");
}

#[test]
fn a_child_killed_by_sigint_on_its_own_ends_the_run_with_130() {
    // As when Ctrl-C on a terminal reaches only the child: never retried.
    let out = Test::new()
        .policy(RETRY_FAST)
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; kill -INT $$",
        ])
        .status(130)
        .run();
    assert_eq!(out.lines("log"), ["attempt"]);
}

#[test]
fn an_interrupted_run_is_recorded_as_interrupted() {
    let test = Test::new().policy(RETRY_FAST).args(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo ready >> $OUT/log; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done",
    ]);
    let running = spawn(&test);
    wait_for_line(&test, "ready");
    running.send(libc::SIGINT);
    let (status, stderr) = running.finish();
    assert_eq!(status, 130, "stderr:\n{stderr}");
    let record = test.record();
    assert_eq!(record["status"], "finished");
    assert_eq!(record["outcome"]["outcome"], "interrupted");
    assert_eq!(record["outcome"]["exit_code"], 130);
}
