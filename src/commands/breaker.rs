//! `backstop breaker status | reset KEY`: the breakers and the retry budget the
//! policy's state backend keeps (`state/`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::exit_code::SUCCESS;
use crate::policy::{self, PolicyChoice};
use crate::reason::wall_time;
use crate::state::{Backend, Status, open_backend};
use crate::store::Store;

/// The backend the policy names, over the store.
fn backend(store: Option<PathBuf>, choice: &PolicyChoice) -> Result<Box<dyn Backend>> {
    let policy = policy::choose(choice)?;
    let store = Store::locate(store)?;
    open_backend(&policy.guarding.or_defaults(), store.dir())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn status(store: Option<PathBuf>, choice: &PolicyChoice, json: bool) -> Result<u8> {
    let mut backend = backend(store, choice)?;
    let status = runtime()?.block_on(backend.status())?;
    let text = if json {
        let mut doc = serde_json::to_string_pretty(&status).context("cannot encode the status")?;
        doc.push('\n');
        doc
    } else {
        human(&status)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    Ok(SUCCESS)
}

/// One line per key, then the budget.
fn human(status: &Status) -> String {
    let mut text = format!("backend: {}\n", status.backend);
    if status.breakers.is_empty() {
        text.push_str("no breakers kept\n");
    }
    for k in &status.breakers {
        let when = match (k.since_ms, k.next_probe_ms) {
            (Some(since), Some(next)) => format!(
                ", open since {}, next probe at {}",
                wall_time(since),
                wall_time(next)
            ),
            _ => String::new(),
        };
        text.push_str(&format!(
            "{}: {}, {} failure(s) of {} attempt(s) in the window, opened {} time(s){when}\n",
            k.key,
            k.state.as_str(),
            k.failures,
            k.attempts,
            k.opened
        ));
    }
    if let Some(b) = &status.budget {
        let state = if b.exhausted() { "exhausted" } else { "open" };
        text.push_str(&format!(
            "retry budget: {state}: {} retries of {:.1} allowed, for {} first attempt(s) in the window\n",
            b.retries, b.allowed, b.first_attempts
        ));
    }
    text
}

pub fn reset(store: Option<PathBuf>, choice: &PolicyChoice, key: &str, quiet: bool) -> Result<u8> {
    let mut backend = backend(store, choice)?;
    let existed = runtime()?.block_on(backend.reset(key))?;
    if !quiet {
        if existed {
            eprintln!("backstop: breaker `{key}` reset: closed, no failures counted");
        } else {
            eprintln!("backstop: no breaker `{key}` was kept: nothing to reset");
        }
    }
    Ok(SUCCESS)
}
