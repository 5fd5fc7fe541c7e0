//! `backstop run`: a command under the policy, its tree snapshotted, its run recorded.

use std::io::IsTerminal;
use std::time::SystemTime;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::engine::{Engine, Interrupt};
use crate::error::UserError;
use crate::events::{Event, EventSink, Fanout, Outcome};
use crate::policy::{self, PolicyChoice, RollbackOn};
use crate::process::ProcessRunner;
use crate::record::{PolicyRef, RecordWriter, RunRecord, Status, TreeState};
use crate::reporter::{Mode, Reporter};
use crate::rollback::{RunTree, change_infos, scope_for};
use crate::settings::Settings;
use crate::snapshot::lock::Wait;
use crate::snapshot::tree::Tree;
use crate::store::{Store, new_run_id, tree_root};

pub fn run(
    settings: &Settings,
    choice: &PolicyChoice,
    command: &[String],
    wait: Wait,
) -> Result<u8> {
    if command.is_empty() {
        return Err(UserError::Usage(
            "nothing to run: give a command, as in `backstop run -- ./flaky.sh`".into(),
        )
        .into());
    }
    let policy = policy::choose(choice)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = tree_root(&cwd);
    let store = Store::locate(settings.store.clone())?;
    let tree_store = store.tree(&root);
    let mode = if settings.quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    let mut reporter = Reporter::new(mode, github);

    // Layer 3 first: no snapshot, no run.
    let _lock = super::lock_tree(&tree_store, wait, settings.quiet)?;
    let scope = scope_for(&policy, &cwd, store.dir())?;
    let tree = Tree::new(store.dir(), &tree_store, scope);
    super::recover(&tree, settings.quiet)?;
    let id = new_run_id();
    let (mut run_tree, snapshot) = RunTree::start(tree, &id)
        .context("cannot snapshot the tree, so the command was not run")?;
    for path in &snapshot.skipped {
        reporter.event(&Event::Warning(format!(
            "{path} is over rollback.scope.max_file_size: it is not kept and cannot be restored"
        )));
    }

    let record = RunRecord {
        format: crate::record::FORMAT,
        id: id.clone(),
        status: Status::Running,
        started_at: SystemTime::now(),
        finished_at: None,
        backstop_version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        root: root.clone(),
        cwd,
        command: command.to_vec(),
        policy: PolicyRef {
            source: policy.source.clone(),
            digest: policy.digest.clone(),
        },
        attempts: Vec::new(),
        warnings: Vec::new(),
        outcome: None,
        snapshot: Some(snapshot),
    };
    let mut writer = RecordWriter::start(&tree_store, record)
        .context("cannot record the run, so it was not started")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(async {
        let interrupt = forward_signals()?;
        let runner = ProcessRunner::new(interrupt.clone());
        let mut sinks = Fanout(vec![&mut reporter, &mut writer]);
        let engine = Engine::new(&policy, runner, &mut sinks, interrupt, id.clone())
            .with_checkpoint(&mut run_tree);
        anyhow::Ok(engine.run(command).await)
    })?;
    if let Some(err) = writer.error.take() {
        reporter.event(&Event::Warning(format!(
            "the run record is incomplete: {err:#}"
        )));
    }

    // The change set, and the rollback of a run that did not succeed.
    let (after, changes) = run_tree
        .changes()
        .context("cannot take the snapshot after the run")?;
    let infos = change_infos(&changes);
    tree_store.update(&id, |r| {
        if let Some(s) = r.snapshot.as_mut() {
            s.after = Some(after);
            s.changes = infos;
        }
    })?;
    let failed = summary.outcome != Outcome::Succeeded;
    if failed && policy.rollback.on == RollbackOn::Failure && !changes.is_empty() {
        let reason = format!(
            "the run ended {}",
            format!("{:?}", summary.outcome).to_lowercase()
        );
        let report = run_tree
            .put_back(&changes, "rollback", Some(TreeState::RolledBack), &reason)
            .context("cannot roll the tree back")?;
        reporter.event(&Event::RolledBack {
            paths: changes.len(),
            kept: report.kept,
            failed: report.failed,
        });
    }
    Ok(summary.exit_code)
}

/// SIGINT, SIGTERM and SIGHUP no longer end backstop: they reach the engine, which
/// passes them to the attempt and stops.
fn forward_signals() -> Result<Interrupt> {
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
