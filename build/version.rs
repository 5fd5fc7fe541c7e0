//! The version `backstop --version` prints: the package's, and the commit it was
//! built from when it was built in its own git checkout, as
//! `0.1.0 (abc1234 2026-12-01)` (`abc1234-dirty` with uncommitted changes). Built
//! from a tarball (`cargo install` from crates.io), or without git, it is `0.1.0`.
//!
//! Shared by `build.rs` (which runs it) and the library's tests (which check the
//! fallback); std only.

use std::path::Path;
use std::process::Command;

/// What git says of the checkout a build comes from.
#[derive(Debug, PartialEq, Eq)]
pub struct Commit {
    pub short: String,
    /// The commit's date, `YYYY-MM-DD`.
    pub date: String,
    pub dirty: bool,
}

/// The full version string.
pub fn describe(package: &str, commit: Option<&Commit>) -> String {
    match commit {
        Some(c) => format!(
            "{package} ({}{} {})",
            c.short,
            if c.dirty { "-dirty" } else { "" },
            c.date
        ),
        None => package.to_string(),
    }
}

/// The commit `dir` is checked out at, if `dir` is the top of a git checkout (not a
/// directory inside someone else's repository, as a vendored crate would be).
pub fn commit_of(dir: &Path) -> Option<Commit> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let short = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let date = git(dir, &["log", "-1", "--format=%cs", "HEAD"])?;
    // `--no-optional-locks`: no index refresh, so asking does not change what is watched.
    let status = git(
        dir,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    );
    Some(Commit {
        short,
        date,
        dirty: status.is_none_or(|s| !s.is_empty()),
    })
}

/// The files whose change means another commit or another dirty state.
pub fn watched(dir: &Path) -> Vec<String> {
    let branch = git(dir, &["rev-parse", "--symbolic-full-name", "HEAD"]);
    ["HEAD", "index", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref())
        .filter_map(|name| git(dir, &["rev-parse", "--git-path", name]))
        .map(|p| dir.join(p).to_string_lossy().into_owned())
        .collect()
}

/// A git command's trimmed stdout, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_commit_its_date_and_a_dirty_tree() {
        let c = Commit {
            short: "abc1234".into(),
            date: "2026-12-01".into(),
            dirty: false,
        };
        assert_eq!(describe("0.1.0", Some(&c)), "0.1.0 (abc1234 2026-12-01)");
        let dirty = Commit { dirty: true, ..c };
        assert_eq!(
            describe("0.1.0", Some(&dirty)),
            "0.1.0 (abc1234-dirty 2026-12-01)"
        );
        assert_eq!(describe("0.1.0", None), "0.1.0");
    }

    /// A tarball's directory, even one inside another repository, has no commit.
    #[test]
    fn outside_its_own_checkout_there_is_no_commit() {
        let plain = tempfile::tempdir().unwrap();
        assert_eq!(commit_of(plain.path()), None);
        let repo = tempfile::tempdir().unwrap();
        let ok = Command::new("git")
            .args(["init", "-q"])
            .current_dir(repo.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let vendored = repo.path().join("vendor/backstop");
            std::fs::create_dir_all(&vendored).unwrap();
            assert_eq!(commit_of(&vendored), None);
            assert!(watched(plain.path()).is_empty());
        }
    }
}
