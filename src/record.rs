//! The record a run leaves in the store: what ran, under which policy, every attempt
//! and how it ended. `runs`, `show` and (later) `undo` read it.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::events::{AttemptReport, Event, EventSink, RunSummary};
use crate::names::Name;

pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub id: String,
    pub status: Status,
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    #[serde(with = "rfc3339::option", default)]
    pub finished_at: Option<SystemTime>,
    pub backstop_version: String,
    /// The backstop process (for people: liveness is told by the run's lock, see
    /// `region::is_live`, as a pid may be reused).
    pub pid: u32,
    #[serde(with = "crate::names::path")]
    pub root: PathBuf,
    #[serde(with = "crate::names::path")]
    pub cwd: PathBuf,
    pub command: Vec<String>,
    pub policy: PolicyRef,
    pub attempts: Vec<AttemptReport>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub outcome: Option<RunSummary>,
    /// The steps of a task, as far as it went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepInfo>,
    /// What the run did to the tree, when it was snapshotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    /// Why a run of a command took no snapshot (`None` for a model call, which
    /// changes no files, and for records written before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_snapshot: Option<crate::policy::NoSnapshot>,
    /// backstop's own time, apart from the command's (`outcome.elapsed_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backstop_time: Option<BackstopTime>,
    /// The faults `--chaos` injected into the run's attempts: not a run of the
    /// command's own luck, and left out of `stats` unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosRef>,
    /// Links an open circuit breaker skipped, without an attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<crate::events::SkippedLink>,
    /// The retry budget shared across runs turned this run's retries off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retries_off: bool,
}

/// The fault model and the seed of a run under `--chaos`: `--chaos FILE
/// --chaos-seed SEED` draws the same faults again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "Chaos")]
pub struct ChaosRef {
    /// The fault file, its canonical path: a string, or `{hex, lossy}` when the path
    /// is not UTF-8.
    #[serde(with = "crate::names::path")]
    #[schemars(with = "serde_json::Value")]
    pub faults: PathBuf,
    /// The seed of the draws (`--chaos-seed`, or drawn below 2^53).
    pub seed: u64,
    /// BLAKE3 of the fault file as the run read it.
    #[serde(default)]
    pub digest: String,
}

/// The time backstop itself spent on a run's tree, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackstopTime {
    /// The snapshot before the run, the checkpoints between steps, the walk after it.
    pub snapshot_ms: u64,
    /// Putting the tree back: a step's rollback or the run's.
    pub rollback_ms: u64,
}

impl BackstopTime {
    pub fn total_ms(&self) -> u64 {
        self.snapshot_ms.saturating_add(self.rollback_ms)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepInfo {
    pub name: String,
    pub outcome: Option<RunSummary>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The scope's root.
    #[serde(with = "crate::names::path")]
    pub root: PathBuf,
    pub exclude: Vec<String>,
    pub respect_ignored: bool,
    pub max_file_size: u64,
    /// The manifest taken before the run (object id).
    pub before: String,
    /// The manifest taken after it; `None` while it runs, or if backstop was killed.
    pub after: Option<String>,
    pub state: TreeState,
    pub changes: Vec<ChangeInfo>,
    /// Files over the size limit: listed, not kept, so undo cannot restore them.
    pub skipped: Vec<Name>,
    /// The git HEAD when the run started, if the tree is a git checkout.
    pub head: Option<String>,
    /// Every time backstop put the tree back for this run, and why.
    #[serde(default)]
    pub restores: Vec<Restore>,
    /// The checkpoints of a task (before each step after the first): a failed step,
    /// or a retry of it, goes back to the last one, so gc must keep them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<String>,
    /// The ignore rules the run's scope was fixed with (an object), so a walk after
    /// the run never goes by rules the run itself rewrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// The scope root's device and inode when the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<crate::snapshot::scope::RootId>,
    /// Paths the last put-back (rollback, undo, redo) could not put into their
    /// planned state: when not empty, that put-back was incomplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<NotRestored>,
    /// Why the state after the run could not be stored, if it could not: redo cannot
    /// re-apply what was not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_error: Option<String>,
    /// While the state is `applied`: the paths of the change set that a partial undo
    /// put back to their state before the run (hex-encoded bytes, as in the journal;
    /// names need not be UTF-8); the others are as the run left them. Empty when none
    /// is, and when the state says it of every path (`undone`, `rolled-back`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<String>,
    /// Paths of the change set the rollback left as they were (hex-encoded, as
    /// `undone`): their last change came after the command's processes had all ended,
    /// so it was someone else's. They are as the tree has them, not as before the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<String>,
    /// How the run's walks after the first went, when it kept a change feed of the
    /// tree (a tree of 2,000 entries or more on a local filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walks: Option<Walks>,
}

/// The walks of a run that kept a change feed of its tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walks {
    /// Walks that read only what the feed named as changed.
    pub changed_only: usize,
    /// Walks of the whole tree: the one before the run, and any the feed could not
    /// vouch for (a file made and removed unseen, a queue overflow, a process of the
    /// run still alive).
    pub whole: usize,
}

/// When in a run a snapshot it names was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Before,
    /// Before a step of a task, which a failed step goes back to.
    Checkpoint,
    After,
}

