//! The real attempter: runs each attempt as a child process in its own process group.
//!
//! A timeout ends the whole group (SIGTERM, `kill_grace`, then SIGKILL), so no
//! grandchild outlives its attempt, and a failed attempt's leftovers are ended
//! before the next one starts. SIGINT or SIGTERM sent to backstop is passed on to
//! the group. Output is inherited untouched unless the policy has output patterns;
//! then it is piped through, byte for byte, and scanned on the way. What left the
//! group (`setsid`, a daemon) is ended after every attempt by [`crate::reaper`].

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::attempt::{AttemptOutcome, AttemptSpec, Attempter, End, StdinFrom};
use crate::engine::{Interrupt, wait_for_interrupt};
use crate::policy::DefaultAnswer;
use crate::scan::LineScan;
use crate::stdin::StdinReplay;
use crate::terminal::{Terminal, set_foreground};

/// After the command exits, how long its output may sit idle before backstop stops
/// waiting for it (a background process it left may hold the pipe open).
const OUTPUT_IDLE: Duration = Duration::from_millis(500);

/// Runs each attempt as what it is: a process, or a model call.
pub struct RealAttempter {
    pub process: ProcessRunner,
    pub calls: crate::call::client::ModelClient,
}

impl Attempter for RealAttempter {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        match spec.call {
            Some(work) => self.calls.attempt(&spec, work).await,
            None => self.process.attempt(spec).await,
        }
    }

    fn answer(&mut self, answer: &DefaultAnswer) {
        self.process.answer(answer);
    }
}

pub struct ProcessRunner {
    terminal: Option<Terminal>,
    replay: Option<StdinReplay>,
    interrupt: Interrupt,
}

impl ProcessRunner {
    pub fn new(interrupt: Interrupt) -> ProcessRunner {
        crate::reaper::adopt_orphans();
        let terminal = Terminal::detect();
        // A terminal is inherited; so is a character device such as /dev/null, which
        // gives every attempt the same (nothing) without a copy.
        let replay =
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) || stdin_is_char_device() {
                None
            } else {
                Some(StdinReplay::from_stdin())
            };
        ProcessRunner {
            terminal,
            replay,
            interrupt,
        }
    }
}

impl Attempter for ProcessRunner {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let outcome = |end, matched| AttemptOutcome {
            end,
            matched,
            started_at,
            duration: t0.elapsed(),
            no_retry: None,
            call: None,
        };

        let foreground = matches!(spec.stdin, StdinFrom::Inherit)
            .then_some(self.terminal)
            .flatten();
        let mut cmd = std::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(match (&spec.stdin, &self.replay) {
            (StdinFrom::Inherit, None) => Stdio::inherit(),
            (StdinFrom::Inherit, Some(_)) | (StdinFrom::Bytes(_), _) => Stdio::piped(),
            (StdinFrom::Null, _) => Stdio::null(),
        });
        let scanning = spec.scanner.is_active();
        let out = || {
            if scanning {
                Stdio::piped()
            } else {
                Stdio::inherit()
            }
        };
        cmd.stdout(out()).stderr(out());
        if foreground.is_some() {
            // The child must be the terminal's foreground before it execs and reads
            // a key; as a shell does, it sets that itself between fork and exec.
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    set_foreground(libc::getpid());
                    Ok(())
                });
            }
        } else {
            // Without pre_exec, std can use posix_spawn, the cheaper way to start a child.
            cmd.process_group(0);
        }
        let mut child = match tokio::process::Command::from(cmd).spawn() {
            Ok(child) => child,
            Err(e) => return outcome(spawn_failure(&spec.argv[0], &e), Vec::new()),
        };
        let pgid = child.id().map_or(0, |id| id as libc::pid_t);
        // tokio reaps this one; the reaper must leave it (and its zombie) alone.
        crate::reaper::own(pgid);
        if let Some(t) = foreground {
            t.give_to(pgid);
        }

        if let Some(pipe) = child.stdin.take().and_then(|p| p.into_owned_fd().ok()) {
            let pipe = std::fs::File::from(pipe);
            match (&spec.stdin, &self.replay) {
                (StdinFrom::Bytes(bytes), _) => {
                    let bytes = bytes.clone();
                    std::thread::spawn(move || {
                        let mut pipe = pipe;
                        let _ = pipe.write_all(&bytes);
                    });
                }
                (_, Some(replay)) => replay.feed(pipe),
                _ => {}
            }
        }
        let mut pumps = Vec::new();
        if let Some(p) = child.stdout.take().and_then(|p| p.into_owned_fd().ok()) {
            pumps.push(Pump::start(
                p.into(),
                std::io::stdout(),
                spec.scanner.stream(),
            ));
        }
        if let Some(p) = child.stderr.take().and_then(|p| p.into_owned_fd().ok()) {
            pumps.push(Pump::start(
                p.into(),
                std::io::stderr(),
                spec.scanner.stream(),
            ));
        }

        let timer = async {
            match spec.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let mut interrupt = self.interrupt.clone();
        let end = tokio::select! {
            status = child.wait() => status.map_or(End::Exited { code: 1 }, end_of),
            () = timer => {
                terminate(&mut child, pgid, libc::SIGTERM, spec.kill_grace).await;
                let after_ms = spec.timeout.map_or(0, crate::policy::values::millis);
                End::TimedOut { after_ms, deadline: spec.timeout_is_deadline }
            }
            signal = wait_for_interrupt(&mut interrupt) => {
                terminate(&mut child, pgid, signal, spec.kill_grace).await;
                End::Interrupted { signal }
            }
        };
        crate::reaper::disown(pgid);
        if let Some(t) = foreground {
            t.take_back();
        }
        if !end.success() {
            end_leftovers(pgid, spec.kill_grace).await;
        }
        // Whatever the attempt started and left running, in its group or out of it,
        // ends with it, success or not: a daemon left behind could write into the
        // tree after the after-snapshot, the rollback, or the next attempt's start.
        crate::reaper::end_descendants(spec.kill_grace).await;
        let mut matched = Vec::new();
        for pump in pumps {
            matched.extend(pump.finish().await);
        }
        matched.sort_unstable();
        matched.dedup();
        let mut result = outcome(end, matched);
        if self.replay.as_ref().is_some_and(|r| !r.replayable()) {
            result.no_retry = Some(format!(
                "stdin is over the replay limit ({} MiB)",
                crate::stdin::REPLAY_LIMIT >> 20
            ));
        }
        result
    }

    fn answer(&mut self, answer: &DefaultAnswer) {
        let _ = std::io::stdout().write_all(answer.stdout.as_bytes());
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(answer.stderr.as_bytes());
    }
}

