//! The change set between two manifests: what a run created, modified, deleted, or
//! turned into something else.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::manifest::{Entry, Kind, Manifest};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: Vec<u8>,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// `A`dded, `M`odified (content, mode or link target), `D`eleted, `T`ype changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Letter {
    A,
    M,
    D,
    T,
}

impl Change {
    pub fn letter(&self) -> Letter {
        match (&self.before, &self.after) {
            (None, _) => Letter::A,
            (_, None) => Letter::D,
            (Some(b), Some(a)) if b.kind != a.kind => Letter::T,
            _ => Letter::M,
        }
    }

    /// A few words on what changed, for `show`.
    pub fn detail(&self) -> String {
        let kind = |e: &Entry| match e.kind {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
        };
        match (&self.before, &self.after) {
            (None, Some(a)) => kind(a).to_string(),
            (Some(b), None) => kind(b).to_string(),
            (Some(b), Some(a)) if b.kind != a.kind => format!("{} → {}", kind(b), kind(a)),
            (Some(b), Some(a)) => {
                let mut what = Vec::new();
                if b.content != a.content {
                    what.push(if a.kind == Kind::Symlink {
                        "target"
                    } else {
                        "content"
                    });
                }
                if b.mode != a.mode {
                    what.push("mode");
                }
                if !b.same_owner(a) {
                    what.push("owner");
                }
                if b.meta.rdev != a.meta.rdev && b.kind != Kind::File {
                    what.push("device");
                }
                what.join(", ")
            }
            (None, None) => String::new(),
        }
    }
}

/// What changed from `before` to `after`: both sorted by path, as manifests are.
pub fn diff(before: &Manifest, after: &Manifest) -> Vec<Change> {
    let (mut i, mut j) = (0, 0);
    let (b, a) = (&before.entries, &after.entries);
    let mut out = Vec::new();
    while i < b.len() || j < a.len() {
        let order = match (b.get(i), a.get(j)) {
            (Some(x), Some(y)) => x.path.cmp(&y.path),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                out.push(Change {
                    path: b[i].path.clone(),
                    before: Some(b[i].clone()),
                    after: None,
                });
                i += 1;
            }
            Ordering::Greater => {
                out.push(Change {
                    path: a[j].path.clone(),
                    before: None,
                    after: Some(a[j].clone()),
                });
                j += 1;
            }
            Ordering::Equal => {
                if !b[i].same_state(&a[j]) {
                    out.push(Change {
                        path: b[i].path.clone(),
                        before: Some(b[i].clone()),
                        after: Some(a[j].clone()),
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The changes at `paths` or below them (all of them when `paths` is empty).
pub fn select<'a>(changes: &'a [Change], paths: &[Vec<u8>]) -> Vec<&'a Change> {
    changes
        .iter()
        .filter(|c| {
            paths.is_empty()
                || paths.iter().any(|p| {
                    c.path == *p || (c.path.starts_with(p) && c.path.get(p.len()) == Some(&b'/'))
                })
        })
        .collect()
}
