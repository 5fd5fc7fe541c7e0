//! Output passes through byte for byte with flat memory, whether backstop scans it
//! (the policy has output patterns, so stdout and stderr are piped through backstop)
//! or not (the child inherits backstop's descriptors).

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::helpers::Test;

const HUNDRED_MIB: u64 = 100 * 1024 * 1024;

/// backstop's peak resident set may not exceed this, whatever passes through it.
const RSS_LIMIT_KIB: i64 = 64 * 1024;

/// What came out of backstop's stdout, and how big backstop got on the way.
struct Passed {
    code: i32,
    bytes: u64,
    /// How many of each byte value arrived.
    histogram: [u64; 256],
    peak_rss_kib: i64,
}

/// Runs `test`, counts the bytes backstop writes to stdout as they arrive, and
/// measures backstop's peak RSS.
///
/// The peak RSS is the kernel's `VmHWM` for backstop's own address space, read from
/// `/proc/PID/status` every few milliseconds while it runs (it only grows, so the last
/// reading before exit is the peak up to then). Not `wait4(2)`'s `ru_maxrss`: that one
/// starts from the test process's own resident set at fork (exec keeps the larger of
/// the two), and the test binary runs many tests at once — it measured the harness.
#[allow(clippy::zombie_processes, reason = "the child is reaped by wait4(2)")]
fn run_counting(test: &Test) -> Passed {
    let mut child = test
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn backstop");
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut histogram = [0u64; 256];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for b in &buf[..n] {
                        histogram[usize::from(*b)] += 1;
                    }
                }
            }
        }
        histogram
    });
    // A watchdog: kill backstop rather than hang the suite.
    let (done, watchdog) = mpsc::channel::<()>();
    let guard = std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(60)).is_err() {
            // SAFETY: kill(2) on our child, not reaped yet: wait4 below has not
            // returned, or we would have been told.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let hwm = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (hwm, sampling) = (hwm.clone(), sampling.clone());
        std::thread::spawn(move || {
            let file = format!("/proc/{pid}/status");
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&file).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                }) {
                    hwm.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for writing.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let _ = done.send(());
    let _ = guard.join();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let histogram = counter.join().expect("counting thread");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1000 + libc::WTERMSIG(status)
    };
    Passed {
        code,
        bytes: histogram.iter().sum(),
        histogram,
        peak_rss_kib: {
            let kib = hwm.load(std::sync::atomic::Ordering::Relaxed);
            assert!(kib > 500, "backstop's VmHWM was read ({kib} KiB)");
            kib
        },
    }
}

#[test]
fn a_hundred_mib_without_a_newline_passes_through_scanning_with_flat_memory() {
    // One 100 MiB "line": the worst case for a line-by-line scanner.
    let test = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1, on: { output: [\"rate limit\"] } }\n")
        .args(&["run", "--", "head", "-c", "104857600", "/dev/zero"]);
    let out = run_counting(&test);
    assert_eq!(out.code, 0);
    assert_eq!(out.bytes, HUNDRED_MIB);
    assert_eq!(out.histogram[0], HUNDRED_MIB, "the bytes were altered");
    assert!(
        out.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB while scanning 100 MiB",
        out.peak_rss_kib
    );
}

#[test]
fn a_hundred_mib_of_lines_passes_through_scanning_with_flat_memory() {
    // 1000-byte lines (999 '0's and a newline), cut at 100 MiB, scanned as they pass.
    let test = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1, on: { output: [\"rate limit\"] } }\n")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "yes \"$(printf %0999d 0)\" | head -c 104857600",
        ]);
    let out = run_counting(&test);
    assert_eq!(out.code, 0);
    assert_eq!(out.bytes, HUNDRED_MIB);
    assert_eq!(out.histogram[usize::from(b'\n')], HUNDRED_MIB / 1000);
    assert_eq!(
        out.histogram[usize::from(b'0')],
        HUNDRED_MIB - HUNDRED_MIB / 1000
    );
    assert!(
        out.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB while scanning 100 MiB",
        out.peak_rss_kib
    );
}

#[test]
fn a_hundred_mib_passes_through_inherited_descriptors() {
    // No output patterns: the child writes straight into our pipe.
    let test = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .args(&["run", "--", "head", "-c", "104857600", "/dev/zero"]);
    let out = run_counting(&test);
    assert_eq!(out.code, 0);
    assert_eq!(out.bytes, HUNDRED_MIB);
    assert_eq!(out.histogram[0], HUNDRED_MIB);
    assert!(
        out.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        out.peak_rss_kib
    );
}

#[test]
fn stdout_and_stderr_stay_apart_when_scanned() {
    Test::new()
        .policy("version: 1\nretry: { max_attempts: 1, on: { output: [\"rate limit\"] } }\n")
        .args(&[
            "run",
            "-q",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ])
        .stdout("to-out\n")
        .stderr("to-err\n")
        .run();
}
