//! Honest history: `runs`, `show` and `undo` name a damaged record and an interrupted
//! put-back instead of leaving them out, and `undo` never guesses between a run id and
//! a path.

use std::path::{Path, PathBuf};

use crate::helpers::{Output, Ran, Test};

/// Runs `script` under backstop in a new sandbox; it must succeed.
fn first_run(script: &str) -> Output {
    Test::new().args(&["run", "--", "sh", "-c", script]).run()
}

#[track_caller]
fn ok(ran: Ran, what: &str) -> Ran {
    assert_eq!(ran.status, 0, "{what} failed: {}", ran.stderr);
    ran
}

/// The newest run's id.
fn newest(out: &Output) -> String {
    out.runs()[0]["id"]
        .as_str()
        .expect("the newest row has an id")
        .to_string()
}

/// Where the store keeps run `id`'s record.
fn record_file(out: &Output, id: &str) -> PathBuf {
    let store = out.out_path().with_file_name("store").join("trees");
    let name = format!("{id}.json");
    for tree in std::fs::read_dir(&store)
        .expect("the store has trees")
        .flatten()
    {
        let file = tree.path().join("runs").join(&name);
        if file.exists() {
            return file;
        }
    }
    panic!("no record file {name} under {}", store.display());
}

fn read(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(root.join(name)).ok()
}

#[test]
fn undo_refuses_to_skip_a_damaged_newest_record_and_names_it() {
    let out = first_run("echo a > a.txt");
    let older = newest(&out);
    ok(
        out.backstop(&["run", "--", "sh", "-c", "echo b > b.txt"]),
        "run",
    );
    let damaged = record_file(&out, &newest(&out));
    std::fs::write(&damaged, "{\"id\": \"trunc").expect("damage the record");

    let ran = out.backstop(&["undo"]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&damaged.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&older),
        "says which run is readable: {}",
        ran.stderr
    );
    // Nothing was undone: not the damaged run, and not the older one in its place.
    assert_eq!(read(&out.path(), "a.txt").as_deref(), Some("a\n"));
    assert_eq!(read(&out.path(), "b.txt").as_deref(), Some("b\n"));

    // Named explicitly, the older run is still undone.
    ok(out.backstop(&["undo", &older]), "undo of the older run");
    assert_eq!(read(&out.path(), "a.txt"), None);
}

#[test]
fn runs_and_show_name_a_damaged_record() {
    let out = first_run("echo a > a.txt");
    let id = newest(&out);
    let damaged = record_file(&out, &id);
    std::fs::write(&damaged, "not json").expect("damage the record");
    let file = damaged.display().to_string();

    let ran = ok(out.backstop(&["runs"]), "runs");
    assert!(
        ran.stdout.contains(&id) && ran.stdout.contains("damaged"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains(&file), "{}", ran.stderr);

    let rows = out.runs();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["state"], "damaged");
    assert_eq!(rows[0]["file"], file.as_str());

    let ran = out.backstop(&["show", &id]);
    assert_eq!(ran.status, 125);
    assert!(
        ran.stderr.contains("damaged") && ran.stderr.contains(&file),
        "{}",
        ran.stderr
    );
}

#[test]
fn runs_and_show_flag_an_interrupted_put_back_until_one_finishes_it() {
    let out = first_run("echo a > a.txt");
    let id = newest(&out);
    let before = out.show(&id)["snapshot"]["before"]
        .as_str()
        .expect("the run has a snapshot")
        .to_string();
    // What a backstop killed in the middle of an undo of no paths leaves behind.
    let journal = record_file(&out, &id)
        .parent()
        .and_then(Path::parent)
        .expect("the tree's store directory")
        .join("journal.json");
    let plan = serde_json::json!({
        "run_id": id, "action": "undo", "target": before, "paths": [], "then": null,
    });
    std::fs::write(&journal, plan.to_string()).expect("write the journal");

    let ran = ok(out.backstop(&["runs"]), "runs");
    let says = format!("the undo of run {id} was interrupted: the tree is half-way");
    assert!(ran.stderr.contains(&says), "{}", ran.stderr);
    let rows = out.runs();
    assert_eq!(rows[0]["interrupted"]["run"], id.as_str(), "{rows:?}");
    assert_eq!(rows[0]["interrupted"]["action"], "undo");
    let ran = ok(out.backstop(&["show", &id]), "show");
    assert!(ran.stdout.contains(&says), "{}", ran.stdout);
    assert_eq!(out.show(&id)["interrupted"]["run"], id.as_str());

    // Any command that recovers finishes it, and the flag goes.
    ok(out.backstop(&["undo", "--dry-run"]), "undo --dry-run");
    assert!(!journal.exists());
    let ran = ok(out.backstop(&["runs"]), "runs");
    assert!(!ran.stderr.contains("interrupted"), "{}", ran.stderr);
    assert!(out.runs()[0]["interrupted"].is_null());
}

