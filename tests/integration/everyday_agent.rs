//! The agent runner's everyday (issue 15): a bare `undo` takes the latest run whose
//! changes are still in the tree and says which; `runs` shows where the tree stands
//! with each run; a declined step is its own outcome; `show` names a task's steps.

use std::process::Command;

use crate::call::{Server, ok, policy};
use crate::helpers::{Ran, Test};
use crate::job_control::answer_prompt;

#[track_caller]
fn ok_ran(ran: Ran, what: &str) -> Ran {
    assert_eq!(ran.status, 0, "{what} failed: {}", ran.stderr);
    ran
}

/// The ids of the runs, newest first.
fn ids(test: &crate::helpers::Output) -> Vec<String> {
    test.runs()
        .iter()
        .map(|r| r["id"].as_str().expect("a row has an id").to_string())
        .collect()
}

/// `undo` then another run: a bare `redo` re-applies the undone run, not the newer
/// one whose changes are in the tree, and says which it took.
#[test]
fn a_bare_redo_takes_the_latest_run_with_changes_out_of_the_tree() {
    let out = Test::new()
        .args(&["run", "--", "sh", "-c", "echo a > a.txt"])
        .run();
    ok_ran(out.backstop(&["undo"]), "undo");
    assert!(!out.path().join("a.txt").exists());
    ok_ran(
        out.backstop(&["run", "--", "sh", "-c", "echo b > b.txt"]),
        "second run",
    );
    let runs = ids(&out);
    let (newer, older) = (&runs[0], &runs[1]);
    let redo = ok_ran(out.backstop(&["redo"]), "redo");
    assert!(
        redo.stderr.contains(&format!(
            "redo of run {older} (the latest run with changes undone or rolled back; {newer} is applied)"
        )),
        "{}",
        redo.stderr
    );
    assert!(
        out.path().join("a.txt").exists(),
        "the undone run is redone"
    );
    assert!(out.path().join("b.txt").exists());
    // Nothing is out of the tree now: redo goes by the latest and says it is applied.
    let again = out.backstop(&["redo"]);
    assert_eq!(again.status, 125, "{}", again.stderr);
    assert!(again.stderr.contains("is not undone"), "{}", again.stderr);
}

#[test]
fn a_bare_undo_passes_over_a_rolled_back_run_to_the_latest_one_with_changes_in_the_tree() {
    let out = Test::new()
        .args(&["run", "--", "sh", "-c", "echo a > a.txt"])
        .run();
    let failed = out.backstop(&["run", "--", "sh", "-c", "echo b > b.txt; exit 1"]);
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    assert!(
        !out.path().join("b.txt").exists(),
        "the failed run is rolled back"
    );
    let runs = ids(&out);
    let (newer, older) = (&runs[0], &runs[1]);

    assert!(
        out.path().join("a.txt").exists(),
        "the older run's change stands"
    );
    let undo = ok_ran(out.backstop(&["undo"]), "undo");
    assert!(
        undo.stderr.contains(&format!(
            "undo of run {older} (the latest run with changes in the tree; {newer} was rolled back)"
        )),
        "{}",
        undo.stderr
    );
    assert!(
        !out.path().join("a.txt").exists(),
        "the older run is undone"
    );
    // Nothing is left in the tree now: the refusal names the latest run's state.
    let again = out.backstop(&["undo"]);
    assert_eq!(again.status, 125, "{}", again.stderr);
    assert!(again.stderr.contains("rolled back"), "{}", again.stderr);
}

