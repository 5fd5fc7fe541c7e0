//! One writer per tree region: runs whose scope roots overlap (equal, ancestor or
//! descendant, with or without git) never write the tree at once; disjoint siblings
//! never wait for each other. Processes are ordered through `$OUT` files, not sleeps
//! alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Test, eventually, wait_bounded};

/// Scoped to the directory it runs in (not the repository's root, the default): these
/// tests are of scopes side by side, and one inside another, in one checkout.
const ONE_ATTEMPT: &str =
    "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { root: \".\" } }\n";

/// A sandbox whose tree has `sub/` (and `sub2/`), optionally a git checkout, and a
/// one-attempt policy outside the tree.
fn sandbox(git: bool) -> Test {
    let t = Test::new()
        .write("sub/keep.txt", "kept\n")
        .write("sub2/keep.txt", "kept too\n")
        .write("top.txt", "top\n");
    if git {
        let status = Command::new("git")
            .args(["init", "-q"])
            .current_dir(t.path())
            .status()
            .expect("run git init");
        assert!(status.success(), "git init failed");
    }
    std::fs::write(t.out_path().join("policy.yaml"), ONE_ATTEMPT).expect("write the policy");
    t
}

/// `backstop -p POLICY run [extra] -- sh -c SCRIPT` in `dir`, started, not awaited.
fn spawn(t: &Test, dir: &Path, extra: &[&str], script: &str) -> Child {
    let policy = t.out_path().join("policy.yaml");
    let mut cmd = t.command();
    cmd.current_dir(dir)
        .arg("run")
        .arg("-p")
        .arg(&policy)
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn backstop")
}

/// Waits for `child`, returning its exit code and stderr.
fn finish(mut child: Child) -> (i32, String) {
    use std::io::Read;
    let mut err = String::new();
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut err);
        err
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    (status, reader.join().unwrap_or_default())
}

#[track_caller]
fn wait_for(t: &Test, marker: &str) {
    assert!(
        eventually(Duration::from_secs(20), || t.exists(marker)),
        "{marker} never appeared in $OUT"
    );
}

/// The inner run (in `sub`) starts first and succeeds after writing `sub/new.txt`;
/// the outer run (in the tree's root) fails after longer and is rolled back. The
/// outer must wait for the inner, so its snapshot has `new.txt` and its rollback
/// leaves it.
fn outer_waits_for_inner(git: bool) {
    let t = sandbox(git);
    let inner = spawn(
        &t,
        &t.path().join("sub"),
        &[],
        "echo inner-start >> $OUT/log; touch $OUT/inner-started; sleep 1; \
         echo made > new.txt; echo inner-end >> $OUT/log",
    );
    wait_for(&t, "inner-started");
    let outer = spawn(
        &t,
        &t.path(),
        &[],
        "echo outer-start >> $OUT/log; echo clobbered > top.txt; sleep 1.5; exit 3",
    );
    let (code, err) = finish(inner);
    assert_eq!(code, 0, "the inner run failed: {err}");
    let (code, err) = finish(outer);
    assert_eq!(code, 3, "the outer run should fail with its command: {err}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub/new.txt")).unwrap_or_default(),
        "made\n",
        "the outer run's rollback deleted what the inner, successful run wrote"
    );
    assert_eq!(
        t.lines("log"),
        ["inner-start", "inner-end", "outer-start"],
        "the outer run started while the inner one was still writing"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("top.txt")).unwrap_or_default(),
        "top\n",
        "the outer run was not rolled back"
    );
    assert!(
        err.contains("waiting for another backstop"),
        "the outer run did not say it waited: {err}"
    );
}

#[test]
fn an_outer_run_waits_for_an_inner_one_and_its_rollback_keeps_the_inner_work() {
    outer_waits_for_inner(false);
}

#[test]
fn an_outer_run_waits_for_an_inner_one_in_a_git_checkout_too() {
    outer_waits_for_inner(true);
}

