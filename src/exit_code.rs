//! The exit codes backstop uses of its own, following `timeout(1)`.
//!
//! Every other exit code backstop returns is the wrapped command's own.

/// Success: first try, after retries, via a fallback, or a default answer.
pub const SUCCESS: u8 = 0;
/// The final failure was a timeout (of an attempt or of the whole run).
pub const TIMEOUT: u8 = 124;
/// backstop itself failed: bad flags, an invalid policy, a store it cannot write; or
/// a model call's key was refused or went missing (a configuration error, which a
/// `default` link does not answer for).
pub const BACKSTOP_FAILED: u8 = 125;
/// A rollback, undo or redo could not put every path back (the paths are on stderr
/// and in the record); the same code as [`BACKSTOP_FAILED`]: backstop's own layer failed.
pub const PUT_BACK_INCOMPLETE: u8 = 125;
/// `undo` or `redo` refused: a path changed again since the run (or the undo), or the
/// run's result was not recorded so its changes cannot be told from later edits.
pub const CONFLICT: u8 = 1;
/// `fsck` found damage in the store that it did not (or could not) repair; the number
/// `fsck(8)` uses for "errors left uncorrected".
pub const STORE_DAMAGED: u8 = 4;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
/// Added to a signal's number when the final attempt died of it.
pub const SIGNAL_BASE: u8 = 128;

/// The code for a process that died of signal `sig`, as shells report it.
pub fn for_signal(sig: i32) -> u8 {
    (i32::from(SIGNAL_BASE) + sig).clamp(0, 255) as u8
}
