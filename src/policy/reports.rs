//! The CI warning of `policy explain`: a rollback of a CI workspace that would also
//! delete the test reports the job uploads after the step.
//!
//! A failed test step in CI is the one whose reports matter: a JUnit XML file, a
//! coverage report, nextest's output. A policy that rolls the checkout back on failure
//! deletes them before the job's upload step runs, unless they are left out of the
//! scope. The check is by example: each of [`REPORT_PATHS`] is tried against the
//! policy's `rollback.scope.exclude` and (with `ignored: respect`) the root's
//! `.gitignore`, as the snapshot's walker would match it.

use std::path::{Path, PathBuf};

use ignore::gitignore::GitignoreBuilder;
use ignore::overrides::OverrideBuilder;

use super::model::{BetweenAttempts, Ignored, Policy, RollbackOn};

/// The variables that name a CI job's checkout: GitHub Actions, GitLab CI.
pub const WORKSPACE_VARS: [&str; 2] = ["GITHUB_WORKSPACE", "CI_PROJECT_DIR"];

/// Where common test runners and coverage tools write what a CI job uploads, relative
/// to the checkout; `true` for a directory. Each is an example path: a glob that
/// leaves it out (`*.xml`, `target/`, `coverage/`) leaves out its kind.
pub const REPORT_PATHS: [(&str, bool); 12] = [
    ("junit.xml", false),              // JUnit XML: jest-junit, go-junit-report, …
    ("report.xml", false),             // pytest --junitxml=report.xml
    ("test-results", true),            // Playwright, many JUnit reporters
    ("build/test-results", true),      // Gradle
    ("build/reports", true),           // Gradle's HTML reports
    ("target/nextest", true),          // cargo-nextest's JUnit output
    ("target/surefire-reports", true), // Maven Surefire
    ("coverage", true),                // Istanbul/nyc, c8, Jest --coverage
    ("coverage.xml", false),           // coverage.py xml, Cobertura
    (".coverage", false),              // coverage.py data
    ("lcov.info", false),              // lcov, cargo-llvm-cov --lcov
    ("playwright-report", true),       // Playwright's HTML report
];

/// The warning, if the policy rolls back a tree that overlaps the CI workspace named
/// in the environment, and leaves some report path in its scope.
pub fn ci_reports_warning(policy: &Policy) -> Option<String> {
    let (var, workspace) = WORKSPACE_VARS.iter().find_map(|v| {
        let dir = std::env::var_os(v).filter(|d| !d.is_empty())?;
        Some((*v, PathBuf::from(dir)))
    })?;
    if !rolls_back(policy, super::under_ci()) {
        return None;
    }
    let cwd = std::env::current_dir().ok()?;
    let root = match &policy.rollback.scope.root {
        Some(r) => cwd.join(r),
        None => crate::store::repo_root(&cwd),
    };
    let (root, workspace) = (root.canonicalize().ok()?, workspace.canonicalize().ok()?);
    if !(root.starts_with(&workspace) || workspace.starts_with(&root)) {
        return None;
    }
    // Reports are written in the checkout: where the scope holds it, they are tried
    // there.
    let checkout = if root.starts_with(&workspace) {
        &root
    } else {
        &workspace
    };
    let open = in_scope(policy, &root, checkout);
    if open.is_empty() {
        return None;
    }
    let place = if root.starts_with(&workspace) {
        "lies in"
    } else {
        "holds"
    };
    Some(format!(
        "rollback.scope {} {place} ${var}: a failed run's rollback would also delete the reports the job uploads ({}); add them to rollback.scope.exclude, or set `rollback: {{ snapshot: false }}` (a CI checkout is thrown away)",
        crate::names::quote_path(&root),
        open.join(", ")
    ))
}

