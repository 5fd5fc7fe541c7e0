//! Hands the parsed command line to the subcommand it names.

use anyhow::Result;

use crate::settings::{Command, Settings};

/// Runs the command the settings name.
pub fn dispatch(settings: Settings) -> Result<u8> {
    let store = settings.store.clone();
    match &settings.command {
        Command::Run { policy, command } => super::run::run(&settings, policy, command),
        Command::Runs { limit, json } => super::runs::list(store, *limit, *json),
        Command::Show { run, json } => super::show::show(store, run, *json),
        Command::PolicyCheck { file } => super::policy::check(file, settings.quiet),
        Command::PolicyExplain { file } => super::policy::explain(file),
        Command::PolicySchema => super::policy::schema(),
        Command::Completions { script } => super::completions::print(script),
    }
}
