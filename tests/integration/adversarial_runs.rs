//! A hostile user's runs: signals at every phase, names and arguments that hold
//! control bytes, reports read by a reader that goes away, and runs that race.

use std::fs;

use crate::undo::{Sandbox, code, stderr};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// No raw control byte (an escape, a newline inside a line) in what people read.
#[track_caller]
fn no_raw_escape(what: &str, out: &str) {
    assert!(
        !out.contains('\x1b'),
        "{what} printed a raw escape byte: {out:?}"
    );
}

#[test]
fn a_command_not_found_whose_name_holds_an_escape_is_quoted_on_stderr_and_in_show() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--", "no\n\x1b[31mcmd"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let err = stderr(&out);
    no_raw_escape("run's stderr", &err);
    assert!(
        !err.lines()
            .any(|l| l.starts_with("\x1b") || l.starts_with("[31m")),
        "a name's newline forged a line: {err:?}"
    );
    assert!(err.contains(r#""no\n\033[31mcmd""#), "{err}");
    let shown = text(&sb.ok(&["show"]).stdout);
    no_raw_escape("show", &shown);
    assert!(
        shown
            .lines()
            .filter(|l| l.contains("cmd"))
            .all(|l| l.contains("no")),
        "a name's newline forged a line of show: {shown}"
    );
}

#[test]
fn a_policy_path_that_holds_an_escape_is_quoted_in_errors_explain_and_show() {
    let sb = Sandbox::new();
    let good = sb.file("p\n\x1b[31m.yaml");
    fs::write(&good, "version: 1\nretry: {max_attempts: 1}\n").unwrap();
    let good = good.to_str().unwrap();
    let bad = sb.file("q\n\x1b[31m.yaml");
    fs::write(&bad, "version: 1\nretry: {max_attempts: x}\n").unwrap();
    let bad = bad.to_str().unwrap();

    let out = sb.run(&["run", "-p", bad, "--", "true"]);
    assert_eq!(code(&out), 125);
    no_raw_escape("a policy error", &stderr(&out));
    assert!(
        stderr(&out).contains(r#"q\n\033[31m.yaml""#),
        "{}",
        stderr(&out)
    );

    for args in [["policy", "explain", good], ["policy", "check", good]] {
        let out = sb.ok(&args);
        no_raw_escape(&format!("{args:?}"), &text(&out.stdout));
    }
    sb.ok(&["run", "-p", good, "--", "true"]);
    let shown = text(&sb.ok(&["show"]).stdout);
    no_raw_escape("show", &shown);
    assert!(shown.contains(r#"policy   "/"#), "{shown}");
}

#[test]
fn a_step_name_that_holds_an_escape_is_refused_at_load_before_anything_runs() {
    let sb = Sandbox::new();
    let p = sb.policy(
        "version: 1\nsteps:\n  - { name: \"o\\n\\e[31mne\", run: [\"sh\", \"-c\", \"echo ran > ran\"] }\n",
    );
    let out = sb.run(&["run", "-p", &p]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let err = stderr(&out);
    no_raw_escape("run's stderr", &err);
    assert!(err.contains("steps[0].name"), "{err}");
    assert!(!sb.root().join("ran").exists(), "the step ran");
    let out = sb.run(&["policy", "check", &p]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
}

/// A stray file in the store named with an escape (a damaged record, as far as
/// backstop can tell) and a path argument that holds one.
#[test]
fn names_from_the_store_and_from_arguments_are_quoted_in_runs_fsck_gc_and_undo() {
    let sb = Sandbox::new();
    sb.ok(&["-q", "run", "--", "sh", "-c", "echo 1 > f"]);
    let runs = sb.file("store").join("trees");
    let tree = fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    fs::write(tree.join("runs").join("ff\x1b[2J.json"), "{\"id\": \"zz\n").unwrap();

    for args in [
        &["runs"][..],
        &["fsck"],
        &["gc"],
        &["undo"],
        &["show"],
        &["undo", "--", "no\n\x1b[31mpath"],
    ] {
        let out = sb.run(args);
        no_raw_escape(&format!("{args:?} stdout"), &text(&out.stdout));
        no_raw_escape(&format!("{args:?} stderr"), &stderr(&out));
    }
    // JSON keeps the name, escaped as JSON does.
    let doc: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    assert!(
        doc.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "ff\x1b[2J"),
        "{doc}"
    );
}

/// The terminal goes away (its window closed) while a step's approval prompt waits:
/// backstop gets SIGHUP and its stderr now fails with EIO. It must end as SIGHUP says
/// (129), never panic (101) on a message it can no longer print.
#[test]
fn a_terminal_closed_at_a_steps_prompt_ends_the_run_with_129_not_a_panic() {
    let sb = Sandbox::new();
    let p = sb.policy(
        "version: 1\nsteps:\n  - { name: one, run: [\"sh\", \"-c\", \"echo 1 > s1\"] }\n  - { name: two, run: [\"sh\", \"-c\", \"echo 2 > s2\"], approve: true }\n",
    );
    let script = r#"
import os, pty, sys, time, select, signal
signal.alarm(40)
binary, policy = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "run", "-p", policy])
buf = b""
while b"[y/N]" not in buf:
    r, _, _ = select.select([fd], [], [], 10)
    if not r:
        sys.exit("never saw the prompt: %r" % buf)
    buf += os.read(fd, 4096)
os.close(fd)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"#;
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["60", "python3", "-c", script, crate::helpers::BIN, &p])
        .current_dir(sb.root())
        .env("BACKSTOP_HOME", sb.file("store"))
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text(&out.stdout).trim(), "129", "{}", stderr(&out));
    assert!(!sb.root().join("s2").exists(), "the unapproved step ran");
}

/// Two runs in a directory whose name holds an escape: the second waits, and the
/// line that says so names the directory quoted.
#[test]
fn the_wait_for_another_run_quotes_a_tree_whose_name_holds_an_escape() {
    let sb = Sandbox::new();
    let dir = sb.root().join("t\n\x1b[31m");
    fs::create_dir(&dir).unwrap();
    let mut first = sb.command(&["-q", "run", "--", "sh", "-c", "touch started; sleep 2"]);
    let mut first = first.current_dir(&dir).spawn().unwrap();
    assert!(crate::helpers::eventually(
        std::time::Duration::from_secs(20),
        || dir.join("started").exists()
    ));
    let out = sb
        .command(&["run", "--", "true"])
        .current_dir(&dir)
        .output()
        .unwrap();
    first.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("waiting for another backstop"), "{err}");
    no_raw_escape("the wait message", &err);
}