impl SnapshotInfo {
    /// The rollbacks of the run (and of the failed steps of its task), oldest first.
    pub fn rollbacks(&self) -> impl Iterator<Item = &Restore> {
        self.restores
            .iter()
            .filter(|r| r.action == PutBack::Rollback)
    }

    /// The manifests this record names, which gc keeps and fsck checks: the snapshot
    /// before the run, each checkpoint, then the one after it, if stored. (Its fixed
    /// ignore rules, `rules`, are an object too, not a manifest.)
    pub fn manifests(&self) -> impl Iterator<Item = (Moment, &str)> {
        std::iter::once((Moment::Before, self.before.as_str()))
            .chain(
                self.checkpoints
                    .iter()
                    .map(|c| (Moment::Checkpoint, c.as_str())),
            )
            .chain(self.after.as_deref().map(|a| (Moment::After, a)))
    }
}

/// A path a put-back could not put into its planned state, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NotRestored {
    pub path: Name,
    pub why: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Restore {
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    pub action: PutBack,
    pub paths: usize,
    pub reason: String,
    /// How many of those paths it could not put back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_restored: usize,
}

/// Which put-back it was, as records and journals have always named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PutBack {
    /// The run failed, and its changes (or its failed step's) were taken back.
    Rollback,
    /// Between attempts (`rollback.between_attempts: restore`).
    Restore,
    Undo,
    Redo,
}

impl PutBack {
    pub fn as_str(self) -> &'static str {
        match self {
            PutBack::Rollback => "rollback",
            PutBack::Restore => "restore",
            PutBack::Undo => "undo",
            PutBack::Redo => "redo",
        }
    }
}

impl std::fmt::Display for PutBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl TreeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TreeState::Applied => "applied",
            TreeState::RolledBack => "rolled-back",
            TreeState::Undone => "undone",
        }
    }
}

/// Where the tree stands with respect to a run's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreeState {
    /// The run's changes are in the tree.
    Applied,
    /// backstop put the tree back when the run failed.
    RolledBack,
    /// `backstop undo` reverted it.
    Undone,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangeInfo {
    pub letter: crate::snapshot::diff::Letter,
    /// The path relative to the root.
    pub path: Name,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyRef {
    pub source: String,
    pub digest: String,
    /// The file's absolute path (not for the built-in policy, nor in records made
    /// before backstop kept it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::names::opt_path"
    )]
    pub path: Option<PathBuf>,
}

