//! `backstop run`: a command under the policy, recorded in the store.

use std::io::IsTerminal;
use std::time::SystemTime;

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::error::UserError;
use crate::events::Fanout;
use crate::policy::{self, PolicyChoice};
use crate::process::ProcessRunner;
use crate::record::{PolicyRef, RecordWriter, RunRecord, Status};
use crate::reporter::{Mode, Reporter};
use crate::settings::Settings;
use crate::store::{Store, new_run_id, tree_root};

pub fn run(settings: &Settings, choice: &PolicyChoice, command: &[String]) -> Result<u8> {
    if command.is_empty() {
        return Err(UserError::Usage(
            "nothing to run: give a command, as in `backstop run -- ./flaky.sh`".into(),
        )
        .into());
    }
    let policy = policy::choose(choice)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = tree_root(&cwd);
    let tree = Store::locate(settings.store.clone())?.tree(&root);
    let mode = if settings.quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
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

        let id = new_run_id();
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
        };
        let mut writer = RecordWriter::start(&tree, record)
            .context("cannot record the run, so it was not started")?;
        let mut reporter = Reporter::new(mode, github);
        let runner = ProcessRunner::new(interrupt.clone());
        let summary = {
            let mut sinks = Fanout(vec![&mut reporter, &mut writer]);
            Engine::new(&policy, runner, &mut sinks, interrupt, id)
                .run(command)
                .await
        };
        if let Some(err) = writer.error.take()
            && !settings.quiet
        {
            eprintln!("backstop: warning: the run record is incomplete: {err:#}");
        }
        Ok(summary.exit_code)
    })
}