#[test]
fn no_wait_names_the_holder_of_an_overlapping_region_whichever_contains_which() {
    let t = sandbox(false);
    let root = t.path().canonicalize().expect("canonical tree");
    // A second name for the tree: the lock is on the directory, not the spelling.
    let alias: PathBuf = t.out_path().join("alias");
    std::os::unix::fs::symlink(t.path(), &alias).expect("symlink the tree");

    // Inner holds; outer (through the symlink) is refused.
    let inner = spawn(
        &t,
        &t.path().join("sub"),
        &[],
        "touch $OUT/held; while [ ! -e $OUT/go ]; do sleep 0.05; done",
    );
    wait_for(&t, "held");
    let (code, err) = finish(spawn(&t, &alias, &["--no-wait"], "touch $OUT/outer-ran"));
    let pid = inner.id();
    std::fs::write(t.out_path().join("go"), "").expect("release the inner run");
    let (inner_code, inner_err) = finish(inner);
    assert_eq!(inner_code, 0, "{inner_err}");
    assert_eq!(code, 125, "the outer run was not refused: {err}");
    assert!(!t.exists("outer-ran"), "the refused run ran its command");
    assert!(err.contains("holds this tree's lock"), "{err}");
    assert!(
        err.contains(&format!("(pid {pid})")),
        "holder's pid missing: {err}"
    );
    assert!(err.contains("run "), "holder's run missing: {err}");
    assert!(
        err.contains(&format!("in {} since", root.join("sub").display())),
        "holder's root missing: {err}"
    );

    // Outer holds; inner is refused, naming the outer.
    let _ = std::fs::remove_file(t.out_path().join("held"));
    let _ = std::fs::remove_file(t.out_path().join("go"));
    let outer = spawn(
        &t,
        &t.path(),
        &[],
        "touch $OUT/held; while [ ! -e $OUT/go ]; do sleep 0.05; done",
    );
    wait_for(&t, "held");
    let (code, err) = finish(spawn(
        &t,
        &t.path().join("sub"),
        &["--no-wait"],
        "touch $OUT/inner-ran",
    ));
    let pid = outer.id();
    std::fs::write(t.out_path().join("go"), "").expect("release the outer run");
    let (outer_code, outer_err) = finish(outer);
    assert_eq!(outer_code, 0, "{outer_err}");
    assert_eq!(code, 125, "the inner run was not refused: {err}");
    assert!(!t.exists("inner-ran"), "the refused run ran its command");
    assert!(
        err.contains(&format!("(pid {pid})")),
        "holder's pid missing: {err}"
    );
    assert!(
        err.contains(&format!("in {} since", root.display())),
        "holder's root missing: {err}"
    );
}

/// Each sibling waits (bounded) for the other to have started: both succeed only if
/// they run at once.
fn siblings_run_at_once(git: bool) {
    let t = sandbox(git);
    let script = |me: &str, other: &str| {
        format!(
            "touch $OUT/started-{me}; i=0; while [ ! -e $OUT/started-{other} ]; do \
             i=$((i+1)); [ $i -gt 300 ] && exit 7; sleep 0.05; done; echo {me} > mine.txt"
        )
    };
    let a = spawn(&t, &t.path().join("sub"), &[], &script("a", "b"));
    let b = spawn(&t, &t.path().join("sub2"), &[], &script("b", "a"));
    let (code_a, err_a) = finish(a);
    let (code_b, err_b) = finish(b);
    assert_eq!(
        (code_a, code_b),
        (0, 0),
        "disjoint siblings did not run at once (git: {git}):\n{err_a}\n{err_b}"
    );
    assert!(!err_a.contains("waiting") && !err_b.contains("waiting"));
    assert!(t.path().join("sub/mine.txt").exists() && t.path().join("sub2/mine.txt").exists());
}

#[test]
fn disjoint_siblings_never_wait_for_each_other_with_or_without_git() {
    siblings_run_at_once(false);
    siblings_run_at_once(true);
}

