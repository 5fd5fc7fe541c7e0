//! One writer per tree region whatever reached it: runs that use different stores
//! (another `BACKSTOP_HOME`, `sudo`, `--store`) or reach the tree through a bind mount
//! still exclude each other where their scopes overlap, and name who holds it;
//! disjoint siblings still run side by side. Processes are ordered through `$OUT`
//! files, not sleeps alone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Test, eventually, wait_bounded};

const ONE_ATTEMPT: &str = "version: 1\nretry: { max_attempts: 1 }\n";

/// Holds its region until `$OUT/go` appears, after saying so in `$OUT/held`.
const HOLD: &str = "touch $OUT/held; while [ ! -e $OUT/go ]; do sleep 0.05; done";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tree with `sub/` and `sub2/`, a one-attempt policy outside it.
fn sandbox() -> Test {
    let t = Test::new()
        .write("sub/keep.txt", "kept\n")
        .write("sub2/keep.txt", "kept too\n")
        .write("top.txt", "top\n");
    std::fs::write(t.out_path().join("policy.yaml"), ONE_ATTEMPT).expect("write the policy");
    t
}

/// A store of its own, outside the tree: another `BACKSTOP_HOME`.
fn other_store(t: &Test, name: &str) -> PathBuf {
    t.out_path()
        .parent()
        .expect("the sandbox has a parent")
        .join(name)
}

/// `backstop run -p POLICY [extra] -- sh -c SCRIPT` in `dir` with the store `store`,
/// started, not awaited.
fn spawn(t: &Test, dir: &Path, store: &Path, extra: &[&str], script: &str) -> Child {
    t.command()
        .current_dir(dir)
        .env("BACKSTOP_HOME", store)
        .arg("run")
        .arg("-p")
        .arg(t.out_path().join("policy.yaml"))
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn backstop")
}

/// Waits for `child`, returning its exit code and stderr.
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

#[track_caller]
fn wait_for(t: &Test, marker: &str) {
    assert!(
        eventually(Duration::from_secs(20), || t.exists(marker)),
        "{marker} never appeared in $OUT"
    );
}

/// Lets the holder go and checks it ended well.
#[track_caller]
fn release(t: &Test, holder: Child) {
    std::fs::write(t.out_path().join("go"), "").expect("release the holder");
    let (code, err) = finish(holder);
    assert_eq!(code, 0, "the holder failed: {err}");
    let _ = std::fs::remove_file(t.out_path().join("go"));
    let _ = std::fs::remove_file(t.out_path().join("held"));
}

#[test]
fn disjoint_siblings_with_different_stores_run_side_by_side() {
    let t = sandbox();
    // Each waits (bounded) for the other to have started: both succeed only if they
    // run at once. Both hold `/`, the temporary directory and the tree shared.
    let script = |me: &str, other: &str| {
        format!(
            "touch $OUT/started-{me}; i=0; while [ ! -e $OUT/started-{other} ]; do \
             i=$((i+1)); [ $i -gt 300 ] && exit 7; sleep 0.05; done; echo {me} > mine.txt"
        )
    };
    let a = spawn(
        &t,
        &t.path().join("sub"),
        &other_store(&t, "store-a"),
        &[],
        &script("a", "b"),
    );
    let b = spawn(
        &t,
        &t.path().join("sub2"),
        &other_store(&t, "store-b"),
        &[],
        &script("b", "a"),
    );
    let (code_a, err_a) = finish(a);
    let (code_b, err_b) = finish(b);
    assert_eq!(
        (code_a, code_b),
        (0, 0),
        "disjoint siblings of different stores did not run at once:\n{err_a}\n{err_b}"
    );
    assert!(!err_a.contains("waiting") && !err_b.contains("waiting"));
    assert!(t.path().join("sub/mine.txt").exists() && t.path().join("sub2/mine.txt").exists());
}

#[test]
fn no_wait_names_a_holder_of_another_store_by_the_directory_it_holds() {
    let t = sandbox();
    let tree = t.path().canonicalize().expect("canonical tree");
    let theirs = other_store(&t, "their-store");
    // The holder also lists the descriptors its command inherited: none may be a
    // directory of its region, or a command left running would hold the region after
    // backstop is gone.
    let outer = spawn(
        &t,
        &t.path(),
        &theirs,
        &[],
        &format!("for f in /proc/$$/fd/*; do readlink $f; done > $OUT/fds; {HOLD}"),
    );
    wait_for(&t, "held");
    // This sandbox's own store: it has no record of the holder.
    let mine = t.out_path().parent().expect("sandbox").join("store");
    let (code, err) = finish(spawn(
        &t,
        &t.path().join("sub"),
        &mine,
        &["--no-wait"],
        "touch $OUT/inner-ran",
    ));
    release(&t, outer);
    assert_eq!(code, 125, "the inner run was not refused: {err}");
    assert!(!t.exists("inner-ran"), "the refused run ran its command");
    assert!(
        err.contains(&format!(
            "another backstop holds this tree's lock (another backstop (using another store) in {}); \
             try again, or leave out --no-wait to wait",
            tree.display()
        )),
        "{err}"
    );
    let leaked: Vec<String> = t
        .lines("fds")
        .into_iter()
        .filter(|l| tree.ancestors().any(|a| Path::new(l) == a))
        .collect();
    assert!(
        leaked.is_empty(),
        "the command inherited region locks: {leaked:?}"
    );

    // The other way round: the inner run of the other store holds, the outer waits.
    let inner = spawn(&t, &t.path().join("sub"), &theirs, &[], HOLD);
    wait_for(&t, "held");
    let (code, err) = finish(spawn(
        &t,
        &t.path(),
        &mine,
        &["--no-wait"],
        "touch $OUT/outer-ran",
    ));
    release(&t, inner);
    assert_eq!(code, 125, "the outer run was not refused: {err}");
    assert!(!t.exists("outer-ran"), "the refused run ran its command");
    assert!(err.contains("(using another store) in"), "{err}");
}

