//! Issue 10, part 2: `rollback: { snapshot: false }` runs with retry and fallback
//! only — no snapshot, journal or lock — and `undo`, `runs` and `show` say there is
//! nothing to go back to; `policy explain` warns of a rollback inside a CI workspace
//! that would delete the job's test reports.

use std::path::{Path, PathBuf};

use crate::helpers::Test;

const NO_SNAPSHOT: &str = "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms } }\nrollback: { snapshot: false }\n";

/// Writes a report and a change to a tracked file, then fails: retried once.
const FAILS: &str = "echo '<testsuite failures=\"1\"/>' > report.xml; echo changed > kept; exit 3";

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn store_of(tree: &Path) -> PathBuf {
    tree.parent().expect("the tree has a parent").join("store")
}

fn run_id(record: &serde_json::Value) -> String {
    record["id"].as_str().expect("a run id").to_string()
}

#[test]
fn a_run_without_a_snapshot_retries_and_leaves_the_tree_and_the_store_bare() {
    let out = Test::new()
        .policy(NO_SNAPSHOT)
        .write("kept", "before\n")
        .args(&["run", "--", "sh", "-c", FAILS])
        .status(3)
        .stderr_contains("attempt 1/2 failed: exit 3")
        .stderr_contains("failed: exit 3 after 2 attempts")
        .stderr_lacks("rolled back")
        .stderr_lacks("CI is set")
        .stderr_lacks(" backstop: snapshot")
        .run();
    assert_eq!(
        std::fs::read_to_string(out.path().join("kept")).unwrap(),
        "changed\n"
    );
    assert!(out.path().join("report.xml").exists());
    let record = out.record();
    assert!(record["snapshot"].is_null(), "{record}");
    assert_eq!(record["no_snapshot"], "policy", "{record}");
    // Nothing of layer 3 in the store: no objects, manifests, journal, region lock or
    // registry entry; the run's record (and its tree's name) alone.
    let store = store_of(&out.path());
    for f in files(&store) {
        let record_file = f.starts_with("trees/")
            && (f.ends_with("/tree.json") || (f.contains("/runs/") && f.ends_with(".json")));
        assert!(
            record_file,
            "{f} in the store after a run without a snapshot"
        );
    }
}

#[test]
fn undo_and_redo_of_such_a_run_say_there_is_nothing_to_undo_for_it() {
    let out = Test::new()
        .policy(NO_SNAPSHOT)
        .args(&["run", "--", "sh", "-c", "echo x > made"])
        .run();
    let id = run_id(&out.record());
    for verb in ["undo", "redo"] {
        let ran = out.backstop(&[verb, &id]);
        assert_eq!(ran.status, 125, "{verb}: {}", ran.stderr);
        let want = format!(
            "nothing to {verb} for run {id}: it took no snapshot, as its policy sets `rollback: {{ snapshot: false }}`"
        );
        assert!(ran.stderr.contains(&want), "{verb}: {}", ran.stderr);
    }
    let bare = out.backstop(&["undo"]);
    assert_eq!(bare.status, 125, "{}", bare.stderr);
    assert!(
        bare.stderr.contains(&format!(
            "nothing to undo: the runs recorded for {} took no snapshot of the tree (run {id} took none as its policy sets",
            out.path().canonicalize().unwrap().display()
        )),
        "{}",
        bare.stderr
    );
    assert!(out.path().join("made").exists(), "the run's work stands");
}

#[test]
fn runs_and_show_say_the_run_took_no_snapshot() {
    let out = Test::new()
        .policy(NO_SNAPSHOT)
        .args(&["run", "--", "true"])
        .run();
    let rows = out.runs();
    assert_eq!(rows[0]["no_snapshot"], "policy", "{rows:?}");
    assert!(rows[0]["tree"].is_null(), "{rows:?}");
    let listed = out.backstop(&["runs"]);
    let row = listed.stdout.lines().nth(1).unwrap_or_default();
    assert!(row.contains(" no snapshot "), "{}", listed.stdout);
    let id = run_id(&rows[0]);
    let shown = out.backstop(&["show", &id]);
    assert!(
        shown.stdout.contains(
            "files    no snapshot: its policy sets `rollback: { snapshot: false }`; nothing to undo"
        ),
        "{}",
        shown.stdout
    );
}

