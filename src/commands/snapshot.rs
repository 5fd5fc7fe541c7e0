//! `backstop snapshot`: a snapshot of the scope now, with what it cost.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::exit_code::SUCCESS;
use crate::policy::{self, PolicyChoice};
use crate::rollback::scope_for;
use crate::snapshot::lock::Wait;
use crate::snapshot::manifest::hex;
use crate::snapshot::snapshots::Snapshots;
use crate::store::{Store, repo_root};

use super::{lock_region, recover, token};

pub fn snapshot(
    store: Option<PathBuf>,
    choice: &PolicyChoice,
    json: bool,
    quiet: bool,
) -> Result<u8> {
    let policy = policy::choose(choice)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree_store = store.records(&repo_root(&cwd));
    let scope = scope_for(&policy, &cwd, store.dir())?;
    let _region = lock_region(
        store.dir(),
        &scope.root,
        &token("snapshot"),
        "snapshot",
        None,
        Wait::Yes,
        quiet,
    )?;
    let mut tree = Snapshots::new(store.dir(), &tree_store, scope);
    recover(&tree, quiet)?;
    let start = Instant::now();
    let taken = tree.snapshot().context("cannot snapshot the tree")?;
    let elapsed = start.elapsed();
    let files = taken
        .manifest
        .entries
        .iter()
        .filter(|e| e.content.is_kept())
        .count();
    let bytes: u64 = taken
        .manifest
        .entries
        .iter()
        .filter(|e| e.content.is_kept())
        .map(|e| e.size)
        .sum();
    let doc = serde_json::json!({
        "manifest": hex(&taken.id),
        "root": crate::names::Name::from(tree.scope.root.as_path()),
        "entries": taken.manifest.entries.len(),
        "files": files,
        "bytes": bytes,
        "read": taken.hashed,
        "from_cache": files - (taken.hashed + taken.from_git).min(files),
        "from_git": taken.from_git,
        "skipped": taken.skipped.len(),
        "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
    });
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "snapshot {} of {}: {} entries, {} files ({}), {} read, {} from the stat cache, {} from git, {} skipped, in {:.1} ms",
            &hex(&taken.id)[..12],
            tree.scope.root.display(),
            taken.manifest.entries.len(),
            files,
            crate::policy::values::format_size(bytes),
            taken.hashed,
            files - (taken.hashed + taken.from_git).min(files),
            taken.from_git,
            taken.skipped.len(),
            elapsed.as_secs_f64() * 1000.0
        )?;
    }
    Ok(SUCCESS)
}