fn stdin_is_char_device() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_char_device())
}

fn end_of(status: ExitStatus) -> End {
    match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited { code },
        (None, Some(signal)) => End::Signaled { signal },
        (None, None) => End::Exited { code: 1 },
    }
}

fn spawn_failure(program: &str, e: &std::io::Error) -> End {
    let detail = crate::error::io_message(e);
    match e.kind() {
        std::io::ErrorKind::NotFound => End::SpawnFailed {
            code: crate::exit_code::NOT_FOUND,
            message: format!("command not found: {program}"),
        },
        _ => End::SpawnFailed {
            code: crate::exit_code::CANNOT_EXECUTE,
            message: format!("cannot execute {program}: {}", detail.to_lowercase()),
        },
    }
}

fn signal_group(pgid: libc::pid_t, signal: i32) -> bool {
    // SAFETY: kill(2) on a process group we created; pgid > 1 is checked.
    pgid > 1 && unsafe { libc::kill(-pgid, signal) } == 0
}

/// Whether the group has a member that is still running. A member that has died but
/// not been reaped yet (a zombie waiting for whoever adopted it, which may be slow, or
/// backstop itself when it is PID 1) does not count: it can hold nothing open.
fn group_alive(pgid: libc::pid_t) -> bool {
    if !signal_group(pgid, 0) {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in procs.flatten() {
        let name = entry.file_name();
        if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<libc::pid_t>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

/// Sends `signal` to the attempt's group, gives it `grace` to exit, then kills the
/// group. Returns once the child is reaped and the group is gone.
async fn terminate(child: &mut Child, pgid: libc::pid_t, signal: i32, grace: Duration) {
    signal_group(pgid, signal);
    signal_group(pgid, libc::SIGCONT);
    let _ = tokio::time::timeout(grace, child.wait()).await;
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait().await;
    wait_group_gone(pgid, Duration::from_secs(1)).await;
}

/// Ends what a failed attempt left running in its group, so it cannot overlap the
/// next attempt.
async fn end_leftovers(pgid: libc::pid_t, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    if !wait_group_gone(pgid, grace).await {
        signal_group(pgid, libc::SIGKILL);
        wait_group_gone(pgid, Duration::from_secs(1)).await;
    }
}

async fn wait_group_gone(pgid: libc::pid_t, limit: Duration) -> bool {
    // None: beyond the clock's range, so never.
    let until = Instant::now().checked_add(limit);
    while group_alive(pgid) {
        if until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Copies one output stream of the child to ours, scanning it on the way.
struct Pump {
    done: oneshot::Receiver<Vec<usize>>,
    /// Bytes copied so far, and whether the thread is blocked writing (not reading).
    progress: Arc<AtomicU64>,
}

const WRITING: u64 = 1 << 63;

impl Pump {
    fn start(
        mut from: std::fs::File,
        mut to: impl Write + Send + 'static,
        mut scan: LineScan,
    ) -> Pump {
        let (tx, done) = oneshot::channel();
        let progress = Arc::new(AtomicU64::new(0));
        let p = Arc::clone(&progress);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut copied = 0u64;
            let mut sink_ok = true;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                scan.feed(&buf[..n]);
                if sink_ok {
                    p.store(copied | WRITING, Ordering::Relaxed);
                    sink_ok = to.write_all(&buf[..n]).and_then(|()| to.flush()).is_ok();
                    if !sink_ok {
                        // Our reader went away: close the pipe so the child sees it too.
                        break;
                    }
                }
                copied += n as u64;
                p.store(copied, Ordering::Relaxed);
            }
            let _ = tx.send(scan.finish());
        });
        Pump { done, progress }
    }

    /// Waits for the stream to end, or to sit idle for [`OUTPUT_IDLE`].
    async fn finish(mut self) -> Vec<usize> {
        let mut last = self.progress.load(Ordering::Relaxed);
        let mut idle_since = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(50), &mut self.done).await {
                Ok(result) => return result.unwrap_or_default(),
                Err(_) => {
                    let now = self.progress.load(Ordering::Relaxed);
                    if now != last || now & WRITING != 0 {
                        last = now;
                        idle_since = Instant::now();
                    } else if idle_since.elapsed() >= OUTPUT_IDLE {
                        return Vec::new();
                    }
                }
            }
        }
    }
}
