//! Snapshots, rollback, undo and redo against the real binary.
//!
//! The tree is compared by an oracle of its own: a walk with `std::fs` that keeps
//! every path's type, mode and full content (or link target) — no manifest, no BLAKE3.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_backstop");

/// What a path is, as the oracle sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    File { mode: u32, content: Vec<u8> },
    Dir { mode: u32 },
    Link { target: Vec<u8> },
}

pub(crate) type State = BTreeMap<Vec<u8>, Node>;

pub(crate) fn oracle(root: &Path) -> State {
    fn walk(root: &Path, dir: &Path, out: &mut State) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&path).unwrap();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let target = fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec();
                out.insert(rel, Node::Link { target });
            } else if m.is_dir() {
                out.insert(rel, Node::Dir { mode });
                walk(root, &path, out);
            } else {
                out.insert(
                    rel,
                    Node::File {
                        mode,
                        content: fs::read(&path).unwrap(),
                    },
                );
            }
        }
    }
    let mut out = State::new();
    walk(root, root, &mut out);
    out
}

/// A tree and a store beside it (never inside it).
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("backstop-undo-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("tree")).unwrap();
        Sandbox { dir }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.root())
            .env("BACKSTOP_HOME", self.dir.path().join("store"))
            .env("NO_COLOR", "1")
            // The tests fix the environment: under CI, backstop takes no snapshot.
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .stdin(Stdio::null());
        cmd
    }

    #[track_caller]
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backstop {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn policy(&self, yaml: &str) -> String {
        let path = self.file("policy.yaml");
        fs::write(&path, yaml).unwrap();
        path.to_str().unwrap().to_string()
    }
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------- the property test

/// A mutation, applied by a separate process (python3) during the run, so the changes
/// are made by "any process", not by backstop's own code.
#[derive(Clone, Debug)]
enum Mutation {
    /// Same size, same mtime, other bytes: only ctime gives it away.
    EditInPlace(usize),
    Truncate(usize),
    Delete(usize),
    Create(Vec<u8>, Vec<u8>),
    Rename(usize, Vec<u8>),
    Chmod(usize, u32),
    /// A file becomes a directory holding a file, or a directory becomes a file.
    Swap(usize),
    Symlink(Vec<u8>, Vec<u8>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"a".to_vec(),
        b"b c".to_vec(),
        b"-dash".to_vec(),
        b"new\nline".to_vec(),
        b"\xff\xfe-latin".to_vec(),
        b"cr\r".to_vec(),
        b".hidden".to_vec(),
        "日本".as_bytes().to_vec(),
        b"x.txt".to_vec(),
    ])
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"line one\r\nline two\r\n".to_vec()),
        Just(b"nul\0in\0the middle".to_vec()),
        prop::collection::vec(any::<u8>(), 1..300),
    ]
}

#[derive(Clone, Debug)]
enum Spec {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(Vec<u8>),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        4 => (content(), prop::sample::select(vec![0o644, 0o755, 0o444, 0o600])).prop_map(|(c, m)| Spec::File(c, m)),
        2 => prop::sample::select(vec![0o755, 0o700, 0o555]).prop_map(Spec::Dir),
        1 => prop::sample::select(vec![b"a".to_vec(), b"../outside".to_vec(), b"missing".to_vec(), b"b c".to_vec()])
            .prop_map(Spec::Link),
    ]
}

fn tree() -> impl Strategy<Value = Vec<(Vec<Vec<u8>>, Spec)>> {
    prop::collection::vec((prop::collection::vec(name(), 1..=3), spec()), 0..12)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::EditInPlace),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::Delete),
        (name(), content()).prop_map(|(n, c)| Mutation::Create(n, c)),
        (any::<usize>(), name()).prop_map(|(i, n)| Mutation::Rename(i, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![0o600, 0o755, 0o444])
        )
            .prop_map(|(i, m)| Mutation::Chmod(i, m)),
        any::<usize>().prop_map(Mutation::Swap),
        (name(), name()).prop_map(|(n, t)| Mutation::Symlink(n, t)),
    ]
}

