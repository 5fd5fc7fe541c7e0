//! What every command that touches a tree does first: lock the region it writes (and
//! the tree's history where it edits that), and finish what a killed backstop left
//! half done.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;

use crate::snapshot::lock::{FileLock, Wait};
use crate::snapshot::region::{self, Holder, RegionLock};
use crate::snapshot::snapshots::Snapshots;
use crate::store::RunRecords;

/// Locks the tree's history (its records), for undo, redo and gc.
pub fn lock_tree(tree: &RunRecords, wait: Wait, quiet: bool) -> Result<FileLock> {
    FileLock::take(
        &crate::store::layout::history_lock(tree.dir()),
        wait,
        |holder| {
            if !quiet {
                eprintln!("backstop: waiting for another backstop on this tree ({holder})…");
            }
        },
    )
}

/// Locks the region under the scope `root` against every other backstop whose scope
/// overlaps it, registering this process as `token` (a run's id for a run).
pub fn lock_region(
    store: &Path,
    root: &Path,
    token: &str,
    action: &str,
    run_id: Option<&str>,
    wait: Wait,
    quiet: bool,
) -> Result<RegionLock> {
    let holder = Holder {
        pid: std::process::id(),
        run_id: run_id.map(str::to_string),
        action: action.into(),
        root: root.to_path_buf(),
        since: SystemTime::now(),
    };
    region::lock(store, root, token, holder, wait, |who| {
        if !quiet {
            eprintln!(
                "backstop: waiting for another backstop working in {} ({who})…",
                // Quoted: the tree's name may hold a newline or an escape.
                crate::names::quote_path(root)
            );
        }
    })
}

/// Refuses to go on when the working directory is no longer at `cwd` (the path it had
/// when backstop started): moved away while a run waited for its lock, the command
/// would work in a directory the run's snapshot does not cover.
pub fn still_in(cwd: &Path) -> Result<()> {
    let now = std::env::current_dir();
    anyhow::ensure!(
        now.as_deref().is_ok_and(|now| now == cwd),
        "the working directory {} was moved{} since backstop started (likely while it \
         waited for the lock); nothing was run: start it again where it should run",
        crate::names::quote_path(cwd),
        match &now {
            Ok(now) => format!(" to {}", crate::names::quote_path(now)),
            Err(_) => " or removed".to_string(),
        }
    );
    Ok(())
}

/// A registry token for a process that is not a run.
pub fn token(action: &str) -> String {
    format!("{action}-{}", crate::store::new_run_id())
}

pub fn recover(tree: &Snapshots, quiet: bool) -> Result<()> {
    for (j, report) in tree.recover()? {
        if !quiet {
            eprintln!(
                "backstop: finished the {} of run {} that an earlier backstop left half done{}",
                j.action,
                j.run_id,
                j.root
                    .as_ref()
                    .map(|r| format!(" in {}", r.display()))
                    .unwrap_or_default()
            );
        }
        // Never silent, even with -q: the tree is not what the put-back planned.
        for (path, why) in &report.failed {
            eprintln!(
                "backstop: {} of run {} incomplete: not restored: {}: {why}",
                j.action,
                j.run_id,
                crate::names::quote_path(path)
            );
        }
    }
    Ok(())
}
