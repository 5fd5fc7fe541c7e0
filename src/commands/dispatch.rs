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
        } => super::run::run(&settings, policy, command, wait(*no_wait), *yes),
        Command::Undo {
            targets,
            paths,
            dry_run,
            force,
            json,
            no_wait,
        }
        | Command::Redo {
            targets,
            paths,
            dry_run,
            force,
            json,
            no_wait,
        } => {
            let direction = match &settings.command {
                Command::Undo { .. } => Direction::Undo,
                _ => Direction::Redo,
            };
            let req = Request {
                targets,
                paths: paths.as_deref(),
                dry_run: *dry_run,
                force: *force,
                json: *json,
                wait: wait(*no_wait),
                quiet: settings.quiet,
            };
            super::history::undo_or_redo(store, direction, &req)
        }
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
            prompt,
        } => super::call::call(&super::call::CallArgs {
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
        Command::Show { run, json } => super::show::show(store, run.as_deref(), *json),
        Command::PolicyCheck { file } => super::policy::check(file, settings.quiet),
        Command::PolicyExplain { file } => super::policy::explain(file),
        Command::PolicySchema => super::policy::schema(),
        Command::Completions { script } => super::completions::print(script),
    }
}
