//! No hang: a signal to backstop ends the run within `kill_grace` plus a second in
//! every phase it can reach, output is drained for a bounded time after the command
//! ends, a step's prompt gives way to Ctrl-C, and a pipeline whose reader went away
//! ends as it would without backstop.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Test, eventually, wait_bounded};

/// Output patterns make backstop pipe the command's output through itself.
const SCANNING: &str = "version: 1
retry: { max_attempts: 3, backoff: { kind: constant, initial: 1ms, max: 1ms, jitter: none }, on: { output: ['zzz-never'] } }
timeout: { kill_grace: 1s }
";

fn send(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

#[track_caller]
fn wait_for_file(test: &Test, name: &str) {
    let path = test.out_path().join(name);
    assert!(
        eventually(Duration::from_secs(10), || path.exists()),
        "the command never wrote $OUT/{name}"
    );
}

/// Starts backstop with stdin at /dev/null, stdout to `stdout`, stderr collected.
fn spawn(test: &Test, stdout: Stdio) -> Child {
    test.command()
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backstop")
}

/// Waits for backstop (at most `limit`, else the test fails) and returns its exit
/// code and stderr.
#[track_caller]
fn finish(mut child: Child, limit: Duration) -> (i32, Duration, String) {
    let started = Instant::now();
    let status = wait_bounded(&mut child, limit);
    let took = started.elapsed();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        // Drained after the exit: a leftover holding the pipe is ended by its test.
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, took, stderr)
}

/// A process outside backstop's tree (no reaper can find it) that opens the
/// command's stdout pipe through /proc and writes to it every 100 ms for 30 s.
fn writer_outside_the_run(test: &Test) -> Child {
    let script = r#"while [ ! -s "$OUT/pid" ]; do sleep 0.01; done
exec 3>"/proc/$(cat "$OUT/pid")/fd/1"
touch "$OUT/opened"
i=0; while [ $i -lt 300 ]; do echo busy >&3 || exit 0; sleep 0.1; i=$((i+1)); done"#;
    Command::new("sh")
        .args(["-c", script])
        .env("OUT", test.out_path())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the writer")
}

/// The command under backstop: gives the writer its pid, waits until the writer
/// holds its stdout, then ends with `code`.
fn command_held_open(code: i32) -> String {
    format!(
        r#"echo attempt >> "$OUT/log"; [ -e "$OUT/opened" ] || {{ echo $$ > "$OUT/pid.new"; mv "$OUT/pid.new" "$OUT/pid"; }}
while [ ! -e "$OUT/opened" ]; do sleep 0.01; done; echo done; exit {code}"#
    )
}

/// The command exits at once but a writer that no reaper can end keeps its stdout
/// open and busy: backstop must still end, with and without output patterns.
fn a_busy_writer_does_not_keep_backstop_alive(policy: &str) {
    let test = Test::new()
        .policy(policy)
        .args(&["run", "--", "sh", "-c", &command_held_open(0)]);
    let mut writer = writer_outside_the_run(&test);
    let child = spawn(&test, Stdio::null());
    let (status, took, stderr) = finish(child, Duration::from_secs(20));
    let _ = writer.kill();
    let _ = writer.wait();
    assert_eq!(status, 0, "stderr:\n{stderr}");
    // The drain is 2 s of waiting on the pipe; the bound leaves room for a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(test.lines("log"), ["attempt"]);
}

#[test]
fn a_writer_outside_the_run_that_keeps_the_output_pipe_busy_does_not_keep_backstop_alive() {
    a_busy_writer_does_not_keep_backstop_alive(SCANNING);
}

#[test]
fn without_output_patterns_a_busy_writer_on_the_inherited_output_does_not_keep_backstop_alive() {
    a_busy_writer_does_not_keep_backstop_alive("version: 1\n");
}

