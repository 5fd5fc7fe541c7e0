//! A small fluent harness around the real `backstop` binary.
//!
//! Every [`Test`] gets a temporary directory of its own, laid out as
//!
//! - `tree/`: backstop's working directory (and so its rollback scope), where policy
//!   files and scripts are written;
//! - `out/`: where the commands under test leave what they observed (`$OUT/log`),
//!   outside the tree so that a run that fails and is rolled back does not erase it;
//! - `store/`: the run store (`BACKSTOP_HOME`), so tests never see each other's runs.
//!
//! Colour is off (`NO_COLOR=1`) and `GITHUB_ACTIONS`, `CI` and the CI workspace
//! variables are removed unless a test sets them, so the suite behaves the same on a laptop and in CI.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_backstop");

/// Held to write by a test while it has something mounted, to read by a test that
/// counts a run's walks: a mount table that changed makes every run's change feed read
/// the whole tree at its next walk.
pub static MOUNTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// [`MOUNTS`], to mount something.
pub fn mounting() -> std::sync::RwLockWriteGuard<'static, ()> {
    MOUNTS.write().unwrap_or_else(|p| p.into_inner())
}

/// [`MOUNTS`], to count walks.
pub fn no_mounts() -> std::sync::RwLockReadGuard<'static, ()> {
    MOUNTS.read().unwrap_or_else(|p| p.into_inner())
}

/// No single backstop invocation in this suite should come near this; past it the
/// process is killed and the test fails instead of hanging.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A test's directory and store, and what can be asked of them.
pub struct Sandbox {
    dir: TempDir,
}

pub struct Test {
    sandbox: Sandbox,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    status: i32,
    stdout: Option<String>,
    stdout_contains: Vec<String>,
    stderr: Option<String>,
    stderr_contains: Vec<String>,
    stderr_lacks: Vec<String>,
}

impl Test {
    pub fn new() -> Test {
        let dir = tempfile::Builder::new()
            .prefix("backstop-it-")
            .tempdir()
            .expect("create a temporary directory");
        for sub in ["tree", "out"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create test directories");
        }
        Test {
            sandbox: Sandbox { dir },
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            status: 0,
            stdout: None,
            stdout_contains: Vec::new(),
            stderr: None,
            stderr_contains: Vec::new(),
            stderr_lacks: Vec::new(),
        }
    }

    /// Writes `./backstop.yaml`, which `backstop run` picks up without `-p`.
    pub fn policy(self, yaml: &str) -> Test {
        self.write("backstop.yaml", yaml)
    }