#[test]
fn undo_waits_for_a_run_whose_scope_contains_the_undone_runs() {
    let t = sandbox(false);
    let (code, err) = finish(spawn(&t, &t.path().join("sub"), &[], "echo x > undone.txt"));
    assert_eq!(code, 0, "{err}");
    // An outer run holds the tree's root; undoing the inner run would write into it.
    let outer = spawn(
        &t,
        &t.path(),
        &[],
        "touch $OUT/held; while [ ! -e $OUT/go ]; do sleep 0.05; done",
    );
    wait_for(&t, "held");
    let ran = t.backstop_in("sub", &["undo", "--no-wait"]);
    let pid = outer.id();
    std::fs::write(t.out_path().join("go"), "").expect("release the outer run");
    let (outer_code, outer_err) = finish(outer);
    assert_eq!(outer_code, 0, "{outer_err}");
    assert_eq!(ran.status, 125, "undo did not wait: {}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("(pid {pid})")),
        "{}",
        ran.stderr
    );
    assert!(
        t.path().join("sub/undone.txt").exists(),
        "the refused undo wrote the tree"
    );
    // Once the outer run is done, the undo goes through.
    let ran = t.backstop_in("sub", &["-q", "undo", "--no-wait"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(!t.path().join("sub/undone.txt").exists());
}

#[test]
fn a_pending_put_back_beside_a_run_neither_blocks_it_nor_is_lost() {
    // sub and sub2 of one git checkout: each scope root has its journal. A run in sub
    // is killed in its rollback while a run in sub2 goes on; sub2's restores and
    // rollback go through, and the next backstop in sub finishes sub's rollback.
    let t = sandbox(true);
    std::fs::write(
        t.out_path().join("policy.yaml"),
        "version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms } }\n\
         rollback: { between_attempts: restore, scope: { root: \".\" } }\n",
    )
    .expect("write the policy");
    let b = spawn(
        &t,
        &t.path().join("sub2"),
        &[],
        "echo changed > keep.txt; touch $OUT/b-started; \
         while [ ! -e $OUT/planted ]; do sleep 0.05; done; exit 1",
    );
    wait_for(&t, "b-started");
    let policy = t.out_path().join("policy.yaml");
    let killed = t
        .command()
        .current_dir(t.path().join("sub"))
        .args(["run", "-p"])
        .arg(&policy)
        .args(["--", "sh", "-c", "echo changed > keep.txt; exit 1"])
        .env("BACKSTOP_CRASH_AT", "apply:1")
        .stdin(Stdio::null())
        .output()
        .expect("run backstop");
    assert_eq!(killed.status.code(), None, "killed in its rollback");
    std::fs::write(t.out_path().join("planted"), "").expect("let the attempt fail");
    let (code, err) = finish(b);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("interrupted"), "{err}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub2/keep.txt")).unwrap(),
        "kept too\n",
        "sub2 rolled back: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub/keep.txt")).unwrap(),
        "changed\n",
        "sub's rollback is still pending"
    );
    let policy = policy.to_string_lossy().into_owned();
    let next = t.backstop_in("sub", &["run", "-p", &policy, "--", "true"]);
    assert_eq!(next.status, 0, "{}", next.stderr);
    assert!(next.stderr.contains("left half done"), "{}", next.stderr);
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub/keep.txt")).unwrap(),
        "kept\n"
    );
}

/// An outer run over the whole tree that, once `$OUT/go` exists and a second has
/// passed (time for a run started meanwhile to be waiting for its lock), runs `then`.
fn outer_then(t: &Test, then: &str) -> Child {
    let outer = spawn(
        t,
        &t.path(),
        &[],
        &format!(
            "touch $OUT/outer-started; while [ ! -e $OUT/go ]; do sleep 0.05; done; sleep 1; {then}"
        ),
    );
    wait_for(t, "outer-started");
    outer
}

/// Another backstop's command moves the directory a waiting run started in away and
/// makes a new one at its name. Once the lock is its, the waiting run must not run its
/// command in the moved directory (its cwd) while its snapshot covers the new one: it
/// would delete and write there with nothing to roll back (found by an adversarial
/// tester: `keep.txt` lost, `junk.txt` left, "nothing to undo").
#[test]
fn a_run_whose_directory_is_moved_away_while_it_waits_refuses_and_runs_nothing() {
    let t = sandbox(false);
    let outer = outer_then(&t, "mv sub sub.bak && mkdir sub");
    let inner = spawn(
        &t,
        &t.path().join("sub"),
        &[],
        "touch $OUT/inner-ran; rm -f keep.txt; echo junk > junk.txt; exit 1",
    );
    std::fs::write(t.out_path().join("go"), "").expect("release the outer run");
    let (code, err) = finish(outer);
    assert_eq!(code, 0, "{err}");
    let (code, err) = finish(inner);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("is no longer the directory") && err.contains("sub.bak"),
        "says where the directory went: {err}"
    );
    assert!(!t.exists("inner-ran"), "the command ran: {err}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("sub.bak/keep.txt")).unwrap_or_default(),
        "kept\n"
    );
    assert!(!t.path().join("sub.bak/junk.txt").exists());
    assert!(!t.path().join("sub/junk.txt").exists());
}

