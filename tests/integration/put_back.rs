//! The invariants every put-back keeps: a fixed scope, its own root, best effort
//! with an exact report. Each test here failed on the code before them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::helpers::eventually;
use super::undo::{Sandbox, State, code, oracle, stderr};

/// Scoped to the directory it runs in (not the repository's root, the default), as
/// the tests of scopes side by side in one checkout need.
const ONE_TRY: &str =
    "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { root: \".\" } }\n";

/// `backstop run -p POLICY -- sh -c SCRIPT` in the sandbox's tree.
fn run_sh(sb: &Sandbox, policy: &str, script: &str) -> std::process::Output {
    sb.run(&["run", "-p", policy, "--", "sh", "-c", script])
}

/// A repository with ignored, excluded and tracked files. `.git` is a plain directory:
/// the rules are what matters, not git itself.
fn repo(root: &Path) {
    fs::create_dir_all(root.join(".git/info")).unwrap();
    fs::write(root.join(".git/info/exclude"), "local.txt\n").unwrap();
    fs::write(
        root.join(".gitignore"),
        "secret.env\nnode_modules/\n*.log\n",
    )
    .unwrap();
    fs::write(root.join("secret.env"), "API=xyz\n").unwrap();
    fs::create_dir(root.join("node_modules")).unwrap();
    fs::write(root.join("node_modules/a.js"), "lib\n").unwrap();
    fs::write(root.join("local.txt"), "mine\n").unwrap();
    fs::write(root.join("build.log"), "old log\n").unwrap();
    fs::write(root.join("tracked.txt"), "tracked\n").unwrap();
}

/// Everything but `.git`, which backstop never snapshots or restores.
fn tree_without_git(root: &Path) -> State {
    oracle(root)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(b".git/") && p.as_slice() != b".git")
        .collect()
}

#[track_caller]
fn assert_same(root: &Path, want: &State, what: &str) {
    let now = tree_without_git(root);
    let show = |s: &State| {
        s.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        now == *want,
        "{what}: the tree differs\n now:  {:?}\n want: {:?}",
        show(&now),
        show(want)
    );
}

