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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::manifest::{Content, Meta};

    fn entry(path: &str, kind: Kind, content: Content) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            size: 3,
            mtime_ns: 1,
            ctime_ns: 1,
            ino: 1,
            content,
            meta: Meta::default(),
        }
    }

    fn file(path: &str, byte: u8) -> Entry {
        entry(path, Kind::File, Content::Hash([byte; 32]))
    }

    fn link(path: &str, target: &str) -> Entry {
        entry(
            path,
            Kind::Symlink,
            Content::Link(target.as_bytes().to_vec()),
        )
    }

    fn manifest(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            taken_at_ns: 0,
            entries,
        }
    }

    /// Each change as (path, letter, detail), in path order.
    fn changes(before: Vec<Entry>, after: Vec<Entry>) -> Vec<(String, Letter, String)> {
        diff(&manifest(before), &manifest(after))
            .iter()
            .map(|c| {
                let path = String::from_utf8_lossy(&c.path).into_owned();
                (path, c.letter(), c.detail())
            })
            .collect()
    }

    fn one(path: &str, letter: Letter, detail: &str) -> Vec<(String, Letter, String)> {
        vec![(path.into(), letter, detail.into())]
    }

    #[test]
    fn a_path_only_after_is_added_and_only_before_is_deleted() {
        assert_eq!(
            changes(vec![], vec![file("new", 1)]),
            one("new", Letter::A, "file")
        );
        let dir = entry("gone", Kind::Dir, Content::None);
        assert_eq!(
            changes(vec![dir], vec![]),
            one("gone", Letter::D, "directory")
        );
    }

    #[test]
    fn new_content_or_a_new_link_target_is_a_modification() {
        assert_eq!(
            changes(vec![file("f", 1)], vec![file("f", 2)]),
            one("f", Letter::M, "content")
        );
        assert_eq!(
            changes(vec![link("l", "a")], vec![link("l", "b")]),
            one("l", Letter::M, "target")
        );
    }

    #[test]
    fn a_new_mode_alone_is_a_modification() {
        let mut after = file("f", 1);
        after.mode = 0o755;
        assert_eq!(
            changes(vec![file("f", 1)], vec![after.clone()]),
            one("f", Letter::M, "mode")
        );
        after.content = Content::Hash([2; 32]);
        assert_eq!(
            changes(vec![file("f", 1)], vec![after]),
            one("f", Letter::M, "content, mode")
        );
    }

    #[test]
    fn another_kind_at_the_same_path_is_a_type_change() {
        assert_eq!(
            changes(vec![file("p", 1)], vec![link("p", "elsewhere")]),
            one("p", Letter::T, "file → symlink")
        );
        assert_eq!(
            changes(
                vec![entry("p", Kind::Dir, Content::None)],
                vec![entry("p", Kind::Fifo, Content::None)]
            ),
            one("p", Letter::T, "directory → fifo")
        );
    }

    /// Times and inodes move with every rewrite of the same bytes: not a change.
    #[test]
    fn new_times_or_inode_with_the_same_state_are_no_change() {
        let mut after = file("f", 1);
        (after.mtime_ns, after.ctime_ns, after.ino) = (99, 99, 99);
        assert!(changes(vec![file("f", 1)], vec![after]).is_empty());
    }

    #[test]
    fn changes_come_in_path_order_across_both_sides() {
        let before = vec![file("a", 1), file("c", 1), file("d", 1)];
        let after = vec![file("b", 1), file("c", 2), file("d", 1), file("e", 1)];
        let got: Vec<_> = changes(before, after)
            .into_iter()
            .map(|(p, l, _)| (p, l))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), Letter::D),
                ("b".into(), Letter::A),
                ("c".into(), Letter::M),
                ("e".into(), Letter::A),
            ]
        );
    }

    #[test]
    fn select_takes_a_path_and_what_is_below_it_not_its_namesakes() {
        let all = diff(
            &manifest(vec![]),
            &manifest(vec![file("src", 1), file("src/a", 1), file("srcx", 1)]),
        );
        let picked: Vec<_> = select(&all, &[b"src".to_vec()])
            .iter()
            .map(|c| c.path.clone())
            .collect();
        assert_eq!(picked, [b"src".to_vec(), b"src/a".to_vec()]);
        assert_eq!(select(&all, &[]).len(), 3, "no paths: every change");
    }
}
