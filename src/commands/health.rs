//! What a tree's history says about itself beyond its readable records: an
//! interrupted put-back (a journal left by a killed backstop) and damaged record
//! files. `runs`, `show` and `undo` report both by name rather than leave them out.

use std::path::PathBuf;

use crate::snapshot::journal::{Journal, JournalFile};
use crate::store::{Damaged, TreeStore};

/// A put-back that a killed backstop left half done: the tree is between two states.
pub struct Interrupted {
    pub journal: PathBuf,
    /// What the journal says, or why it cannot be read.
    pub plan: Result<Journal, String>,
}

/// The interrupted put-back on this tree, if there is one.
pub fn interrupted(tree: &TreeStore) -> Option<Interrupted> {
    let file = JournalFile {
        path: tree.journal_path(),
    };
    let plan = match file.read() {
        Ok(None) => return None,
        Ok(Some(j)) => Ok(j),
        Err(e) => Err(format!("{e:#}")),
    };
    Some(Interrupted {
        journal: file.path,
        plan,
    })
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
                "the {} of run {} was interrupted: the tree is half-way; the next `backstop run`, `undo` or `redo` on this tree finishes it (journal {})",
                j.action,
                j.run_id,
                self.journal.display()
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
            "journal": self.journal,
            "error": self.plan.as_ref().err(),
            "message": self.message(),
        })
    }
}

/// One line for people about a record file that cannot be read.
pub fn damaged_message(d: &Damaged) -> String {
    format!(
        "the record {} is damaged and cannot be read: {}",
        d.file.display(),
        d.error
    )
}
