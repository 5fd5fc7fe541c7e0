//! The real attempter: runs each attempt as a child process in its own process group.
//!
//! A timeout ends the whole group (SIGTERM, `kill_grace`, then SIGKILL), so no
//! grandchild outlives its attempt, and a failed attempt's leftovers are ended
//! before the next one starts. SIGINT or SIGTERM sent to backstop is passed on to
//! the group. Output is inherited untouched unless the policy has output patterns;
//! then it is piped through, byte for byte, and scanned on the way. What left the
//! group (`setsid`, a daemon) is ended after every attempt by [`crate::reaper`].

use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::process::Child;
use tokio::signal::unix::{Signal, SignalKind, signal};
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

/// After the command and what it left behind have ended, how long backstop goes on
/// waiting for output still coming through the pipes: a writer it could not end
/// that keeps the pipe open and busy must not keep the run alive. Output past this
/// is dropped, and patterns in the unfinished stream are not seen.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

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

    async fn answer(&mut self, answer: &DefaultAnswer) -> Option<i32> {
        // Under `call --json` stdout holds one JSON object and nothing else: the
        // default text goes into its `text`, not before it.
        if self.calls.print() == crate::call::client::Print::Never {
            let mut interrupt = self.process.interrupt.clone();
            let err = answer.stderr.clone().into_bytes();
            return write_to(Sink::Stderr, err, &mut interrupt).await.err();
        }
        self.process.answer(answer).await
    }
}

pub struct ProcessRunner {
    terminal: Option<Terminal>,
    /// SIGCHLD, to see an attempt that holds the terminal stop (Ctrl-Z).
    sigchld: Option<Signal>,
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
        let sigchld = terminal.and_then(|_| signal(SignalKind::child()).ok());
        ProcessRunner {
            terminal,
            sigchld,
            replay,
            interrupt,
        }
    }
}

impl Attempter for ProcessRunner {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let clock = AttemptClock::start();
        let foreground = matches!(spec.stdin, StdinFrom::Inherit)
            .then_some(self.terminal)
            .flatten();
        let mut child = match tokio::process::Command::from(self.command(&spec, foreground)).spawn()
        {
            Ok(child) => child,
            Err(e) => return clock.outcome(spawn_failure(&spec.argv[0], &e), Vec::new()),
        };
        let pgid = child.id().map_or(0, |id| id as libc::pid_t);
        // tokio reaps this one; the reaper must leave it (and its zombie) alone.
        crate::reaper::own(pgid);
        if let Some(t) = foreground {
            t.give_to(pgid);
        }
        self.feed_stdin(&mut child, &spec.stdin);
        let mut pumps = start_pumps(&mut child, spec.scanner);

        let mut interrupt = self.interrupt.clone();
        let waited = self
            .wait(&mut child, pgid, &spec, foreground, &mut interrupt)
            .await;
        crate::reaper::disown(pgid);
        if let Some(t) = foreground {
            t.take_back();
        }
        end_what_it_left(pgid, &waited, spec.kill_grace).await;
        let (matched, reader_gone) = drain(&mut pumps, &mut interrupt).await;

        let mut result = clock.outcome(waited.end, matched);
        result.output_closed = reader_gone || output_reader_gone();
        if self.replay.as_ref().is_some_and(|r| !r.replayable()) {
            result.no_retry = Some(format!(
                "stdin is over the replay limit ({} MiB)",
                crate::stdin::REPLAY_LIMIT >> 20
            ));
        }
        result
    }

    /// Written off the runtime's thread: a reader that stops reading must not leave
    /// a signal to backstop unheard (see [`write_stdout`]).
    async fn answer(&mut self, answer: &DefaultAnswer) -> Option<i32> {
        let mut interrupt = self.interrupt.clone();
        let out = answer.stdout.clone().into_bytes();
        let err = answer.stderr.clone().into_bytes();
        if let Err(signal) = write_to(Sink::Stdout, out, &mut interrupt).await {
            return Some(signal);
        }
        write_to(Sink::Stderr, err, &mut interrupt).await.err()
    }
}

