//! `backstop run`: a command (or a policy's steps) under the policy, its tree
//! snapshotted, its run recorded.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::attempt::command_line;
use crate::call::client::{ModelClient, Print};
use crate::chaos::inject::{Chaos, ChaosAttempter};
use crate::engine::{Engine, Interrupt, wait_for_interrupt};
use crate::error::UserError;
use crate::events::{Event, EventSink, Fanout, Outcome, RunSummary};
use crate::names::quote_path;
use crate::policy::{self, NoSnapshot, Policy, PolicyChoice, RollbackOn, RollbackTo};
use crate::process::{ProcessRunner, RealAttempter};
use crate::record::{BackstopTime, RecordWriter, Recorded, RunRecord, TreeState};
use crate::reporter::Reporter;
use crate::rollback::{Ended, Plan, RunClock, RunSnapshots, change_infos, scope_for, step_starts};
use crate::settings::ChaosChoice;
use crate::settings::Settings;
use crate::snapshot::apply::Report;
use crate::snapshot::lock::Wait;
use crate::snapshot::snapshots::Snapshots;
use crate::snapshot::snapshots::not_restored;
use crate::store::{Store, new_run_id, repo_root};

/// One thing to run: the command, or a step of the policy's task.
struct Step {
    name: String,
    argv: Vec<String>,
    approve: bool,
}

