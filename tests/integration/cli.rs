//! The command line itself: bad usage exits 125 and runs nothing.

use crate::helpers::Test;

#[test]
fn an_unknown_flag_exits_125() {
    Test::new()
        .args(&[
            "run",
            "--no-such-flag",
            "--",
            "sh",
            "-c",
            "touch $OUT/created",
        ])
        .status(125)
        .stderr_contains("--no-such-flag")
        .run();
}

#[test]
fn an_unknown_global_flag_exits_125() {
    Test::new()
        .args(&["--bogus", "runs"])
        .status(125)
        .stderr_contains("--bogus")
        .run();
}

#[test]
fn an_unknown_subcommand_exits_125() {
    Test::new()
        .args(&["frobnicate"])
        .status(125)
        .stderr_contains("frobnicate")
        .run();
}

#[test]
fn no_subcommand_exits_125() {
    Test::new().status(125).stderr_contains("Usage").run();
}

#[test]
fn a_bad_color_value_exits_125() {
    Test::new()
        .args(&["--color", "sometimes", "run", "--", "true"])
        .status(125)
        .run();
}

#[test]
fn run_without_a_command_exits_125() {
    let out = Test::new()
        .args(&["run"])
        .status(125)
        .stderr_contains("nothing to run")
        .run();
    assert!(out.runs().is_empty(), "nothing should be recorded");
}

#[test]
fn run_with_only_a_separator_exits_125() {
    Test::new()
        .args(&["run", "--"])
        .status(125)
        .stderr_contains("nothing to run")
        .run();
}

#[test]
fn a_bad_flag_runs_nothing() {
    let out = Test::new()
        .args(&[
            "run",
            "--limit",
            "3",
            "--",
            "sh",
            "-c",
            "touch $OUT/created",
        ])
        .status(125)
        .run();
    assert!(!out.exists("created"));
}

#[test]
fn flags_after_the_command_belong_to_the_command() {
    Test::new()
        .args(&["run", "--", "echo", "-q", "--color", "x"])
        .stdout("-q --color x\n")
        .run();
}

#[test]
fn help_and_version_exit_zero() {
    Test::new().args(&["--help"]).stdout_contains("Usage").run();
    Test::new()
        .args(&["--version"])
        .stdout_contains("backstop ")
        .run();
    Test::new()
        .args(&["run", "--help"])
        .stdout_contains("--policy")
        .run();
}

#[test]
fn the_store_flag_overrides_backstop_home() {
    let out = Test::new()
        .policy("version: 1\n")
        .args(&["--store", "../elsewhere", "run", "--", "true"])
        .run();
    // Not in the default store of the harness...
    assert!(out.runs().is_empty());
    // ...but in the one named.
    let listed = out.backstop(&["--store", "../elsewhere", "runs", "--json"]);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(runs.len(), 1);
    assert!(out.path().join("../elsewhere").is_dir());
}

#[test]
fn completions_are_printed_for_bash() {
    Test::new()
        .args(&["completions", "bash"])
        .stdout_contains("backstop")
        .run();
}

#[test]
fn a_store_that_cannot_be_written_exits_125_and_runs_nothing() {
    let out = Test::new()
        .write("not-a-directory", "")
        .env("BACKSTOP_HOME", "not-a-directory")
        .args(&["run", "--", "sh", "-c", "touch $OUT/created"])
        .status(125)
        .stderr_contains("backstop: error:")
        .stderr_contains("not-a-directory")
        .run();
    assert!(!out.exists("created"), "the command ran without a record");
}

/// `backstop --version` names the commit it was built from, and its date, when it
/// was built in its git checkout (as the tests are): `backstop 0.1.0 (abc1234
/// 2026-12-01)`, `-dirty` after the hash for uncommitted changes.
#[test]
fn version_names_the_package_and_the_commit_it_was_built_from() {
    let out = Test::new().args(&["--version"]).run();
    let line = out.stdout.trim_end();
    let package = concat!("backstop ", env!("CARGO_PKG_VERSION"));
    let rest = line
        .strip_prefix(package)
        .unwrap_or_else(|| panic!("{line}"));
    let repo = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Its own checkout only: a source tree inside another repository has no commit.
    let own = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| std::fs::canonicalize(top).ok() == std::fs::canonicalize(repo).ok());
    let head = git(&["rev-parse", "HEAD"]).filter(|_| own);
    let Some(head) = head else {
        assert_eq!(rest, "", "no git: the package version alone");
        return;
    };
    let inner = rest
        .strip_prefix(" (")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line}"));
    let (hash, date) = inner.split_once(' ').unwrap_or_else(|| panic!("{line}"));
    let hash = hash.strip_suffix("-dirty").unwrap_or(hash);
    assert!(
        hash.len() >= 7 && head.starts_with(hash),
        "{line}: HEAD is {head}"
    );
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{line}"
    );
}
