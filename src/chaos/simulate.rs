//! `backstop simulate`: the real engine, run many times against the fault model on
//! tokio's paused clock, each run kept as an in-memory record and summed up with the
//! definitions `backstop stats` uses (`Facts::of`, `Summary::of`).

use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::watch;

use super::draw::mix;
use super::model::Faults;
use super::sim_attempter::SimAttempter;
use crate::attempt::{End, Prompt};
use crate::engine::{Engine, Primary};
use crate::events::Outcome;
use crate::policy::{Policy, RollbackOn};
use crate::record::{
    PutBack, RecordStore, RecordWriter, Restore, RunRecord, SnapshotInfo, Status, TreeState,
};
use crate::stats::facts::Facts;
use crate::stats::summary::Summary;

/// The most runs one simulation makes per policy: their figures are held in memory.
pub const MAX_RUNS: u64 = 1_000_000;

/// What link 0 of each simulated run is.
#[derive(Clone, Debug)]
pub enum PrimaryChoice {
    /// A command: its line names the link, as `commands:` keys do.
    Command(Vec<String>),
    /// A model call, by the policy's model name.
    Call(String),
    /// `Call` of the policy's `model:` when it has one, else the command `task`.
    Infer,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub runs: u64,
    pub seed: u64,
    pub primary: PrimaryChoice,
}

/// One policy's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyFigures {
    pub policy: String,
    /// What link 0 was: `run task`, `call sonnet`.
    pub primary: String,
    pub summary: Summary,
    /// Runs the deadline (`timeout.total`) cut or stopped, of all runs.
    pub deadline_share: Option<f64>,
    pub attempts_per_run: Option<f64>,
}

/// A record store that keeps nothing: the run's record stays in its writer.
struct Nowhere;

impl RecordStore for Nowhere {
    fn write(&self, _: &RunRecord) -> anyhow::Result<()> {
        Ok(())
    }
    fn update_record(&self, _: &str, _: &mut dyn FnMut(&mut RunRecord)) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Simulates `opts.runs` runs under each policy. The same run number suffers the same
/// draws under every policy, so their differences are the policies'.
pub fn simulate(
    policies: &[Policy],
    faults: &Faults,
    opts: &Options,
) -> anyhow::Result<Vec<PolicyFigures>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let mut out = Vec::new();
    for policy in policies {
        out.push(runtime.block_on(simulate_one(policy, faults, opts))?);
    }
    Ok(out)
}

async fn simulate_one(
    policy: &Policy,
    faults: &Faults,
    opts: &Options,
) -> anyhow::Result<PolicyFigures> {
    let mut policy = policy.clone();
    let unseeded = unseeded(&policy);
    let primary = primary_of(&policy, &opts.primary);
    let mut sim = SimAttempter::new(faults, opts.seed);
    let (_tx, rx) = watch::channel(None);
    let mut facts = Vec::with_capacity(opts.runs.min(MAX_RUNS) as usize);
    let mut deadline_runs = 0u64;
    for run in 0..opts.runs.min(MAX_RUNS) {
        seed_jitter(&mut policy, &unseeded, mix(opts.seed ^ mix(run)));
        sim.start_run(opts.seed, run);
        let record = run_once(&policy, &primary, &mut sim, rx.clone(), run).await?;
        deadline_runs += u64::from(hit_deadline(&record));
        facts.push(Facts::of(&record));
    }
    let summary = Summary::of(&facts);
    let n = facts.len() as u64;
    let attempts: u64 = facts.iter().map(|f| u64::from(f.attempts)).sum();
    Ok(PolicyFigures {
        policy: policy.source.clone(),
        primary: match &primary {
            Link0::Command(c) => format!("run {}", crate::attempt::command_line(c)),
            Link0::Call(m) => format!("call {m}"),
        },
        summary,
        deadline_share: (n > 0).then(|| deadline_runs as f64 / n as f64),
        attempts_per_run: (n > 0).then(|| attempts as f64 / n as f64),
    })
}

enum Link0 {
    Command(Vec<String>),
    Call(String),
}

