//! Errors a user can cause, each with the exit code it ends the process with.
//!
//! Plumbing errors travel as `anyhow::Error` with context and end with
//! [`exit_code::BACKSTOP_FAILED`](crate::exit_code::BACKSTOP_FAILED).

use std::path::PathBuf;

use crate::exit_code;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Policy {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("{file}: {message}")]
    PolicyFile { file: String, message: String },
    #[error("no run matches `{0}` (see `backstop runs`)")]
    UnknownRun(String),
    #[error("run id prefix `{prefix}` is ambiguous: it matches {}", .candidates.join(", "))]
    AmbiguousRun {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("the record of run {id} is damaged and cannot be read: {}: {error}", crate::names::quote_path(.file))]
    DamagedRecord {
        id: String,
        file: PathBuf,
        error: String,
    },
    #[error("no runs recorded for {}", crate::names::quote_path(.0))]
    NoRuns(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error(
        "another backstop holds this tree's lock ({0}); try again, or leave out --no-wait to wait"
    )]
    Locked(String),
    /// `verb` (undo, redo) would overwrite paths changed since `since` (the run, the undo).
    #[error("{count} path(s) changed again after {since}, so {verb} would lose those edits:\n{list}\nuse --force to overwrite them, or name the other paths to {verb} only those", count = .paths.len(), list = .paths.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Conflict {
        verb: String,
        since: String,
        paths: Vec<String>,
    },
    /// Undo of a run whose state after it was never recorded: the tree now differs from
    /// the state before the run at `paths`, but which of those the run made is unknown.
    #[error("run {run}'s result was not recorded ({why}), so backstop cannot tell its changes from edits made after it; undo would put back every path that differs from the state before the run:\n{list}\nname the paths to undo (`backstop undo {run} -- PATH...`), or use --force to put all of them back", list = .paths.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Unrecorded {
        run: String,
        why: String,
        paths: Vec<String>,
    },
    #[error("{0}")]
    Refused(String),
}

impl UserError {
    pub fn exit_code(&self) -> u8 {
        match self {
            UserError::Conflict { .. } | UserError::Unrecorded { .. } => exit_code::CONFLICT,
            _ => exit_code::BACKSTOP_FAILED,
        }
    }
}

/// The exit code an error ends backstop with.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<UserError>()
        .map_or(exit_code::BACKSTOP_FAILED, UserError::exit_code)
}

/// Whether `err` is a write to a pipe whose reader has gone (`backstop runs | head`):
/// for a command that only reports, that is the end of its output, not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

/// An I/O error's message without Rust's `(os error N)` suffix.
pub fn io_message(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