/// When an attempt started, for the outcome it ends with.
struct AttemptClock {
    started_at: SystemTime,
    t0: Instant,
}

impl AttemptClock {
    fn start() -> AttemptClock {
        AttemptClock {
            started_at: SystemTime::now(),
            t0: Instant::now(),
        }
    }

    fn outcome(&self, end: End, matched: Vec<usize>) -> AttemptOutcome {
        AttemptOutcome {
            end,
            matched,
            started_at: self.started_at,
            duration: self.t0.elapsed(),
            no_retry: None,
            call: None,
            output_closed: false,
            injected: None,
        }
    }
}

/// How waiting for the command ended.
struct Waited {
    end: End,
    /// Set once backstop is asked to stop: everything the attempt left ends by then.
    stop_by: Option<Instant>,
}

impl ProcessRunner {
    /// The command for one attempt, in a process group of its own (and the
    /// terminal's foreground when it takes the terminal).
    fn command(
        &self,
        spec: &AttemptSpec<'_>,
        foreground: Option<Terminal>,
    ) -> std::process::Command {
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
        cmd
    }

    /// Gives the child its stdin when it is piped: the policy's bytes, or a replay
    /// of backstop's own.
    fn feed_stdin(&self, child: &mut Child, stdin: &StdinFrom) {
        let Some(pipe) = child.stdin.take().and_then(|p| p.into_owned_fd().ok()) else {
            return;
        };
        let pipe = std::fs::File::from(pipe);
        match (stdin, &self.replay) {
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

    /// Waits for the child to exit, ending its group on a timeout or a signal to
    /// backstop; a stop (Ctrl-Z) of a foreground attempt pauses its timeout.
    async fn wait(
        &mut self,
        child: &mut Child,
        pgid: libc::pid_t,
        spec: &AttemptSpec<'_>,
        foreground: Option<Terminal>,
        interrupt: &mut Interrupt,
    ) -> Waited {
        // Far enough to never fire, near enough that adding to it cannot overflow.
        let never = Duration::from_secs(100 * 365 * 24 * 3600);
        let timer = tokio::time::sleep(spec.timeout.unwrap_or(never));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                status = child.wait() => {
                    let end = status.map_or(End::Exited { code: 1 }, end_of);
                    return Waited { end, stop_by: None };
                }
                () = &mut timer => {
                    terminate(child, pgid, libc::SIGTERM, spec.kill_grace).await;
                    let after_ms = spec.timeout.map_or(0, crate::policy::values::millis);
                    let end = End::TimedOut { after_ms, deadline: spec.timeout_is_deadline };
                    return Waited { end, stop_by: None };
                }
                signal = wait_for_interrupt(interrupt) => {
                    // Once backstop is asked to stop, everything the attempt left ends
                    // within `kill_grace` of that moment, not a fresh grace per cleanup step.
                    let stop_by = Some(after(spec.kill_grace));
                    terminate(child, pgid, signal, spec.kill_grace).await;
                    return Waited { end: End::Interrupted { signal }, stop_by };
                }
                Some(()) = child_changed(self.sigchld.as_mut()), if foreground.is_some() => {
                    if let (Some(t), Some(signal)) = (foreground, stopped(pgid)) {
                        // Time spent stopped is not the attempt's: its timeout waits.
                        let left = timer.deadline().saturating_duration_since(Instant::now());
                        t.suspend_job(pgid, signal);
                        timer.as_mut().reset(Instant::now() + left);
                    }
                }
            }
        }
    }
}