#[test]
fn a_bare_undo_passes_over_a_newer_run_without_a_snapshot_and_says_so() {
    let out = Test::new()
        .write("nosnap.yaml", NO_SNAPSHOT)
        .args(&["run", "--", "sh", "-c", "echo one > first"])
        .run();
    let first = run_id(&out.record());
    let second = out.backstop(&[
        "run",
        "-p",
        "nosnap.yaml",
        "--",
        "sh",
        "-c",
        "echo two > second",
    ]);
    assert_eq!(second.status, 0, "{}", second.stderr);
    let second = run_id(&out.runs()[0]);
    let undo = out.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    assert!(
        undo.stderr
            .contains(&format!("undo of run {first} (the latest run with changes in the tree; {second} took no snapshot)")),
        "{}",
        undo.stderr
    );
    assert!(!out.path().join("first").exists());
    assert!(out.path().join("second").exists());
}

#[test]
fn keys_that_need_a_snapshot_are_refused_by_name() {
    for (rollback, key) in [
        ("{ snapshot: false, on: failure }", "rollback.on"),
        (
            "{ snapshot: false, between_attempts: restore }",
            "rollback.between_attempts",
        ),
        ("{ snapshot: false, validate: 'true' }", "rollback.validate"),
        ("{ snapshot: false, to: step }", "rollback.to"),
        (
            "{ snapshot: false, scope: { exclude: [x] } }",
            "rollback.scope",
        ),
    ] {
        Test::new()
            .policy(&format!("version: 1\nrollback: {rollback}\n"))
            .args(&["policy", "check", "backstop.yaml"])
            .status(125)
            .stderr_contains(&format!(": {key}: "))
            .stderr_contains("needs a snapshot, and `rollback.snapshot: false` takes none")
            .run();
    }
    // What agrees with it is accepted.
    Test::new()
        .policy("version: 1\nrollback: { snapshot: false, on: never, between_attempts: keep }\n")
        .args(&["policy", "check", "backstop.yaml"])
        .stdout_contains("snapshot: false")
        .stdout_contains("on: never")
        .run();
}

#[test]
fn a_task_without_a_snapshot_takes_no_checkpoints_and_rolls_nothing_back() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\nrollback: { snapshot: false }\nsteps:\n  - { name: a, run: 'echo a > a' }\n  - { name: b, run: 'echo b > b; exit 4' }\n")
        .args(&["run"])
        .status(4)
        .stderr_lacks("rolled back")
        .run();
    assert!(out.path().join("a").exists() && out.path().join("b").exists());
    assert!(out.record()["snapshot"].is_null());
}

#[test]
fn explain_says_there_is_no_rollback() {
    Test::new()
        .policy(NO_SNAPSHOT)
        .args(&["policy", "explain", "backstop.yaml"])
        .stdout_contains("rollback: none (rollback.snapshot: false): no snapshot, journal or lock")
        .run();
}

#[test]
fn the_ci_template_takes_no_snapshot_in_ci_or_not() {
    for ci in ["", "true"] {
        let out = Test::new()
            .env("CI", ci)
            .args(&[
                "run",
                "-p",
                &crate::ci::ci_template(),
                "--",
                "sh",
                "-c",
                "echo '<testsuite/>' > report.xml; exit 2",
            ])
            .status(2)
            .stderr_lacks("rolled back")
            .stderr_lacks("CI is set")
            .run();
        assert!(out.path().join("report.xml").exists(), "CI={ci:?}");
        assert_eq!(out.record()["no_snapshot"], "policy");
    }
}

