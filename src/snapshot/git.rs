//! Just enough git to notice that HEAD moved: undo restores files, never `.git`.

use std::fs;
use std::path::Path;

/// The commit HEAD points at (or HEAD's raw content when it cannot be resolved).
pub fn head(root: &Path) -> Option<String> {
    let git = root.join(".git");
    let head = fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(id) = fs::read_to_string(git.join(reference)) {
        return Some(id.trim().to_string());
    }
    let packed = fs::read_to_string(git.join("packed-refs")).ok();
    packed
        .as_deref()
        .and_then(|p| {
            p.lines()
                .find_map(|l| l.strip_suffix(reference).map(|id| id.trim().to_string()))
        })
        .or_else(|| Some(head.to_string()))
}