fn build(root: &Path, nodes: &[(Vec<Vec<u8>>, Spec)]) {
    for (parts, spec) in nodes {
        let mut path = root.to_path_buf();
        let mut ok = true;
        for dir in &parts[..parts.len() - 1] {
            path.push(OsStr::from_bytes(dir));
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => ok = false,
                Err(_) => fs::create_dir(&path).unwrap(),
            }
            if !ok {
                break;
            }
        }
        path.push(OsStr::from_bytes(parts.last().unwrap()));
        if !ok || fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match spec {
            Spec::File(c, mode) => {
                fs::write(&path, c).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Spec::Dir(mode) => {
                fs::create_dir(&path).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Spec::Link(target) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).unwrap()
            }
        }
    }
}

/// Applies mutations to the tree in its working directory. Paths are bytes, in hex.
const MUTATOR: &str = r#"
import json, os, shutil, sys
ops = json.load(open(sys.argv[1]))
def paths():
    out = []
    for d, dirs, files in os.walk(b'.'):
        for n in sorted(dirs) + sorted(files):
            out.append(os.path.join(d, n)[2:])
    return sorted(out)
def pick(i):
    p = paths()
    return p[i % len(p)] if p else None
def remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        for d, dirs, files in os.walk(p):
            os.chmod(d, 0o755)
        shutil.rmtree(p)
    else:
        os.unlink(p)
for op in ops:
    kind, args = op[0], op[1:]
    if kind == 'edit':
        p = pick(args[0])
        if p and os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
            st = os.stat(p)
            data = open(p, 'rb').read()
            os.chmod(p, 0o644)
            open(p, 'r+b').write(bytes((b ^ 0x5a) for b in data))
            os.chmod(p, st.st_mode & 0o7777)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif kind == 'truncate':
        p = pick(args[0])
        if p and os.path.isfile(p) and not os.path.islink(p):
            os.chmod(p, 0o644); open(p, 'wb').close()
    elif kind == 'delete':
        p = pick(args[0])
        if p: remove(p)
    elif kind == 'create':
        n = bytes.fromhex(args[0])
        if not os.path.lexists(n):
            open(n, 'wb').write(bytes.fromhex(args[1]))
    elif kind == 'rename':
        p = pick(args[0]); n = bytes.fromhex(args[1])
        if p and not os.path.lexists(n) and not n.startswith(p + b'/'):
            os.rename(p, n)
    elif kind == 'chmod':
        p = pick(args[0])
        if p and not os.path.islink(p): os.chmod(p, args[1])
    elif kind == 'swap':
        p = pick(args[0])
        if p and os.path.isdir(p) and not os.path.islink(p):
            remove(p); open(p, 'wb').write(b'was a directory')
        elif p:
            remove(p); os.mkdir(p); open(os.path.join(p, b'inside'), 'wb').write(b'was a file')
    elif kind == 'symlink':
        n = bytes.fromhex(args[0])
        if not os.path.lexists(n): os.symlink(bytes.fromhex(args[1]), n)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ops_json(ops: &[Mutation]) -> String {
    let ops: Vec<serde_json::Value> = ops
        .iter()
        .map(|m| match m {
            Mutation::EditInPlace(i) => serde_json::json!(["edit", i]),
            Mutation::Truncate(i) => serde_json::json!(["truncate", i]),
            Mutation::Delete(i) => serde_json::json!(["delete", i]),
            Mutation::Create(n, c) => serde_json::json!(["create", hex(n), hex(c)]),
            Mutation::Rename(i, n) => serde_json::json!(["rename", i, hex(n)]),
            Mutation::Chmod(i, m) => serde_json::json!(["chmod", i, m]),
            Mutation::Swap(i) => serde_json::json!(["swap", i]),
            Mutation::Symlink(n, t) => serde_json::json!(["symlink", hex(n), hex(t)]),
        })
        .collect();
    serde_json::to_string(&ops).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(40),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    /// undo returns exactly the pre-run state, redo exactly the post-run state, and a
    /// second undo is refused without touching the tree.
    #[test]
    fn undo_and_redo_are_exact_on_random_trees(nodes in tree(), ops in prop::collection::vec(mutation(), 1..8)) {
        let sb = Sandbox::new();
        let root = sb.root();
        build(&root, &nodes);
        fs::write(sb.file("mutate.py"), MUTATOR).unwrap();
        fs::write(sb.file("ops.json"), ops_json(&ops)).unwrap();
        let policy = sb.policy("version: 1\nretry: { max_attempts: 1 }\nrollback: { on: never, scope: { ignored: include } }\n");
        let before = oracle(&root);

        let mutate = sb.file("mutate.py");
        let ops_file = sb.file("ops.json");
        sb.ok(&["-q", "run", "-p", &policy, "--", "python3", mutate.to_str().unwrap(), ops_file.to_str().unwrap()]);
        let after = oracle(&root);

        sb.ok(&["-q", "undo"]);
        prop_assert_eq!(&oracle(&root), &before, "undo restores the pre-run tree");
        if before != after {
            let again = sb.run(&["-q", "undo"]);
            prop_assert_eq!(code(&again), 125, "a second undo is refused: {}", stderr(&again));
            prop_assert_eq!(&oracle(&root), &before, "and changes nothing");
            sb.ok(&["-q", "redo"]);
            prop_assert_eq!(&oracle(&root), &after, "redo restores the post-run tree");
            sb.ok(&["-q", "undo"]);
            prop_assert_eq!(&oracle(&root), &before, "undo after redo restores the pre-run tree");
        }
    }
}