/// Where a run stands, as `runs`, `show` and their `--json` print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Its backstop still holds the run's lock.
    Running,
    /// Its record says it is running, but its backstop is gone.
    Unfinished,
    /// It finished with `outcome`; `incomplete` when its last put-back left paths
    /// behind, which is not hidden behind the outcome (printed with a `!`).
    Finished {
        outcome: crate::events::Outcome,
        incomplete: bool,
    },
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Running => f.write_str("running"),
            RunState::Unfinished => f.write_str("unfinished"),
            RunState::Finished {
                outcome,
                incomplete,
            } => {
                f.write_str(outcome.as_str())?;
                if *incomplete {
                    f.write_str("!")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Written when the run starts; still so if backstop died during it.
    Running,
    Finished,
}

impl RunRecord {
    /// The record of a run that is starting: nothing attempted yet.
    pub fn new(
        id: &str,
        root: PathBuf,
        cwd: PathBuf,
        command: Vec<String>,
        policy: &crate::policy::Policy,
    ) -> RunRecord {
        RunRecord {
            format: FORMAT,
            id: id.to_string(),
            status: Status::Running,
            started_at: SystemTime::now(),
            finished_at: None,
            backstop_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            root,
            cwd,
            command,
            policy: PolicyRef {
                source: policy.source.clone(),
                digest: policy.digest.clone(),
                path: policy.path.clone(),
            },
            attempts: Vec::new(),
            warnings: Vec::new(),
            outcome: None,
            steps: Vec::new(),
            snapshot: None,
            no_snapshot: None,
            backstop_time: None,
            chaos: None,
            skipped: Vec::new(),
            retries_off: false,
        }
    }

    /// Where the run stands. `live` tells whether its backstop still holds the run's
    /// lock (`region::is_live`), asked only of a record that is not finished.
    pub fn state(&self, live: impl FnOnce() -> bool) -> RunState {
        match (&self.status, &self.outcome) {
            (Status::Finished, Some(o)) => RunState::Finished {
                outcome: o.outcome,
                incomplete: self
                    .snapshot
                    .as_ref()
                    .is_some_and(|s| !s.not_restored.is_empty()),
            },
            _ if live() => RunState::Running,
            _ => RunState::Unfinished,
        }
    }
}

impl RunRecord {
    /// Where the tree stands with respect to this run's changes, as `runs` shows it:
    /// `applied`, `partly-undone`, `undone`, `rolled-back`; `None` when the run took
    /// no snapshot (a model call).
    pub fn tree_state(&self) -> Option<&'static str> {
        let s = self.snapshot.as_ref()?;
        Some(match s.state {
            TreeState::Applied if !s.undone.is_empty() => "partly-undone",
            state => state.as_str(),
        })
    }

    /// Whether some of this run's recorded changes are out of the tree (undone, partly
    /// undone, or rolled back): what a bare `backstop redo` looks for.
    pub fn has_changes_to_redo(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| {
            // Paths a rollback kept (`late`, of the change set) were never taken out.
            s.after.is_some()
                && s.changes.len() > s.late.len()
                && match s.state {
                    TreeState::Undone | TreeState::RolledBack => true,
                    TreeState::Applied => !s.undone.is_empty(),
                }
        })
    }

    /// Whether some of this run's changes may still be in the tree: what a bare
    /// `backstop undo` looks for. A run whose result was never recorded counts (what
    /// it did is unknown); one recorded as changing nothing does not.
    pub fn has_changes_in_tree(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| {
            s.state == TreeState::Applied
                && (s.after.is_none() || s.undone.len() + s.late.len() < s.changes.len())
        })
    }
}

/// Where a [`RecordWriter`] keeps the record (the store's run records): this module
/// knows records, not where they are kept.
pub trait RecordStore {
    /// Writes the record, replacing the one of the same id atomically.
    fn write(&self, record: &RunRecord) -> anyhow::Result<()>;
    /// Reads the record of run `id`, changes it, and writes it back.
    fn update_record(&self, id: &str, change: &mut dyn FnMut(&mut RunRecord))
    -> anyhow::Result<()>;
}

/// Keeps the run's record in the store up to date as events arrive.
pub struct RecordWriter<'a> {
    store: &'a dyn RecordStore,
    pub record: RunRecord,
    /// The first error writing the record; reported once, at the end.
    pub error: Option<anyhow::Error>,
    /// A step's end (`Finished`) is in `record` but not on disk yet: the run's
    /// [`RecordWriter::finish`] writes it, or [`RecordWriter::save_pending`] when
    /// another step follows.
    pending: bool,
}

impl<'a> RecordWriter<'a> {
    /// Writes the record of a run that is starting; failure here stops the run.
    pub fn start(store: &'a dyn RecordStore, record: RunRecord) -> anyhow::Result<Self> {
        store.write(&record)?;
        Ok(RecordWriter {
            store,
            record,
            error: None,
            pending: false,
        })
    }