pub fn run(
    settings: &Settings,
    choice: &PolicyChoice,
    command: &[String],
    (wait, yes): (Wait, bool),
    chaos: Option<&ChaosChoice>,
) -> Result<u8> {
    let (policy, steps) = prepare(choice, command, yes)?;
    let chaos = chaos.map(Chaos::from_choice).transpose()?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = repo_root(&cwd);
    let store = Store::locate(settings.store.clone())?;
    let tree_store = store.records(&root);
    let mut reporter = Reporter::for_stderr(settings.quiet);
    if let Some(chaos) = &chaos {
        reporter.note(&chaos.announce());
    }
    // The summary waits for the rollback, so that it can say what backstop's own
    // work cost apart from the command's.
    reporter.hold_summary();
    let mut spent = BackstopTime::default();
    let run_clock = RunClock::start();
    let id = new_run_id();

    // Layer 3 first: no snapshot, no run (unless the policy or CI says to take none).
    let no_snapshot = policy.no_snapshot(policy::under_ci());
    let mut _registered = None;
    let (_region, run_tree, snapshot) = match no_snapshot {
        None => {
            let (region, run_tree, info) = protect(
                &policy,
                &cwd,
                &store,
                &tree_store,
                &id,
                (wait, settings.quiet),
                (&mut reporter, &mut spent),
            )?;
            (Some(region), Some(run_tree), Some(info))
        }
        Some(why) => {
            // Nothing of layer 3 runs: no region lock, no recovery, no journal, no
            // objects; the record alone is written, so that `runs`, `show` and `undo`
            // can say why there is nothing to go back to.
            if why == NoSnapshot::Ci {
                note_no_snapshot_under_ci(&policy, &mut reporter);
            }
            // Registered all the same, holding no region: `runs` says it is running,
            // and gc does not drop its record from under it.
            _registered = Some(
                crate::snapshot::region::register_unprotected(store.dir(), &id, &cwd)
                    .context("cannot register the run, so it was not started")?,
            );
            (None, None, None)
        }
    };

    let record = RunRecord {
        snapshot,
        no_snapshot,
        chaos: chaos.as_ref().map(Chaos::reference),
        ..RunRecord::new(&id, root, cwd, command_words(command, &steps), &policy)
    };
    let mut writer = RecordWriter::start(&tree_store, record)
        .context("cannot record the run, so it was not started")?;
    let mut run_tree = run_tree;
    // The record names the snapshot now: gc may run.
    if let Some(t) = run_tree.as_mut() {
        t.recorded();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let interrupt = runtime.block_on(async { forward_signals() })?;
    let mut guard = guard_for(&policy, store.dir(), chaos.as_ref(), &mut reporter);
    let mut task = Task {
        guard: &mut guard,
        policy: &policy,
        id: &id,
        tasked: command.is_empty(),
        yes,
        runtime: &runtime,
        interrupt,
        reporter: &mut reporter,
        writer: &mut writer,
        spent: &mut spent,
        run_clock: &run_clock,
        chaos: chaos.as_ref(),
    };
    let end = task.run_steps(&steps, run_tree.as_mut())?;
    warn_unrecorded(&mut reporter, writer.error.take());

    let code = match run_tree {
        None => {
            warn_unrecorded(&mut reporter, writer.finish().error);
            reporter.finish_summary(None);
            final_code(&policy, end.last.as_ref(), &mut reporter)
        }
        Some(mut run_tree) => {
            let several_steps = command.is_empty() && steps.len() > 1;
            let settled = (&mut reporter, spent);
            finish_tree(&policy, &mut run_tree, writer, end, several_steps, settled)
        }
    };
    // The tree is settled: another run may have it while alerts and exports go out
    // (a `notify` may take its whole time limit).
    drop(_region);
    let done = crate::export::Finished {
        policy: &policy,
        records: &tree_store,
        id: &id,
        exit_code: code,
        kind: crate::export::Kind::Run,
    };
    super::finish::after_run(store.dir(), &done, &mut reporter);
    Ok(code)
}

/// The breakers and retry budget the policy asks for; none under `--chaos`, whose
/// injected failures must not open a breaker, or spend a budget, that other runs
/// (other machines, through Redis) share.
pub(super) fn guard_for(
    policy: &Policy,
    store: &std::path::Path,
    chaos: Option<&Chaos>,
    reporter: &mut Reporter,
) -> crate::state::Guard {
    if chaos.is_none() {
        return crate::state::Guard::for_policy(&policy.guarding, store);
    }
    if policy.guarding.is_on() {
        reporter.note(
            "chaos: the policy's breakers and retry budget sit this run out: injected failures \
             must not open a breaker or spend a budget that other runs share",
        );
    }
    crate::state::Guard::none()
}

/// Settles the tree (a failed run is rolled back), says the summary, and gives the
/// run's exit code.
fn finish_tree(
    policy: &Policy,
    run_tree: &mut RunSnapshots,
    writer: RecordWriter,
    end: StepsEnd,
    several_steps: bool,
    (reporter, mut spent): (&mut Reporter, BackstopTime),
) -> u8 {
    let target = target(policy, several_steps, &end);
    // A descendant still running (stuck in uninterruptible I/O, past SIGKILL) may be
    // writing yet: then nothing is judged late, and every change is the run's.
    let ended = end.ended.filter(|_| crate::reaper::none_left());
    let outcome = end
        .last
        .as_ref()
        .map_or("unapproved", |s| s.outcome.as_str());
    let reason = format!("the run ended {outcome}");
    let complete = settle_tree(
        run_tree,
        writer,
        target,
        ended,
        &reason,
        (reporter, &mut spent),
    );
    reporter.finish_summary(Some(spent));
    if !complete {
        return crate::exit_code::PUT_BACK_INCOMPLETE;
    }
    final_code(policy, end.last.as_ref(), reporter)
}

/// The policy and what to run under it, refused before anything starts when it
/// cannot run to its end: a key a fallback lacks, a prompt nobody can answer.
fn prepare(choice: &PolicyChoice, command: &[String], yes: bool) -> Result<(Policy, Vec<Step>)> {
    let policy = policy::choose(choice)?;
    // A fallback that could never call its model is found now, not when it is needed.
    crate::call::secret::check_keys(&policy, None)?;
    let steps = steps_to_run(&policy, command)?;
    let terminal = std::io::stdin().is_terminal();
    if let Some(step) = steps.iter().find(|s| s.approve && !yes && !terminal) {
        return Err(UserError::Usage(format!(
            "step `{}` asks for approval: run on a terminal to answer, or pass --yes",
            step.name
        ))
        .into());
    }
    Ok((policy, steps))
}

/// The words the record keeps for what ran: the command, or the task's steps.
fn command_words(command: &[String], steps: &[Step]) -> Vec<String> {
    if command.is_empty() {
        steps.iter().map(|s| format!("step:{}", s.name)).collect()
    } else {
        command.to_vec()
    }
}

/// Where the tree goes back to once the steps are done, if anywhere: a failed step
/// of a task of several goes back to its checkpoint (`rollback.to: step`); anything
/// else that failed goes back to the start.
fn target(policy: &Policy, several_steps: bool, end: &StepsEnd) -> Option<Target> {
    if !end.failed || policy.rollback.on != RollbackOn::Failure {
        return None;
    }
    Some(if several_steps && policy.rollback.to == RollbackTo::Step {
        Target::Checkpoint(end.step.clone())
    } else {
        Target::Start
    })
}

/// Where a failed run's tree goes back to.
enum Target {
    /// The state before the whole run.
    Start,
    /// The checkpoint before the named step (`rollback.to: step`): the steps done
    /// before it stay.
    Checkpoint(String),
}

/// Locks the scope's region, finishes what a killed backstop left half done there,
/// and takes the snapshot before the run. The region is locked before the snapshot,
/// and it is the scope's root (known from the policy) that is locked, not the tree's:
/// runs whose scopes overlap never write the tree at once.
fn protect<'a>(
    policy: &Policy,
    cwd: &std::path::Path,
    store: &Store,
    tree_store: &'a crate::store::RunRecords,
    id: &str,
    (wait, quiet): (Wait, bool),
    (reporter, spent): (&mut Reporter, &mut BackstopTime),
) -> Result<(
    crate::snapshot::region::RegionLock,
    RunSnapshots<'a>,
    crate::record::SnapshotInfo,
)> {
    let scope = scope_for(policy, cwd, store.dir())?;
    let region = super::lock_region(store.dir(), &scope.root, id, "run", Some(id), wait, quiet)?;
    super::preflight::still_in(cwd)?;
    let tree = Snapshots::new(store.dir(), tree_store, scope);
    super::recover(&tree, quiet)?;
    let clock = Instant::now();
    let (run_tree, info) = RunSnapshots::start(tree, id)
        .context("cannot snapshot the tree, so the command was not run")?;
    spent.snapshot_ms += millis(clock.elapsed());
    for path in &info.skipped {
        reporter.event(&Event::Warning(format!(
            "{path} is over rollback.scope.max_file_size: it is not kept and cannot be restored"
        )));
    }
    Ok((region, run_tree, info))
}