/// The same with a scope root, `sub/deep`, that is not the working directory (the
/// run starts outside the tree, so only its scope root names it): `swap` runs while
/// it waits, and what it started with (now under `sub.real`) and `sub2` must come
/// out untouched.
fn scope_root_swapped_while_waiting(swap: &str) {
    let t = sandbox(false);
    std::fs::create_dir(t.path().join("sub/deep")).expect("make sub/deep");
    std::fs::write(t.path().join("sub/deep/keep.txt"), "deep\n").expect("write");
    let root = t.path().join("sub/deep");
    let policy = t.out_path().join("abs-root.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ scope: {{ root: {:?} }} }}\n",
            root.display().to_string()
        ),
    )
    .expect("write the policy");
    let outer = outer_then(&t, swap);
    let mut cmd = t.command();
    cmd.current_dir(t.out_path())
        .arg("run")
        .arg("-p")
        .arg(&policy)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "touch $OUT/inner-ran; echo junk > {}/junk.txt; rm -f {}/keep.txt; exit 1",
            root.display(),
            root.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let inner = cmd.spawn().expect("spawn backstop");
    std::fs::write(t.out_path().join("go"), "").expect("release the outer run");
    let (code, err) = finish(outer);
    assert_eq!(code, 0, "{err}");
    let (code, err) = finish(inner);
    assert_eq!(code, 125, "{swap}: {err}");
    assert!(err.contains("is no longer the directory"), "{swap}: {err}");
    assert!(!t.exists("inner-ran"), "{swap}: the command ran: {err}");
    for (dir, kept) in [("sub.real/deep", "deep\n"), ("sub2", "kept too\n")] {
        assert_eq!(
            std::fs::read_to_string(t.path().join(dir).join("keep.txt")).unwrap_or_default(),
            kept,
            "{swap}: {dir}"
        );
        assert!(
            !t.path().join(dir).join("junk.txt").exists(),
            "{swap}: {dir}"
        );
    }
}

/// The root's parent made a symlink to another directory while the run waits: its
/// snapshot and rollback would be of that directory, which the lock it waited for
/// does not cover (another run may be working there).
#[test]
fn a_run_whose_scope_root_is_swapped_for_a_symlink_while_it_waits_refuses() {
    scope_root_swapped_while_waiting("mv sub sub.real && ln -s sub2 sub");
}

/// The root's parent moved and a symlink to it left at its name: the root is the
/// same directory, but reached through a symlink, where the walk that locks a region
/// stops, so another run in `sub.real/deep` would not wait for this one.
#[test]
fn a_run_whose_scope_root_is_reached_through_a_new_symlink_refuses() {
    scope_root_swapped_while_waiting("mv sub sub.real && ln -s sub.real sub");
}

/// `backstop run` inside a run's command, in a directory the outer run's region
/// covers: the outer holds its lock until its command ends, and its command waits for
/// the inner. The inner refuses at once instead of waiting forever (it did).
#[test]
fn a_run_started_by_the_command_of_an_overlapping_run_refuses_instead_of_waiting_forever() {
    let t = sandbox(false);
    let policy = t.out_path().join("policy.yaml");
    let script = format!(
        "echo outer > top.txt; cd sub && {} run -p {} -- sh -c 'echo inner > s.txt'; \
         echo $? > $OUT/inner-code; exit 1",
        crate::helpers::BIN,
        policy.display()
    );
    let (code, err) = finish(spawn(&t, &t.path(), &[], &script));
    assert_eq!(code, 1, "the outer run ends with its command: {err}");
    assert_eq!(t.lines("inner-code"), ["125"], "{err}");
    assert!(
        err.contains("started by the command of") && err.contains("waiting would never end"),
        "{err}"
    );
    assert!(
        !err.contains("waiting for another backstop"),
        "it waited: {err}"
    );
    assert!(!t.path().join("sub/s.txt").exists());
    assert_eq!(
        std::fs::read_to_string(t.path().join("top.txt")).unwrap_or_default(),
        "top\n",
        "the outer run was rolled back"
    );
}
