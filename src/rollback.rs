//! Layer 3 for a run: the snapshot before it, restores between attempts, the change
//! set after it, and the rollback when it finally fails.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::engine::Checkpoint;
use crate::policy::{Ignored, Policy};
use crate::record::{ChangeInfo, SnapshotInfo, TreeState};
use crate::snapshot::apply::Report;
use crate::snapshot::diff::{Change, diff};
use crate::snapshot::journal::Journal;
use crate::snapshot::lock::TreeLock;
use crate::snapshot::manifest::{Manifest, hex};
use crate::snapshot::scope::Scope;
use crate::snapshot::tree::{Tree, display_path};

/// The scope a policy gives, for a run started in `cwd` with its store at `store_dir`.
pub fn scope_for(policy: &Policy, cwd: &Path, store_dir: &Path) -> Result<Scope> {
    let s = &policy.rollback.scope;
    let root = cwd.join(&s.root);
    let root = root.canonicalize().with_context(|| {
        format!(
            "rollback.scope.root {} is not a directory backstop can read",
            root.display()
        )
    })?;
    anyhow::ensure!(
        root.is_dir(),
        "rollback.scope.root {} is not a directory",
        root.display()
    );
    Ok(Scope {
        root,
        exclude: s.exclude.clone(),
        respect_ignored: s.ignored == Ignored::Respect,
        max_file_size: s.max_file_size.0,
        max_total_size: s.max_total_size.0,
        store: store_dir.canonicalize().ok(),
    })
}

/// The scope a run recorded, to undo or redo it.
pub fn scope_of(info: &SnapshotInfo, store_dir: &Path) -> Scope {
    Scope {
        root: info.root.clone(),
        exclude: info.exclude.clone(),
        respect_ignored: info.respect_ignored,
        max_file_size: info.max_file_size,
        max_total_size: u64::MAX,
        store: store_dir.canonicalize().ok(),
    }
}

/// A run's tree: what it was before, and the means to put it back.
pub struct RunTree<'a> {
    pub tree: Tree<'a>,
    /// The checkpoint attempts and a failed step go back to.
    pub before: Arc<Manifest>,
    pub before_id: String,
    /// The tree before the whole run (before its first step).
    pub start: Arc<Manifest>,
    pub start_id: String,
    pub run_id: String,
    /// A shared hold on the objects, from a snapshot until the record names it
    /// ([`RunTree::recorded`]): gc cannot sweep a manifest nothing names yet.
    pending: Option<TreeLock>,
}

impl<'a> RunTree<'a> {
    /// Takes the snapshot before the run. An error here means the command must not run.
    pub fn start(tree: Tree<'a>, run_id: &str) -> Result<(RunTree<'a>, SnapshotInfo)> {
        let hold = tree.hold_objects()?;
        let taken = tree.snapshot()?;
        let scope = &tree.scope;
        let info = SnapshotInfo {
            root: scope.root.clone(),
            exclude: scope.exclude.clone(),
            respect_ignored: scope.respect_ignored,
            max_file_size: scope.max_file_size,
            before: hex(&taken.id),
            after: None,
            state: TreeState::Applied,
            changes: Vec::new(),
            skipped: taken.skipped.iter().map(|p| display_path(p)).collect(),
            head: crate::snapshot::git::head(&scope.root),
            restores: Vec::new(),
            checkpoints: Vec::new(),
        };
        let manifest = taken.manifest;
        let run_tree = RunTree {
            before_id: hex(&taken.id),
            start_id: hex(&taken.id),
            start: Arc::clone(&manifest),
            before: manifest,
            tree,
            run_id: run_id.into(),
            pending: Some(hold),
        };
        Ok((run_tree, info))
    }

    /// The change set: the tree now against the snapshot before the run.
    pub fn changes(&self) -> Result<(String, Vec<Change>)> {
        let after = self.tree.snapshot_after(&self.before, &self.before_id)?;
        Ok((hex(&after.id), diff(&self.before, &after.manifest)))
    }

    /// Puts every changed path back to the snapshot before the run.
    pub fn put_back(
        &self,
        changes: &[Change],
        action: &str,
        then: Option<TreeState>,
        reason: &str,
    ) -> Result<Report> {
        let paths: Vec<Vec<u8>> = changes.iter().map(|c| c.path.clone()).collect();
        let journal = Journal::new(&self.run_id, action, &self.before_id, &paths, then);
        self.tree.put_back(&journal, &self.before, reason)
    }

    /// The change set of the whole run: the tree now against its start.
    pub fn changes_since_start(&self) -> Result<(String, Vec<Change>)> {
        let after = self.tree.snapshot_after(&self.start, &self.start_id)?;
        Ok((hex(&after.id), diff(&self.start, &after.manifest)))
    }

    /// A new checkpoint: the tree as it is now (before the next step). Returns its
    /// manifest's id, which the run must record before calling [`RunTree::recorded`].
    pub fn checkpoint(&mut self) -> Result<String> {
        let hold = self.tree.hold_objects()?;
        let taken = self.tree.snapshot_after(&self.before, &self.before_id)?;
        self.before_id = hex(&taken.id);
        self.before = taken.manifest;
        self.pending = Some(hold);
        Ok(self.before_id.clone())
    }

    /// The last snapshot is named in the run's record: gc may run again. Called before
    /// any put-back, which must not wait for the journal while holding the objects.
    pub fn recorded(&mut self) {
        self.pending = None;
    }

    /// Puts every changed path back to the start of the run.
    pub fn put_back_to_start(
        &self,
        changes: &[Change],
        then: Option<TreeState>,
        reason: &str,
    ) -> Result<Report> {
        let paths: Vec<Vec<u8>> = changes.iter().map(|c| c.path.clone()).collect();
        let journal = Journal::new(&self.run_id, "rollback", &self.start_id, &paths, then);
        self.tree.put_back(&journal, &self.start, reason)
    }
}

impl Checkpoint for RunTree<'_> {
    fn restore(&mut self) -> Result<usize> {
        let (_, changes) = self.changes()?;
        if changes.is_empty() {
            return Ok(0);
        }
        let report = self.put_back(
            &changes,
            "restore",
            None,
            "rollback.between_attempts: restore",
        )?;
        report_errors(&report)?;
        Ok(changes.len())
    }
}

/// A put-back that could not do all it should is an error for a run to stop on.
pub fn report_errors(report: &Report) -> Result<()> {
    if let Some((path, why)) = report.failed.first() {
        anyhow::bail!("cannot put back {path}: {why}");
    }
    Ok(())
}

pub fn change_infos(changes: &[Change]) -> Vec<ChangeInfo> {
    changes
        .iter()
        .map(|c| ChangeInfo {
            letter: c.letter(),
            path: display_path(&c.path),
            detail: c.detail(),
        })
        .collect()
}