/// Under CI a policy without `rollback:` takes no snapshot at all: nothing is written
/// to the tree by backstop, so no region is locked either. Said once.
fn note_no_snapshot_under_ci(policy: &Policy, reporter: &mut Reporter) {
    let which = if policy.source == "built-in" {
        "the built-in policy".to_string()
    } else {
        format!("{} has no `rollback:`, so it", policy.source)
    };
    reporter.note(&format!(
        "CI is set: {which} takes no snapshot, and a failure leaves the tree as the command left it \
         (a policy that sets `rollback:` decides for itself)"
    ));
}

/// What running the steps left: the last summary, whether the run failed (and so
/// may be rolled back), which step it stopped at, and since when no process of the
/// command has been running.
struct StepsEnd {
    last: Option<RunSummary>,
    failed: bool,
    step: String,
    ended: Option<Ended>,
}

/// A run's steps and what they report to.
struct Task<'r, 'w> {
    policy: &'r Policy,
    id: &'r str,
    /// The policy's steps (not a command given on the command line): each has a
    /// checkpoint and may ask for approval.
    tasked: bool,
    yes: bool,
    runtime: &'r tokio::runtime::Runtime,
    interrupt: Interrupt,
    reporter: &'r mut Reporter,
    writer: &'r mut RecordWriter<'w>,
    spent: &'r mut BackstopTime,
    run_clock: &'r RunClock,
    chaos: Option<&'r Chaos>,
    /// Breakers and the retry budget, for every step.
    guard: &'r mut crate::state::Guard,
}

