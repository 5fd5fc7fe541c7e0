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