#[test]
fn runs_shows_where_the_tree_stands_with_each_run() {
    let out = Test::new()
        .args(&["run", "--", "sh", "-c", "echo a > a.txt"])
        .run();
    ok_ran(
        out.backstop(&["run", "--", "sh", "-c", "echo c > c1; echo c > c2"]),
        "run c",
    );
    ok_ran(out.backstop(&["run", "--", "true"]), "run true");
    let failed = out.backstop(&["run", "--", "sh", "-c", "echo b > b.txt; exit 1"]);
    assert_eq!(failed.status, 1, "{}", failed.stderr);
    let runs = ids(&out);
    ok_ran(out.backstop(&["undo", &runs[3]]), "undo a");
    ok_ran(out.backstop(&["undo", &runs[2], "--", "c1"]), "undo c1");

    let trees: Vec<String> = out
        .runs()
        .iter()
        .map(|r| r["tree"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        trees,
        ["rolled-back", "applied", "partly-undone", "undone"],
        "runs --json tree"
    );
    let text = ok_ran(out.backstop(&["runs"]), "runs").stdout;
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.contains("STATE") && header.contains("TREE"),
        "{text}"
    );
    for (id, tree) in runs.iter().zip(&trees) {
        let line = text
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("no row for {id}: {text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[3], tree.as_str(), "{line}");
    }
}

#[test]
fn undo_in_a_directory_with_only_call_runs_says_there_is_nothing_to_undo() {
    let server = Server::start(vec![ok("the answer")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("models.yaml");
    std::fs::write(&p, policy(&server.url(), "openai", "")).expect("write policy");
    let backstop = |args: &[&str]| {
        Command::new(crate::helpers::BIN)
            .args(args)
            .current_dir(dir.path())
            .env("BACKSTOP_HOME", dir.path().join("store"))
            .env("TEST_API_KEY", crate::call::KEY)
            .env("NO_COLOR", "1")
            .output()
            .expect("run backstop")
    };
    let call = backstop(&["call", "-p", p.to_str().expect("utf-8 path"), "x"]);
    assert_eq!(call.status.code(), Some(0), "{call:?}");

    let undo = backstop(&["undo"]);
    let err = String::from_utf8_lossy(&undo.stderr);
    assert_eq!(undo.status.code(), Some(125), "{err}");
    assert!(err.contains("nothing to undo"), "{err}");
    assert!(!err.contains("no runs recorded"), "{err}");

    let runs = backstop(&["runs", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs --json");
    assert_eq!(rows[0]["tree"], serde_json::Value::Null, "{rows}");
    let text = backstop(&["runs"]);
    let text = String::from_utf8_lossy(&text.stdout);
    let row = text.lines().nth(1).unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(3), Some("-"), "{text}");
}

/// With the default `rollback.to: step`, a declined step keeps the steps done before
/// it; the run is recorded as declined and exits 1.
#[test]
fn a_declined_step_is_recorded_as_declined_and_show_says_what_remains() {
    let test = Test::new().policy(
        r#"version: 1
retry: { max_attempts: 1 }
steps:
  - { name: one, run: "echo one > one.txt" }
  - { name: two, run: "echo two > two.txt", approve: true }
  - { name: three, run: "echo three > three.txt" }
"#,
    );
    let said = answer_prompt(&test, r"n\n");
    assert!(said.contains("exit 1\n"), "{said}");
    assert!(
        said.contains("declined: not approved at the prompt of step `two`"),
        "{said}"
    );
    assert!(test.path().join("one.txt").exists(), "to: step keeps one");
    assert!(!test.path().join("two.txt").exists(), "{said}");
    let record = test.record();
    assert_eq!(record["outcome"]["outcome"], "declined", "{record}");
    assert_eq!(record["outcome"]["exit_code"], 1, "{record}");
    assert_eq!(test.runs()[0]["state"], "declined");

    let show = ok_ran(test.backstop(&["show"]), "show").stdout;
    assert!(show.contains("\nsteps\n"), "{show}");
    let line = |name: &str| {
        show.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no step {name}: {show}"))
            .to_string()
    };
    assert!(line("one").contains("succeeded (exit 0)"), "{show}");
    assert!(line("two").contains("declined (exit 1)"), "{show}");
    assert!(line("three").contains("not reached"), "{show}");
    assert!(
        show.contains("the changes of step(s) `one` remain in the tree; step `two` did not run"),
        "{show}"
    );
}

#[test]
fn show_says_which_steps_changes_remain_after_a_failed_step_goes_back_to_its_checkpoint() {
    let out = Test::new()
        .policy(
            r#"version: 1
retry: { max_attempts: 1 }
rollback: { to: step }
steps:
  - { name: one, run: "echo one > one.txt" }
  - { name: two, run: "echo two > two.txt" }
  - { name: three, run: "echo three > three.txt; exit 3" }
"#,
        )
        .args(&["run"])
        .status(3)
        .run();
    assert!(out.path().join("one.txt").exists() && out.path().join("two.txt").exists());
    assert!(!out.path().join("three.txt").exists());
    let show = ok_ran(out.backstop(&["show"]), "show").stdout;
    assert!(show.contains("1/3  one"), "{show}");
    assert!(show.contains("3/3  three"), "{show}");
    assert!(
        show.contains(
            "the changes of step(s) `one`, `two` remain in the tree; step `three`'s were put back"
        ),
        "{show}"
    );
}

/// From `src/` of a checkout, a failed run that edited `../README.md` is rolled back
/// there too: the scope is the repository's root by default, and the message names it.
#[test]
fn the_default_scope_is_the_repository_root_and_the_rollback_names_it() {
    let t = Test::new()
        .write("README.md", "readme\n")
        .write("src/main.c", "int main;\n");
    std::fs::create_dir(t.path().join(".git")).expect("make .git");
    let ran = t.backstop_in(
        "src",
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo edit >> ../README.md; echo edit >> main.c; exit 1",
        ],
    );
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(t.path().join("README.md")).expect("README.md"),
        "readme\n",
        "{}",
        ran.stderr
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("src/main.c")).expect("main.c"),
        "int main;\n"
    );
    let root = t.path().canonicalize().expect("canonical root");
    assert!(
        ran.stderr
            .contains(&format!("before the run, under {}", root.display())),
        "{}",
        ran.stderr
    );
    // `root: "."` keeps a run to the directory it starts in.
    std::fs::write(
        t.out_path().join("here.yaml"),
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { root: \".\" } }\n",
    )
    .expect("write policy");
    let policy = t.out_path().join("here.yaml");
    let ran = t.backstop_in(
        "src",
        &[
            "run",
            "-p",
            policy.to_str().expect("utf-8 path"),
            "--",
            "sh",
            "-c",
            "echo edit >> ../README.md; exit 1",
        ],
    );
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(t.path().join("README.md")).expect("README.md"),
        "readme\nedit\n",
        "outside the scope"
    );
}