/// Two runs: the first creates `other`; then a file named like a prefix of the first
/// run's id is written, and the second run does `second` to it.
fn run_and_path(second: &str) -> (Output, String, String) {
    let out = first_run("echo x > other");
    let id = newest(&out);
    let word = id[..4].to_string();
    std::fs::write(out.path().join(&word), "old\n").expect("write the file");
    let script = format!("{second} {word}");
    ok(
        out.backstop(&["run", "--", "sh", "-c", &script]),
        "second run",
    );
    (out, id, word)
}

#[test]
fn undo_of_a_word_that_is_a_run_and_an_existing_path_is_refused() {
    let (out, id, word) = run_and_path("echo new >");
    let ran = out.backstop(&["undo", &word]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("`{word}` is both a run {id}")),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&format!("backstop undo -- {word}")),
        "{}",
        ran.stderr
    );
    assert_eq!(
        read(&out.path(), &word).as_deref(),
        Some("new\n"),
        "changed anyway"
    );
    assert!(
        out.path().join("other").exists(),
        "the run was undone anyway"
    );

    // After `--`, a path: the latest run's change to it is undone, nothing else.
    ok(out.backstop(&["undo", "--", &word]), "undo -- PATH");
    assert_eq!(read(&out.path(), &word).as_deref(), Some("old\n"));
    assert!(out.path().join("other").exists());

    // Before `--`, a run.
    ok(out.backstop(&["undo", &word, "--"]), "undo RUN --");
    assert!(!out.path().join("other").exists());
}

#[test]
fn undo_of_a_word_that_is_a_run_and_a_path_a_run_deleted_is_refused() {
    let (out, id, word) = run_and_path("rm");
    let ran = out.backstop(&["undo", &word]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("`{word}` is both a run {id}")),
        "{}",
        ran.stderr
    );
    assert!(
        out.path().join("other").exists(),
        "the run was undone anyway"
    );

    ok(out.backstop(&["undo", "--", &word]), "undo -- PATH");
    assert_eq!(read(&out.path(), &word).as_deref(), Some("old\n"));
    assert!(out.path().join("other").exists());
}

// ------------------------------------------- undo and redo path by path, and crashes

use std::fs;
use std::os::unix::process::ExitStatusExt;

use super::undo::{Sandbox, code, oracle, stderr};

const ONE_TRY: &str = "version: 1\nretry: { max_attempts: 1 }\n";

/// `a` and `b` as `a1`, `b1`, and a run that makes them `a2`, `b2`; the tree before
/// and after the run.
fn two_changes(sb: &Sandbox) -> (super::undo::State, super::undo::State) {
    let root = sb.root();
    fs::write(root.join("a"), "a1\n").unwrap();
    fs::write(root.join("b"), "b1\n").unwrap();
    let before = oracle(&root);
    sb.ok(&["run", "--", "sh", "-c", "echo a2 > a; echo b2 > b"]);
    (before, oracle(&root))
}

fn content(sb: &Sandbox, name: &str) -> String {
    fs::read_to_string(sb.root().join(name)).unwrap_or_default()
}

/// The newest run's record, as `show --json` prints it.
fn newest_record(sb: &Sandbox) -> serde_json::Value {
    let runs: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).expect("runs --json");
    let id = runs[0]["id"].as_str().expect("a run").to_string();
    serde_json::from_slice(&sb.ok(&["show", &id, "--json"]).stdout).expect("show --json")
}