    /// Writes a file in the test's tree.
    pub fn write(self, name: &str, contents: &str) -> Test {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directory");
        }
        std::fs::write(&path, contents).expect("write test file");
        self
    }

    /// Writes a file and sets its mode (e.g. 0o644 for a script without the x bit).
    pub fn write_mode(self, name: &str, contents: &str, mode: u32) -> Test {
        let test = self.write(name, contents);
        let path = test.path().join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod test file");
        test
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Test {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn status(mut self, code: i32) -> Test {
        self.status = code;
        self
    }

    /// The whole of stdout, exactly.
    pub fn stdout(mut self, text: &str) -> Test {
        self.stdout = Some(text.into());
        self
    }

    pub fn stdout_contains(mut self, text: &str) -> Test {
        self.stdout_contains.push(text.into());
        self
    }

    /// The whole of stderr, exactly.
    pub fn stderr(mut self, text: &str) -> Test {
        self.stderr = Some(text.into());
        self
    }

    pub fn stderr_contains(mut self, text: &str) -> Test {
        self.stderr_contains.push(text.into());
        self
    }

    pub fn stderr_lacks(mut self, text: &str) -> Test {
        self.stderr_lacks.push(text.into());
        self
    }

    /// A `backstop` command with this test's directory, store and environment, for
    /// tests that must drive the process themselves (signals, memory).
    pub fn command(&self) -> Command {
        let mut cmd = self.base_command();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(&self.args);
        cmd
    }

    /// Runs backstop and checks the expectations set so far.
    #[track_caller]
    pub fn run(self) -> Output {
        let started = Instant::now();
        let ran = collect(self.command(), self.stdin.clone());
        let elapsed = started.elapsed();
        let output = Output {
            sandbox: self.sandbox,
            status: ran.status,
            stdout: ran.stdout,
            stderr: ran.stderr,
            elapsed,
        };
        let context = output.context();
        assert_eq!(
            output.status, self.status,
            "unexpected exit status\n{context}"
        );
        if let Some(want) = &self.stdout {
            assert_eq!(&output.stdout, want, "unexpected stdout\n{context}");
        }
        for want in &self.stdout_contains {
            assert!(
                output.stdout.contains(want.as_str()),
                "stdout lacks {want:?}\n{context}"
            );
        }
        if let Some(want) = &self.stderr {
            assert_eq!(&output.stderr, want, "unexpected stderr\n{context}");
        }
        for want in &self.stderr_contains {
            assert!(
                output.stderr.contains(want.as_str()),
                "stderr lacks {want:?}\n{context}"
            );
        }
        for unwanted in &self.stderr_lacks {
            assert!(
                !output.stderr.contains(unwanted.as_str()),
                "stderr has {unwanted:?}\n{context}"
            );
        }
        output
    }
}

impl std::ops::Deref for Test {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// A finished backstop invocation, with its directory kept for inspection.
pub struct Output {
    sandbox: Sandbox,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl std::ops::Deref for Output {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Output {
    fn context(&self) -> String {
        format!(
            "--- status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }
}

impl Sandbox {
    /// The tree: backstop's working directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("tree")
    }

    /// Where commands leave what they observed (`$OUT`), outside the tree.
    pub fn out_path(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// A backstop command in the tree, with this sandbox's store and `$OUT`.
    fn base_command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.path())
            .env("BACKSTOP_HOME", self.dir.path().join("store"))
            .env("OUT", self.out_path())
            .env("NO_COLOR", "1")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("CI")
            .env_remove("GITHUB_WORKSPACE")
            .env_remove("CI_PROJECT_DIR")
            .env_remove("XDG_STATE_HOME");
        cmd
    }

    /// A file the command wrote in `$OUT`, as text ("" if it does not exist).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.out_path().join(name)).unwrap_or_default()
    }

    /// The lines of a log file the command wrote.
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.read(name).lines().map(str::to_owned).collect()
    }

    /// Whether the command left `name` in `$OUT`.
    pub fn exists(&self, name: &str) -> bool {
        self.out_path().join(name).exists()
    }

    /// Runs another backstop command in the same directory and store.
    pub fn backstop(&self, args: &[&str]) -> Ran {
        self.backstop_in(".", args)
    }

    /// Runs another backstop command in the same directory and store, with `env` set.
    pub fn backstop_env(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        let mut cmd = self.base_command();
        cmd.envs(env.iter().copied()).args(args);
        collect(cmd, None)
    }

    /// Runs another backstop command in a subdirectory, with the same store.
    pub fn backstop_in(&self, subdir: &str, args: &[&str]) -> Ran {
        let mut cmd = self.base_command();
        cmd.current_dir(self.path().join(subdir)).args(args);
        collect(cmd, None)
    }

    /// `backstop runs --json`, parsed.
    #[track_caller]
    pub fn runs(&self) -> Vec<Value> {
        let ran = self.backstop(&["runs", "--json"]);
        assert_eq!(ran.status, 0, "backstop runs --json failed: {}", ran.stderr);
        match serde_json::from_str(&ran.stdout).expect("runs --json is JSON") {
            Value::Array(rows) => rows,
            other => panic!("runs --json is not an array: {other}"),
        }
    }

    /// The newest run's record, from `backstop show <id> --json`.
    #[track_caller]
    pub fn record(&self) -> Value {
        let runs = self.runs();
        let id = runs
            .first()
            .and_then(|r| r["id"].as_str())
            .expect("a run was recorded")
            .to_string();
        self.show(&id)
    }

    /// `backstop show <id> --json`, parsed.
    #[track_caller]
    pub fn show(&self, id: &str) -> Value {
        let ran = self.backstop(&["show", id, "--json"]);
        assert_eq!(ran.status, 0, "backstop show failed: {}", ran.stderr);
        serde_json::from_str(&ran.stdout).expect("show --json is JSON")
    }
}

/// The attempts of a run record.
#[track_caller]
pub fn attempts(record: &Value) -> &Vec<Value> {
    record["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("record has no attempts array: {record:#}"))
}

pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to the end with `stdin` (or /dev/null) and collects its output.
fn collect(mut cmd: Command, stdin: Option<Vec<u8>>) -> Ran {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn backstop");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_bounded(&mut child, WATCHDOG);
    // Once backstop has exited, its output pipes close unless a process it failed to
    // end still holds them: say so rather than hang the suite.
    let limit = Duration::from_secs(10);
    let stdout = out.recv_timeout(limit).unwrap_or_else(|_| {
        panic!("backstop exited with {status} but a leftover process still holds its stdout")
    });
    let stderr = err.recv_timeout(limit).unwrap_or_else(|_| {
        panic!("backstop exited with {status} but a leftover process still holds its stderr")
    });
    Ran {
        status,
        stdout,
        stderr,
    }
}

/// Reads `pipe` to its end on a thread; the text arrives on the returned channel.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = pipe.read_to_end(&mut v);
        let _ = tx.send(String::from_utf8_lossy(&v).into_owned());
    });
    rx
}

/// Waits for `child` for at most `limit`, killing it (and failing) past that. The exit
/// code, or 1000 + N if backstop itself died of signal N.
#[track_caller]
pub fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status
                .code()
                .unwrap_or_else(|| 1000 + status.signal().unwrap_or(0));
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("backstop did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every few milliseconds for at most `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The live processes whose command line contains `marker` (zombies have an empty
/// command line, so a killed but not yet reaped process does not count). Each one
/// found is SIGKILLed by pid, so a failing test leaves nothing behind.
pub fn leftovers(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                if let Ok(pid) = pid.parse::<libc::pid_t>() {
                    // SAFETY: kill(2) by pid on a process this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                found.push(format!("{pid}: {cmdline}"));
            }
        }
    }
    found
}