/// One pump per piped output stream of the child.
fn start_pumps(child: &mut Child, scanner: &crate::scan::Scanner) -> Vec<Pump> {
    let mut pumps = Vec::new();
    if let Some(p) = child.stdout.take().and_then(|p| p.into_owned_fd().ok()) {
        pumps.push(Pump::start(p.into(), Sink::Stdout, scanner.stream()));
    }
    if let Some(p) = child.stderr.take().and_then(|p| p.into_owned_fd().ok()) {
        pumps.push(Pump::start(p.into(), Sink::Stderr, scanner.stream()));
    }
    pumps
}

/// Ends what the attempt left running: its group after a failure, and whatever it
/// started out of the group, success or not.
async fn end_what_it_left(pgid: libc::pid_t, waited: &Waited, kill_grace: Duration) {
    let grace = || {
        waited
            .stop_by
            .map_or(kill_grace, |t| t.saturating_duration_since(Instant::now()))
    };
    if !waited.end.success() {
        end_leftovers(pgid, grace()).await;
    }
    // Whatever the attempt started and left running, in its group or out of it,
    // ends with it, success or not: a daemon left behind could write into the
    // tree after the after-snapshot, the rollback, or the next attempt's start.
    crate::reaper::end_descendants(grace()).await;
}

/// Drains every pump within one shared [`OUTPUT_DRAIN`] budget: the patterns
/// matched (sorted, once each), and whether a reader of backstop's output went away.
async fn drain(pumps: &mut [Pump], interrupt: &mut Interrupt) -> (Vec<usize>, bool) {
    let mut budget = OUTPUT_DRAIN;
    let mut matched = Vec::new();
    let mut reader_gone = false;
    for pump in pumps {
        if let Drained::Matched(m) = pump.finish(&mut budget, interrupt).await {
            matched.extend(m);
        }
        reader_gone |= pump.reader_gone();
    }
    matched.sort_unstable();
    matched.dedup();
    (matched, reader_gone)
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
    // The program's name is the user's argument and lands on stderr and in `show`: a
    // newline or an escape in it must not forge a line or drive the terminal.
    let program = crate::names::quote(program.as_bytes());
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

/// `d` from now, or a far future for an absurd `d` (an `Instant` must not overflow).
pub fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// The next SIGCHLD; never, without a listener.
async fn child_changed(sigchld: Option<&mut Signal>) -> Option<()> {
    match sigchld {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The signal that stopped the attempt's leader, if it has stopped since the last
/// look. Asks only for stops (no `WEXITED`), so an exit stays for tokio to reap.
fn stopped(pid: libc::pid_t) -> Option<i32> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = Pid::from_raw(pid)?;
    let status = waitid(
        WaitId::Pid(pid),
        WaitIdOptions::STOPPED | WaitIdOptions::NOHANG,
    )
    .ok()??;
    status.stopping_signal()
}

fn signal_group(pgid: libc::pid_t, signal: i32) -> bool {
    // Never 0 or 1: those would mean our own group or init's.
    pgid > 1
        && match (
            rustix::process::Pid::from_raw(pgid),
            rustix::process::Signal::from_named_raw(signal),
        ) {
            (Some(group), Some(sig)) => rustix::process::kill_process_group(group, sig).is_ok(),
            _ => false,
        }
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
    let until = after(limit);
    while group_alive(pgid) {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Copies one output stream of the child to ours, scanning it on the way.
struct Pump {
    done: oneshot::Receiver<Vec<usize>>,
    shared: Arc<PumpState>,
}

#[derive(Default)]
struct PumpState {
    /// Bytes copied so far, and whether the thread is blocked writing (not reading).
    progress: AtomicU64,
    /// backstop stopped waiting: the thread copies nothing more and ends at its next read.
    abandoned: AtomicBool,
    /// A write to backstop's own output failed with EPIPE: its reader is gone.
    reader_gone: AtomicBool,
}

const WRITING: u64 = 1 << 63;

/// Which of backstop's own streams a pump copies to.
#[derive(Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    fn fd(self) -> BorrowedFd<'static> {
        match self {
            Sink::Stdout => rustix::stdio::stdout(),
            Sink::Stderr => rustix::stdio::stderr(),
        }
    }
}

/// How a drain ended.
enum Drained {
    /// The stream ended: these patterns matched.
    Matched(Vec<usize>),
    /// Cut short: the stream sat idle, the drain limit passed, or backstop was asked
    /// to stop.
    Cut,
}

impl Pump {
    fn start(mut from: std::fs::File, to: Sink, mut scan: LineScan) -> Pump {
        let (tx, done) = oneshot::channel();
        let shared = Arc::new(PumpState::default());
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut copied = 0u64;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if state.abandoned.load(Ordering::Relaxed) {
                    // Dropping the pipe's read end: a writer left behind gets EPIPE.
                    break;
                }
                scan.feed(&buf[..n]);
                state.progress.store(copied | WRITING, Ordering::Relaxed);
                match write_all(to.fd(), &buf[..n]) {
                    Ok(()) => {}
                    Err(e) => {
                        if e == rustix::io::Errno::PIPE {
                            state.reader_gone.store(true, Ordering::Relaxed);
                        }
                        // Our reader went away: close the pipe so the child sees it too.
                        break;
                    }
                }
                copied += n as u64;
                state.progress.store(copied, Ordering::Relaxed);
            }
            let _ = tx.send(scan.finish());
        });
        Pump { done, shared }
    }

    /// Waits for the stream to end or to sit idle for [`OUTPUT_IDLE`], spending at
    /// most `budget` waiting on the pipe; a signal to backstop cuts it short. Time
    /// blocked writing to backstop's own reader is not counted: a slow reader holds
    /// the command's output back as it would without backstop, and loses none of it.
    async fn finish(&mut self, budget: &mut Duration, interrupt: &mut Interrupt) -> Drained {
        const TICK: Duration = Duration::from_millis(50);
        let mut last = self.shared.progress.load(Ordering::Relaxed);
        let mut idle = Duration::ZERO;
        loop {
            tokio::select! {
                result = &mut self.done => return Drained::Matched(result.unwrap_or_default()),
                () = tokio::time::sleep(TICK.min(*budget)) => {}
                _ = wait_for_interrupt(interrupt) => return self.abandon(),
            }
            let now = self.shared.progress.load(Ordering::Relaxed);
            if now & WRITING != 0 {
                idle = Duration::ZERO;
                continue;
            }
            *budget = budget.saturating_sub(TICK);
            if budget.is_zero() {
                return self.abandon();
            }
            if now != last {
                last = now;
                idle = Duration::ZERO;
            } else {
                idle += TICK;
                if idle >= OUTPUT_IDLE {
                    return self.abandon();
                }
            }
        }
    }

    fn abandon(&self) -> Drained {
        self.shared.abandoned.store(true, Ordering::Relaxed);
        Drained::Cut
    }

    fn reader_gone(&self) -> bool {
        self.shared.reader_gone.load(Ordering::Relaxed)
    }
}