impl Task<'_, '_> {
    /// Runs each step under the engine, after its checkpoint and its approval, until
    /// one does not succeed.
    fn run_steps(
        &mut self,
        steps: &[Step],
        mut run_tree: Option<&mut RunSnapshots>,
    ) -> Result<StepsEnd> {
        // Since when no process of the command has been running: from the snapshot
        // until the first step starts, and after each step. What changes in the scope
        // after that is someone else's doing (an edit while a step waits for approval).
        let ended_now = |run_tree: &Option<&mut RunSnapshots>, clock: &RunClock| {
            run_tree
                .as_ref()
                .and_then(|t| Ended::for_root(&t.tree.scope.root, clock))
        };
        let mut end = StepsEnd {
            last: None,
            failed: false,
            step: String::new(),
            ended: ended_now(&run_tree, self.run_clock),
        };
        for (i, step) in steps.iter().enumerate() {
            end.step.clone_from(&step.name);
            if self.tasked {
                if let Some(t) = run_tree.as_deref_mut().filter(|_| i > 0) {
                    self.checkpoint(t)?;
                }
                Fanout(vec![&mut *self.reporter, &mut *self.writer]).event(&Event::StepStarted {
                    index: i,
                    steps: steps.len(),
                    name: step.name.clone(),
                });
                // Whatever the user does at the prompt must stamp a ctime after the
                // end, or it would be judged the command's and rolled back.
                if step.approve
                    && !self.yes
                    && let Some(e) = &end.ended
                {
                    e.hand_over();
                }
                if let Some(summary) = self.unapproved(step)? {
                    end.last = Some(summary);
                    end.failed = true;
                    // The checkpoint before this step is the tree as the command left it.
                    if let Some(e) = end.ended.as_mut() {
                        e.settled = true;
                    }
                    return Ok(end);
                }
                // Approved after a wait at the prompt: what the user did meanwhile is
                // part of the tree the step starts from, so its attempts restore to it
                // (`between_attempts: restore`) and it goes back to it, not to before
                // the prompt.
                if step.approve
                    && !self.yes
                    && let Some(t) = run_tree.as_deref_mut()
                {
                    self.checkpoint(t)?;
                }
            }
            // The wait since the last step ended (or the snapshot) is over: what was
            // last changed in it is someone else's, and stays so unless a step changes
            // it again (which moves its ctime past the window).
            let quiet = end.ended.take().map(|e| {
                let mut quiet = e.quiet;
                quiet.push((e.at, step_starts()));
                quiet
            });
            let summary = self.runtime.block_on(async {
                let real = RealAttempter {
                    process: ProcessRunner::new(self.interrupt.clone()),
                    calls: ModelClient::new(self.interrupt.clone(), Print::AtEnd, false),
                };
                // Each step draws its own faults from the run's seed.
                let runner = ChaosAttempter::new(real, self.chaos, i as u64);
                let mut sinks = Fanout(vec![&mut *self.reporter, &mut *self.writer]);
                let mut engine = Engine::new(
                    self.policy,
                    runner,
                    &mut sinks,
                    self.interrupt.clone(),
                    self.id.to_string(),
                )
                .with_guard(&mut *self.guard);
                if let Some(t) = run_tree.as_deref_mut() {
                    engine = engine.with_checkpoint(t);
                }
                engine.run(&step.argv).await
            });
            // A process of the step still running voids the windows before: nothing
            // can be told apart from the command's work then.
            end.ended = ended_now(&run_tree, self.run_clock)
                .filter(|_| crate::reaper::none_left())
                .zip(quiet)
                .map(|(e, quiet)| Ended { quiet, ..e });
            let stop = summary.outcome != Outcome::Succeeded;
            // A pipeline's reader that went away ends the run, but the work stands.
            end.failed = stop && summary.outcome != Outcome::OutputClosed;
            end.last = Some(summary);
            if stop {
                break;
            }
            // Another step follows: its end is written now (the last step's is
            // written by the run's finish).
            if i + 1 < steps.len() {
                self.writer.save_pending();
            }
        }
        Ok(end)
    }

    /// The checkpoint before a step, named in the record before gc may sweep it: the
    /// step may go back to it.
    fn checkpoint(&mut self, run_tree: &mut RunSnapshots) -> Result<()> {
        let clock = Instant::now();
        let checkpoint = run_tree
            .checkpoint()
            .context("cannot take the checkpoint before the step")?;
        self.spent.snapshot_ms += millis(clock.elapsed());
        self.writer
            .checkpoint(&checkpoint)
            .context("cannot record the checkpoint before the step")?;
        run_tree.recorded();
        Ok(())
    }