/// Whether a run under the policy may put its tree back by itself.
fn rolls_back(policy: &Policy, ci: bool) -> bool {
    let r = &policy.rollback;
    policy.snapshots(ci)
        && (r.on == RollbackOn::Failure || r.between_attempts == BetweenAttempts::Restore)
}

/// The report paths under `checkout` (the root, or a directory in it) that neither
/// `exclude` nor the root's `.gitignore` leaves out, relative to `checkout` and
/// written as a policy would (`coverage/` for a directory).
pub fn in_scope(policy: &Policy, root: &Path, checkout: &Path) -> Vec<String> {
    let scope = &policy.rollback.scope;
    let mut excludes = OverrideBuilder::new(root);
    for pattern in &scope.exclude {
        // An invalid glob is the walk's error to report, at the run.
        let _ = excludes.add(&format!("!{pattern}"));
    }
    let excludes = excludes.build().ok();
    let mut gitignore = GitignoreBuilder::new(root);
    if scope.ignored == Ignored::Respect {
        let _ = gitignore.add(root.join(".gitignore"));
    }
    let gitignore = gitignore.build().ok();
    REPORT_PATHS
        .iter()
        .filter(|(rel, is_dir)| {
            let path = checkout.join(rel);
            // The walker prunes a directory it leaves out: its contents go with it.
            let excluded = excludes.as_ref().is_some_and(|o| {
                path.ancestors()
                    .take_while(|p| p.starts_with(root) && *p != root)
                    .any(|p| o.matched(p, p != path || *is_dir).is_ignore())
            });
            let ignored = gitignore
                .as_ref()
                .is_some_and(|g| g.matched_path_or_any_parents(&path, *is_dir).is_ignore());
            !(excluded || ignored)
        })
        .map(|(rel, is_dir)| format!("{rel}{}", if *is_dir { "/" } else { "" }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        super::super::load_str(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn every_report_path_is_in_scope_without_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let open = in_scope(&policy("version: 1\n"), dir.path(), dir.path());
        assert_eq!(open.len(), REPORT_PATHS.len(), "{open:?}");
        assert!(open.contains(&"target/nextest/".to_string()), "{open:?}");
    }

    #[test]
    fn excludes_and_gitignore_leave_report_paths_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".gitignore"), "target/\n.coverage\n").unwrap();
        let p = policy(
            "version: 1\nrollback:\n  scope:\n    exclude: ['*.xml', test-results/, build/, coverage, lcov.info, playwright-report]\n",
        );
        assert!(
            in_scope(&p, dir.path(), dir.path()).is_empty(),
            "{:?}",
            in_scope(&p, dir.path(), dir.path())
        );
        let include = policy(
            "version: 1\nrollback:\n  scope:\n    ignored: include\n    exclude: ['*.xml', test-results/, build/, coverage, lcov.info, playwright-report]\n",
        );
        assert_eq!(
            in_scope(&include, dir.path(), dir.path()),
            ["target/nextest/", "target/surefire-reports/", ".coverage"]
        );
    }

    #[test]
    fn a_checkout_inside_the_root_is_tried_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy("version: 1\nrollback:\n  scope:\n    exclude: [ws/junit.xml]\n");
        let open = in_scope(&p, dir.path(), &dir.path().join("ws"));
        assert!(!open.contains(&"junit.xml".to_string()), "{open:?}");
        assert!(open.contains(&"report.xml".to_string()), "{open:?}");
    }

    #[test]
    fn a_policy_without_a_snapshot_or_a_rollback_rolls_nothing_back() {
        assert!(!rolls_back(
            &policy("version: 1\nrollback: { snapshot: false }\n"),
            false
        ));
        assert!(!rolls_back(
            &policy("version: 1\nrollback: { on: never }\n"),
            false
        ));
        assert!(
            !rolls_back(&policy("version: 1\n"), true),
            "CI, no rollback:"
        );
        assert!(rolls_back(
            &policy("version: 1\nrollback: { on: failure }\n"),
            true
        ));
    }
}