/// Writes all of `buf` to `fd` without std's lock on stdout (a pump blocked on a
/// full pipe must not hold it) and without retrying on a broken pipe.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), rustix::io::Errno> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(rustix::io::Errno::IO),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` to backstop's stdout from a thread of its own, waiting for it
/// here; `Err(signal)` if a signal to backstop came first. A reader that stops
/// reading (`backstop call --stream | less`, paused) blocks a write on a full pipe
/// for as long as it likes; written from the runtime's thread, that froze the
/// runtime with it, so neither the attempt's limits nor SIGTERM or Ctrl-C could act.
/// A write left blocked by a signal is abandoned: nothing more is printed after it.
/// A failed write (the reader went away) is ignored, as before.
pub async fn write_stdout(bytes: Vec<u8>, interrupt: &mut Interrupt) -> Result<(), i32> {
    write_to(Sink::Stdout, bytes, interrupt).await
}

/// [`write_stdout`] to either of backstop's own streams.
async fn write_to(to: Sink, bytes: Vec<u8>, interrupt: &mut Interrupt) -> Result<(), i32> {
    if bytes.is_empty() {
        return Ok(());
    }
    let (tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = write_all(to.fd(), &bytes);
        let _ = tx.send(());
    });
    tokio::select! {
        _ = done => Ok(()),
        signal = wait_for_interrupt(interrupt) => Err(signal),
    }
}