    /// Asks for a step's approval if it wants it; the run's summary when the answer
    /// (or a signal) stops the run there.
    fn unapproved(&mut self, step: &Step) -> Result<Option<RunSummary>> {
        if !step.approve || self.yes {
            return Ok(None);
        }
        let summary =
            match self
                .runtime
                .block_on(ask(&step.name, &step.argv, self.interrupt.clone()))?
            {
                Answer::Yes => return Ok(None),
                Answer::No => {
                    self.reporter.event(&Event::Warning(format!(
                        "step `{}` was not approved; stopping",
                        step.name
                    )));
                    // The task did not do what it was asked to: exit 1 (as `terraform
                    // apply` answered "no"), recorded as declined, rolled back as a
                    // failure is (`rollback.to: step` keeps earlier steps).
                    at_prompt(&step.name, Outcome::Declined, 1, "not approved")
                }
                Answer::Interrupted(signal) => at_prompt(
                    &step.name,
                    Outcome::Interrupted,
                    crate::exit_code::for_signal(signal),
                    &format!("interrupted by {}", crate::attempt::signal_name(signal)),
                ),
            };
        Fanout(vec![&mut *self.reporter, &mut *self.writer])
            .event(&Event::Finished(summary.clone()));
        Ok(Some(summary))
    }
}

/// Settles the tree once the steps are done, always in this order: (1) the record
/// names what the run left (unless the put-back is to a checkpoint, whose result is
/// what the run leaves) and is finished, so a backstop killed during a rollback
/// leaves a record that says what the run did; (2) the rollback, if any, through the
/// journal, which writes its own result into the record (the writer is gone by then,
/// so nothing overwrites it); (3) for a checkpoint, the run's result once it is back
/// there, and backstop's own time. Returns whether every path is as planned.
fn settle_tree(
    run_tree: &mut RunSnapshots,
    mut writer: RecordWriter,
    target: Option<Target>,
    ended: Option<Ended>,
    reason: &str,
    (reporter, spent): (&mut Reporter, &mut BackstopTime),
) -> bool {
    let clock = Instant::now();
    let plan = match &target {
        Some(Target::Checkpoint(_)) => run_tree.plan(false, ended.as_ref()),
        Some(Target::Start) => run_tree.plan(true, ended.as_ref()),
        // Nothing is put back, but what changed while no process of the command ran
        // (at a prompt) is named, for undo and redo to leave alone.
        None => run_tree.plan(true, ended.as_ref()),
    };
    spent.snapshot_ms += millis(clock.elapsed());
    warn_after_error(reporter, &plan);
    if !matches!(target, Some(Target::Checkpoint(_))) {
        name_result(&mut writer, &plan);
        // Named before the rollback too: a backstop killed before it leaves a record
        // that says which changes are someone else's, for undo to leave alone.
        if let Some(s) = writer.record.snapshot.as_mut() {
            s.late = hex_paths(&plan.late);
        }
    }
    if let Some(s) = writer.record.snapshot.as_mut() {
        s.walks = run_tree.tree.walks();
    }
    // That was the last walk but a step's (after its put-back): the feed's watches are
    // freed while the record is written and the tree put back.
    if !matches!(target, Some(Target::Checkpoint(_))) {
        run_tree.tree.let_go_of_feed();
    }
    writer.record.backstop_time = Some(*spent);
    let mut recorded = writer.finish();
    warn_unrecorded(reporter, recorded.error.take());
    let mut complete = true;
    if let Some(target) = &target {
        note_late(reporter, &plan);
        warn_lost_outside_scope(reporter, run_tree);
        let clock = Instant::now();
        complete = roll_back(reporter, run_tree, &recorded, &plan, target, reason);
        spent.rollback_ms += millis(clock.elapsed());
    }
    if let Some(Target::Checkpoint(_)) = target {
        // What the run leaves is what the steps before the failed one did.
        let clock = Instant::now();
        let result = run_tree.plan(true, None);
        spent.snapshot_ms += millis(clock.elapsed());
        recorded.update(|r| {
            if let Some(s) = r.snapshot.as_mut() {
                name_result_in(s, &result);
            }
        });
    }
    // Best effort: the record is whole without it. Without a put-back the record
    // already holds this time (written by `finish`): no second write for nothing.
    let spent = *spent;
    if target.is_some() {
        recorded.update(|r| r.backstop_time = Some(spent));
    }
    complete
}

