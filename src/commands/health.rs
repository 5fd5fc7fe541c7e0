//! What a tree's history says about itself beyond its readable records: an
//! interrupted put-back (a journal left by a killed backstop) and damaged record
//! files. `runs`, `show` and `undo` report both by name rather than leave them out.

use std::path::{Path, PathBuf};

use crate::snapshot::journal::{Journal, JournalFile};
use crate::store::layout;
use crate::store::{Damaged, RunRecords};

/// A put-back that a killed backstop left half done: the tree is between two states.
pub struct Interrupted {
    pub journal: PathBuf,
    /// What the journal says, or why it cannot be read.
    pub plan: Result<Journal, String>,
}

/// The interrupted put-backs of this tree's runs, or in directories under its root:
/// the journals in the store that name this tree's records or a root inside it (and
/// the one-per-tree journal of backstop 0.1). A journal that cannot be read is listed
/// too: nobody can tell whose it is.
pub fn interrupted(store: &Path, tree: &RunRecords) -> Vec<Interrupted> {
    let mut files = vec![layout::legacy_journal(tree.dir())];
    if let Ok(entries) = std::fs::read_dir(layout::journals_dir(store)) {
        for e in entries.flatten() {
            let path = e.path();
            if layout::is_journal_file(&path) {
                files.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for path in files {
        let file = JournalFile { path };
        let plan = match file.read() {
            Ok(None) => continue,
            Ok(Some(j)) => {
                let ours = j.records.as_deref() == Some(tree.dir())
                    || j.root.as_ref().is_none_or(|r| r.starts_with(tree.root()));
                if !ours {
                    continue;
                }
                Ok(j)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        out.push(Interrupted {
            journal: file.path,
            plan,
        });
    }
    out
}

impl Interrupted {
    /// The run the put-back was for, when the journal can be read.
    pub fn run_id(&self) -> Option<&str> {
        self.plan.as_ref().ok().map(|j| j.run_id.as_str())
    }

    /// One line for people; it says what the tree is like and what finishes it.
    pub fn message(&self) -> String {
        match &self.plan {
            Ok(j) => format!(
                "the {} of run {} was interrupted: {} is half-way; `backstop snapshot` there, or the next `run`, `undo` or `redo` there, finishes it (journal {})",
                j.action,
                j.run_id,
                j.root
                    .as_ref()
                    .map_or("the tree".to_string(), |r| crate::names::quote_path(r)),
                crate::names::quote_path(&self.journal)
            ),
            Err(e) => format!(
                "a put-back on this tree was interrupted and its journal cannot be read ({e}): the tree may be half-way"
            ),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "run": self.run_id(),
            "action": self.plan.as_ref().ok().map(|j| j.action.as_str()),
            "journal": crate::names::Name::from(self.journal.as_path()),
            "error": self.plan.as_ref().err(),
            "message": self.message(),
        })
    }
}

/// One line for people about a record file that cannot be read.
pub fn damaged_message(d: &Damaged) -> String {
    format!(
        "the record {} is damaged and cannot be read: {}",
        // Quoted: a stray file in the store may be named with an escape or a newline.
        crate::names::quote_path(&d.file),
        d.error
    )
}
