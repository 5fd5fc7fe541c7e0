//! Job control: hands the terminal to an attempt's process group and takes it back.
//!
//! When backstop runs in the foreground of a terminal, each attempt gets its own
//! process group (so a timeout can end the whole tree) and is made the terminal's
//! foreground group, as a shell does for a job: an agent with a terminal UI can read
//! keys, and Ctrl-C reaches it rather than backstop.

use std::io::IsTerminal;

/// The terminal on stdin, when backstop is in its foreground process group.
#[derive(Clone, Copy, Debug)]
pub struct Terminal {
    our_group: libc::pid_t,
}

impl Terminal {
    pub fn detect() -> Option<Terminal> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let ours = rustix::process::getpgrp();
        let foreground = rustix::termios::tcgetpgrp(std::io::stdin()).ok()?;
        (ours == foreground).then_some(Terminal {
            our_group: ours.as_raw_nonzero().get(),
        })
    }

    /// Makes `group` the terminal's foreground process group.
    pub fn give_to(&self, group: libc::pid_t) {
        set_foreground(group);
    }

    /// Makes backstop's own group the foreground again.
    pub fn take_back(&self) {
        set_foreground(self.our_group);
    }

    /// What a job-control shell does when a job it ran in the foreground stops:
    /// the attempt's group (`group`) stopped with `signal` (Ctrl-Z, or a read of the
    /// terminal from the background). Unless backstop has the terminal itself (the
    /// shell gave it back with `fg` and the attempt stopped reading it meanwhile),
    /// backstop takes the terminal back, stops the whole attempt, and stops its own
    /// group so that the shell sees the job stopped. Once continued, it hands the
    /// terminal to the attempt again if the shell gave it to backstop (`fg`; not
    /// after `bg`) and continues the attempt.
    pub fn suspend_job(&self, group: libc::pid_t, signal: i32) {
        let ours = self.is_foreground();
        if !(ours && matches!(signal, libc::SIGTTIN | libc::SIGTTOU)) {
            self.take_back();
            signal_group(group, libc::SIGSTOP);
            // SIGSTOP, not SIGTSTP: the kernel drops SIGTSTP sent to an orphaned
            // group (backstop as a session's leader), and the job must stop.
            signal_group(self.our_group, libc::SIGSTOP);
        }
        if self.is_foreground() {
            self.give_to(group);
        }
        signal_group(group, libc::SIGCONT);
    }

    /// Whether backstop's group has the terminal.
    fn is_foreground(&self) -> bool {
        rustix::termios::tcgetpgrp(rustix::stdio::stdin())
            .is_ok_and(|g| g.as_raw_nonzero().get() == self.our_group)
    }
}

fn signal_group(group: libc::pid_t, signal: i32) {
    let (Some(group), Some(signal)) = (
        rustix::process::Pid::from_raw(group).filter(|_| group > 1),
        rustix::process::Signal::from_named_raw(signal),
    ) else {
        return;
    };
    let _ = rustix::process::kill_process_group(group, signal);
}

/// `tcsetpgrp` on stdin with SIGTTOU blocked, which a process outside the foreground
/// group needs to change it. Async-signal-safe: also called between fork and exec.
pub fn set_foreground(group: libc::pid_t) {
    // SAFETY: sigprocmask and tcsetpgrp are async-signal-safe; the old mask is restored.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        libc::tcsetpgrp(0, group);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}