/// A bind mount, unmounted (lazily) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn through_a_bind_mount_a_holder_of_the_same_store_is_named() {
    let _mounting = crate::helpers::mounting();
    let t = sandbox();
    let alias = t.out_path().join("alias");
    std::fs::create_dir(&alias).expect("create the mount point");
    let mounted = Command::new("mount")
        .arg("--bind")
        .arg(t.path())
        .arg(&alias)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        assert!(!is_root(), "running as root but cannot bind-mount");
        eprintln!("SKIPPED through_a_bind_mount_a_holder_of_the_same_store_is_named: needs root");
        return;
    }
    let _mount = Mount(alias.clone());
    let store = t.out_path().parent().expect("sandbox").join("store");
    let outer = spawn(&t, &t.path(), &store, &[], HOLD);
    wait_for(&t, "held");
    let (code, err) = finish(spawn(
        &t,
        &alias.join("sub"),
        &store,
        &["--no-wait"],
        "touch $OUT/inner-ran",
    ));
    let pid = outer.id();
    release(&t, outer);
    assert_eq!(
        code, 125,
        "the run through the mount was not refused: {err}"
    );
    assert!(!t.exists("inner-ran"), "the refused run ran its command");
    // Its own store knows the holder, though by another path: it is named.
    assert!(err.contains(&format!("(pid {pid})")), "{err}");
    assert!(!err.contains("another store"), "{err}");
}

/// `sudo backstop run` in a tree and the user's own `backstop run` below it use two
/// stores; the user cannot read an ancestor of the tree (a 711 directory), so that
/// directory is skipped, and the tree itself still keeps them apart.
#[test]
fn a_root_run_and_a_user_run_exclude_each_other_across_an_unreadable_ancestor() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIPPED a_root_run_and_a_user_run_…: needs root and setpriv");
        return;
    }
    let t = sandbox();
    let sandbox_dir = t.out_path().parent().expect("sandbox").to_path_buf();
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    // The sandbox directory: searchable, not readable, by the user.
    chmod(&sandbox_dir, 0o711);
    chmod(&t.out_path(), 0o777);
    let user_store = sandbox_dir.join("user-store");
    std::fs::create_dir(&user_store).expect("create the user's store");
    for p in [t.path(), user_store.clone()] {
        let ok = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot chown {}", p.display());
    }
    let user_run = |extra: &[&str], script: &str| {
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
        ])
        .arg(crate::helpers::BIN)
        .current_dir(t.path().join("sub"))
        .env("BACKSTOP_HOME", &user_store)
        .env("OUT", t.out_path())
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("XDG_STATE_HOME")
        .arg("run")
        .arg("-p")
        .arg(t.out_path().join("policy.yaml"))
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        finish(cmd.spawn().expect("spawn setpriv backstop"))
    };
    let root_store = sandbox_dir.join("store");
    let holder = spawn(&t, &t.path(), &root_store, &[], HOLD);
    wait_for(&t, "held");
    let (code, err) = user_run(&["--no-wait"], "touch $OUT/user-ran");
    release(&t, holder);
    assert_eq!(code, 125, "the user's run was not refused: {err}");
    assert!(!t.exists("user-ran"), "the refused run ran its command");
    assert!(err.contains("(using another store) in"), "{err}");
    // Alone, the user's run goes through: the unreadable ancestor is skipped.
    let (code, err) = user_run(&[], "echo mine > mine.txt");
    assert_eq!(code, 0, "{err}");
    assert!(t.path().join("sub/mine.txt").exists());
}

/// A scope root 1,100 directories deep under the usual soft limit of 1,024 open
/// files: the region holds a descriptor or two per level, so backstop makes room
/// rather than failing with "too many open files".
#[test]
fn a_root_a_thousand_levels_deep_is_locked_under_the_usual_open_file_limit() {
    let t = sandbox();
    let deep: PathBuf = std::iter::repeat_n("d", 1100).collect();
    let dir = t.path().join(&deep);
    std::fs::create_dir_all(&dir).expect("create the deep tree");
    std::fs::write(dir.join("f"), "orig\n").expect("write a file");
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$@\"")
        .arg("sh")
        .arg(crate::helpers::BIN)
        .args(["run", "-p"])
        .arg(t.out_path().join("policy.yaml"))
        .args(["--", "sh", "-c", "echo changed > f; exit 3"])
        .current_dir(&dir)
        .env(
            "BACKSTOP_HOME",
            t.out_path().parent().expect("sandbox").join("store"),
        )
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .output()
        .expect("run backstop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("f")).unwrap_or_default(),
        "orig\n",
        "not rolled back: {err}"
    );
}
