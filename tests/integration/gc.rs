//! Reachability: gc never deletes what a live or recorded run may still restore
//! from, stops (deleting nothing) at anything it cannot read, and tells a live run by
//! its lock, not by a pid that may belong to someone else.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Test, eventually, wait_bounded};

/// Every named object in the store (`objects/ab/cdef…`), sorted.
fn objects(t: &Test) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let dir = store(t).join("objects");
    for fan in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = fan.file_name();
        if name.len() != 2 || !fan.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

fn store(t: &Test) -> PathBuf {
    t.path().parent().expect("the sandbox").join("store")
}

/// The store directory of the tree the sandbox runs in (`trees/<key>`).
fn tree_dir(t: &Test, id: &str) -> PathBuf {
    for tree in std::fs::read_dir(store(t).join("trees"))
        .expect("trees")
        .flatten()
    {
        if tree.path().join("runs").join(format!("{id}.json")).exists() {
            return tree.path();
        }
    }
    panic!("no tree in the store has run {id}");
}

fn run_ids(t: &Test) -> Vec<String> {
    t.runs()
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

/// `backstop ARGS` in `dir` with the sandbox's store, to the end.
fn backstop_in(t: &Test, dir: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = t.command();
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    finish(cmd.spawn().expect("spawn backstop"))
}

fn finish(mut child: Child) -> (i32, String) {
    use std::io::Read;
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = pipe.read_to_string(&mut err);
        err
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    (status, reader.join().unwrap_or_default())
}

const STEPS: &str = r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms } }
rollback: { between_attempts: restore }
steps:
  - { name: one, run: "echo one > one.txt" }
  - name: two
    run: |
      echo x >> "$OUT/attempts"; n=$(wc -l < "$OUT/attempts")
      if [ "$n" -eq 4 ]; then cp one.txt "$OUT/seen"; exit 0; fi
      echo "changed $n" > one.txt
      if [ "$n" -eq 3 ]; then
        touch "$OUT/ready"; i=0
        while [ ! -e "$OUT/gc-done" ]; do i=$((i+1)); [ $i -gt 400 ] && exit 9; sleep 0.05; done
      fi
      exit 1
"#;