/// One thread that writes to backstop's stdout for as long as it is kept, each write
/// waited for as [`write_stdout`] waits: a streamed answer's chunks need not start a
/// thread each. Dropped, its thread ends once its last write is done.
pub struct StdoutWriter {
    writes: std::sync::mpsc::Sender<(Vec<u8>, oneshot::Sender<()>)>,
}

impl StdoutWriter {
    pub fn start() -> StdoutWriter {
        let (writes, queue) = std::sync::mpsc::channel::<(Vec<u8>, oneshot::Sender<()>)>();
        std::thread::spawn(move || {
            for (bytes, done) in queue {
                let _ = write_all(Sink::Stdout.fd(), &bytes);
                let _ = done.send(());
            }
        });
        StdoutWriter { writes }
    }

    /// [`write_stdout`] through this writer's thread.
    pub async fn write(&self, bytes: Vec<u8>, interrupt: &mut Interrupt) -> Result<(), i32> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (tx, done) = oneshot::channel();
        if self.writes.send((bytes, tx)).is_err() {
            // The thread is gone: a write would have failed, and is ignored as one.
            return Ok(());
        }
        tokio::select! {
            _ = done => Ok(()),
            signal = wait_for_interrupt(interrupt) => Err(signal),
        }
    }
}

/// Whether the reader of backstop's stdout or stderr is gone (a pipe whose read end
/// is closed polls as an error, a closed socket as a hang-up). Seen without
/// writing, so it also tells when the command wrote there itself.
pub fn output_reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags};
    let (out, err) = (rustix::stdio::stdout(), rustix::stdio::stderr());
    let mut fds = [
        PollFd::new(&out, PollFlags::OUT),
        PollFd::new(&err, PollFlags::OUT),
    ];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&zero)).is_err() {
        return false;
    }
    fds.iter()
        .any(|f| f.revents().intersects(PollFlags::ERR | PollFlags::HUP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Scanner;

    fn pump_on_a_pipe() -> (Pump, std::io::PipeWriter) {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let from = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
        (
            Pump::start(from, Sink::Stderr, Scanner::default().stream()),
            writer,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipe_held_open_and_silent_is_given_up_after_the_idle_time() {
        let (mut pump, _writer) = pump_on_a_pipe();
        let (_tx, mut interrupt) = tokio::sync::watch::channel(None);
        let mut budget = OUTPUT_DRAIN;
        let t0 = Instant::now();
        assert!(matches!(
            pump.finish(&mut budget, &mut interrupt).await,
            Drained::Cut
        ));
        assert_eq!(t0.elapsed(), OUTPUT_IDLE);
        assert_eq!(budget, OUTPUT_DRAIN - OUTPUT_IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_drain_budget_gives_up_at_once_and_a_signal_cuts_the_wait() {
        let (mut pump, _writer) = pump_on_a_pipe();
        let (tx, mut interrupt) = tokio::sync::watch::channel(None);
        let mut budget = Duration::ZERO;
        let t0 = Instant::now();
        assert!(matches!(
            pump.finish(&mut budget, &mut interrupt).await,
            Drained::Cut
        ));
        assert!(t0.elapsed() <= Duration::from_millis(50));

        let (mut pump, _writer) = pump_on_a_pipe();
        let mut budget = OUTPUT_DRAIN;
        tx.send(Some(libc::SIGTERM)).expect("send");
        let t0 = Instant::now();
        assert!(matches!(
            pump.finish(&mut budget, &mut interrupt).await,
            Drained::Cut
        ));
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }
}