    /// Marks the run finished: every step is done. Gives the writer up: what changes
    /// in the record from now on (a rollback's result, written by its journal) goes
    /// through the store, and nothing holds an older copy that could overwrite it.
    pub fn finish(mut self) -> Recorded<'a> {
        self.record.status = Status::Finished;
        self.record.finished_at = Some(SystemTime::now());
        self.save();
        Recorded {
            store: self.store,
            id: self.record.id.clone(),
            error: self.error.take(),
        }
    }

    /// Names a checkpoint's manifest in the record, so gc keeps it; unlike the other
    /// events, a failure here is returned: an unnamed checkpoint is not safe to use.
    pub fn checkpoint(&mut self, manifest: &str) -> anyhow::Result<()> {
        if let Some(s) = self.record.snapshot.as_mut() {
            s.checkpoints.push(manifest.to_string());
        }
        self.store.write(&self.record)
    }

    /// Writes a step's end that [`RecordWriter::finish`] will not write soon: another
    /// step follows, and may run for hours.
    pub fn save_pending(&mut self) {
        if self.pending {
            self.save();
        }
    }

    fn save(&mut self) {
        self.pending = false;
        if self.error.is_none()
            && let Err(e) = self.store.write(&self.record)
        {
            self.error = Some(e);
        }
    }
}

/// A finished run's record, on disk: the proof a put-back that writes its result
/// into the record may start ([`crate::rollback::RunSnapshots::roll_back`] asks for it).
pub struct Recorded<'a> {
    store: &'a dyn RecordStore,
    id: String,
    /// The first error writing the record while the writer had it.
    pub error: Option<anyhow::Error>,
}

impl Recorded<'_> {
    /// Changes the record on disk; best effort (the record is whole without it).
    pub fn update(&self, change: impl FnOnce(&mut RunRecord)) {
        let mut once = Some(change);
        let _ = self.store.update_record(&self.id, &mut |r| {
            if let Some(change) = once.take() {
                change(r);
            }
        });
    }
}

impl EventSink for RecordWriter<'_> {
    fn event(&mut self, event: &Event) {
        match event {
            Event::AttemptFinished(report) => {
                self.record.attempts.push(report.clone());
                // A success is followed at once by `Finished`; a failure is saved
                // now, so a backstop killed in the backoff leaves it recorded.
                if report.verdict.is_some() {
                    self.save();
                }
            }
            Event::Warning(w) => self.record.warnings.push(w.clone()),
            Event::BreakerSkipped(skip) => self.record.skipped.push(skip.clone()),
            Event::RetriesOff { .. } => self.record.retries_off = true,
            Event::Restored { paths } => {
                if let Some(s) = self.record.snapshot.as_mut() {
                    s.restores.push(crate::record::Restore {
                        at: SystemTime::now(),
                        action: PutBack::Restore,
                        paths: *paths,
                        reason: "rollback.between_attempts: restore".into(),
                        not_restored: 0,
                    });
                }
                self.save();
            }
            Event::StepStarted { name, .. } => {
                self.record.steps.push(StepInfo {
                    name: name.clone(),
                    outcome: None,
                });
            }
            Event::Finished(summary) => {
                if let Some(step) = self.record.steps.last_mut() {
                    step.outcome = Some(summary.clone());
                }
                self.record.outcome = Some(summary.clone());
                // Not written here: the run's end follows (the walk after it, then
                // `finish`, which writes the record whole), or another step, before
                // which the run calls `save_pending`. A backstop killed in between
                // leaves a record that reads "unfinished" either way (its status is
                // still running); one write fewer for every run.
                self.pending = true;
            }
            _ => {}
        }
    }
}

/// RFC 3339 timestamps with milliseconds, in UTC.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Outcome;

    #[test]
    fn put_backs_read_and_write_as_older_records_have_them() {
        for (action, name) in [
            (PutBack::Rollback, "rollback"),
            (PutBack::Restore, "restore"),
            (PutBack::Undo, "undo"),
            (PutBack::Redo, "redo"),
        ] {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&action).ok(), Some(json.clone()));
            assert_eq!(serde_json::from_str::<PutBack>(&json).ok(), Some(action));
            assert_eq!(action.to_string(), name);
        }
    }

    #[test]
    fn run_states_print_as_the_records_json_names_them() {
        let finished = |outcome, incomplete| RunState::Finished {
            outcome,
            incomplete,
        };
        assert_eq!(RunState::Running.to_string(), "running");
        assert_eq!(RunState::Unfinished.to_string(), "unfinished");
        assert_eq!(finished(Outcome::Failed, false).to_string(), "failed");
        assert_eq!(finished(Outcome::Succeeded, true).to_string(), "succeeded!");
        // One spelling: `runs` and `show` say what the record's JSON says.
        assert_eq!(
            finished(Outcome::OutputClosed, false).to_string(),
            "output_closed"
        );
    }
}
