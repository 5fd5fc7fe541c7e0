//! What backstop prints about a run: file names that could forge output, names that
//! are not UTF-8, a reader that goes away, `show` of the latest run, and git HEAD
//! through a `.git` file.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::undo::{Sandbox, code};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run that creates a file named with a newline (which would forge a line of
/// `show`), one with a byte that is not UTF-8, and one with a backslash.
fn odd_names_run(sb: &Sandbox) -> String {
    sb.ok(&[
        "-q",
        "run",
        "--",
        "sh",
        "-c",
        r#"printf 1 > "$(printf 'a\nD forged')"; printf 2 > "$(printf 'c\377d')"; printf 3 > 'x\y'"#,
    ]);
    let runs: Value = serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    runs[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn show_quotes_names_as_git_does_so_no_name_forges_a_line() {
    let sb = Sandbox::new();
    let id = odd_names_run(&sb);
    let out = text(&sb.ok(&["show", &id]).stdout);
    assert!(out.contains(r#"  A "a\nD forged"  file"#), "{out}");
    assert!(out.contains(r#"  A "c\377d"  file"#), "{out}");
    assert!(out.contains(r#"  A "x\\y"  file"#), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("D forged")),
        "a name's newline reached the output: {out}"
    );
    // The undo plan and its messages quote the same way.
    let plan = text(&sb.ok(&["undo", "--dry-run"]).stdout);
    assert!(plan.contains(r#""a\nD forged""#), "{plan}");
    assert!(!plan.lines().any(|l| l.starts_with("D forged")), "{plan}");
}

#[test]
fn json_keeps_the_exact_bytes_of_names_that_are_not_utf8() {
    let sb = Sandbox::new();
    let id = odd_names_run(&sb);
    let doc: Value = serde_json::from_slice(&sb.ok(&["show", "--json", &id]).stdout).unwrap();
    let paths: Vec<&Value> = doc["snapshot"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["path"])
        .collect();
    assert!(paths.contains(&&Value::from("a\nD forged")), "{paths:?}");
    assert!(paths.contains(&&Value::from("x\\y")), "{paths:?}");
    let odd = paths
        .iter()
        .find(|p| p.is_object())
        .expect("the non-UTF-8 name is an object");
    assert_eq!(odd["hex"], "63ff64", "{odd}");
    assert_eq!(odd["lossy"], "c\u{fffd}d", "{odd}");
    // And undo --json names it exactly too; undo then removes exactly that file.
    let plan: Value =
        serde_json::from_slice(&sb.ok(&["undo", "--dry-run", "--json"]).stdout).unwrap();
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"]["hex"] == "63ff64"),
        "{plan}"
    );
    sb.ok(&["undo"]);
    assert!(!sb.root().join(OsStr::from_bytes(b"c\xffd")).exists());
}

#[test]
fn a_run_in_a_directory_whose_name_is_not_utf8_is_recorded_and_undone() {
    let sb = Sandbox::new();
    let dir = sb.root().join(OsStr::from_bytes(b"dir\xffx"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("f"), "before").unwrap();
    let run = |args: &[&str]| {
        let mut cmd = sb.command(args);
        cmd.current_dir(&dir);
        cmd.output().unwrap()
    };
    let out = run(&["-q", "run", "--", "sh", "-c", "echo after > f"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = run(&["show"]);
    assert_eq!(code(&shown), 0, "{}", text(&shown.stderr));
    assert!(
        text(&shown.stdout).contains(r#"dir\377x""#),
        "{}",
        text(&shown.stdout)
    );
    let doc: Value = serde_json::from_slice(&run(&["show", "--json"]).stdout).unwrap();
    assert!(
        doc["cwd"]["hex"].as_str().unwrap().ends_with("646972ff78"),
        "{}",
        doc["cwd"]
    );
    let undo = run(&["undo"]);
    assert_eq!(code(&undo), 0, "{}", text(&undo.stderr));
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "before");
}

#[test]
fn show_with_no_run_shows_the_latest() {
    let sb = Sandbox::new();
    sb.ok(&["-q", "run", "--", "true"]);
    let out = sb.run(&["-q", "run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3);
    let runs: Value = serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    let latest = runs[0]["id"].as_str().unwrap();
    let shown = text(&sb.ok(&["show"]).stdout);
    assert!(
        shown.starts_with(&format!("run      {latest}\n")),
        "{shown}"
    );
    let doc: Value = serde_json::from_slice(&sb.ok(&["show", "--json"]).stdout).unwrap();
    assert_eq!(doc["id"], latest);
}

#[test]
fn show_with_no_run_and_no_runs_says_so() {
    let sb = Sandbox::new();
    let out = sb.run(&["show"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("no runs recorded for"),
        "{}",
        text(&out.stderr)
    );
}

/// `backstop ARGS` with its stdout a pipe whose reader is already gone, as in
/// `backstop runs | head -0`: every write fails with EPIPE.
fn to_closed_pipe(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd: Command = sb.command(args);
    cmd.stdout(Stdio::from(writer)).stderr(Stdio::piped());
    cmd.output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let sb = Sandbox::new();
    for _ in 0..3 {
        sb.ok(&["-q", "run", "--", "true"]);
    }
    let policy = sb.policy("version: 1\n");
    for args in [
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["show"],
        vec!["show", "--json"],
        vec!["fsck"],
        vec!["fsck", "--json"],
        vec!["policy", "explain", &policy],
        vec!["policy", "check", &policy],
        vec!["policy", "schema"],
        vec!["completions", "bash"],
    ] {
        let out = to_closed_pipe(&sb, &args);
        assert_eq!(code(&out), 0, "backstop {args:?}: {}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("Broken pipe") && !text(&out.stderr).contains("panicked"),
            "backstop {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn undo_json_to_a_reader_that_went_away_still_undoes() {
    let sb = Sandbox::new();
    fs::write(sb.root().join("f"), "before").unwrap();
    sb.ok(&["-q", "run", "--", "sh", "-c", "echo after > f"]);
    let out = to_closed_pipe(&sb, &["undo", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(sb.root().join("f")).unwrap(), "before");
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

#[test]
fn head_is_read_through_a_dot_git_file_as_in_a_linked_worktree() {
    let sb = Sandbox::new();
    let main = sb.file("main-repo");
    fs::create_dir(&main).unwrap();
    git(&main, &["init", "-q"]);
    fs::write(main.join("f"), "1").unwrap();
    git(&main, &["add", "f"]);
    git(&main, &["commit", "-q", "-m", "one"]);
    // A linked worktree as the tree: its .git is a file, its refs are in the main repo.
    fs::remove_dir(sb.root()).unwrap();
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "side",
            sb.root().to_str().unwrap(),
        ],
    );
    assert!(sb.root().join(".git").is_file());
    sb.ok(&["-q", "run", "--", "sh", "-c", "echo 2 > f"]);
    let doc: Value = serde_json::from_slice(&sb.ok(&["show", "--json"]).stdout).unwrap();
    let head = doc["snapshot"]["head"].as_str().unwrap().to_string();
    assert_eq!(head.len(), 40, "HEAD resolved to a commit: {head}");
    git(&sb.root(), &["commit", "-q", "-am", "two"]);
    let out = sb.ok(&["undo"]);
    assert!(
        text(&out.stderr).contains("HEAD moved since run") && text(&out.stderr).contains(&head),
        "{}",
        text(&out.stderr)
    );
}

/// A checked-out tree may hold anything named `.git/HEAD`: a huge one is not read
/// whole (nor copied into the record), and the run goes on without a HEAD.
#[test]
fn a_huge_head_file_is_not_read_into_the_record() {
    let sb = Sandbox::new();
    fs::create_dir(sb.root().join(".git")).unwrap();
    let head = fs::File::create(sb.root().join(".git/HEAD")).unwrap();
    // Sparse: a gibibyte of NULs (valid UTF-8) that costs no disk.
    head.set_len(1 << 30).unwrap();
    sb.ok(&["-q", "run", "--", "true"]);
    let doc: Value = serde_json::from_slice(&sb.ok(&["show", "--json"]).stdout).unwrap();
    assert!(
        doc["snapshot"]["head"].is_null(),
        "head: {:.80}",
        doc["snapshot"]["head"]
    );
}
