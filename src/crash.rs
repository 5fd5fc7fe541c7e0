//! Crash points: where a `kill -9` campaign stops backstop on purpose.
//!
//! `BACKSTOP_CRASH_AT=NAME:N` kills backstop with SIGKILL at the N-th time it reaches
//! the point called NAME; `*:N` at the N-th point of any name. The points sit between
//! the steps that write the store or the tree (before and after each rename, each
//! put-back operation, each journal and record write), so a test that counts N up from
//! 1 until backstop finishes stops it once at every such step, deterministically —
//! where a timer would hit the same few places again and again. Without the variable a
//! point costs one relaxed load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static REACHED: AtomicU64 = AtomicU64::new(0);

/// Dies here if `BACKSTOP_CRASH_AT` says so.
pub fn point(name: &str) {
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("BACKSTOP_CRASH_AT").ok()?;
        let (n, count) = v.rsplit_once(':')?;
        Some((n.to_string(), count.parse().ok()?))
    });
    let Some((want, at)) = spec else { return };
    if want != "*" && want != name {
        return;
    }
    if REACHED.fetch_add(1, Ordering::Relaxed) + 1 == *at {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