#[test]
fn sigterm_while_draining_a_failed_attempts_output_ends_the_run_without_another_attempt() {
    // A slow drain: the command failed, so another attempt would follow it.
    let test = Test::new().policy(&SCANNING.replace("1ms", "30s")).args(&[
        "run",
        "--",
        "sh",
        "-c",
        &command_held_open(1),
    ]);
    let mut writer = writer_outside_the_run(&test);
    let child = spawn(&test, Stdio::null());
    wait_for_file(&test, "opened");
    // The command ends as soon as the writer holds its pipe; backstop is draining.
    std::thread::sleep(Duration::from_millis(300));
    send(&child, libc::SIGTERM);
    let (status, took, stderr) = finish(child, Duration::from_secs(20));
    let _ = writer.kill();
    let _ = writer.wait();
    assert_eq!(status, 143, "stderr:\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(test.lines("log"), ["attempt"], "no further attempt starts");
}

#[test]
fn sigterm_while_the_output_is_blocked_on_a_reader_that_never_reads_ends_the_run() {
    // backstop's stdout is a pipe nobody reads: the copy blocks once it is full.
    let test = Test::new().policy(SCANNING).args(&[
        "run",
        "--",
        "sh",
        "-c",
        r#"touch "$OUT/started"; head -c 2000000 /dev/zero; echo wrote >> "$OUT/log""#,
    ]);
    let (reader, writer) = std::io::pipe().expect("pipe");
    let child = spawn(&test, Stdio::from(writer));
    wait_for_file(&test, "started");
    std::thread::sleep(Duration::from_millis(300));
    send(&child, libc::SIGTERM);
    let (status, took, stderr) = finish(child, Duration::from_secs(20));
    drop(reader);
    assert_eq!(status, 143, "stderr:\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Starts `test`, sends SIGTERM once the command wrote `$OUT/{marker}`, and asserts
/// the run ended 143 within 10 s after one attempt.
#[track_caller]
fn sigterm_once_at(test: &Test, marker: &str) {
    let child = spawn(test, Stdio::null());
    wait_for_file(test, marker);
    send(&child, libc::SIGTERM);
    let (status, took, stderr) = finish(child, Duration::from_secs(20));
    assert_eq!(status, 143, "stderr:\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(test.lines("log"), ["attempt"]);
}

#[test]
fn sigterm_during_an_on_retry_hook_ends_the_run() {
    let test = Test::new()
        .policy(
            r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 1ms }, on_retry: "sh -c 'touch $OUT/hook; sleep 30'" }
timeout: { kill_grace: 1s }
"#,
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            r#"echo attempt >> "$OUT/log"; exit 1"#,
        ]);
    sigterm_once_at(&test, "hook");
}

#[test]
fn sigterm_during_validate_ends_the_run_and_rolls_it_back() {
    let test = Test::new()
        .policy(
            r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 1ms } }
rollback: { validate: "sh -c 'touch $OUT/validating; sleep 30'" }
timeout: { kill_grace: 1s }
"#,
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            r#"echo attempt >> "$OUT/log"; echo work > work.txt"#,
        ]);
    sigterm_once_at(&test, "validating");
    assert!(!test.path().join("work.txt").exists(), "rolled back");
}

#[test]
fn sigterm_to_a_command_that_ignores_it_ends_the_run_within_kill_grace_and_a_second() {
    // The command ignores SIGTERM and leaves a daemon outside its group that does
    // too: both are killed when the one grace runs out, not one grace each.
    let test = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 1ms } }\ntimeout: { kill_grace: 3s }\n",
        )
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            r#"trap '' TERM; setsid sh -c "trap '' TERM; touch \"\$OUT/daemon\"; while :; do sleep 0.1; done" & while [ ! -e "$OUT/daemon" ]; do sleep 0.01; done; touch "$OUT/ready"; while :; do sleep 0.1; done"#,
        ]);
    let child = spawn(&test, Stdio::null());
    wait_for_file(&test, "ready");
    send(&child, libc::SIGTERM);
    let (status, took, stderr) = finish(child, Duration::from_secs(30));
    assert_eq!(status, 143, "stderr:\n{stderr}");
    // 3 s of grace plus a second, with slack for a loaded machine (the bug was 6 s).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
