//! backstop on a terminal behaves as a job of a job-control shell: Ctrl-Z stops the
//! attempt and backstop (the shell sees the job stopped) and `fg` continues both;
//! Ctrl-C at a step's approval prompt ends the run at once. Driven through a real
//! pty by python3's `pty` module, which plays the shell.

use std::process::Command;

use crate::helpers::{BIN, Test};

/// Runs a python3 script that gets the binary, the policy and `$OUT` as arguments,
/// and returns its stdout (it fails the test if python fails).
#[track_caller]
pub(crate) fn drive(test: &Test, script: &str) -> String {
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", script, BIN, "backstop.yaml"])
        .arg(test.out_path())
        .current_dir(test.path())
        .env("BACKSTOP_HOME", test.out_path().join("../store"))
        .env("OUT", test.out_path())
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the pty driver failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Shared by the scripts: start backstop on a pty, and read the pty to its end.
pub(crate) const PTY: &str = r#"
import os, pty, sys, time, signal
binary, policy, out = sys.argv[1], sys.argv[2], sys.argv[3]
signal.alarm(40)
def start(*args):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, [binary, *args])
    return pid, fd
def read_all(fd):
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
def wait_for(path):
    for _ in range(2000):
        if os.path.exists(path):
            return
        time.sleep(0.01)
    sys.exit("never saw " + path)
"#;

/// Runs `backstop run -p backstop.yaml` on a pty, waits for a step's `[y/N]` prompt,
/// types `keys` (a Python bytes literal's body: `n\n`, `\x03`), and returns what the
/// terminal showed, after a line `exit N`.
pub(crate) fn answer_prompt(test: &Test, keys: &str) -> String {
    act_then_answer(test, "", keys)
}

/// As [`answer_prompt`], running the python code `act` (a user's edits, say) once the
/// prompt is up and before the keys are typed.
pub(crate) fn act_then_answer(test: &Test, act: &str, keys: &str) -> String {
    at_prompts(test, &[(act, keys)])
}

/// Runs `backstop run -p backstop.yaml` on a pty. At the n-th `[y/N]` prompt it runs
/// the python code `prompts[n].0`, then types `prompts[n].1` (a Python bytes
/// literal's body: `y\n`, `\x03`). Returns what the terminal showed, after a line
/// `exit N`.
pub(crate) fn at_prompts(test: &Test, prompts: &[(&str, &str)]) -> String {
    let mut script =
        format!("{PTY}\npid, fd = start(\"run\", \"-p\", policy)\nseen = b\"\"\nasked = 0\n");
    for (act, keys) in prompts {
        script.push_str(&format!(
            r#"
asked += 1
while seen.count(b"[y/N]") < asked:
    chunk = os.read(fd, 4096)
    if not chunk:
        sys.exit("no prompt: " + seen.decode(errors="replace"))
    seen += chunk
{act}
os.write(fd, b"{keys}")
"#
        ));
    }
    script.push_str(
        r#"
text = read_all(fd).decode(errors="replace")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
print(seen.decode(errors="replace") + text)
"#,
    );
    drive(test, &script)
}

#[test]
fn ctrl_z_stops_the_attempt_and_backstop_and_fg_continues_both() {
    // The attempt's 3 s timeout does not run while it is stopped for 4 s.
    let test =
        Test::new().policy("version: 1\ntimeout: { attempt: 3s }\nretry: { max_attempts: 1 }\n");
    let script = format!(
        r#"{PTY}
pid, fd = start("run", "--", "sh", "-c", 'touch "$OUT/started"; sleep 1; echo finished >> "$OUT/log"')
wait_for(os.path.join(out, "started"))
time.sleep(0.2)
os.write(fd, b"\x1a")
_, status = os.waitpid(pid, os.WUNTRACED)
print("stopped", os.WIFSTOPPED(status))
print("terminal back to backstop", os.tcgetpgrp(fd) == pid)
time.sleep(4)
os.killpg(pid, signal.SIGCONT)
text = read_all(fd).decode(errors="replace")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
print(text)
"#
    );
    let said = drive(&test, &script);
    assert!(said.contains("stopped True"), "{said}");
    assert!(said.contains("terminal back to backstop True"), "{said}");
    assert!(said.contains("exit 0"), "{said}");
    assert_eq!(test.lines("log"), ["finished"], "{said}");
}

#[test]
fn ctrl_c_at_a_steps_prompt_ends_the_run_and_rolls_back_the_earlier_steps() {
    let test = Test::new().policy(
        r#"version: 1
retry: { max_attempts: 1 }
rollback: { to: start }
steps:
  - { name: one, run: "echo one > one.txt" }
  - { name: two, run: "echo two > two.txt", approve: true }
"#,
    );
    let said = answer_prompt(&test, r"\x03");
    assert!(said.contains("exit 130"), "{said}");
    assert!(
        !test.path().join("two.txt").exists(),
        "step two never ran: {said}"
    );
    assert!(
        !test.path().join("one.txt").exists(),
        "step one is rolled back: {said}"
    );
    assert_eq!(test.record()["outcome"]["outcome"], "interrupted");
}

/// Answering no at a step's prompt is not success: the task did not do what it was
/// asked to. The run fails with 1 and is rolled back as any failed run.
#[test]
fn a_step_not_approved_fails_the_run_and_rolls_it_back() {
    let test = Test::new().policy(
        r#"version: 1
retry: { max_attempts: 1 }
rollback: { to: start }
steps:
  - { name: one, run: "echo one > one.txt" }
  - { name: two, run: "echo two > two.txt", approve: true }
"#,
    );
    let said = answer_prompt(&test, r"n\n");
    assert!(said.contains("exit 1\n"), "{said}");
    assert!(said.contains("was not approved"), "{said}");
    assert!(!test.path().join("two.txt").exists(), "{said}");
    assert!(
        !test.path().join("one.txt").exists(),
        "step one is rolled back: {said}"
    );
    let record = test.record();
    assert_eq!(record["outcome"]["outcome"], "declined", "{record}");
    assert_eq!(record["outcome"]["exit_code"], 1, "{record}");
    assert!(
        record["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("not approved at the prompt of step `two`"),
        "{record}"
    );
}
