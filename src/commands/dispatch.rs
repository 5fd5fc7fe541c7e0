//! Hands the parsed command line to the subcommand it names.

use anyhow::Result;

use crate::settings::{Command, Settings};
use crate::snapshot::lock::Wait;

use super::history::{Direction, Request};

fn wait(no_wait: bool) -> Wait {
    if no_wait { Wait::No } else { Wait::Yes }
}

/// Runs the command the settings name.
pub fn dispatch(settings: Settings) -> Result<u8> {
    let store = settings.store.clone();
    match &settings.command {
        Command::Run {
            policy,
            command,
            no_wait,
            yes,
            chaos,
        } => super::run::run(
            &settings,
            policy,
            command,
            (wait(*no_wait), *yes),
            chaos.as_ref(),
        ),
        Command::Undo(h) => history(store, Direction::Undo, h, settings.quiet),
        Command::Redo(h) => history(store, Direction::Redo, h, settings.quiet),
        Command::Gc {
            keep,
            older_than,
            no_wait,
        } => super::gc::gc(store, *keep, *older_than, wait(*no_wait), settings.quiet),
        Command::Snapshot { policy, json } => {
            super::snapshot::snapshot(store, policy, *json, settings.quiet)
        }
        Command::Call {
            policy,
            model,
            system,
            stream,
            json,
            chaos,
            prompt,
            messages,
            overrides,
        } => super::call::call(&super::call::CallArgs {
            messages: messages.as_deref(),
            overrides,
            chaos: chaos.as_ref(),
            policy,
            model: model.as_deref(),
            system: system.as_deref(),
            prompt: prompt.as_deref(),
            stream: *stream,
            json: *json,
            quiet: settings.quiet,
            store,
        }),
        Command::Fsck { repair, json } => super::fsck::fsck(store, *repair, *json, settings.quiet),
        Command::Runs { limit, json } => super::runs::list(store, *limit, *json),
        Command::Stats(args) => super::stats::stats(store, args),
        Command::Simulate(args) => super::simulate::run(args),
        Command::ChaosServe(args) => super::chaos::serve(args, settings.quiet),
        Command::Show { run, json } => super::show::show(store, run.as_deref(), *json),
        Command::PolicyCheck { file } => super::policy::check(file, settings.quiet),
        Command::PolicyExplain { file } => super::policy::explain(file),
        Command::PolicySchema => super::policy::schema(),
        Command::BreakerStatus { policy, json } => super::breaker::status(store, policy, *json),
        Command::BreakerReset { policy, key } => {
            super::breaker::reset(store, policy, key, settings.quiet)
        }
        Command::Completions { script } => super::completions::print(script),
    }
}

fn history(
    store: Option<std::path::PathBuf>,
    direction: Direction,
    h: &crate::settings::History,
    quiet: bool,
) -> Result<u8> {
    let req = Request {
        targets: &h.targets,
        paths: h.paths.as_deref(),
        dry_run: h.dry_run,
        force: h.force,
        json: h.json,
        wait: wait(h.no_wait),
        quiet,
    };
    super::history::undo_or_redo(store, direction, &req)
}