/// `policy explain` of `yaml` with `var` naming the test's tree as the CI workspace.
fn explain_in_workspace(var: &str, yaml: &str) -> crate::helpers::Output {
    let t = Test::new().policy(yaml);
    let tree = t.path().to_string_lossy().into_owned();
    t.env(var, &tree)
        .env("CI", "true")
        .args(&["policy", "explain", "backstop.yaml"])
        .run()
}

#[test]
fn explain_warns_of_a_rollback_in_a_ci_workspace_that_keeps_reports_in_scope() {
    for var in ["GITHUB_WORKSPACE", "CI_PROJECT_DIR"] {
        let out = explain_in_workspace(var, "version: 1\nrollback: { on: failure }\n");
        let warning = out
            .stdout
            .lines()
            .find(|l| l.starts_with("warning: rollback.scope"))
            .unwrap_or_else(|| panic!("{var}: no warning:\n{}", out.stdout));
        assert!(warning.contains(&format!("lies in ${var}")), "{warning}");
        for path in ["junit.xml", "target/nextest/", "test-results/", "coverage/"] {
            assert!(warning.contains(path), "{path}: {warning}");
        }
        assert!(warning.contains("rollback.scope.exclude"), "{warning}");
    }
}

#[test]
fn explain_does_not_warn_when_reports_are_excluded_or_nothing_rolls_back() {
    let excluded = "version: 1\nrollback:\n  on: failure\n  scope:\n    exclude: ['*.xml', test-results/, build/, target/, coverage, .coverage, lcov.info, playwright-report/]\n";
    for yaml in [
        excluded,
        NO_SNAPSHOT,
        "version: 1\nrollback: { on: never }\n",
        // Under CI a policy without `rollback:` takes no snapshot.
        "version: 1\n",
    ] {
        let out = explain_in_workspace("GITHUB_WORKSPACE", yaml);
        assert!(!out.stdout.contains("warning:"), "{yaml}\n{}", out.stdout);
    }
    let t = Test::new();
    let tree = t.path().to_string_lossy().into_owned();
    let out = t
        .env("GITHUB_WORKSPACE", &tree)
        .env("CI", "true")
        .args(&["policy", "explain", &crate::ci::ci_template()])
        .run();
    assert!(!out.stdout.contains("warning:"), "{}", out.stdout);
}

#[test]
fn explain_warns_only_when_the_scope_and_the_workspace_overlap() {
    let out = Test::new()
        .policy("version: 1\nrollback: { on: failure }\n")
        .env("GITHUB_WORKSPACE", "/")
        .env("CI", "true")
        .args(&["policy", "explain", "backstop.yaml"])
        .run();
    // `/` holds every tree: the rule is overlap, so this warns; a sibling does not.
    assert!(
        out.stdout.contains("warning: rollback.scope"),
        "{}",
        out.stdout
    );
    let t = Test::new().policy("version: 1\nrollback: { on: failure }\n");
    let sibling = t.out_path().to_string_lossy().into_owned();
    let out = t
        .env("GITHUB_WORKSPACE", &sibling)
        .env("CI", "true")
        .args(&["policy", "explain", "backstop.yaml"])
        .run();
    assert!(!out.stdout.contains("warning:"), "{}", out.stdout);
}

/// A run without a snapshot holds no region, but it is registered as alive: `runs`
/// says it is running, and `gc --keep 0` leaves its record alone until it ends.
#[test]
fn a_running_run_without_a_snapshot_is_known_to_be_running_and_kept_by_gc() {
    let test = Test::new().policy(NO_SNAPSHOT);
    let paused = crate::helpers::Paused::start(&test, "true", "true");
    let runs = test.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "running", "{runs:?}");
    let gc = test.backstop(&["gc", "--keep", "0"]);
    assert_eq!(gc.status, 0, "{}", gc.stderr);
    assert_eq!(test.runs().len(), 1, "gc dropped a live run's record");
    let (code, stderr) = paused.resume();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(test.runs()[0]["state"], "succeeded");
}
