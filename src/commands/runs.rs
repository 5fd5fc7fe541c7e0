//! `backstop runs`: the runs recorded for this tree, newest first.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::exit_code::SUCCESS;
use crate::record::RunRecord;
use crate::store::{Store, tree_root};

pub fn list(store: Option<PathBuf>, limit: Option<usize>, json: bool) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree = store.tree(&tree_root(&cwd));
    let mut runs = tree.list()?;
    runs.truncate(limit.unwrap_or(usize::MAX));
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = runs.iter().map(|r| row_json(r, store.dir())).collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(SUCCESS);
    }
    if runs.is_empty() {
        eprintln!("backstop: no runs recorded for {}", tree.root().display());
        return Ok(SUCCESS);
    }
    writeln!(
        out,
        "{:<12}  {:<24}  {:<11}  {:>4}  {:>8}  COMMAND",
        "ID", "STARTED", "STATE", "EXIT", "ATTEMPTS"
    )?;
    for r in &runs {
        let exit = r
            .outcome
            .as_ref()
            .map_or("-".to_string(), |o| o.exit_code.to_string());
        writeln!(
            out,
            "{:<12}  {:<24}  {:<11}  {:>4}  {:>8}  {}",
            r.id,
            humantime::format_rfc3339_seconds(r.started_at).to_string(),
            r.state(store.dir()),
            exit,
            r.attempts.len(),
            crate::attempt::command_line(&r.command)
        )?;
    }
    Ok(SUCCESS)
}

fn row_json(r: &RunRecord, store: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "started_at": humantime::format_rfc3339_millis(r.started_at).to_string(),
        "state": r.state(store),
        "exit_code": r.outcome.as_ref().map(|o| o.exit_code),
        "attempts": r.attempts.len(),
        "command": r.command,
    })
}