/// Says the record could not be written whole, once for each time it failed.
fn warn_unrecorded(reporter: &mut Reporter, error: Option<anyhow::Error>) {
    if let Some(err) = error {
        reporter.event(&Event::Warning(format!(
            "the run record is incomplete: {err:#}"
        )));
    }
}

/// Names in the record the state the run left and its change set, or why it could
/// not be stored.
fn name_result(writer: &mut RecordWriter, plan: &Plan) {
    if let Some(s) = writer.record.snapshot.as_mut() {
        name_result_in(s, plan);
    }
}

fn name_result_in(s: &mut crate::record::SnapshotInfo, plan: &Plan) {
    if let Some((after, changes)) = &plan.changes {
        s.after = Some(after.clone());
        s.changes = change_infos(changes);
    }
    s.after_error.clone_from(&plan.after_error);
}

/// The run's exit code: the last summary's, but 0 for a failure under
/// `continue_on_error: true` (the record still says it failed). An interruption or
/// a reader that went away is not the command's error: it exits as it did.
fn final_code(policy: &Policy, last: Option<&RunSummary>, reporter: &mut Reporter) -> u8 {
    let code = last.map_or(1, |s| s.exit_code);
    let failed = last.is_none_or(|s| matches!(s.outcome, Outcome::Failed | Outcome::Escalated));
    if policy.continue_on_error && failed && code != 0 {
        reporter.note(&format!(
            "continue_on_error: the run failed (exit {code}), recorded as failed; exiting 0"
        ));
        return 0;
    }
    code
}

fn millis(d: std::time::Duration) -> u64 {
    crate::policy::values::millis(d)
}

/// Warns of paths outside the scope that the run moved or removed: never stored, no
/// rollback brings them back.
fn warn_lost_outside_scope(reporter: &mut Reporter, run_tree: &RunSnapshots) {
    let lost = run_tree.lost_outside_scope();
    if lost.is_empty() {
        return;
    }
    let shown: Vec<&str> = lost.iter().take(10).map(String::as_str).collect();
    let more = lost.len().saturating_sub(shown.len());
    reporter.event(&Event::Warning(format!(
        "the run moved or removed {} path(s) outside the snapshot's scope (ignored or excluded, never stored), \
         which no rollback can bring back: {}{}",
        lost.len(),
        shown.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )));
}

/// Puts the tree back to `target` (and the root's own mode); returns whether every
/// path is as planned. What was not restored is in the record whatever happened:
/// the put-back's own report, what the walk could not read, or a refused root.
fn roll_back(
    reporter: &mut Reporter,
    run_tree: &RunSnapshots,
    recorded: &Recorded,
    plan: &Plan,
    target: &Target,
    reason: &str,
) -> bool {
    let (to_start, before, then, why) = match target {
        Target::Start => (
            true,
            "the run".to_string(),
            TreeState::RolledBack,
            reason.to_string(),
        ),
        Target::Checkpoint(step) => (
            false,
            format!("step `{step}`"),
            TreeState::Applied,
            format!("{reason}: step `{step}` put back to its checkpoint"),
        ),
    };
    let root = &run_tree.tree.scope.root;
    if plan.is_empty() {
        if !plan.late.is_empty() {
            // Every change came after the command had ended: none is put back, and
            // the record says which were kept.
            recorded.update(|r| {
                if let Some(s) = r.snapshot.as_mut() {
                    s.state = then;
                    s.late = hex_paths(&plan.late);
                }
            });
        }
        // Nothing under the root changed; the root itself may have (`chmod 555 .`).
        let Some(failed) = run_tree.restore_root_mode() else {
            return true;
        };
        let report = Report {
            kept: Vec::new(),
            failed: vec![failed],
        };
        let root_only = Plan {
            paths: vec![b".".to_vec()],
            ..Plan::default()
        };
        report_rollback(reporter, Ok(report), &root_only, before, root);
        return false;
    }
    let result = run_tree
        .roll_back(plan, to_start, then, &why, recorded)
        .map(|r| with_unread(r, plan, run_tree));
    let done = report_rollback(reporter, result, plan, before, root);
    let list = match &done {
        // The put-back recorded its own report already.
        Some(report) if plan.unread.is_empty() => return report.complete(),
        Some(report) => not_restored(report),
        None => vec![crate::record::NotRestored {
            path: root.as_path().into(),
            why: "the rollback was refused: the root is not the directory the run started in"
                .into(),
        }],
    };
    recorded.update(|r| {
        if let Some(s) = r.snapshot.as_mut() {
            if let Some(last) = s.restores.last_mut().filter(|_| done.is_some()) {
                last.not_restored = list.len();
            }
            s.not_restored = list;
        }
    });
    done.is_some_and(|r| r.complete())
}