fn primary_of(policy: &Policy, choice: &PrimaryChoice) -> Link0 {
    match choice {
        PrimaryChoice::Command(c) => Link0::Command(c.clone()),
        PrimaryChoice::Call(m) => Link0::Call(m.clone()),
        PrimaryChoice::Infer => match &policy.model {
            Some(m) => Link0::Call(m.clone()),
            None => Link0::Command(vec!["task".into()]),
        },
    }
}

/// One run: the engine against the simulator, its record as `run` or `call` keeps it.
async fn run_once(
    policy: &Policy,
    primary: &Link0,
    sim: &mut SimAttempter<'_>,
    rx: watch::Receiver<Option<i32>>,
    run: u64,
) -> anyhow::Result<RunRecord> {
    let id = format!("sim-{run}");
    let command = match primary {
        Link0::Command(c) => c.clone(),
        Link0::Call(m) => vec!["call".into(), m.clone()],
    };
    let mut writer = RecordWriter::start(
        &Nowhere,
        RunRecord::new(&id, PathBuf::new(), PathBuf::new(), command, policy),
    )?;
    let engine = Engine::new(policy, sim, &mut writer, rx, id);
    let summary = match primary {
        Link0::Command(c) => engine.run_primary(Primary::Command(c)).await,
        Link0::Call(m) => {
            let prompt = Prompt::new(None, "simulated".into());
            engine
                .with_prompt(prompt)
                .run_primary(Primary::Call(m))
                .await
        }
    };
    let mut record = writer.record;
    record.status = Status::Finished;
    if let Link0::Command(_) = primary {
        if rolls_back(policy, summary.outcome) {
            record.snapshot = Some(rolled_back());
        } else if !policy.rollback.snapshot {
            record.no_snapshot = Some(crate::policy::NoSnapshot::Policy);
        }
    }
    Ok(record)
}

/// Whether `run` would roll the tree back: as `commands/run.rs` decides it.
fn rolls_back(policy: &Policy, outcome: Outcome) -> bool {
    policy.rollback.snapshot
        && policy.rollback.on == RollbackOn::Failure
        && !matches!(outcome, Outcome::Succeeded | Outcome::OutputClosed)
}

/// A snapshot with one rollback of the whole run: there is no tree.
fn rolled_back() -> SnapshotInfo {
    SnapshotInfo {
        root: PathBuf::new(),
        exclude: Vec::new(),
        respect_ignored: true,
        max_file_size: 0,
        before: String::new(),
        after: None,
        state: TreeState::RolledBack,
        changes: Vec::new(),
        skipped: Vec::new(),
        head: None,
        restores: vec![Restore {
            at: std::time::SystemTime::now(),
            action: PutBack::Rollback,
            paths: 0,
            reason: "simulated".into(),
            not_restored: 0,
        }],
        checkpoints: Vec::new(),
        rules: None,
        root_id: None,
        not_restored: Vec::new(),
        after_error: None,
        undone: Vec::new(),
        late: Vec::new(),
        walks: None,
    }
}

/// Whether the deadline cut an attempt, or stopped a wait or a link.
fn hit_deadline(r: &RunRecord) -> bool {
    let said = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains("timeout.total"));
    r.attempts
        .iter()
        .any(|a| matches!(a.end, End::TimedOut { deadline: true, .. }) || said(&a.delay_reason))
        || r.outcome.as_ref().is_some_and(|o| said(&o.reason))
}

/// Which backoffs have no seed of their own: the simulator seeds their jitter per
/// run, so a simulation repeats; a policy's own seed is kept, as a real run keeps it.
fn unseeded(policy: &Policy) -> Vec<bool> {
    let mut v = vec![policy.retry.backoff.seed.is_none()];
    v.extend(
        policy
            .fallback
            .chain
            .iter()
            .map(|l| l.retry.as_ref().is_some_and(|r| r.backoff.seed.is_none())),
    );
    v
}

fn seed_jitter(policy: &mut Policy, unseeded: &[bool], seed: u64) {
    if unseeded[0] {
        policy.retry.backoff.seed = Some(seed);
    }
    for (i, link) in policy.fallback.chain.iter_mut().enumerate() {
        if let (Some(retry), true) = (link.retry.as_mut(), unseeded[i + 1]) {
            retry.backoff.seed = Some(mix(seed ^ i as u64));
        }
    }
}