#[test]
fn a_run_that_deletes_gitignore_never_deletes_the_ignored_files() {
    let sb = Sandbox::new();
    let root = sb.root();
    repo(&root);
    let before = tree_without_git(&root);
    let p = sb.policy(ONE_TRY);
    let out = run_sh(
        &sb,
        &p,
        "rm .gitignore; echo x > tracked.txt; echo new > new.txt; echo run > run.log; exit 1",
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // `run.log` is new but the rules at the start ignored it: not the run's to delete.
    let mut want = before.clone();
    want.insert(
        b"run.log".to_vec(),
        super::undo::Node::File {
            mode: 0o644,
            content: b"run\n".to_vec(),
        },
    );
    assert_same(&root, &want, "after the rollback");
}

#[test]
fn a_run_that_rewrites_gitignore_is_rolled_back_by_the_rules_it_started_with() {
    let sb = Sandbox::new();
    let root = sb.root();
    repo(&root);
    let before = tree_without_git(&root);
    let p = sb.policy(ONE_TRY);
    // The new rules un-ignore what was ignored and ignore what was tracked.
    let out = run_sh(
        &sb,
        &p,
        "printf 'tracked.txt\\n' > .gitignore; echo x > tracked.txt; echo y > secret.env; exit 1",
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // secret.env was never stored: the run's edit to it stays (never guessed at),
    // everything the start rules covered is back.
    let mut want = before.clone();
    want.insert(
        b"secret.env".to_vec(),
        super::undo::Node::File {
            mode: 0o644,
            content: b"y\n".to_vec(),
        },
    );
    assert_same(&root, &want, "after the rollback");
}

#[test]
fn a_run_that_deletes_git_keeps_what_info_exclude_left_out() {
    let sb = Sandbox::new();
    let root = sb.root();
    repo(&root);
    let before = tree_without_git(&root);
    let p = sb.policy(ONE_TRY);
    let out = run_sh(&sb, &p, "rm -rf .git; echo x > tracked.txt; exit 1");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_same(&root, &before, "after the rollback");
}

#[test]
fn undo_of_a_killed_run_walks_by_the_rules_the_run_started_with() {
    let sb = Sandbox::new();
    let root = sb.root();
    repo(&root);
    let before = tree_without_git(&root);
    let ready = sb.file("ready");
    let script = format!(
        "rm .gitignore; echo new > new.txt; touch {}; exec sleep 30 # undo-killed-run",
        ready.display()
    );
    let mut child = sb
        .command(&["run", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || ready.exists()));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = Command::new("pkill")
        .args(["-f", "undo-killed-run"])
        .status();
    // The record has no after-state: undo takes it now, by the run's own rules.
    let out = sb.run(&["undo", "--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same(&root, &before, "after undo");
}

#[test]
fn an_interrupted_rollback_is_finished_in_its_own_directory_not_the_callers() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join(".git")).unwrap();
    for sub in ["sub1", "sub2"] {
        fs::create_dir(root.join(sub)).unwrap();
        for i in 0..50 {
            fs::write(root.join(format!("{sub}/f{i}")), format!("{sub} {i}\n")).unwrap();
        }
    }
    let before = tree_without_git(&root);
    let p = sb.policy(ONE_TRY);
    // Killed right after the rollback's journal is written, before it touches a file.
    let out = sb
        .command(&[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "for f in f*; do echo changed > $f; done; exit 2",
        ])
        .current_dir(root.join("sub1"))
        .env("BACKSTOP_CRASH_AT", "apply:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    assert!(fs::read_to_string(root.join("sub1/f0")).unwrap() == "changed\n");
    let changed = tree_without_git(&root);
    // A run in sub2 neither applies sub1's journal to sub2 nor reaches into sub1.
    let out = sb
        .command(&["run", "-p", &p, "--", "true"])
        .current_dir(root.join("sub2"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_same(
        &root,
        &changed,
        "sub2 untouched, sub1 left for its own backstop",
    );
    // A backstop whose scope holds sub1 finishes it there.
    let out = sb.run(&["runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = sb.run(&["run", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("finished the rollback") && stderr(&out).contains("sub1"),
        "{}",
        stderr(&out)
    );
    assert_same(&root, &before, "sub1 put back, sub2 untouched");
}

#[test]
fn recovery_refuses_a_root_that_is_another_directory_now() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join(".git")).unwrap();
    fs::create_dir(root.join("sub1")).unwrap();
    fs::write(root.join("sub1/a"), "a\n").unwrap();
    let p = sb.policy(ONE_TRY);
    let out = sb
        .command(&[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "echo changed > a; exit 2",
        ])
        .current_dir(root.join("sub1"))
        .env("BACKSTOP_CRASH_AT", "apply:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    // sub1 is replaced by another directory of the same name.
    fs::rename(root.join("sub1"), sb.file("sub1.moved")).unwrap();
    fs::create_dir(root.join("sub1")).unwrap();
    fs::write(root.join("sub1/other"), "other\n").unwrap();
    let out = sb.run(&["run", "--", "true"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sub1") && stderr(&out).contains("different directory"),
        "names the root and why: {}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(root.join("sub1")).unwrap().count(), 1);
    assert_eq!(
        fs::read_to_string(sb.file("sub1.moved/a")).unwrap(),
        "changed\n",
        "nothing followed the moved directory either"
    );
}

#[test]
fn a_rollback_never_writes_through_a_root_swapped_for_a_symlink() {
    let sb = Sandbox::new();
    let root = sb.root();
    let elsewhere = sb.file("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("keep.txt"), "precious\n").unwrap();
    fs::write(root.join("a.txt"), "tree\n").unwrap();
    let p = sb.policy(ONE_TRY);
    let script = format!(
        "d=$PWD; cd ..; mv \"$d\" \"$d.moved\"; ln -s {} \"$d\"; exit 2",
        elsewhere.display()
    );
    let out = sb.run(&["-q", "run", "-p", &p, "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 125, "incomplete rollback: {}", stderr(&out));
    assert!(
        stderr(&out).contains("rollback incomplete"),
        "said even with -q: {}",
        stderr(&out)
    );
    let mut left: Vec<_> = fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["keep.txt"], "nothing written into the link's target");
    assert_eq!(
        fs::read_to_string(elsewhere.join("keep.txt")).unwrap(),
        "precious\n"
    );
}

#[test]
fn an_after_state_too_large_to_store_still_rolls_back_and_redo_says_why_not() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("a.txt"), "orig\n").unwrap();
    let before = oracle(&root);
    let p = sb.policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { max_total_size: 10KiB } }\n",
    );
    let out = run_sh(
        &sb,
        &p,
        "head -c 100000 /dev/zero > big.bin; echo changed > a.txt; exit 3",
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot store the state after the run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(oracle(&root), before, "rolled back all the same");
    let out = sb.run(&["redo"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("never stored"), "{}", stderr(&out));
}

/// Runs `backstop` as `nobody` (through `setpriv` when the tests run as root), in a
/// sandbox that user owns: permissions are what root would ignore.
pub(crate) fn as_nobody(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    give_to_nobody(sb);
    nobody_command(sb, args).output().unwrap()
}

/// Makes the sandbox's tree and store `nobody`'s when the tests run as root (a chown
/// changes every ctime: a test that wants the stat cache to vouch waits after it).
pub(crate) fn give_to_nobody(sb: &Sandbox) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    for dir in [sb.file(""), sb.root(), sb.file("store")] {
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(sb.root())
        .arg(sb.file("store"))
        .status()
        .unwrap();
    assert!(status.success(), "chown to nobody");
}

/// `backstop args` as `nobody` (as the user running the tests, when that is not root),
/// with the environment `Sandbox::command` fixes.
pub(crate) fn nobody_command(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(super::helpers::BIN);
        c
    } else {
        Command::new(super::helpers::BIN)
    };
    cmd.args(args)
        .current_dir(sb.root())
        .env("BACKSTOP_HOME", sb.file("store"))
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn a_read_only_directory_does_not_block_the_rollback_as_a_plain_user() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/old"), "keep\n").unwrap();
    fs::write(root.join("a"), "a\n").unwrap();
    let p = sb.policy(ONE_TRY);
    fs::set_permissions(sb.file("policy.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(
        &sb,
        &[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "echo new > d/created; echo changed > d/old; rm a; chmod 555 d; exit 2",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let now = oracle(&root);
    assert!(!root.join("d/created").exists(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(root.join("d/old")).unwrap(), "keep\n");
    assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "a\n");
    let mode = fs::metadata(root.join("d")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "its mode is put back too: {now:?}");
    assert!(
        !walk_has(&sb.file("store"), "journal.json"),
        "no journal left to block the next command"
    );
}

#[test]
fn a_file_the_run_made_unreadable_does_not_stop_the_rollback() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("a"), "a\n").unwrap();
    let p = sb.policy(ONE_TRY);
    fs::set_permissions(sb.file("policy.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(
        &sb,
        &[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "echo secret > d/x; chmod 000 d/x; echo changed > a; exit 2",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!root.join("d/x").exists(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "a\n");
    assert!(stderr(&out).contains("cannot store the state after the run"));
}

fn walk_has(dir: &Path, name: &str) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name() == name || (e.path().is_dir() && walk_has(&e.path(), name)))
}

#[test]
fn hard_links_come_back_as_links() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("a"), "shared\n").unwrap();
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::hard_link(root.join("a"), root.join("d/c")).unwrap();
    let p = sb.policy(ONE_TRY);
    // Each name is split off its own inode; one is edited too.
    let out = run_sh(
        &sb,
        &p,
        "cp a t && mv t a; cp b t && mv t b; echo edited > d/c; exit 2",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("b"), "a and b are one file again");
    assert_eq!(ino("a"), ino("d/c"), "and so is d/c");
    assert_eq!(fs::read_to_string(root.join("d/c")).unwrap(), "shared\n");
    assert_eq!(fs::metadata(root.join("a")).unwrap().nlink(), 3);
}

#[test]
fn special_files_made_by_the_run_are_removed_and_a_removed_fifo_comes_back() {
    use std::os::unix::fs::FileTypeExt;
    let sb = Sandbox::new();
    let root = sb.root();
    let mkfifo = |p: &Path| {
        assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    };
    mkfifo(&root.join("old.pipe"));
    let p = sb.policy(ONE_TRY);
    let out = run_sh(
        &sb,
        &p,
        "rm old.pipe; mkfifo new.pipe; python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"s.sock\")'; exit 2",
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!root.join("new.pipe").exists(), "the run's fifo is gone");
    assert!(
        fs::symlink_metadata(root.join("s.sock")).is_err(),
        "the run's socket is gone"
    );
    let m = fs::symlink_metadata(root.join("old.pipe")).expect("the fifo is back");
    assert!(m.file_type().is_fifo());
}

#[test]
fn owner_and_group_come_back_when_backstop_runs_as_root() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if rustix::process::geteuid().as_raw() != 0 {
        // Only root can give a file away; CI runs as root. Say so, never pass quietly.
        eprintln!("SKIPPED owner_and_group_come_back: needs root");
        return;
    }
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("owned"), "o\n").unwrap();
    std::os::unix::fs::chown(root.join("owned"), Some(65534), Some(65534)).unwrap();
    fs::set_permissions(root.join("owned"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("deleted"), "d\n").unwrap();
    std::os::unix::fs::chown(root.join("deleted"), Some(1234), Some(4321)).unwrap();
    let p = sb.policy(ONE_TRY);
    let out = run_sh(&sb, &p, "chown 0:0 owned; rm deleted; exit 2");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let m = fs::metadata(root.join("owned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    assert_eq!(m.mode() & 0o7777, 0o4755, "set-user-ID survives the chown");
    let m = fs::metadata(root.join("deleted")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 4321));
}

#[test]
fn a_put_back_pending_in_a_containing_directory_is_finished_there_first() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/a"), "a\n").unwrap();
    fs::write(root.join("top"), "top\n").unwrap();
    let before = oracle(&root);
    let p = sb.policy(ONE_TRY);
    // Killed in the rollback of a run over the whole tree (no .git: the scope is the cwd).
    let out = sb
        .command(&[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "echo x > top; echo x > sub/a; exit 2",
        ])
        .env("BACKSTOP_CRASH_AT", "apply:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    let changed = oracle(&root);
    // A run in sub must neither run over the half-restored tree nor finish a put-back
    // that also writes outside its own scope.
    let marker = sb.file("ran");
    let run_in_sub = || {
        sb.command(&["run", "--", "touch", marker.to_str().unwrap()])
            .current_dir(root.join("sub"))
            .output()
            .unwrap()
    };
    let out = run_in_sub();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("contains this directory")
            && stderr(&out).contains(root.to_str().unwrap()),
        "names where to finish it: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("&& backstop snapshot`"),
        "says which command finishes it: {}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the command did not run");
    assert_eq!(oracle(&root), changed);
    // `runs` only reads: it finishes nothing, so it is not what the message names.
    let out = sb.run(&["runs"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(oracle(&root), changed);
    // What the message names, where it says, finishes it.
    let out = sb.run(&["snapshot"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(oracle(&root), before, "finished where it was started");
    let out = run_in_sub();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        marker.exists(),
        "the run in sub goes ahead once it is finished"
    );
}

#[test]
fn a_directory_the_run_made_unreadable_is_reported_not_called_restored() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("a"), "a\n").unwrap();
    let p = sb.policy(ONE_TRY);
    fs::set_permissions(sb.file("policy.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(
        &sb,
        &[
            "-q",
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "mkdir d; echo x > d/f; chmod 000 d; echo changed > a; exit 2",
        ],
    );
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rollback incomplete"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("/d"),
        "names what it could not read: {}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(root.join("a")).unwrap(),
        "a\n",
        "the rest is put back"
    );
    let runs = as_nobody(&sb, &["runs"]);
    let listed = String::from_utf8_lossy(&runs.stdout).into_owned();
    assert!(listed.contains("failed!"), "runs flags it: {listed}");
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let shown = as_nobody(&sb, &["show", &id]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("rollback incomplete: 1 path(s) not restored"),
        "{shown}"
    );
    assert!(shown.contains("redo cannot re-apply it"), "{shown}");
}

#[test]
fn a_store_that_fills_up_after_the_run_still_rolls_the_tree_back() {
    let _mounting = crate::helpers::mounting();
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("a"), "a\n").unwrap();
    let before = oracle(&root);
    let store = sb.file("store");
    fs::create_dir(&store).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&store)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        // Mounting needs root (CI runs as root); say so rather than pass quietly.
        // SAFETY: geteuid has no preconditions.
        assert!(
            rustix::process::geteuid().as_raw() != 0,
            "root but cannot mount a tmpfs"
        );
        eprintln!("SKIPPED a_store_that_fills_up_after_the_run: needs root to mount a tmpfs");
        return;
    }
    let _mount = super::undo::Mount(store.clone());
    let p = sb.policy(ONE_TRY);
    // 3 MB of new output cannot be stored in a 1 MiB store.
    let out = run_sh(
        &sb,
        &p,
        "head -c 3000000 /dev/urandom > big.bin; echo changed > a; exit 4",
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot store the state after the run"),
        "{}",
        stderr(&out)
    );
    assert_eq!(oracle(&root), before, "rolled back all the same");
}

#[test]
fn a_relative_store_path_still_finds_its_objects_during_a_put_back() {
    // A put-back works from the tree's root: a store named relative to where backstop
    // started must not be looked for relative to the root.
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/a"), "a\n").unwrap();
    let p = sb.policy(ONE_TRY);
    let out = sb
        .command(&[
            "run",
            "-p",
            &p,
            "--",
            "sh",
            "-c",
            "echo changed > a; exit 2",
        ])
        .current_dir(root.join("sub"))
        .env("BACKSTOP_HOME", "../../relative-store")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(root.join("sub/a")).unwrap(), "a\n");
    assert!(
        sb.file("relative-store").is_dir(),
        "the store is where it was named"
    );
}
