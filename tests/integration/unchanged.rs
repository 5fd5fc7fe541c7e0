//! Issue 10, part 3: a run whose command changes nothing costs a walk, not writes —
//! and the walk (two threads on a tree of a few thousand paths) still sees everything
//! a command changes, and nothing it must leave out.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::Test;

const ONCE: &str = "version: 1\nretry: { max_attempts: 1 }\n";

/// Every file under `dir` with its inode and ctime: a file rewritten in place of
/// another (`write_atomic` renames a new file over it) is a new inode with a new ctime
/// (the inode number alone may be the one just freed).
fn inodes(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                out.push((
                    e.path(),
                    m.ino(),
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The store less the run records, which every run writes (its own record, the
/// `live/` registration of a running run).
fn store_but_records(store: &Path) -> Vec<(PathBuf, u64, i64)> {
    inodes(store)
        .into_iter()
        .filter(|(p, _, _)| {
            !p.components().any(|c| {
                let c = c.as_os_str();
                c == "runs" || c == "live" || c == "locks"
            })
        })
        .collect()
}

#[test]
fn an_unchanged_run_rewrites_no_stat_cache_manifest_or_presence_note() {
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "one\n")
        .write("src/b.rs", "two\n");
    // Past the racy window, so that the stat cache vouches for every file.
    std::thread::sleep(Duration::from_millis(2200));
    // A snapshot, then a first run (which also sets up the repository's records).
    for args in [&["-q", "snapshot"][..], &["-q", "run", "--", "true"]] {
        let ran = out.backstop(args);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
    }
    let store = out.path().parent().unwrap().join("store");
    let before = store_but_records(&store);
    assert!(
        before
            .iter()
            .any(|(p, _, _)| p.ends_with("objects/present")),
        "the presence note exists: {before:?}"
    );
    let ran = out.backstop(&["-q", "run", "--", "true"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(
        store_but_records(&store),
        before,
        "an unchanged run writes nothing to the store but its record"
    );
    let record = out.record();
    assert_eq!(
        record["snapshot"]["before"], record["snapshot"]["after"],
        "and its after-snapshot is its before-snapshot"
    );
}

/// A tree big enough for the walk to take two threads (2,000 paths and more), with
/// what it must leave out: `.git`, an ignored directory, an excluded file.
fn big_tree(test: Test) -> Test {
    let mut test = test
        .write(".gitignore", "/build/\n")
        .write("build/out.o", "ignored\n")
        .write("notes.log", "excluded\n")
        .write(".git/HEAD", "ref: refs/heads/main\n");
    for d in 0..30 {
        for f in 0..80 {
            test = test.write(
                &format!("d{d}/sub{}/deeper/f{f}.txt", f % 4),
                &format!("{d}/{f}\n"),
            );
        }
    }
    test
}

#[test]
fn the_two_thread_walk_sees_every_change_and_leaves_out_what_it_must() {
    let policy =
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { exclude: [\"*.log\"] } }\n";
    let out = big_tree(Test::new().policy(policy));
    // Two runs: the first fills the stat cache (so the second walks on two threads).
    let first = out.backstop(&["-q", "run", "--", "true"]);
    assert_eq!(first.status, 0, "{}", first.stderr);
    let script = "echo edited > d7/sub3/deeper/f11.txt; rm d29/sub0/deeper/f0.txt; \
                  mkdir -p d3/new && echo new > d3/new/n.txt; \
                  echo build > build/out.o; echo log > notes.log; echo git > .git/HEAD; exit 4";
    let ran = out.backstop(&["run", "--", "sh", "-c", script]);
    assert_eq!(ran.status, 4, "{}", ran.stderr);
    let read = |p: &str| fs::read_to_string(out.path().join(p)).ok();
    assert_eq!(read("d7/sub3/deeper/f11.txt").as_deref(), Some("7/11\n"));
    assert_eq!(read("d29/sub0/deeper/f0.txt").as_deref(), Some("29/0\n"));
    assert!(
        !out.path().join("d3/new").exists(),
        "a new directory is removed"
    );
    assert_eq!(
        read("build/out.o").as_deref(),
        Some("build\n"),
        "ignored: left alone"
    );
    assert_eq!(
        read("notes.log").as_deref(),
        Some("log\n"),
        "excluded: left alone"
    );
    assert_eq!(
        read(".git/HEAD").as_deref(),
        Some("git\n"),
        ".git: left alone"
    );
    let changes = out.record()["snapshot"]["changes"].clone();
    let paths: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    for p in [
        "d7/sub3/deeper/f11.txt",
        "d29/sub0/deeper/f0.txt",
        "d3/new",
        "d3/new/n.txt",
    ] {
        assert!(paths.contains(&p), "{p} is in the change set: {paths:?}");
    }
    for p in ["build/out.o", "notes.log", ".git/HEAD"] {
        assert!(!paths.contains(&p), "{p} is not: {paths:?}");
    }
}
