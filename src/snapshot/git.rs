//! Just enough git to notice that HEAD moved: undo restores files, never `.git`.
//!
//! `.git` may be a directory, or a file (`gitdir: X`) as in a linked worktree or a
//! submodule: HEAD is then in X, and the refs are in X's `commondir`. Files are read
//! only when they are regular files, so a FIFO named HEAD cannot hang a run.

use std::path::{Path, PathBuf};

use super::rules::read_regular_at_most;

/// `.git` files, HEAD and loose refs are a line; a checked-out tree may hold anything
/// under those names, so no more than this is read (a 10 GB HEAD is not read whole).
const SMALL: u64 = 64 << 10;
/// `packed-refs` lists every ref of a large repository.
const PACKED_REFS: u64 = 64 << 20;

fn read_small(path: &Path) -> Option<Vec<u8>> {
    read_regular_at_most(path, SMALL)
}

/// Where a checkout's git data is: its own directory (HEAD) and the common one (refs,
/// `packed-refs`, `info/exclude`); the same directory but in linked worktrees.
pub struct GitDirs {
    pub git: PathBuf,
    pub common: PathBuf,
}

/// The git directories of the checkout whose `.git` is at `dot_git`, if it has one.
pub fn dirs(dot_git: &Path) -> Option<GitDirs> {
    let meta = std::fs::metadata(dot_git).ok()?;
    let git = if meta.is_dir() {
        dot_git.to_path_buf()
    } else {
        let text = String::from_utf8(read_small(dot_git)?).ok()?;
        let target = text.strip_prefix("gitdir:")?.trim();
        dot_git.parent()?.join(target)
    };
    let common = match read_small(&git.join("commondir")).map(String::from_utf8) {
        Some(Ok(c)) => git.join(c.trim()),
        _ => git.clone(),
    };
    Some(GitDirs { git, common })
}

/// The commit HEAD points at (or HEAD's raw content when it cannot be resolved).
pub fn head(root: &Path) -> Option<String> {
    let dirs = dirs(&root.join(".git"))?;
    let head = String::from_utf8(read_small(&dirs.git.join("HEAD"))?).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    // A reference never leaves the git directory.
    if reference.split('/').any(|c| c == ".." || c.is_empty()) {
        return Some(head.to_string());
    }
    let loose = [&dirs.git, &dirs.common]
        .into_iter()
        .find_map(|d| read_small(&d.join(reference)))
        .and_then(|b| String::from_utf8(b).ok());
    if let Some(id) = loose {
        return Some(id.trim().to_string());
    }
    let packed = read_regular_at_most(&dirs.common.join("packed-refs"), PACKED_REFS)
        .and_then(|b| String::from_utf8(b).ok());
    packed
        .as_deref()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let (id, name) = l.split_once(' ')?;
                (name == reference).then(|| id.trim().to_string())
            })
        })
        .or_else(|| Some(head.to_string()))
}