/// kill -9 in the middle of `undo -- a` (at its first write to the tree): the next
/// command finishes the undo of `a` and leaves a record that says `a` is undone, so
/// `redo` re-applies it and a later `undo` takes the whole run back without --force.
#[test]
fn kill_9_during_a_partial_undo_leaves_a_record_redo_goes_by() {
    let sb = Sandbox::new();
    let (before, after) = two_changes(&sb);
    let out = sb
        .command(&["undo", "--", "a"])
        .env("BACKSTOP_CRASH_AT", "apply:1")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "killed: {}", stderr(&out));

    // Recovery (by any undo or redo, a dry run too) finishes the undo of `a`, only `a`.
    sb.ok(&["undo", "--dry-run"]);
    assert_eq!(content(&sb, "a"), "a1\n");
    assert_eq!(content(&sb, "b"), "b2\n");
    let snap = &newest_record(&sb)["snapshot"];
    assert_eq!(snap["state"], "applied", "{snap:#}");
    assert_eq!(snap["undone"].as_array().map(Vec::len), Some(1), "{snap:#}");

    let out = sb.run(&["redo"]);
    assert_eq!(code(&out), 0, "redo after the crash: {}", stderr(&out));
    assert_eq!(oracle(&sb.root()), after);
    let out = sb.run(&["undo"]);
    assert_eq!(code(&out), 0, "undo: {}", stderr(&out));
    assert_eq!(oracle(&sb.root()), before);
    assert_eq!(newest_record(&sb)["snapshot"]["state"], "undone");
}

/// The same at every crash point of `undo -- a`, one at a time: whatever the point,
/// after recovery the tree and the record agree — `a` undone and recorded so, or
/// nothing done and nothing recorded — and redo and undo go on from there.
#[test]
fn a_partial_undo_killed_at_any_point_leaves_tree_and_record_agreeing() {
    let mut points = 0;
    for n in 1..100 {
        let sb = Sandbox::new();
        let (before, after) = two_changes(&sb);
        let out = sb
            .command(&["undo", "--", "a"])
            .env("BACKSTOP_CRASH_AT", format!("*:{n}"))
            .output()
            .unwrap();
        if out.status.signal().is_none() {
            assert_eq!(code(&out), 0, "undo -- a: {}", stderr(&out));
            break;
        }
        points += 1;
        sb.ok(&["undo", "--dry-run"]);
        assert_eq!(content(&sb, "b"), "b2\n", "point {n}");
        let undone = content(&sb, "a") == "a1\n";
        let snap = &newest_record(&sb)["snapshot"];
        assert_eq!(
            snap["undone"].as_array().map_or(0, Vec::len),
            usize::from(undone),
            "point {n}: the record disagrees with the tree: {snap:#}"
        );
        let redo = sb.run(&["redo"]);
        if !undone {
            // Killed before the plan was written: nothing happened, nothing to redo.
            assert!(
                stderr(&redo).contains("is not undone"),
                "point {n}: {}",
                stderr(&redo)
            );
        } else {
            assert_eq!(code(&redo), 0, "point {n}: redo: {}", stderr(&redo));
        }
        assert_eq!(oracle(&sb.root()), after, "point {n}: after redo");
        let undo = sb.run(&["undo"]);
        assert_eq!(code(&undo), 0, "point {n}: undo: {}", stderr(&undo));
        assert_eq!(oracle(&sb.root()), before, "point {n}: after undo");
    }
    assert!(points >= 3, "only {points} crash point(s) in `undo -- a`");
}

