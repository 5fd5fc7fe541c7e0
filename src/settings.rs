//! Plain settings the commands run on, converted once from the command line.

use std::path::PathBuf;

use crate::policy::PolicyChoice;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug)]
pub struct Settings {
    pub color: Color,
    pub quiet: bool,
    pub store: Option<PathBuf>,
    pub command: Command,
}

#[derive(Debug)]
pub enum Command {
    Run {
        policy: PolicyChoice,
        command: Vec<String>,
        no_wait: bool,
        yes: bool,
        chaos: Option<ChaosChoice>,
    },
    Undo(History),
    Redo(History),
    Call {
        policy: PolicyChoice,
        model: Option<String>,
        system: Option<String>,
        /// `--stream[=WHEN]`; `None` without the flag.
        stream: Option<StreamWhen>,
        json: bool,
        chaos: Option<ChaosChoice>,
        prompt: Option<String>,
        /// `--messages FILE` (`-`: stdin).
        messages: Option<std::path::PathBuf>,
        /// `--temperature`, `--max-tokens`, `--stop`.
        overrides: CallOverrides,
    },
    Snapshot {
        policy: PolicyChoice,
        json: bool,
    },
    Gc {
        keep: Option<usize>,
        older_than: Option<std::time::Duration>,
        no_wait: bool,
    },
    Fsck {
        repair: bool,
        json: bool,
    },
    Runs {
        limit: Option<usize>,
        json: bool,
    },
    Stats(crate::commands::stats::StatsArgs),
    Simulate(crate::commands::simulate::SimulateArgs),
    ChaosServe(crate::commands::chaos::ServeArgs),
    Show {
        /// `None`: the latest run.
        run: Option<String>,
        json: bool,
    },
    PolicyCheck {
        file: PathBuf,
    },
    PolicyExplain {
        file: PathBuf,
    },
    PolicySchema,
    BreakerStatus {
        policy: PolicyChoice,
        json: bool,
    },
    BreakerReset {
        policy: PolicyChoice,
        key: String,
    },
    /// The completion script, already generated (generation needs the clap types).
    Completions {
        script: Vec<u8>,
    },
}

/// `call --temperature T --max-tokens N --stop S`: set for every model the run calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallOverrides {
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// `Some` replaces each model's `stop`.
    pub stop: Option<Vec<String>>,
}

/// `--chaos FAULTS [--chaos-seed S]`: faults to inject into a run's attempts.
#[derive(Clone, Debug)]
pub struct ChaosChoice {
    pub file: PathBuf,
    pub seed: Option<u64>,
}

/// What `undo` and `redo` were asked for.
#[derive(Debug)]
pub struct History {
    /// A run id (or prefix) first, maybe, then paths.
    pub targets: Vec<PathBuf>,
    /// The words after `--`: paths only (`Some` when `--` was given).
    pub paths: Option<Vec<PathBuf>>,
    pub dry_run: bool,
    pub force: bool,
    pub json: bool,
    pub no_wait: bool,
}

/// When `call --stream` prints the answer as it comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamWhen {
    /// When stdout is a terminal; a pipe gets the finished answer only, so the
    /// partial answers of failed attempts never reach the next program.
    Auto,
    Always,
    /// Streamed from the provider (its stall limit applies), printed at the end.
    Never,
}
