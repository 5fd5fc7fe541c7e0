//! Puts paths of a tree into given states, from the object store.
//!
//! The one routine behind rollback, undo, redo and crash recovery. Every step is
//! idempotent — run it twice, or after a crash half-way, and the tree ends the same —
//! so an interrupted plan is finished by running it again. New contents are staged
//! beside their targets and renamed over them; nothing the scope does not cover is
//! ever deleted: a directory that must go but still holds untracked files is kept,
//! and said so.

use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::manifest::{Content, Entry, Kind};
use super::objects::Objects;
use super::scope::{Ancestors, ancestors};

/// Make `path` be `to` (absent when `None`).
#[derive(Clone, Debug)]
pub struct Op {
    pub path: Vec<u8>,
    pub to: Option<Entry>,
}

/// What could not be done without touching what the scope does not cover.
#[derive(Debug, Default)]
pub struct Report {
    /// Directories left in place because they hold files outside the scope.
    pub kept: Vec<String>,
    /// Paths that could not be put back, and why.
    pub failed: Vec<(String, String)>,
}

pub fn apply(root: &Path, objects: &Objects, ops: &[Op]) -> Result<Report> {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by(|a, b| a.path.cmp(&b.path));
    let abs = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    let mut report = Report::default();

    // 1. Remove what must go or change type, children before their parents.
    for op in ops.iter().rev() {
        let path = abs(&op.path);
        // Under a symlinked or missing directory the path is not in the tree: never
        // follow a link out of it.
        if ancestors(root, &op.path)? != Ancestors::Real {
            continue;
        }
        let Ok(current) = fs::symlink_metadata(&path) else {
            continue;
        };
        let keep = match &op.to {
            Some(to) => match to.kind {
                Kind::Dir => current.is_dir(),
                Kind::File => current.is_file(),
                // A symlink is replaced by rename below, whatever its target.
                Kind::Symlink => current.file_type().is_symlink(),
            },
            None => false,
        };
        if keep {
            continue;
        }
        let removed = if current.is_dir() {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if current.is_dir() && e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                report.kept.push(path.display().to_string());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    // 2. Create and fill, parents before their children.
    for op in &ops {
        let Some(to) = &op.to else { continue };
        let path = abs(&op.path);
        if ancestors(root, &op.path)? == Ancestors::Blocked {
            report.failed.push((
                path.display().to_string(),
                "a directory above it is now a file or a symlink".into(),
            ));
            continue;
        }
        let done = match to.kind {
            Kind::Dir => ensure_dir(&path),
            Kind::File => match &to.content {
                Content::Hash(h) => write_file(&path, objects, h, to),
                _ => Err(
                    io::Error::other("its content was over the size limit and was not kept").into(),
                ),
            },
            Kind::Symlink => match &to.content {
                Content::Link(target) => write_link(&path, target),
                _ => Err(io::Error::other("the snapshot has no link target").into()),
            },
        };
        if let Err(e) = done {
            report
                .failed
                .push((path.display().to_string(), format!("{e:#}")));
        }
    }

    // 3. Directory modes last, so a read-only directory is filled before it closes.
    for op in ops.iter().rev() {
        if let Some(to) = op.to.as_ref().filter(|t| t.kind == Kind::Dir) {
            let path = abs(&op.path);
            if ancestors(root, &op.path)? != Ancestors::Real
                || fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir())
            {
                continue;
            }
            if let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(to.mode)) {
                report
                    .failed
                    .push((path.display().to_string(), crate::error::io_message(&e)));
            }
        }
    }
    Ok(report)
}

fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!("a file is in the way"),
        Err(_) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::create_dir(path).or_else(|e| if path.is_dir() { Ok(()) } else { Err(e) })?;
            // Writable while it is filled; step 3 sets the recorded mode.
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
    }
}

/// A staging name beside `path`, in the same directory so the rename is atomic.
fn stage(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let parent = path
        .parent()
        .context("a path in a tree has a parent")?
        .to_path_buf();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = format!(".backstop-{:016x}.tmp", rand::random::<u64>());
    Ok((parent.join(name), parent))
}

fn write_file(
    path: &Path,
    objects: &Objects,
    hash: &super::manifest::Hash,
    to: &Entry,
) -> Result<()> {
    let (tmp, _) = stage(path)?;
    let result = (|| -> Result<()> {
        let mut dst =
            File::create_new(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        // Hashed as it is copied: a missing or damaged object is an error here (the
        // caller reports `path` as not restored, with the object), and the staged copy
        // is removed below, so its bytes never reach `path`.
        objects.copy_to(hash, to.size, &mut dst)?;
        dst.set_permissions(fs::Permissions::from_mode(to.mode))?;
        let mtime = if to.mtime_ns >= 0 {
            UNIX_EPOCH + Duration::from_nanos(to.mtime_ns as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(to.mtime_ns.unsigned_abs())
        };
        dst.set_times(FileTimes::new().set_modified(mtime))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_link(path: &Path, target: &[u8]) -> Result<()> {
    if fs::read_link(path).is_ok_and(|t| t.as_os_str().as_bytes() == target) {
        return Ok(());
    }
    let (tmp, _) = stage(path)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
        .with_context(|| format!("cannot create the link {}", path.display()))?;
    fs::rename(&tmp, path).inspect_err(|_e| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(())
}
