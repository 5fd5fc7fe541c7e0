//! The operations half: run records read in aggregate. `class` holds the
//! definitions (layer of a run, type of an error) that every figure uses, `facts`
//! what a run contributes, `index` the cache that keeps them, `summary` the figures.

pub mod alerts;
pub mod class;
pub mod facts;
pub mod index;
pub mod prometheus;
pub mod publish;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use facts::Facts;
pub use index::Unreadable;
pub use summary::Summary;

use crate::store::layout;

/// Which runs a figure is over.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Every tree store, or the one of this repository root.
    pub trees: Trees,
    /// Started at or after, in milliseconds since the epoch.
    pub from_ms: Option<i64>,
    /// Started before.
    pub to_ms: Option<i64>,
    pub policy: Option<PolicyKey>,
    /// Runs under `--chaos` too: their failures were injected, not the command's own,
    /// so they are left out unless asked for.
    pub chaos: bool,
}

/// The runs a [`Selection`] found, and what it left out.
pub struct Selected {
    pub runs: Vec<Facts>,
    pub unreadable: Vec<Unreadable>,
    /// Runs under `--chaos` the selection would hold but left out.
    pub chaos_left_out: usize,
}

#[derive(Clone, Debug, Default)]
pub enum Trees {
    #[default]
    All,
    Of(PathBuf),
}

/// A policy's runs: those whose record names its file (by absolute path), or, for
/// records made before backstop kept the path, by the name it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyKey {
    pub path: Option<PathBuf>,
    pub source: String,
}

impl PolicyKey {
    pub fn of(policy: &crate::policy::Policy) -> PolicyKey {
        PolicyKey {
            path: policy.path.clone(),
            source: policy.source.clone(),
        }
    }

    pub fn matches(&self, f: &Facts) -> bool {
        match (&self.path, &f.policy_path) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.source == f.policy,
            // The built-in policy against a file's run, or a file against an old
            // record: the name it was given is all there is.
            _ => self.path.is_some() && f.policy_path.is_none() && self.source == f.policy,
        }
    }
}

/// The runs a selection holds, oldest first, and the record files that could not be
/// read.
pub fn select(store: &Path, sel: &Selection) -> Result<Selected> {
    let dirs = match &sel.trees {
        Trees::Of(root) => vec![layout::records_dir(store, root)],
        Trees::All => tree_dirs(store)?,
    };
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    for dir in dirs {
        let t = index::tree_facts(&dir, sel.from_ms)?;
        unreadable.extend(t.unreadable);
        runs.extend(t.runs.into_iter().filter(|f| {
            sel.from_ms.is_none_or(|from| f.started_ms >= from)
                && sel.to_ms.is_none_or(|to| f.started_ms < to)
                && sel.policy.as_ref().is_none_or(|p| p.matches(f))
        }));
    }
    let all = runs.len();
    runs.retain(|f| sel.chaos || !f.chaos);
    runs.sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
    Ok(Selected {
        chaos_left_out: all - runs.len(),
        runs,
        unreadable,
    })
}

fn tree_dirs(store: &Path) -> Result<Vec<PathBuf>> {
    let trees = layout::trees_dir(store);
    let entries = match std::fs::read_dir(&trees) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", trees.display())),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}