fn hex_paths(paths: &[Vec<u8>]) -> Vec<String> {
    paths
        .iter()
        .map(|p| crate::snapshot::journal::to_hex(p))
        .collect()
}

/// Names the paths a rollback leaves as they are because they changed after the
/// command had ended: never silent, as what a rollback deletes is not.
fn note_late(reporter: &mut Reporter, plan: &Plan) {
    if plan.late.is_empty() {
        return;
    }
    let shown: Vec<String> = plan
        .late
        .iter()
        .take(crate::reporter::SHOWN_PATHS)
        .map(|p| crate::names::quote(p))
        .collect();
    let more = plan.late.len() - shown.len();
    reporter.event(&Event::Warning(format!(
        "keeping {} path(s) changed after the command had ended (or holding one that was), \
         not by the run: {}{}",
        plan.late.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )));
}

/// Says that the state after the run could not be stored, so redo cannot bring it back.
fn warn_after_error(reporter: &mut Reporter, plan: &Plan) {
    if let Some(e) = plan.after_error.as_ref().filter(|_| !plan.root_changed) {
        reporter.event(&Event::Warning(format!(
            "cannot store the state after the run ({e}); the rollback goes by the snapshot before it, \
             and `backstop redo` will not be able to re-apply this run"
        )));
    }
}

/// A put-back's report, with what the walk before it could not read: whatever is
/// there was neither seen nor put back.
fn with_unread(mut report: Report, plan: &Plan, run_tree: &RunSnapshots) -> Report {
    let root = run_tree.tree.scope.root.clone();
    for why in &plan.unread {
        report.failed.push((root.clone(), why.clone()));
    }
    report.failed.extend(run_tree.restore_root_mode());
    // A directory the put-back could not remove because a late path is in it is kept
    // for that path, already named, not for anything outside the scope.
    let root = &run_tree.tree.scope.root;
    let holders = crate::rollback::holders(&plan.late);
    report.kept.retain(|dir| {
        let rel = dir.strip_prefix(root).unwrap_or(dir).as_os_str().as_bytes();
        !holders.contains(rel)
    });
    report
}

/// Reports a rollback's result; `None` when it was refused as a whole.
fn report_rollback(
    reporter: &mut Reporter,
    result: Result<Report>,
    plan: &Plan,
    before: String,
    root: &std::path::Path,
) -> Option<Report> {
    let paths = &plan.paths;
    // The directory is named: the scope may be the repository above the one the
    // command ran in, and a rollback should never leave its reach to be guessed.
    let mut before = format!("{before}, under {}", quote_path(root));
    if !plan.late.is_empty() {
        before.push_str(&format!(
            ", but for the {} path(s) kept above",
            plan.late.len()
        ));
    }
    match result {
        Ok(report) => {
            reporter.event(&Event::RolledBack {
                paths: paths.len(),
                names: paths
                    .iter()
                    .take(crate::reporter::SHOWN_PATHS)
                    .map(|p| crate::names::quote(p))
                    .collect(),
                before,
                kept: report.kept.iter().map(|p| quote_path(p)).collect(),
                failed: report
                    .failed
                    .iter()
                    .map(|(p, why)| (quote_path(p), why.clone()))
                    .collect(),
            });
            Some(report)
        }
        Err(e) => {
            reporter.event(&Event::PutBackRefused {
                before,
                why: format!("{e:#}"),
            });
            None
        }
    }
}

