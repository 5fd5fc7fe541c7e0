//! Load: many `backstop run`s at once on one store — on separate trees, and on the
//! same tree — all with a retry. Every run must be recorded whole (no torn or missing
//! record), none may fail on a lock, and the store must pass `fsck` afterwards.
//!
//! CI runs a bounded load (24 separate trees and 12 on one tree); the issue's full
//! load is `BACKSTOP_LOAD=full cargo test --test integration load -- --nocapture`
//! (200 and 50), which prints its wall time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_backstop");

/// The first attempt fails and is retried; the second writes the run's own file.
const POLICY: &str = "version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 20ms, jitter: full } }
rollback: { between_attempts: restore }
";
const SCRIPT: &str = r#"echo "$TAG" > "partial-$TAG"; [ "$BACKSTOP_ATTEMPT" -ge 2 ] || exit 1; echo "$TAG" > "done-$TAG""#;

fn sizes() -> (usize, usize) {
    match std::env::var("BACKSTOP_LOAD").as_deref() {
        Ok("full") => (200, 50),
        _ => (24, 12),
    }
}

struct Load {
    dir: tempfile::TempDir,
}

impl Load {
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    fn command(&self, tree: &Path) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(tree)
            .env("BACKSTOP_HOME", self.store())
            .env("NO_COLOR", "1")
            // The tests fix the environment: under CI, backstop takes no snapshot.
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .stdin(Stdio::null());
        cmd
    }

    fn spawn(&self, tree: &Path, tag: &str) -> Child {
        self.command(tree)
            .arg("-q")
            .arg("run")
            .arg("-p")
            .arg(self.policy())
            .args(["--", "sh", "-c", SCRIPT])
            .env("TAG", tag)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backstop")
    }

    fn runs(&self, tree: &Path) -> Vec<Value> {
        let out = self
            .command(tree)
            .args(["runs", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("runs --json is JSON")
    }
}

/// Waits for every child; the failures, each with its stderr.
fn finish(children: Vec<(String, Child)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (tag, child) in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() || err.contains("lock") || err.contains("error") {
            failures.push(format!("{tag}: {:?}: {err}", out.status));
        }
    }
    failures
}

fn check_runs(load: &Load, tree: &Path, expected: usize) {
    let runs = load.runs(tree);
    assert_eq!(
        runs.len(),
        expected,
        "every run is recorded in {}",
        tree.display()
    );
    for r in &runs {
        assert_eq!(r["state"], "succeeded", "{r}");
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(
            r["attempts"], 2,
            "the first attempt failed and was retried: {r}"
        );
    }
}

#[test]
fn many_runs_at_once_on_one_store_are_all_recorded_and_the_store_is_sound() {
    let (separate, same) = sizes();
    let load = Load {
        dir: tempfile::Builder::new()
            .prefix("backstop-load-")
            .tempdir()
            .unwrap(),
    };
    std::fs::write(load.policy(), POLICY).unwrap();
    let trees: Vec<PathBuf> = (0..separate)
        .map(|i| {
            let t = load.dir.path().join(format!("tree-{i}"));
            std::fs::create_dir(&t).unwrap();
            std::fs::write(t.join("kept.txt"), format!("tree {i}\n")).unwrap();
            t
        })
        .collect();
    let shared = load.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("kept.txt"), "shared\n").unwrap();

    let started = Instant::now();
    let mut children = Vec::new();
    for (i, t) in trees.iter().enumerate() {
        children.push((format!("tree-{i}"), load.spawn(t, &format!("t{i}"))));
    }
    for i in 0..same {
        children.push((format!("shared-{i}"), load.spawn(&shared, &format!("s{i}"))));
    }
    let failures = finish(children);
    let wall = started.elapsed();
    eprintln!(
        "load: {separate} runs on separate trees and {same} on one tree, one store: {:.1} s wall, {} failure(s)",
        wall.as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");

    for (i, t) in trees.iter().enumerate() {
        check_runs(&load, t, 1);
        assert_eq!(
            std::fs::read_to_string(t.join(format!("done-t{i}"))).unwrap(),
            format!("t{i}\n")
        );
    }
    check_runs(&load, &shared, same);
    for i in 0..same {
        assert!(
            shared.join(format!("done-s{i}")).exists(),
            "run s{i}'s work stands"
        );
    }

    let fsck = load
        .command(load.dir.path())
        .args(["fsck", "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&fsck.stdout).expect("fsck --json is JSON");
    assert_eq!(fsck.status.code(), Some(0), "{doc}");
    assert_eq!(doc["sound"], true, "{doc}");
}
