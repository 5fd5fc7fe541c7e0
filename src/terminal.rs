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
        // SAFETY: plain queries of this process and of fd 0.
        let (ours, foreground) = unsafe { (libc::getpgrp(), libc::tcgetpgrp(0)) };
        (ours == foreground).then_some(Terminal { our_group: ours })
    }

    /// Makes `group` the terminal's foreground process group.
    pub fn give_to(&self, group: libc::pid_t) {
        set_foreground(group);
    }

    /// Makes backstop's own group the foreground again.
    pub fn take_back(&self) {
        set_foreground(self.our_group);
    }
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
