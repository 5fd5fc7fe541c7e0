//! Issue 10, part 1: a git checkout's clean files are recorded by blob id, their blobs
//! kept by linking git's own object files into the store, and every put-back stays
//! byte-exact: after `rm -rf .git`, after `git gc`, with line-ending conversion and
//! with a clean/smudge filter, for racy entries, and with the store on another
//! filesystem. Real git, real files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::Test;

/// git in `dir`, with no user or system configuration but what the test sets.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` (but `.git`) with its bytes and permission bits.
pub(crate) fn files(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(
                    rel,
                    (std::fs::read(&p).unwrap(), m.permissions().mode() & 0o7777),
                );
            }
        }
    }
    out
}

/// A committed checkout in the test's tree: `n` text files in nested directories, an
/// executable, a binary file, an empty one, and a backstop policy that rolls back a
/// failed run at once. Waits past the index's racy window, so the files are clean.
pub(crate) fn checkout(n: usize) -> Test {
    let test = Test::new().policy("version: 1\nretry: { max_attempts: 1 }\n");
    let tree = test.path();
    git(&tree, &["init", "-q"]);
    for i in 0..n {
        let dir = tree.join(format!("src/d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.txt")), format!("line {i}\nsecond\n")).unwrap();
    }
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(tree.join("blob.bin"), [0u8, 1, 2, 255, 254, 13, 10, 0]).unwrap();
    std::fs::write(tree.join("empty"), b"").unwrap();
    // File times strictly before the index is written: not racy.
    std::thread::sleep(Duration::from_millis(50));
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "init"]);
    test
}

/// Every object of the checkout in one pack, as in a fresh clone.
pub(crate) fn pack_all(tree: &Path) {
    git(tree, &["repack", "-adq"]);
    git(tree, &["prune-packed"]);
}

/// Commits `name` holding `content` under the attribute line `attributes`, then
/// checks it out again through them: the file holds what checkout made of the blob.
pub(crate) fn through_attributes(tree: &Path, attributes: &str, name: &str, content: &str) {
    std::fs::write(tree.join(".gitattributes"), format!("{attributes}\n")).unwrap();
    std::fs::write(tree.join(name), content).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    git(tree, &["add", "-A"]);
    git(tree, &["commit", "-qm", "through attributes"]);
    std::fs::remove_file(tree.join(name)).unwrap();
    git(tree, &["checkout", "--", name]);
}

/// A checkout whose `*.secret` files go through rot13 on checkout and on add (a filter
/// that keeps the size), with `name` committed through it: the file holds "Hello
/// World", its blob "Uryyb Jbeyq".
pub(crate) fn rot13_file(tree: &Path, name: &str) {
    for way in ["smudge", "clean"] {
        let key = format!("filter.rot13.{way}");
        git(tree, &["config", &key, "tr a-zA-Z n-za-mN-ZA-M"]);
    }
    through_attributes(tree, "*.secret filter=rot13", name, "Hello World\n");
}

pub(crate) fn snapshot_json(test: &Test) -> Value {
    let ran = test.backstop(&["snapshot", "--json"]);
    assert_eq!(ran.status, 0, "snapshot failed: {}", ran.stderr);
    serde_json::from_str(&ran.stdout).expect("snapshot --json is JSON")
}

/// Past the racy window of the index git last wrote, refreshed as `git status` leaves it.
fn settle(tree: &Path) {
    std::thread::sleep(Duration::from_millis(20));
    git(tree, &["status", "--porcelain"]);
}

/// Snapshots the tree (its `--json` returned), then runs a command that deletes `.git`
/// and `paths` and fails: the rollback must give back every byte and mode.
#[track_caller]
fn snapshot_then_fail_deleting(test: &Test, paths: &str) -> Value {
    let before = files(&test.path());
    let snap = snapshot_json(test);
    let script = format!("rm -rf .git {paths}; exit 1");
    let ran = test.backstop(&["run", "--", "sh", "-c", &script]);
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert_eq!(
        files(&test.path()),
        before,
        "the rollback did not give the tree back"
    );
    snap
}

fn tracked(test: &Test) -> usize {
    git(&test.path(), &["ls-files"]).lines().count()
}

#[test]
fn a_clean_checkout_is_recorded_from_git_without_reading_its_files() {
    let test = checkout(40);
    let tracked = tracked(&test);
    let snap = snapshot_json(&test);
    // backstop.yaml is tracked too (written before `git add`).
    assert_eq!(snap["from_git"], tracked, "{snap}");
    assert_eq!(snap["read"], 0, "{snap}");
    // The blobs are in the store, as links to git's files: none was copied.
    let store = test.path().join("../store/git-objects");
    assert!(store.is_dir(), "no git-objects in the store");
}

