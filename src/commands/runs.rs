//! `backstop runs`: the runs recorded for this tree, newest first, with what is wrong
//! with the history said by name: damaged record files, an interrupted put-back.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::exit_code::SUCCESS;
use crate::record::RunRecord;
use crate::snapshot::region::is_live;
use crate::store::{Damaged, Store, repo_root};

use super::health::{Interrupted, damaged_message, interrupted};

/// One line of the list: a record, or a record file that cannot be read.
enum Row<'a> {
    Run(&'a RunRecord),
    Damaged(&'a Damaged),
}

impl Row<'_> {
    /// A damaged file has no readable start time; when it was last written is the
    /// nearest thing (never earlier than its run's start).
    fn time(&self) -> SystemTime {
        match self {
            Row::Run(r) => r.started_at,
            Row::Damaged(d) => d.modified.unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

pub fn list(store: Option<PathBuf>, limit: Option<usize>, json: bool) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree = store.records(&repo_root(&cwd));
    let listing = tree.listing()?;
    let pending = interrupted(store.dir(), &tree);
    let mut rows: Vec<Row> = listing.records.iter().map(Row::Run).collect();
    rows.extend(listing.damaged.iter().map(Row::Damaged));
    rows.sort_by_key(|r| std::cmp::Reverse(r.time()));
    rows.truncate(limit.unwrap_or(usize::MAX));
    // Said on stderr in both modes, so that neither a person nor a script misses it.
    for p in &pending {
        eprintln!("backstop: warning: {}", p.message());
    }
    for d in &listing.damaged {
        eprintln!("backstop: warning: {}", damaged_message(d));
    }
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| row_json(r, &pending, store.dir()))
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(SUCCESS);
    }
    if rows.is_empty() {
        if pending.is_empty() {
            eprintln!(
                "backstop: no runs recorded for {}",
                crate::names::quote_path(tree.root())
            );
        }
        return Ok(SUCCESS);
    }
    writeln!(
        out,
        "{:<12}  {:<24}  {:<11}  {:<13}  {:>4}  {:>8}  COMMAND",
        "ID", "STARTED", "STATE", "TREE", "EXIT", "ATTEMPTS"
    )?;
    for row in &rows {
        match row {
            Row::Run(r) => {
                let exit = r
                    .outcome
                    .as_ref()
                    .map_or("-".to_string(), |o| o.exit_code.to_string());
                let mut state = r.state(|| is_live(store.dir(), &r.id)).to_string();
                if pending.iter().any(|p| p.run_id() == Some(r.id.as_str())) {
                    state.push('!');
                }
                writeln!(
                    out,
                    "{:<12}  {:<24}  {:<11}  {:<13}  {:>4}  {:>8}  {}",
                    r.id,
                    humantime::format_rfc3339_seconds(r.started_at).to_string(),
                    state,
                    tree_column(r),
                    exit,
                    r.attempts.len(),
                    crate::attempt::command_line(&r.command)
                )?;
            }
            Row::Damaged(d) => writeln!(
                out,
                "{:<12}  {:<24}  {:<11}  {:<13}  {:>4}  {:>8}  (record unreadable: {})",
                // The id and file are a stray file's name in the store: quoted, so
                // an escape or a newline in it cannot drive the terminal.
                crate::names::quote(d.id.as_bytes()),
                "-",
                "damaged",
                "-",
                "-",
                "-",
                crate::names::quote_path(&d.file)
            )?,
        }
    }
    Ok(SUCCESS)
}

/// The TREE column: where the tree stands with respect to the run's changes, or that
/// a run of a command took no snapshot (so `undo` has nothing to go back to).
fn tree_column(r: &RunRecord) -> &'static str {
    match (r.tree_state(), r.no_snapshot) {
        (Some(state), _) => state,
        (None, Some(_)) => "no snapshot",
        (None, None) => "-",
    }
}

fn row_json(row: &Row, pending: &[Interrupted], store: &std::path::Path) -> serde_json::Value {
    match row {
        Row::Run(r) => {
            let mine = pending.iter().find(|p| p.run_id() == Some(r.id.as_str()));
            serde_json::json!({
                "id": r.id,
                "started_at": humantime::format_rfc3339_millis(r.started_at).to_string(),
                "state": r.state(|| is_live(store, &r.id)).to_string(),
                "tree": r.tree_state(),
                "no_snapshot": r.no_snapshot,
                "exit_code": r.outcome.as_ref().map(|o| o.exit_code),
                "attempts": r.attempts.len(),
                "command": r.command,
                "interrupted": mine.map(Interrupted::json),
            })
        }
        Row::Damaged(d) => serde_json::json!({
            "id": d.id,
            "started_at": null,
            "state": "damaged",
            "tree": null,
            "exit_code": null,
            "attempts": null,
            "command": null,
            "interrupted": null,
            "file": crate::names::Name::from(d.file.as_path()),
            "error": d.error,
        }),
    }
}
