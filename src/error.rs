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
    #[error("the record of run {id} is damaged and cannot be read: {}: {error}", .file.display())]
    DamagedRecord {
        id: String,
        file: PathBuf,
        error: String,
    },
    #[error("no runs recorded for {}", .0.display())]
    NoRuns(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error(
        "another backstop holds this tree's lock ({0}); try again, or leave out --no-wait to wait"
    )]
    Locked(String),
    #[error("{count} path(s) changed again after the run, so undo would lose those edits:\n{list}\nuse --force to overwrite them, or name the other paths to undo only those", count = .paths.len(), list = .paths.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Conflict { paths: Vec<String> },
    #[error("{0}")]
    Refused(String),
}

impl UserError {
    pub fn exit_code(&self) -> u8 {
        match self {
            UserError::Conflict { .. } => exit_code::CONFLICT,
            _ => exit_code::BACKSTOP_FAILED,
        }
    }
}

/// The exit code an error ends backstop with.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<UserError>()
        .map_or(exit_code::BACKSTOP_FAILED, UserError::exit_code)
}

/// An I/O error's message without Rust's `(os error N)` suffix.
pub fn io_message(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