/// The command as one step, or the policy's steps.
fn steps_to_run(policy: &Policy, command: &[String]) -> Result<Vec<Step>> {
    match (command.is_empty(), policy.steps.is_empty()) {
        (false, true) => Ok(vec![Step { name: command_line(command), argv: command.to_vec(), approve: false }]),
        (true, false) => Ok(policy
            .steps
            .iter()
            .map(|s| Step { name: s.name.clone(), argv: s.run.0.clone(), approve: s.approve })
            .collect()),
        (true, true) => Err(UserError::Usage(
            "nothing to run: give a command, as in `backstop run -- ./flaky.sh`, or a policy with `steps:`".into(),
        )
        .into()),
        (false, false) => Err(UserError::Usage(format!(
            "{} defines steps: run it without a command (`backstop run -p {}`)",
            policy.source, policy.source
        ))
        .into()),
    }
}

/// What the user said at a step's prompt.
enum Answer {
    Yes,
    No,
    /// Ctrl-C (or another stopping signal) came first.
    Interrupted(i32),
}

/// Asks on the terminal whether to run a step. A signal ends the question at once:
/// the line is read on a thread of its own, which is left blocked when the run stops.
async fn ask(name: &str, argv: &[String], mut interrupt: Interrupt) -> Result<Answer> {
    if let Some(signal) = *interrupt.borrow() {
        return Ok(Answer::Interrupted(signal));
    }
    eprint!(
        "backstop: run step `{name}` ({})? [y/N] ",
        command_line(argv)
    );
    std::io::stderr().flush().ok();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map(|_| answer);
        let _ = tx.send(read);
    });
    tokio::select! {
        read = rx => {
            let read = read.context("cannot read the answer")?;
            // The end of input (or a read error) is no answer: a closed terminal gives
            // EOF and SIGHUP at once, and the read may win the race. A signal that
            // comes with it ends the run as that signal says (129 for SIGHUP), never
            // as a declined step that exits 0.
            if read.as_ref().is_ok_and(|a| a.is_empty()) || read.is_err() {
                let grace = std::time::Duration::from_secs(1);
                if let Ok(signal) =
                    tokio::time::timeout(grace, wait_for_interrupt(&mut interrupt)).await
                {
                    eprintln!();
                    return Ok(Answer::Interrupted(signal));
                }
            }
            let answer = read.context("cannot read the answer")?;
            let yes = matches!(answer.trim().to_lowercase().as_str(), "y" | "yes");
            Ok(if yes { Answer::Yes } else { Answer::No })
        }
        signal = wait_for_interrupt(&mut interrupt) => {
            eprintln!();
            Ok(Answer::Interrupted(signal))
        }
    }
}

/// The run's summary when it ended at a step's prompt (not approved, or a signal):
/// nothing of the step ran.
fn at_prompt(step: &str, outcome: Outcome, exit_code: u8, why: &str) -> RunSummary {
    RunSummary {
        outcome,
        exit_code,
        link: 0,
        link_name: step.to_string(),
        links: 1,
        attempts: 0,
        link_attempts: 0,
        link_max_attempts: 0,
        retries: 0,
        elapsed_ms: 0,
        last_failure: None,
        answer: None,
        model: None,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: None,
        reason: Some(format!("{why} at the prompt of step `{step}`")),
    }
}

/// SIGINT, SIGTERM and SIGHUP no longer end backstop: they reach the engine, which
/// passes them to the attempt and stops.
pub fn forward_signals() -> Result<Interrupt> {
    let (tx, interrupt) = watch::channel(None);
    for (kind, number) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ] {
        let mut stream = signal(kind).context("cannot install signal handlers")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = tx.send(Some(number));
            }
        });
    }
    Ok(interrupt)
}