#[test]
fn gc_from_another_directory_during_a_step_keeps_the_steps_checkpoint() {
    // Attempts 2 and 3 of step two change what step one wrote, and fail: each is put
    // back to the checkpoint before step two. After the first restore nothing but
    // the run names that checkpoint; gc runs (from elsewhere) during the second.
    let t = Test::new().policy(STEPS);
    // The first line of "attempts" is step one's: step two counts from 2.
    std::fs::write(t.out_path().join("attempts"), "step-one\n").expect("seed the counter");
    let mut cmd = t.command();
    cmd.args(["run", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let run = cmd.spawn().expect("spawn the run");
    assert!(
        eventually(Duration::from_secs(30), || t.exists("ready")),
        "step two never reached its second attempt"
    );
    let elsewhere = t.out_path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("another directory");
    let (gc_code, gc_err) = backstop_in(&t, &elsewhere, &["gc"]);
    std::fs::write(t.out_path().join("gc-done"), "").expect("let the step go on");
    let (code, err) = finish(run);
    assert_eq!(gc_code, 0, "gc failed: {gc_err}");
    assert_eq!(code, 0, "the run failed after gc: {err}");
    assert_eq!(
        t.read("seen"),
        "one\n",
        "the retry did not start from step one's work"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("one.txt")).unwrap_or_default(),
        "one\n"
    );
}

/// Two runs, so that `gc --keep 0` would remove records and objects.
fn two_runs() -> (Test, Vec<String>) {
    let t = Test::new();
    for content in ["a", "b"] {
        let ran = t.backstop(&[
            "-q",
            "run",
            "--",
            "sh",
            "-c",
            &format!("echo {content} > f"),
        ]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
    }
    let ids = run_ids(&t);
    assert_eq!(ids.len(), 2);
    (t, ids)
}

#[track_caller]
fn assert_gc_refuses(t: &Test, naming: &Path) {
    let before = objects(t);
    let ran = t.backstop(&["gc", "--keep", "0"]);
    assert_eq!(ran.status, 125, "gc did not refuse: {}", ran.stderr);
    assert!(
        ran.stderr.contains(&naming.display().to_string()),
        "gc did not name {}: {}",
        naming.display(),
        ran.stderr
    );
    assert!(ran.stderr.contains("backstop fsck"), "{}", ran.stderr);
    assert_eq!(objects(t), before, "gc deleted objects before refusing");
}

#[test]
fn gc_refuses_to_delete_anything_past_a_record_it_cannot_read() {
    let (t, ids) = two_runs();
    let bad = tree_dir(&t, &ids[1])
        .join("runs")
        .join(format!("{}.json", ids[1]));
    std::fs::write(&bad, "{ not a record").expect("damage the record");
    assert_gc_refuses(&t, &bad);
    assert!(
        tree_dir(&t, &ids[0])
            .join("runs")
            .join(format!("{}.json", ids[0]))
            .exists(),
        "gc dropped a readable record before refusing"
    );
}

#[test]
fn gc_refuses_to_delete_anything_past_another_trees_journal_it_cannot_read() {
    let (t, _) = two_runs();
    // A second tree in the same store, whose put-back was interrupted and whose
    // journal is damaged.
    let other = t.out_path().join("other");
    std::fs::create_dir(&other).expect("another tree");
    std::fs::write(other.join("g"), "other\n").expect("a file there");
    let (code, err) = backstop_in(&t, &other, &["-q", "run", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let other_tree = std::fs::read_dir(store(&t).join("trees"))
        .expect("trees")
        .flatten()
        .map(|d| d.path())
        .find(|d| std::fs::read_to_string(d.join("tree.json")).is_ok_and(|s| s.contains("other")))
        .expect("the other tree's store");
    let journal = other_tree.join("journal.json");
    std::fs::write(&journal, "{ half a jour").expect("damage the journal");
    assert_gc_refuses(&t, &journal);
}

#[test]
fn liveness_is_the_runs_lock_not_a_pid_and_gc_never_drops_a_live_run() {
    let (t, ids) = two_runs();
    // A record that says "running" with a pid that is alive (this test's) but is not
    // a backstop running it.
    let fake = tree_dir(&t, &ids[0])
        .join("runs")
        .join(format!("{}.json", ids[0]));
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(&fake).expect("read the record"))
            .expect("a record is JSON");
    record["status"] = "running".into();
    record["outcome"] = Value::Null;
    record["finished_at"] = Value::Null;
    record["pid"] = std::process::id().into();
    std::fs::write(&fake, serde_json::to_vec_pretty(&record).expect("JSON"))
        .expect("write the record");
    let state = |t: &Test, id: &str| {
        t.runs()
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["state"].as_str().map(str::to_string))
    };
    assert_eq!(state(&t, &ids[0]).as_deref(), Some("unfinished"));

    // A run that really is live.
    let mut cmd = t.command();
    cmd.args([
        "-q",
        "run",
        "--",
        "sh",
        "-c",
        "touch $OUT/ready; while [ ! -e $OUT/go ]; do sleep 0.05; done; echo live > live.txt",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let live = cmd.spawn().expect("spawn the live run");
    assert!(
        eventually(Duration::from_secs(20), || t.exists("ready")),
        "the live run never started"
    );
    let live_id = ids_now_minus(&t, &ids);
    assert_eq!(state(&t, &live_id).as_deref(), Some("running"));

    let ran = t.backstop(&["gc", "--keep", "0"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let left = run_ids(&t);
    std::fs::write(t.out_path().join("go"), "").expect("let the live run end");
    let (code, err) = finish(live);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        left,
        std::slice::from_ref(&live_id),
        "gc should drop the dead 'running' record and keep the live run"
    );
    // What the live run needs was kept: it can be undone exactly.
    let ran = t.backstop(&["-q", "undo", &live_id]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(!t.path().join("live.txt").exists());
}

/// The one run id that is not in `old`.
#[track_caller]
fn ids_now_minus(t: &Test, old: &[String]) -> String {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            found = run_ids(t).into_iter().find(|id| !old.contains(id));
            found.is_some()
        }),
        "the new run was never recorded"
    );
    found.unwrap_or_default()
}
