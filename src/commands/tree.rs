//! What every command that touches a tree does first: take its lock, and finish what
//! a killed backstop left half done.

use anyhow::Result;

use crate::snapshot::lock::{TreeLock, Wait};
use crate::snapshot::tree::Tree;
use crate::store::TreeStore;

pub fn lock_tree(tree: &TreeStore, wait: Wait, quiet: bool) -> Result<TreeLock> {
    TreeLock::take(&tree.dir().join("lock"), wait, |holder| {
        if !quiet {
            eprintln!("backstop: waiting for another backstop on this tree ({holder})…");
        }
    })
}

pub fn recover(tree: &Tree, quiet: bool) -> Result<()> {
    let Some((j, report)) = tree.recover()? else {
        return Ok(());
    };
    if !quiet {
        eprintln!(
            "backstop: finished the {} of run {} that an earlier backstop left half done",
            j.action, j.run_id
        );
    }
    // Never silent, even with -q: the tree is not what the put-back planned.
    for (path, why) in &report.failed {
        eprintln!(
            "backstop: {} of run {} incomplete: not restored: {path}: {why}",
            j.action, j.run_id
        );
    }
    Ok(())
}