// ---------------------------------------------------------------- rollback

#[test]
fn a_failed_run_is_rolled_back_and_the_record_says_so() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("keep.txt"), "original\n").unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/gone.txt"), "still here\n").unwrap();
    let before = oracle(&root);
    let policy = sb.policy("version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms } }\n");
    let out = sb.run(&[
        "run",
        "-p",
        &policy,
        "--",
        "sh",
        "-c",
        "echo clobbered > keep.txt; rm -r dir; mkdir -p new/deep; echo x > new/deep/f; exit 3",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(oracle(&root), before);
    let show = sb.ok(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let rec: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["show", &id, "--json"]).stdout).unwrap();
    assert_eq!(rec["snapshot"]["state"], "rolled-back");
    assert_eq!(rec["snapshot"]["restores"][0]["action"], "rollback");
    let letters: Vec<String> = rec["snapshot"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["letter"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(letters.contains(&"M keep.txt".to_string()), "{letters:?}");
    assert!(
        letters.contains(&"D dir/gone.txt".to_string()),
        "{letters:?}"
    );
    assert!(letters.contains(&"A new/deep/f".to_string()), "{letters:?}");
    let human = String::from_utf8(sb.ok(&["show", &id]).stdout).unwrap();
    assert!(human.contains("M keep.txt"), "{human}");
    // The rolled-back run's changes can be looked at again with redo.
    let undo = sb.run(&["undo"]);
    assert_eq!(code(&undo), 125, "{}", stderr(&undo));
    assert!(stderr(&undo).contains("rolled back"), "{}", stderr(&undo));
    sb.ok(&["redo"]);
    assert_eq!(
        fs::read_to_string(root.join("keep.txt")).unwrap(),
        "clobbered\n"
    );
}

#[test]
fn between_attempts_restore_gives_every_attempt_the_same_start() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("counter"), "").unwrap();
    let log = sb.file("log");
    let policy = sb.policy(
        "version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms } }\nrollback: { between_attempts: restore }\n",
    );
    let script = format!(
        "echo x >> counter; wc -c < counter >> {}; exit 1",
        log.display()
    );
    let out = sb.run(&["-q", "run", "-p", &policy, "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 1);
    let seen: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        seen,
        ["2", "2", "2"],
        "each attempt saw the file as it was before the run"
    );
    assert_eq!(fs::read_to_string(root.join("counter")).unwrap(), "");
}

#[test]
fn a_failing_validate_rolls_a_successful_command_back() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("code.rs"), "good\n").unwrap();
    let policy = sb.policy(
        "version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms } }\nrollback: { validate: [\"grep\", \"-q\", \"good\", \"code.rs\"] }\n",
    );
    let out = sb.run(&[
        "run",
        "-p",
        &policy,
        "--",
        "sh",
        "-c",
        "echo broken > code.rs",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rollback.validate failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(root.join("code.rs")).unwrap(), "good\n");
}

