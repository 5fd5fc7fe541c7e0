//! Running the policy's `alerts.notify` command: the alerts as JSON on its stdin, its
//! output on backstop's stderr (the command's own stdout is never touched), a time
//! limit after which its whole process group is killed.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::state::Alert;
use crate::policy::Policy;

/// How long `notify` may take before it is killed.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The document on `notify`'s stdin (its format is in the README, "Alerts").
pub fn payload(policy: &Policy, firing: &[Alert], resolved: &[Alert]) -> Vec<u8> {
    let doc = serde_json::json!({
        "policy": super::policy_file(policy).display().to_string(),
        "firing": firing,
        "resolved": resolved,
    });
    let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Runs `argv` with `input` on its stdin; why it failed (not found, an exit code
/// other than 0, a signal, the time limit), as a fragment for a warning.
pub fn run(argv: &[String], input: &[u8], limit: Duration) -> Result<(), String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    // Named by its program alone: its arguments may carry a secret (a webhook URL's
    // token), and a warning goes to the terminal and the CI log.
    let named = crate::names::printable(program).into_owned();
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot give `{named}` backstop's stderr: {e}"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stderr))
        .stderr(Stdio::inherit())
        // Its own group: the time limit ends whatever it started, too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `{named}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // On a thread: a command that never reads must not hold backstop past the
        // limit. One that does not read its input has not failed for that.
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = waiter.join();
            return Err(format!(
                "`{named}` did not finish within {} and was killed",
                crate::policy::values::format_duration(limit)
            ));
        }
    };
    let _ = waiter.join();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(match (s.code(), s.signal()) {
            (Some(code), _) => format!("`{named}` exited with {code}"),
            (None, Some(sig)) => format!(
                "`{named}` was killed by {}",
                crate::attempt::signal_name(sig)
            ),
            _ => format!("`{named}` failed"),
        }),
        Err(e) => Err(format!("cannot wait for `{named}`: {e}")),
    }
}
