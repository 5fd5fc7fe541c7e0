//! Ending what an attempt leaves behind outside its process group.
//!
//! A process group is not a container: `setsid`, a double fork or `daemon(3)` takes a
//! process out of the attempt's group, and a timeout that signals the group misses it;
//! it could then write into the tree after the rollback. So backstop makes itself a
//! child subreaper ([`adopt_orphans`]): whatever an attempt orphans is re-parented to
//! backstop instead of to init, and stays findable through `/proc/*/stat`'s parent
//! field. After each attempt, [`end_descendants`] ends every process whose parent chain
//! leads back to backstop (SIGTERM, `kill_grace`, SIGKILL) and reaps the ones that are
//! backstop's own children by pid, never with `waitpid(-1)`: tokio reaps the children
//! it spawned, and an attempt's child is never in this set (it is reaped before).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Children backstop spawned and something in backstop still waits for: never
/// signalled or reaped here, nor is anything below them.
static OWNED: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// How long SIGKILLed descendants get to disappear before backstop stops waiting
/// (a process in uninterruptible sleep dies only when its I/O ends).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// Makes backstop the reaper of whatever its attempts orphan. Failure (an old kernel)
/// leaves the process group as the only net, which is what it was before.
pub fn adopt_orphans() {
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// Marks `pid` as a child some code in backstop waits for itself.
pub fn own(pid: libc::pid_t) {
    if let Ok(mut owned) = OWNED.lock() {
        owned.push(pid);
    }
}

/// Undoes [`own`] once that child has been waited for.
pub fn disown(pid: libc::pid_t) {
    if let Ok(mut owned) = OWNED.lock() {
        owned.retain(|&p| p != pid);
    }
}

/// Ends every running descendant of backstop that no one in backstop waits for:
/// SIGTERM (all stopped first, then continued together), up to `grace` to exit, then
/// SIGKILL. Returns how many were still running after that (0 in all but pathological
/// cases, such as a process stuck in uninterruptible I/O).
pub async fn end_descendants(grace: Duration) -> usize {
    let me = std::process::id() as libc::pid_t;
    if has_children() == Some(false) {
        return 0;
    }
    let mut found = scan(me);
    if found.is_empty() {
        return 0;
    }
    let until = crate::process::after(grace);
    while !found.is_empty() && Instant::now() < until {
        // Re-signalled each round: a process forked since the last scan is new. All
        // are stopped before any is told to end: otherwise a shell whose `sleep` dies
        // first could run its next line (`echo LATE > a`) before its own SIGTERM
        // comes. Continued together, each has its SIGTERM pending before it runs.
        for sig in [libc::SIGSTOP, libc::SIGTERM, libc::SIGCONT] {
            for &pid in &found {
                signal(pid, sig);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        found = scan(me);
    }
    let until = Instant::now() + AFTER_KILL;
    while !found.is_empty() {
        for &pid in &found {
            signal(pid, libc::SIGKILL);
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        found = scan(me);
    }
    found.len()
}

/// Whether every process the attempts started has ended (or none was started): no
/// child of backstop is left, so no descendant is, since every descendant's parent
/// chain passes through one. Unknown (no `children` file) counts as not ended.
pub fn none_left() -> bool {
    has_children() == Some(false)
}

/// Whether backstop has any child at all, running or exited: one `waitid` that
/// neither blocks nor reaps (`WNOHANG | WNOWAIT`), over the children of every thread
/// (`__WALL`), which fails with `ECHILD` only when there is none. Every descendant's
/// parent chain passes through a child, so none means nothing to end. `None` when the
/// kernel answers anything else.
///
/// One call, so nothing can change between two reads of it: reading each thread's
/// `/proc/self/task/*/children` instead took a thread that ended meanwhile (a
/// snapshot's worker, tokio's blocking pool) for a child left behind, one look in
/// eight while threads came and went.
fn has_children() -> Option<bool> {
    use rustix::io::Errno;
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let all = WaitIdOptions::from_bits_retain(libc::__WALL as u32);
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT | all;
    loop {
        return match waitid(WaitId::All, options) {
            Ok(_) => Some(true),
            Err(Errno::CHILD) => Some(false),
            Err(Errno::INTR) => continue,
            Err(_) => None,
        };
    }
}

/// One pass over `/proc`: reaps backstop's own dead orphans and returns the pids of
/// every running process that descends from `me` and is not owned.
fn scan(me: libc::pid_t) -> Vec<libc::pid_t> {
    let owned: HashSet<libc::pid_t> = OWNED
        .lock()
        .map(|o| o.iter().copied().collect())
        .unwrap_or_default();
    let mut parent: HashMap<libc::pid_t, (libc::pid_t, bool)> = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // A process that exits between readdir and read is simply gone.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, ppid)) = state_and_parent(&stat) {
            let dead = matches!(state, 'Z' | 'X');
            if dead && ppid == me && !owned.contains(&pid) {
                reap(pid);
                continue;
            }
            parent.insert(pid, (ppid, dead));
        }
    }
    let mut out = Vec::new();
    for (&pid, &(_, dead)) in &parent {
        if dead || owned.contains(&pid) {
            continue;
        }
        if descends(pid, me, &parent, &owned) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid`'s parent chain reaches `me` without passing an owned child.
fn descends(
    pid: libc::pid_t,
    me: libc::pid_t,
    parent: &HashMap<libc::pid_t, (libc::pid_t, bool)>,
    owned: &HashSet<libc::pid_t>,
) -> bool {
    let mut at = pid;
    // Bounded: a chain read from a changing /proc could, in theory, loop.
    for _ in 0..parent.len() + 1 {
        let Some(&(ppid, _)) = parent.get(&at) else {
            return false;
        };
        if ppid == me {
            return true;
        }
        if ppid <= 1 || owned.contains(&ppid) {
            return false;
        }
        at = ppid;
    }
    false
}

/// Whether process `pid` is this process's parent, its parent's parent, and so on
/// (read from `/proc`; `false` where that cannot be read).
pub fn is_our_ancestor(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    let mut at = rustix::process::getppid().map(|p| p.as_raw_pid());
    // Bounded: a chain read from a changing /proc could, in theory, loop.
    for _ in 0..256 {
        match at {
            Some(p) if p == pid => return true,
            Some(p) if p > 1 => {
                at = std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|stat| state_and_parent(&stat))
                    .map(|(_, ppid)| ppid);
            }
            _ => return false,
        }
    }
    false
}

/// `pid (comm) state ppid ...` → (state, ppid); comm may hold spaces and parentheses.
fn state_and_parent(stat: &str) -> Option<(char, libc::pid_t)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn signal(pid: libc::pid_t, sig: i32) {
    // Never 0, -1 or a negative pid: those mean a group or every process.
    if pid > 1
        && let (Some(pid), Some(sig)) = (
            rustix::process::Pid::from_raw(pid),
            rustix::process::Signal::from_named_raw(sig),
        )
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn reap(pid: libc::pid_t) {
    // One pid that is our own zombie child and not owned by tokio; never blocks.
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_state_and_parent_past_a_strange_command_name() {
        assert_eq!(
            state_and_parent("42 (a) b (c)) S 7 42 42 0 -1"),
            Some(('S', 7))
        );
        assert_eq!(state_and_parent("garbage"), None);
    }

    #[test]
    fn a_chain_through_an_owned_child_is_not_ours_to_end() {
        let me = 10;
        let parent: HashMap<_, _> = [(11, (10, false)), (12, (11, false)), (13, (1, false))]
            .into_iter()
            .collect();
        let none = HashSet::new();
        assert!(descends(12, me, &parent, &none));
        assert!(!descends(13, me, &parent, &none));
        let owned: HashSet<_> = [11].into_iter().collect();
        assert!(!descends(12, me, &parent, &owned));
    }

    /// Threads of backstop come and go (a snapshot's workers, tokio's blocking pool)
    /// while it looks: a thread that ends is not a child left behind. Once counted
    /// one, it took a step's quiet windows away, and a rollback put back the user's
    /// edits made at its prompt. A child running, or exited and not yet waited for,
    /// is one. Run alone in a process of its own: other tests start children.
    #[test]
    fn threads_ending_while_it_looks_are_not_children() {
        if std::env::var_os("BACKSTOP_TEST_ALONE").is_none() {
            let name = "reaper::tests::threads_ending_while_it_looks_are_not_children";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env("BACKSTOP_TEST_ALONE", "1")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{said}");
            assert!(said.contains("1 passed"), "{said}");
            return;
        }
        use std::sync::atomic::{AtomicBool, Ordering};
        assert_eq!(has_children(), Some(false));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let churn: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = std::thread::spawn(|| ()).join();
                    }
                })
            })
            .collect();
        let wrong = (0..5_000).filter(|_| has_children() != Some(false)).count();
        stop.store(true, Ordering::Relaxed);
        for t in churn {
            let _ = t.join();
        }
        assert_eq!(wrong, 0, "children seen where there were none");
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        assert_eq!(has_children(), Some(true), "a running child");
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(has_children(), Some(true), "an exited child not waited for");
        child.wait().unwrap();
        assert_eq!(has_children(), Some(false), "the child waited for");
    }
}