#[test]
fn git_metadata_is_never_snapshotted_or_restored() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join(".git")).unwrap();
    fs::write(
        root.join(".git/HEAD"),
        "0123456789012345678901234567890123456789\n",
    )
    .unwrap();
    fs::write(root.join("f"), "1").unwrap();
    sb.ok(&[
        "-q",
        "run",
        "--",
        "sh",
        "-c",
        "echo 2 > f; echo moved > .git/HEAD",
    ]);
    let out = sb.ok(&["undo"]);
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "1");
    assert_eq!(
        fs::read_to_string(root.join(".git/HEAD")).unwrap(),
        "moved\n",
        ".git is left alone"
    );
    assert!(stderr(&out).contains("HEAD moved"), "{}", stderr(&out));
}

#[test]
fn gitignored_and_excluded_paths_are_left_alone() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join(".gitignore"), "build/\n").unwrap();
    fs::create_dir(root.join("build")).unwrap();
    fs::create_dir(root.join("cache")).unwrap();
    fs::write(root.join("src.txt"), "src").unwrap();
    let policy = sb.policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { exclude: [\"cache/\"] } }\n",
    );
    let out = sb.run(&[
        "-q",
        "run",
        "-p",
        &policy,
        "--",
        "sh",
        "-c",
        "echo out > build/artifact; echo c > cache/entry; echo changed > src.txt; exit 1",
    ]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        fs::read_to_string(root.join("src.txt")).unwrap(),
        "src",
        "rolled back"
    );
    assert_eq!(
        fs::read_to_string(root.join("build/artifact")).unwrap(),
        "out\n",
        "ignored: untouched"
    );
    assert_eq!(
        fs::read_to_string(root.join("cache/entry")).unwrap(),
        "c\n",
        "excluded: untouched"
    );
}

#[test]
fn files_over_the_size_cap_are_listed_not_silently_dropped() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("big.bin"), vec![7u8; 4096]).unwrap();
    let policy = sb.policy("version: 1\nrollback: { on: never, scope: { max_file_size: 1KiB } }\n");
    let out = sb.ok(&["run", "-p", &policy, "--", "true"]);
    assert!(
        stderr(&out).contains("big.bin is over rollback.scope.max_file_size"),
        "{}",
        stderr(&out)
    );
    let runs: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["show", id, "--json"]).stdout).unwrap();
    assert_eq!(rec["snapshot"]["skipped"][0], "big.bin");
}