fn truncate(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &s[..end], s.len())
    }
}

/// A `backstop run -- sh -c SCRIPT` held in the middle of its command: `script` runs,
/// then the command waits until [`Paused::resume`] (or the guard's drop, so a failed
/// assertion never leaves it hanging), then runs `then`.
pub struct Paused {
    child: Option<std::process::Child>,
    go: PathBuf,
}

impl Paused {
    /// Starts the run and returns once its command has run `script`.
    #[track_caller]
    pub fn start(test: &Test, script: &str, then: &str) -> Paused {
        let go = test.out_path().join("go");
        let command = format!(
            r#"{script}; touch "$OUT/started"; while [ ! -e "$OUT/go" ]; do sleep 0.02; done; {then}"#
        );
        let child = test
            .command()
            .args(["run", "--", "sh", "-c", &command])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start backstop");
        let paused = Paused {
            child: Some(child),
            go,
        };
        assert!(
            eventually(Duration::from_secs(20), || test
                .out_path()
                .join("started")
                .exists()),
            "the command never started"
        );
        paused
    }

    /// Lets the command go on, and returns backstop's exit code and stderr.
    pub fn resume(mut self) -> (Option<i32>, String) {
        let _ = std::fs::write(&self.go, "");
        let out = self
            .child
            .take()
            .expect("resumed once")
            .wait_with_output()
            .expect("wait for backstop");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.go, "");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Makes sure the system commands `needed` are there, for tests that judge backstop by
/// real tools (promtool, redis-server, valkey-server): on a machine that lacks them,
/// `install` (a shell command) runs once, as root, under a lock shared by every test
/// binary, so `cargo test` alone works on a fresh machine; elsewhere a failure says to
/// run `install` (as `.ci/run` does). Each caller keeps its own `OnceLock`.
pub fn debian_tools(needed: &[&str], install: &str) {
    let have = || {
        needed.iter().all(|c| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c} >/dev/null")])
                .status()
                .is_ok_and(|s| s.success())
        })
    };
    if have() {
        return;
    }
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/apt-tests.lock");
    let _ = std::fs::create_dir_all(lock.parent().expect("target/"));
    let file = std::fs::File::create(&lock).expect("create the apt lock");
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if have() {
        return;
    }
    let installed = rustix::process::geteuid().is_root()
        && Command::new("sh")
            .args(["-c", install])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        installed || have(),
        "{} needed: {install} (.ci/run does)",
        needed.join(", ")
    );
}