/// A path undone already is not undone again (which would call the undo's own write
/// a later edit), and one not undone is not redone: each says so and names the way.
#[test]
fn undo_and_redo_of_a_path_on_the_other_side_say_where_it_is() {
    let sb = Sandbox::new();
    two_changes(&sb);
    sb.ok(&["undo", "--", "a"]);
    let out = sb.run(&["undo", "--", "a"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("undone already"), "{}", stderr(&out));
    let out = sb.run(&["redo", "--", "b"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("not undone"), "{}", stderr(&out));
    assert_eq!(content(&sb, "a"), "a1\n");
    assert_eq!(content(&sb, "b"), "b2\n");
}

/// A rolled-back run redone in part is as a partly undone one: undo takes back what
/// redo re-applied, and redo re-applies the rest.
#[test]
fn redo_of_some_paths_of_a_rolled_back_run_can_be_undone_and_redone() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("a"), "a1\n").unwrap();
    fs::write(root.join("b"), "b1\n").unwrap();
    let before = oracle(&root);
    let p = sb.policy(ONE_TRY);
    let out = sb.run(&[
        "run",
        "-p",
        &p,
        "--",
        "sh",
        "-c",
        "echo a2 > a; echo b2 > b; exit 1",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(oracle(&root), before, "rolled back");
    sb.ok(&["redo", "--", "a"]);
    assert_eq!(
        (content(&sb, "a"), content(&sb, "b")),
        ("a2\n".into(), "b1\n".into())
    );
    let out = sb.run(&["undo"]);
    assert_eq!(code(&out), 0, "undo after `redo -- a`: {}", stderr(&out));
    assert_eq!(oracle(&root), before);
    sb.ok(&["redo"]);
    assert_eq!(
        (content(&sb, "a"), content(&sb, "b")),
        ("a2\n".into(), "b2\n".into())
    );
}

/// redo refuses to overwrite an edit made since the undo, and says that it is redo,
/// not undo, that would lose it.
#[test]
fn redo_of_a_path_edited_since_the_undo_names_redo() {
    let sb = Sandbox::new();
    two_changes(&sb);
    sb.ok(&["undo"]);
    fs::write(sb.root().join("a"), "USER\n").unwrap();
    let out = sb.run(&["redo"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("redo would lose") && err.contains("  a\n"),
        "{err}"
    );
    assert!(!err.contains("undo would lose"), "{err}");
    assert_eq!(content(&sb, "a"), "USER\n");
}

/// A run backstop was killed in (its result never recorded): plain `undo` refuses,
/// exit 1, naming every path that differs from the state before the run and why;
/// `undo -- PATH` undoes that path, `--force` the rest; `redo` has nothing to re-apply.
#[test]
fn undo_of_a_killed_run_goes_by_named_paths_or_force_only() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("u.txt"), "u\n").unwrap();
    let p = sb.policy(ONE_TRY);
    // Kill backstop at the first crash point after the command has run.
    let mut killed = false;
    for n in 1..200 {
        fs::write(root.join("a.txt"), "orig\n").unwrap();
        let _ = fs::remove_dir_all(sb.file("store"));
        let out = sb
            .command(&["run", "-q", "-p", &p, "--", "sh", "-c", "echo run > a.txt"])
            .env("BACKSTOP_CRASH_AT", format!("*:{n}"))
            .output()
            .unwrap();
        assert!(
            out.status.signal().is_some(),
            "no crash point after the command"
        );
        if content(&sb, "a.txt") == "run\n" {
            killed = true;
            break;
        }
    }
    assert!(killed);
    fs::write(root.join("u.txt"), "USER\n").unwrap();

    let out = sb.run(&["undo"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("result was not recorded"), "{err}");
    assert!(
        err.contains("  a.txt\n") && err.contains("  u.txt\n"),
        "{err}"
    );
    assert_eq!(content(&sb, "a.txt"), "run\n");
    assert_eq!(content(&sb, "u.txt"), "USER\n");

    let out = sb.run(&["redo"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to re-apply"),
        "{}",
        stderr(&out)
    );

    sb.ok(&["undo", "--", "a.txt"]);
    assert_eq!(content(&sb, "a.txt"), "orig\n");
    assert_eq!(content(&sb, "u.txt"), "USER\n");
    // a.txt is undone now: only u.txt is left to name.
    let out = sb.run(&["undo"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("  u.txt\n") && !err.contains("a.txt"), "{err}");

    sb.ok(&["undo", "--force"]);
    assert_eq!(content(&sb, "u.txt"), "u\n");
    assert_eq!(newest_record(&sb)["snapshot"]["state"], "undone");
}

/// An undo that cannot put a path back (its content before the run is damaged in the
/// store) leaves that path on the run's side in the record: the run is not called
/// undone, `redo` re-applies only what was undone, and nothing it did is called an
/// edit made after the run.
#[test]
fn a_path_an_undo_could_not_put_back_stays_on_the_runs_side() {
    let sb = Sandbox::new();
    let (_, after) = two_changes(&sb);
    // The store keeps small contents as they are: find `a`'s before the run.
    let mut damaged = 0;
    for fan in fs::read_dir(sb.file("store").join("objects"))
        .unwrap()
        .flatten()
    {
        for obj in fs::read_dir(fan.path()).into_iter().flatten().flatten() {
            if fs::read(obj.path()).is_ok_and(|c| c == b"a1\n") {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(obj.path(), fs::Permissions::from_mode(0o600)).unwrap();
                fs::write(obj.path(), b"aX\n").unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1, "one object holds a's content before the run");

    let out = sb.run(&["undo"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("incomplete"), "{}", stderr(&out));
    assert_eq!(
        (content(&sb, "a"), content(&sb, "b")),
        ("a2\n".into(), "b1\n".into())
    );
    let snap = &newest_record(&sb)["snapshot"];
    assert_eq!(snap["state"], "applied", "{snap:#}");
    assert_eq!(snap["undone"].as_array().map(Vec::len), Some(1), "{snap:#}");
    let out = sb.run(&["show", newest_record(&sb)["id"].as_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(applied; 1 path(s) undone)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = sb.run(&["redo"]);
    assert_eq!(code(&out), 0, "redo: {}", stderr(&out));
    assert_eq!(oracle(&sb.root()), after);
}

/// Every crash point of a `redo` after `undo -- a`: after recovery the record's undone
/// paths are what the tree shows, and undo and redo go on from there.
#[test]
fn a_redo_of_a_partial_undo_killed_at_any_point_leaves_tree_and_record_agreeing() {
    let mut points = 0;
    for n in 1..100 {
        let sb = Sandbox::new();
        let (before, after) = two_changes(&sb);
        sb.ok(&["undo", "--", "a"]);
        let out = sb
            .command(&["redo"])
            .env("BACKSTOP_CRASH_AT", format!("*:{n}"))
            .output()
            .unwrap();
        if out.status.signal().is_none() {
            assert_eq!(code(&out), 0, "redo: {}", stderr(&out));
            assert_eq!(oracle(&sb.root()), after);
            break;
        }
        points += 1;
        sb.ok(&["undo", "--dry-run"]);
        let redone = content(&sb, "a") == "a2\n";
        let snap = &newest_record(&sb)["snapshot"];
        assert_eq!(
            snap["undone"].as_array().map_or(0, Vec::len),
            usize::from(!redone),
            "point {n}: the record disagrees with the tree: {snap:#}"
        );
        let undo = sb.run(&["undo"]);
        assert_eq!(code(&undo), 0, "point {n}: undo: {}", stderr(&undo));
        assert_eq!(oracle(&sb.root()), before, "point {n}: after undo");
        let redo = sb.run(&["redo"]);
        assert_eq!(code(&redo), 0, "point {n}: redo: {}", stderr(&redo));
        assert_eq!(oracle(&sb.root()), after, "point {n}: after redo");
    }
    assert!(points >= 3, "only {points} crash point(s) in `redo`");
}

/// Two partial undos of one run at once: they take turns, each reads the record the
/// other left, and together they undo the whole run.
#[test]
fn two_partial_undos_at_once_together_undo_the_run() {
    let sb = Sandbox::new();
    let (before, after) = two_changes(&sb);
    let spawn = |path: &str| {
        sb.command(&["undo", "--", path])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "undo -- a: {}", stderr(&a));
    assert_eq!(code(&b), 0, "undo -- b: {}", stderr(&b));
    assert_eq!(oracle(&sb.root()), before);
    assert_eq!(newest_record(&sb)["snapshot"]["state"], "undone");
    sb.ok(&["redo"]);
    assert_eq!(oracle(&sb.root()), after);
}