#[test]
fn rollback_after_rm_rf_dot_git_puts_every_byte_and_mode_back() {
    let test = checkout(40);
    let before = files(&test.path());
    assert_eq!(snapshot_json(&test)["read"], 0);
    test.backstop(&["run", "--", "sh", "-c", "true"]);
    let ran = test.backstop(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo changed > src/d1/f1.txt; rm src/d2/f2.txt; chmod 644 run.sh; \
         printf 'x' > blob.bin; echo new > new.txt; rm -rf .git src/d3; exit 3",
    ]);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("rolled back"), "{}", ran.stderr);
    assert!(
        !test.path().join(".git").exists(),
        "rollback never puts .git back"
    );
    assert_eq!(files(&test.path()), before, "the tree is not as it was");
}

#[test]
fn undo_after_rm_rf_dot_git_and_git_gc_is_exact() {
    let test = checkout(60);
    let before = files(&test.path());
    let tree = test.path();
    // The objects in a pack, as in a fresh clone; then a run rewrites every file.
    pack_all(&tree);
    settle(&tree);
    assert_eq!(snapshot_json(&test)["read"], 0);
    let ran = test.backstop(&[
        "run",
        "--",
        "sh",
        "-c",
        "for f in $(git ls-files); do echo rewritten >> \"$f\"; done; \
         git add -A && git -c user.name=a -c user.email=a@b commit -qm x && \
         git gc -q --prune=now",
    ]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    std::fs::remove_dir_all(tree.join(".git")).unwrap();
    let ran = test.backstop(&["undo"]);
    assert_eq!(ran.status, 0, "undo failed: {}", ran.stderr);
    assert_eq!(files(&tree), before, "undo did not give the tree back");
}

#[test]
fn touching_a_clean_file_is_not_a_change() {
    let test = checkout(5);
    assert_eq!(snapshot_json(&test)["read"], 0);
    let ran = test.backstop(&["run", "--", "sh", "-c", "touch src/d1/f1.txt run.sh"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let record = test.record();
    let changes = record["snapshot"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        changes.is_empty(),
        "a touch was recorded as a change: {changes:?}"
    );
}

/// An origin with LF text, cloned with core.autocrlf=true: the files hold CRLF, the
/// blobs LF, and git calls them clean. With `unset_after`, the setting is turned off
/// after the checkout: the files still hold CRLF.
fn crlf_checkout(unset_after: bool) {
    let origin = tempfile::tempdir().unwrap();
    git(origin.path(), &["init", "-q"]);
    std::fs::write(origin.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(origin.path().join("no-newline.txt"), "single").unwrap();
    git(origin.path(), &["add", "-A"]);
    git(origin.path(), &["commit", "-qm", "init"]);
    let test = Test::new();
    let tree = test.path();
    std::fs::remove_dir_all(&tree).unwrap();
    git(
        origin.path(),
        &[
            "clone",
            "-q",
            "-c",
            "core.autocrlf=true",
            ".",
            tree.to_str().unwrap(),
        ],
    );
    if unset_after {
        git(&tree, &["config", "core.autocrlf", "false"]);
    }
    std::fs::write(
        tree.join("backstop.yaml"),
        "version: 1\nretry: { max_attempts: 1 }\n",
    )
    .unwrap();
    assert_eq!(
        std::fs::read(tree.join("a.txt")).unwrap(),
        b"one\r\ntwo\r\nthree\r\n"
    );
    settle(&tree);
    let snap = snapshot_then_fail_deleting(&test, "*.txt");
    // a.txt differs from its blob: read. no-newline.txt is the same bytes: from git.
    assert_eq!(snap["from_git"], 1, "{snap}");
}

#[test]
fn line_ending_conversion_is_never_taken_from_git() {
    crlf_checkout(false);
}

#[test]
fn line_endings_converted_under_an_earlier_setting_are_never_taken_from_git() {
    crlf_checkout(true);
}

#[test]
fn a_size_preserving_filter_is_never_taken_from_git() {
    // rot13 on checkout: the file and its blob have the same size, different bytes.
    let test = checkout(3);
    let tree = test.path();
    rot13_file(&tree, "plain.secret");
    settle(&tree);
    let snap = snapshot_then_fail_deleting(&test, "plain.secret");
    assert_eq!(snap["read"], 1, "only the filtered file is read: {snap}");
}

#[test]
fn racy_and_restamped_entries_are_read_not_trusted() {
    let test = checkout(3);
    let tree = test.path();
    // An entry whose mtime is not older than the index: racy, whatever its stat says.
    let future = tree.join("src/d0/f0.txt");
    let out = Command::new("touch")
        .args(["-d", "+1 hour"])
        .arg(&future)
        .status()
        .unwrap();
    assert!(out.success());
    git(&tree, &["add", "-A"]);
    // A same-size edit with its mtime put back: the ctime tells.
    let edited = tree.join("src/d1/f1.txt");
    let mtime = std::fs::metadata(&edited).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&edited, "LINE 1\nSECOND\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&edited)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let snap = snapshot_then_fail_deleting(&test, "src");
    assert_eq!(snap["read"], 2, "{snap}");
}

#[test]
fn with_the_store_on_another_filesystem_files_are_copied() {
    let shm = Path::new("/dev/shm");
    let test = checkout(10);
    let same_fs = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(shm).map(|m| m.dev()).ok()
            == Some(std::fs::metadata(test.path()).unwrap().dev())
    };
    if !shm.is_dir() || same_fs {
        eprintln!("SKIPPED: /dev/shm is missing or on the tree's filesystem");
        return;
    }
    let store = tempfile::tempdir_in(shm).unwrap();
    let env = [("BACKSTOP_HOME", store.path().to_str().unwrap())];
    let before = files(&test.path());
    let ran = test.backstop_env(&env, &["snapshot", "--json"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let snap: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(snap["from_git"], 0, "{snap}");
    assert_eq!(snap["read"], tracked(&test), "{snap}");
    let ran = test.backstop_env(&env, &["run", "--", "sh", "-c", "rm -rf .git src; exit 1"]);
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert_eq!(files(&test.path()), before);
}

#[test]
fn gc_keeps_the_blobs_records_name_and_fsck_finds_them_sound() {
    let test = checkout(10);
    let tree = test.path();
    let before = files(&tree);
    let ran = test.backstop(&["run", "--", "sh", "-c", "rm -rf src .git"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let ran = test.backstop(&["gc"]);
    assert_eq!(ran.status, 0, "gc: {}", ran.stderr);
    let ran = test.backstop(&["fsck"]);
    assert_eq!(ran.status, 0, "fsck: {} {}", ran.stdout, ran.stderr);
    let ran = test.backstop(&["undo"]);
    assert_eq!(ran.status, 0, "undo: {}", ran.stderr);
    assert_eq!(files(&tree), before);
}

/// The packs in the store's `git-objects/pack`, by name.
fn store_packs(test: &Test) -> Vec<String> {
    let dir = test.path().join("../store/git-objects/pack");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn gc_removes_the_packs_no_snapshot_needs() {
    let test = checkout(10);
    let tree = test.path();
    pack_all(&tree);
    settle(&tree);
    let ran = test.backstop(&["run", "--", "true"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let first = store_packs(&test);
    assert_eq!(first.len(), 2, "one pack and its index: {first:?}");
    // Another history entirely: the first pack holds nothing the tree has now.
    std::fs::remove_dir_all(tree.join(".git")).unwrap();
    for f in files(&tree).keys() {
        let text = if f == "backstop.yaml" {
            "version: 1 # another history\n".to_string()
        } else {
            format!("other {f}\n")
        };
        std::fs::write(tree.join(f), text).unwrap();
    }
    git(&tree, &["init", "-q"]);
    std::thread::sleep(Duration::from_millis(20));
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "other"]);
    pack_all(&tree);
    settle(&tree);
    let ran = test.backstop(&["run", "--", "true"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(store_packs(&test).len(), 4);
    // With two packs in the store, each blob is still found in the one that has it.
    std::fs::remove_dir_all(test.path().join("../store/trees")).unwrap();
    let tracked = tracked(&test);
    let snap = snapshot_json(&test);
    assert_eq!(snap["from_git"], tracked, "{snap}");
    assert_eq!(snap["read"], 0, "{snap}");
    let ran = test.backstop(&["gc", "--keep", "0"]);
    assert_eq!(ran.status, 0, "gc: {}", ran.stderr);
    let left = store_packs(&test);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|p| !first.contains(p)),
        "the first pack is still there: {left:?}"
    );
    let ran = test.backstop(&["fsck"]);
    assert_eq!(ran.status, 0, "fsck: {} {}", ran.stdout, ran.stderr);
}

#[test]
fn line_endings_from_attributes_are_never_taken_from_git() {
    let test = checkout(3);
    let tree = test.path();
    through_attributes(&tree, "*.md eol=crlf", "notes.md", "a\nb\n");
    assert_eq!(std::fs::read(tree.join("notes.md")).unwrap(), b"a\r\nb\r\n");
    settle(&tree);
    let snap = snapshot_then_fail_deleting(&test, "notes.md");
    assert_eq!(snap["read"], 1, "only notes.md is read: {snap}");
}

#[test]
fn blobs_stored_as_deltas_are_sized_from_their_delta_headers() {
    // Files much alike: git stores most of them as deltas of one another.
    let test = checkout(0);
    let tree = test.path();
    let base: String = (0..400)
        .map(|i| format!("line {i} of a long shared text\n"))
        .collect();
    for i in 0..30 {
        std::fs::write(
            tree.join(format!("v{i}.txt")),
            format!("{base}variant {i}\n"),
        )
        .unwrap();
    }
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "variants"]);
    git(&tree, &["repack", "-adfq", "--depth=50", "--window=50"]);
    git(&tree, &["prune-packed"]);
    let pack = git(&tree, &["rev-parse", "--git-path", "objects/pack"]);
    let idx = std::fs::read_dir(tree.join(pack.trim()))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "idx"))
        .unwrap()
        .path();
    let verify = git(&tree, &["verify-pack", "-v", idx.to_str().unwrap()]);
    let deltas = verify
        .lines()
        .filter(|l| l.contains(" blob ") && l.split_whitespace().count() > 5)
        .count();
    assert!(deltas >= 10, "too few deltas to test: {verify}");
    settle(&tree);
    let tracked = tracked(&test);
    let snap = snapshot_then_fail_deleting(&test, "v*.txt");
    assert_eq!(snap["from_git"], tracked, "{snap}");
    assert_eq!(snap["read"], 0, "{snap}");
}

#[test]
fn undo_and_redo_of_a_branch_switch_are_exact_after_the_repository_is_gone() {
    let test = checkout(12);
    let tree = test.path();
    // Another branch: some files changed, one removed, one added.
    git(&tree, &["checkout", "-qb", "other"]);
    std::fs::write(tree.join("src/d1/f1.txt"), "other branch\n").unwrap();
    std::fs::remove_file(tree.join("src/d2/f2.txt")).unwrap();
    std::fs::write(tree.join("added.txt"), "only on the other branch\n").unwrap();
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-qm", "other"]);
    git(&tree, &["checkout", "-q", "master"]);
    git(&tree, &["repack", "-adq"]);
    settle(&tree);
    let before = files(&tree);
    // The run switches branches: its after-state comes from git too.
    let ran = test.backstop(&[
        "run",
        "--",
        "sh",
        "-c",
        "sleep 0.05; git checkout -q other; sleep 0.05; git status --porcelain",
    ]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let after = files(&tree);
    assert_ne!(before, after);
    std::fs::remove_dir_all(tree.join(".git")).unwrap();
    let ran = test.backstop(&["undo"]);
    assert_eq!(ran.status, 0, "undo: {}", ran.stderr);
    assert_eq!(
        files(&tree),
        before,
        "undo did not give back the first branch"
    );
    let ran = test.backstop(&["redo"]);
    assert_eq!(ran.status, 0, "redo: {}", ran.stderr);
    assert_eq!(
        files(&tree),
        after,
        "redo did not give back the other branch"
    );
}

#[test]
fn kill_9_while_git_objects_are_linked_loses_nothing() {
    // Killed before the pack is linked (one pack: two links) and between the pack and
    // its index: the command never ran, the next run's rollback is exact, gc clears
    // what is left, and a third link is never made.
    let test = checkout(8);
    let tree = test.path();
    pack_all(&tree);
    settle(&tree);
    let before = files(&tree);
    let store = test.path().join("../store");
    // `.git` stays: each round needs the checkout (gone `.git` is tested above).
    let wreck = ["run", "--", "sh", "-c", "rm -rf src; exit 1"];
    for n in 1..=2 {
        let _ = std::fs::remove_dir_all(&store);
        let crashed = test.backstop_env(&[("BACKSTOP_CRASH_AT", &format!("link:{n}"))], &wreck);
        assert_ne!(
            crashed.status, 1,
            "link:{n} was never reached: {}",
            crashed.stderr
        );
        assert_eq!(files(&tree), before, "link:{n}: the command ran");
        let ran = test.backstop(&wreck);
        assert_eq!(ran.status, 1, "after link:{n}: {}", ran.stderr);
        assert_eq!(
            files(&tree),
            before,
            "after link:{n}: the rollback was not exact"
        );
        settle(&tree);
        let ran = test.backstop(&["gc"]);
        assert_eq!(ran.status, 0, "gc after link:{n}: {}", ran.stderr);
        let ran = test.backstop(&["fsck"]);
        assert_eq!(
            ran.status, 0,
            "fsck after link:{n}: {} {}",
            ran.stdout, ran.stderr
        );
    }
    let _ = std::fs::remove_dir_all(&store);
    let ran = test.backstop_env(&[("BACKSTOP_CRASH_AT", "link:3")], &wreck);
    assert_eq!(ran.status, 1, "a third link was made: {}", ran.stderr);
    assert_eq!(files(&tree), before);
}
