//! A `kill -9` campaign: every scenario that writes the tree or the store is killed
//! at each of its crash points in turn (`BACKSTOP_CRASH_AT=*:N`, see `src/crash.rs`),
//! the next backstop command finishes what was left, and then the tree must be
//! exactly one of the states the scenario may legitimately leave — never a mix — and
//! the store must pass `backstop fsck`.
//!
//! CI runs a seeded subset of the points (every `STRIDE`-th, from an offset the seed
//! picks); `BACKSTOP_CAMPAIGN=full` runs every point, and prints the count.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::undo::{State, oracle};

/// In CI, one point in this many.
const STRIDE: u64 = 3;
/// Fixed, so a failure names a point that can be run again.
const SEED: u64 = 0x5eed_0007;
/// No scenario has anywhere near this many points; past it the campaign fails.
const LIMIT: u64 = 2_000;

/// A campaign's directory: the tree, the store and the policy, owned by the user the
/// commands run as.
struct Field {
    dir: tempfile::TempDir,
    nobody: bool,
}

impl Field {
    fn new(nobody: bool) -> Field {
        let dir = tempfile::Builder::new()
            .prefix("backstop-crash-")
            .tempdir()
            .unwrap();
        Field { dir, nobody }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn policy(&self) -> String {
        self.dir.path().join("policy.yaml").display().to_string()
    }

    /// Lays the tree out afresh with `build`, with an empty store.
    fn reset(&self, policy: &str, build: impl Fn(&Path)) {
        for d in [self.root(), self.store()] {
            if d.exists() {
                let _ = Command::new("chmod")
                    .arg("-R")
                    .arg("u+rwx")
                    .arg(&d)
                    .status();
                fs::remove_dir_all(&d).unwrap();
            }
            fs::create_dir_all(&d).unwrap();
        }
        fs::write(self.policy(), policy).unwrap();
        build(&self.root());
        if self.nobody {
            fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            fs::set_permissions(self.policy(), fs::Permissions::from_mode(0o644)).unwrap();
            let ok = Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(self.root())
                .arg(self.store())
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }

    fn backstop(&self, args: &[&str], crash_at: Option<u64>) -> Output {
        let mut cmd = if self.nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(super::helpers::BIN);
            c
        } else {
            Command::new(super::helpers::BIN)
        };
        cmd.args(args)
            .current_dir(self.root())
            .env("BACKSTOP_HOME", self.store())
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("BACKSTOP_CRASH_AT")
            .stdin(Stdio::null());
        if let Some(n) = crash_at {
            cmd.env("BACKSTOP_CRASH_AT", format!("*:{n}"));
        }
        cmd.output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.backstop(args, None);
        assert!(
            out.status.code().is_some_and(|c| c == 0),
            "backstop {args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// One thing to kill: how to set it up, the command to kill, and the states it may
/// leave (after the next command has finished what it left).
struct Scenario {
    name: &'static str,
    policy: &'static str,
    /// Commands run (to the end) before the one that is killed.
    prepare: Vec<Vec<&'static str>>,
    killed: Vec<&'static str>,
    /// States the tree may be in, each built by a function on an empty tree.
    states: Vec<fn(&Path)>,
    build: fn(&Path),
}

fn base(root: &Path) {
    fs::create_dir_all(root.join("src/deep")).unwrap();
    for i in 0..6 {
        fs::write(root.join(format!("src/f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    fs::write(root.join("src/deep/keep.txt"), "deep\n").unwrap();
    fs::write(root.join("gone.txt"), "to be deleted\n").unwrap();
    std::os::unix::fs::symlink("src/f0.txt", root.join("link")).unwrap();
    fs::create_dir(root.join("ro")).unwrap();
    fs::write(root.join("ro/inside.txt"), "inside\n").unwrap();
}

/// What `MUTATE` makes of `base`.
fn mutated(root: &Path) {
    base(root);
    for i in 0..6 {
        fs::write(root.join(format!("src/f{i}.txt")), format!("changed {i}\n")).unwrap();
    }
    fs::remove_file(root.join("gone.txt")).unwrap();
    fs::create_dir_all(root.join("new/dir")).unwrap();
    fs::write(root.join("new/dir/x.txt"), "new\n").unwrap();
    fs::remove_file(root.join("link")).unwrap();
    std::os::unix::fs::symlink("src/f1.txt", root.join("link")).unwrap();
    fs::write(root.join("ro/made.txt"), "made\n").unwrap();
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
}

const MUTATE: &str = "chmod u+w ro 2>/dev/null; for i in 0 1 2 3 4 5; do echo changed $i > src/f$i.txt; done; \
rm -f gone.txt; mkdir -p new/dir; echo new > new/dir/x.txt; ln -sfn src/f1.txt link; \
echo made > ro/made.txt; chmod 555 ro";

/// What the second step of the task makes of `mutated`.
fn step_two(root: &Path) {
    mutated(root);
    fs::write(root.join("src/deep/keep.txt"), "step two\n").unwrap();
}

fn scenarios() -> Vec<Scenario> {
    let fail = format!("{MUTATE}; exit 1");
    let fail: &'static str = Box::leak(fail.into_boxed_str());
    let succeed = format!("{MUTATE}; exit 0");
    let succeed: &'static str = Box::leak(succeed.into_boxed_str());
    vec![
        Scenario {
            name: "run and rollback",
            policy: "version: 1\nretry: { max_attempts: 1 }\n",
            prepare: vec![],
            killed: vec!["run", "-p", "{policy}", "--", "sh", "-c", fail],
            states: vec![base, mutated],
            build: base,
        },
        Scenario {
            name: "restore between attempts",
            policy: "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms } }\nrollback: { between_attempts: restore }\n",
            prepare: vec![],
            killed: vec!["run", "-p", "{policy}", "--", "sh", "-c", fail],
            states: vec![base, mutated],
            build: base,
        },
        Scenario {
            name: "step rollback",
            policy: Box::leak(
                format!(
                    "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: step }}\nsteps:\n  - {{ name: one, run: [sh, -c, {:?}] }}\n  - {{ name: two, run: [sh, -c, \"echo step two > src/deep/keep.txt; exit 1\"] }}\n",
                    MUTATE
                )
                .into_boxed_str(),
            ),
            prepare: vec![],
            killed: vec!["run", "-p", "{policy}"],
            states: vec![base, mutated, step_two],
            build: base,
        },
        Scenario {
            name: "undo",
            policy: "version: 1\n",
            prepare: vec![vec!["run", "-p", "{policy}", "--", "sh", "-c", succeed]],
            killed: vec!["undo"],
            states: vec![mutated, base],
            build: base,
        },
        Scenario {
            name: "redo",
            policy: "version: 1\n",
            prepare: vec![
                vec!["run", "-p", "{policy}", "--", "sh", "-c", succeed],
                vec!["undo"],
            ],
            killed: vec!["redo"],
            states: vec![base, mutated],
            build: base,
        },
        Scenario {
            name: "gc",
            policy: "version: 1\n",
            prepare: vec![
                vec!["run", "-p", "{policy}", "--", "sh", "-c", "echo one > src/f0.txt"],
                vec!["run", "-p", "{policy}", "--", "sh", "-c", succeed],
            ],
            killed: vec!["gc", "--keep", "1"],
            states: vec![mutated],
            build: base,
        },
    ]
}

fn built(f: fn(&Path)) -> State {
    let dir = tempfile::tempdir().unwrap();
    f(dir.path());
    oracle(dir.path())
}

/// Runs every scenario, killed at each point the selection keeps; returns how many
/// points were run.
fn campaign(nobody: bool) -> u64 {
    let full = std::env::var("BACKSTOP_CAMPAIGN").is_ok_and(|v| v == "full");
    let field = Field::new(nobody);
    let mut total = 0;
    for (k, sc) in scenarios().into_iter().enumerate() {
        let policy = field.policy();
        let args = |a: &[&'static str]| -> Vec<String> {
            a.iter().map(|w| w.replace("{policy}", &policy)).collect()
        };
        let states: Vec<State> = sc.states.iter().map(|f| built(*f)).collect();
        let offset = (SEED.wrapping_mul(k as u64 + 1) >> 7) % STRIDE;
        let mut n = 0;
        loop {
            n += 1;
            assert!(n < LIMIT, "{}: no end to its crash points", sc.name);
            if !full && n % STRIDE != offset && n > 1 {
                continue;
            }
            field.reset(sc.policy, sc.build);
            for p in &sc.prepare {
                let a = args(p);
                field.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
            }
            let a = args(&sc.killed);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = field.backstop(&a, Some(n));
            let killed = out.status.code().is_none();
            // The next command finishes what the killed one left.
            let next = field.backstop(&["snapshot"], None);
            let what = format!(
                "{} killed at point {n} (nobody: {nobody}); stderr:\n{}\nnext:\n{}",
                sc.name,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&next.stderr)
            );
            assert_eq!(next.status.code(), Some(0), "{what}");
            let now = oracle(&field.root());
            assert!(
                states.contains(&now),
                "{what}\nthe tree is none of the states it may be in: {:#?}",
                now.keys()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            );
            let fsck = field.backstop(&["fsck"], None);
            assert_eq!(
                fsck.status.code(),
                Some(0),
                "{what}\nfsck:\n{}{}",
                String::from_utf8_lossy(&fsck.stdout),
                String::from_utf8_lossy(&fsck.stderr)
            );
            total += 1;
            if !killed {
                break;
            }
        }
        if full {
            eprintln!("campaign: {}: {n} crash points", sc.name);
        }
    }
    total
}

#[test]
fn kill_9_at_every_crash_point_leaves_a_whole_state_and_a_sound_store() {
    let points = campaign(false);
    eprintln!("campaign as this user: {points} kill points run");
    assert!(points > 20, "the campaign ran only {points} points");
}

#[test]
fn kill_9_campaign_as_a_plain_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already a plain user: the other campaign covers it.
        eprintln!("SKIPPED kill_9_campaign_as_a_plain_user: the tests already run unprivileged");
        return;
    }
    let points = campaign(true);
    eprintln!("campaign as nobody: {points} kill points run");
    assert!(points > 20, "the campaign ran only {points} points");
}