#[test]
fn a_snapshot_over_the_total_size_cap_stops_the_run_before_it_starts() {
    let sb = Sandbox::new();
    let root = sb.root();
    for i in 0..4 {
        fs::write(root.join(format!("f{i}")), vec![i as u8; 3000]).unwrap();
    }
    let marker = sb.file("ran");
    let policy = sb.policy("version: 1\nrollback: { scope: { max_total_size: 10KiB } }\n");
    let out = sb.run(&[
        "run",
        "-p",
        &policy,
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("over rollback.scope.max_total_size (10.0 KiB)"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the command was not run");
}

// ---------------------------------------------------------------- undo conflicts

#[test]
fn a_post_run_edit_blocks_undo_of_that_path_and_names_it() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("mine.txt"), "1").unwrap();
    fs::write(root.join("other.txt"), "1").unwrap();
    sb.ok(&[
        "-q",
        "run",
        "--",
        "sh",
        "-c",
        "echo 2 > mine.txt; echo 2 > other.txt; echo new > added.txt",
    ]);
    fs::write(root.join("mine.txt"), "my later edit").unwrap();

    let out = sb.run(&["undo"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("mine.txt"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("other.txt"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(root.join("other.txt")).unwrap(),
        "2\n",
        "a refused undo touches nothing"
    );

    sb.ok(&["undo", "other.txt", "added.txt"]);
    assert_eq!(fs::read_to_string(root.join("other.txt")).unwrap(), "1");
    assert!(!root.join("added.txt").exists());
    assert_eq!(
        fs::read_to_string(root.join("mine.txt")).unwrap(),
        "my later edit"
    );

    let dry = sb.ok(&["undo", "--dry-run", "--force", "mine.txt"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("restore mine.txt"));
    assert_eq!(
        fs::read_to_string(root.join("mine.txt")).unwrap(),
        "my later edit",
        "dry run"
    );
    sb.ok(&["undo", "--force", "mine.txt"]);
    assert_eq!(fs::read_to_string(root.join("mine.txt")).unwrap(), "1");
}

#[test]
fn undo_never_touches_paths_outside_the_scope() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir(root.join("sub")).unwrap();
    let outside = root.join("outside.txt");
    fs::write(&outside, "1").unwrap();
    let policy = sb.policy("version: 1\nrollback: { scope: { root: sub } }\n");
    sb.ok(&[
        "-q",
        "run",
        "-p",
        &policy,
        "--",
        "sh",
        "-c",
        "echo 2 > outside.txt; echo in > sub/in.txt",
    ]);
    sb.ok(&["undo"]);
    assert!(!root.join("sub/in.txt").exists());
    assert_eq!(
        fs::read_to_string(&outside).unwrap(),
        "2\n",
        "outside the scope: left as the run made it"
    );
    let out = sb.run(&["redo", "outside.txt"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
}

// ---------------------------------------------------------------- crashes

fn big_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:02}", i % 40));
        fs::create_dir_all(&dir).unwrap();
        let size = if i % 50 == 0 {
            200_000
        } else {
            2_000 + (i * 37) % 5_000
        };
        let byte = (i % 251) as u8;
        fs::write(dir.join(format!("f{i:05}")), vec![byte; size]).unwrap();
    }
}

/// Kills `cmd` with SIGKILL after `delay`, or lets it finish first.
fn kill_after(mut cmd: Command, delay: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits, up to 20 s, until no process whose command line holds `marker` is running.
fn wait_gone(marker: &str) {
    let running = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[track_caller]
fn assert_one_of(root: &Path, states: &[&State], what: &str) {
    let now = oracle(root);
    let stray: Vec<_> = now
        .keys()
        .filter(|k| k.starts_with(b".backstop-") || k.windows(10).any(|w| w == b"/.backstop"))
        .collect();
    assert!(
        stray.is_empty(),
        "{what}: staging files left behind: {stray:?}"
    );
    assert!(
        states.iter().any(|s| **s == now),
        "{what}: the tree is neither the before nor the after state"
    );
}

#[test]
fn kill_9_during_a_run_snapshot_or_rollback_leaves_before_or_after() {
    let sb = Sandbox::new();
    let root = sb.root();
    big_tree(&root, 1500);
    let before = oracle(&root);
    // The mutation itself is quick and done by the child, which outlives a killed
    // backstop; so "after" is the tree with it applied.
    let mutate = ": kill9-run-mutation; for d in d0*; do echo changed > $d/f0000${d#d0}; done; rm -rf d39; mkdir -p made && echo n > made/new";
    let mut expected_after = None;
    let timed = Instant::now();
    let policy = sb.policy("version: 1\nretry: { max_attempts: 1 }\n");
    let out = sb.run(&[
        "-q",
        "run",
        "-p",
        &policy,
        "--",
        "sh",
        "-c",
        &format!("{mutate}; exit 1"),
    ]);
    assert_eq!(code(&out), 1);
    let full = timed.elapsed();
    assert_eq!(oracle(&root), before, "the uninterrupted run rolled back");

    for step in 0..14u32 {
        let delay = full * step / 12;
        let mut cmd = sb.command(&[
            "-q",
            "run",
            "-p",
            &policy,
            "--",
            "sh",
            "-c",
            &format!("{mutate}; exit 1"),
        ]);
        cmd.stdin(Stdio::null());
        kill_after(cmd, delay);
        // The killed backstop's command, orphaned, finishes its mutation first (a walk
        // beside it would see directories vanish under it).
        wait_gone("kill9-run-mutation");
        sb.ok(&["-q", "snapshot"]); // the next command finishes a half-done rollback
        let now = oracle(&root);
        if now != before {
            let after = expected_after.get_or_insert_with(|| now.clone());
            assert_one_of(&root, &[&before, after], &format!("kill after {delay:?}"));
            // Put it back for the next round, through backstop itself.
            sb.ok(&["-q", "undo", "--force"]);
        }
        assert_eq!(oracle(&root), before, "round {step}: back to the start");
    }
}

#[test]
fn kill_9_during_undo_is_finished_by_the_next_command() {
    let sb = Sandbox::new();
    let root = sb.root();
    big_tree(&root, 1500);
    let before = oracle(&root);
    let policy = sb.policy("version: 1\nrollback: { on: never }\n");
    let mutate = "for d in d*; do for f in $d/*; do echo changed > $f; done; done";
    sb.ok(&["-q", "run", "-p", &policy, "--", "sh", "-c", mutate]);
    let after = oracle(&root);
    let timed = Instant::now();
    sb.ok(&["-q", "undo"]);
    let full = timed.elapsed();
    assert_eq!(oracle(&root), before);
    sb.ok(&["-q", "redo"]);

    for step in 0..12u32 {
        let delay = full * step / 10;
        kill_after(sb.command(&["-q", "undo"]), delay);
        sb.ok(&["-q", "snapshot"]);
        assert_one_of(
            &root,
            &[&before, &after],
            &format!("undo killed after {delay:?}"),
        );
        let out = if oracle(&root) == before {
            sb.run(&["-q", "redo"])
        } else {
            sb.run(&["-q", "runs"])
        };
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            oracle(&root),
            after,
            "step {step}: redo (or nothing) brings back the after state"
        );
    }
}

// ---------------------------------------------------------------- full disk

pub(crate) struct Mount(pub(crate) PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_snapshot_that_fills_the_disk_exits_125_runs_nothing_and_leaves_the_store_clean() {
    let _mounting = crate::helpers::mounting();
    let sb = Sandbox::new();
    let root = sb.root();
    let store = sb.file("store");
    fs::create_dir(&store).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&store)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        // Mounting needs root (CI runs as root); say so rather than pass quietly.
        let root_user = rustix::process::geteuid().as_raw() == 0;
        assert!(
            !root_user,
            "running as root but cannot mount a tmpfs for the ENOSPC test"
        );
        eprintln!("SKIPPED a_snapshot_that_fills_the_disk: needs root to mount a small tmpfs");
        return;
    }
    let _mount = Mount(store.clone());
    fs::write(root.join("small.txt"), "fits").unwrap();
    fs::write(
        root.join("large.bin"),
        (0..3_000_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let marker = sb.file("ran");
    let out = sb.run(&["run", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("snapshot"), "{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("space"),
        "names the cause: {}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the command was not run");
    let mut leftovers = Vec::new();
    for e in walk_files(&store) {
        let name = e.to_string_lossy().into_owned();
        if name.contains("/objects/") && !name.ends_with(".lock") || name.contains("/runs/") {
            leftovers.push(name);
        }
    }
    assert!(leftovers.is_empty(), "nothing half-written: {leftovers:?}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------- concurrency

#[test]
fn two_runs_on_one_tree_never_interleave() {
    let sb = Sandbox::new();
    fs::write(sb.root().join("f"), "x").unwrap();
    let log = sb.file("log");
    let script = |name: &str| {
        format!(
            "echo start-{name} >> {0}; sleep 0.3; echo end-{name} >> {0}",
            log.display()
        )
    };
    let a = sb
        .command(&["-q", "run", "--", "sh", "-c", &script("a")])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let b = sb
        .command(&["-q", "run", "--", "sh", "-c", &script("b")])
        .spawn()
        .unwrap();
    for mut c in [a, b] {
        assert!(c.wait().unwrap().success());
    }
    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, ["start-a", "end-a", "start-b", "end-b"]);
}

#[test]
fn no_wait_fails_at_once_when_the_tree_is_busy() {
    let sb = Sandbox::new();
    let mut a = sb
        .command(&["-q", "run", "--", "sleep", "1"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = sb.run(&["run", "--no-wait", "--", "true"]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds this tree's lock"),
        "{}",
        stderr(&out)
    );
    assert!(a.wait().unwrap().success());
}

// ---------------------------------------------------------------- gc

#[test]
fn gc_keeps_what_the_kept_runs_need() {
    let sb = Sandbox::new();
    let root = sb.root();
    for i in 0..4 {
        sb.ok(&["-q", "run", "--", "sh", "-c", &format!("echo {i} > f{i}")]);
    }
    sb.ok(&["gc", "--keep", "2"]);
    let runs: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    // The newest runs can still be undone, byte for byte.
    sb.ok(&["-q", "undo"]);
    assert!(!root.join("f3").exists());
    sb.ok(&["-q", "redo"]);
    assert_eq!(fs::read_to_string(root.join("f3")).unwrap(), "3\n");
}

// ---------------------------------------------------------------- steps

const TASK: &str = r#"version: 1
retry: { max_attempts: 1 }
rollback: { to: TO }
steps:
  - { name: one, run: "echo 1 > state; echo one > one.txt" }
  - { name: two, run: "echo 2 > state; echo two > two.txt", approve: true }
  - { name: three, run: "echo 3 > state; echo three > three.txt; exit 4" }
"#;

#[test]
fn a_step_that_asks_for_approval_needs_a_terminal_or_yes() {
    let sb = Sandbox::new();
    let policy = sb.policy(&TASK.replace("TO", "step"));
    let out = sb.run(&["run", "-p", &policy]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("step `two` asks for approval"),
        "{}",
        stderr(&out)
    );
    assert!(!sb.root().join("one.txt").exists(), "nothing ran");
}

#[test]
fn a_failed_step_goes_back_to_its_checkpoint_and_earlier_steps_stand() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("state"), "0\n").unwrap();
    let policy = sb.policy(&TASK.replace("TO", "step"));
    let out = sb.run(&["run", "-p", &policy, "--yes"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("before step `three`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(root.join("state")).unwrap(), "2\n");
    assert!(root.join("one.txt").exists() && root.join("two.txt").exists());
    assert!(!root.join("three.txt").exists());
    let runs: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["runs", "--json"]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&sb.ok(&["show", id, "--json"]).stdout).unwrap();
    let names: Vec<&str> = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two", "three"]);
    // The steps that stood can be undone as one run.
    sb.ok(&["-q", "undo"]);
    assert_eq!(fs::read_to_string(root.join("state")).unwrap(), "0\n");
    assert!(!root.join("one.txt").exists());
}

#[test]
fn rollback_to_start_undoes_the_whole_task() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::write(root.join("state"), "0\n").unwrap();
    let before = oracle(&root);
    let policy = sb.policy(&TASK.replace("TO", "start"));
    let out = sb.run(&["run", "-p", &policy, "--yes"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(oracle(&root), before);
}
