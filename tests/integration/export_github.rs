//! `metrics.github`: under GitHub Actions a run appends its Markdown summary to
//! `$GITHUB_STEP_SUMMARY` and its figures to `$GITHUB_OUTPUT`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::call::{KEY, Reply, Server, ok};
use super::helpers::Test;

/// A test under GitHub Actions, its summary and output files in `$OUT`.
fn under_actions(test: Test) -> (Test, PathBuf, PathBuf) {
    let summary = test.out_path().join("summary.md");
    let output = test.out_path().join("output.txt");
    let test = test
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .env("GITHUB_OUTPUT", output.to_str().unwrap());
    (test, summary, output)
}

/// The `name=value` lines of `$GITHUB_OUTPUT`.
fn outputs(path: &PathBuf) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()))
        .lines()
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not name=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

const FLAKY: &str = "#!/bin/sh\nn=$(cat \"$OUT/n\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$OUT/n\"\n[ $n -ge 3 ]\n";
const POLICY: &str =
    "version: 1\nretry: { max_attempts: 4, backoff: { initial: 10ms, max: 20ms, jitter: none } }\n";

#[test]
fn success_on_attempt_three_writes_outputs_and_summary() {
    let (test, summary, output) = under_actions(
        Test::new()
            .policy(POLICY)
            .write_mode("flaky.sh", FLAKY, 0o755),
    );
    let out = test.args(&["run", "--", "./flaky.sh"]).run();
    let id = out.record()["id"].as_str().unwrap().to_string();
    let o = outputs(&output);
    assert_eq!(o["attempts"], "3");
    assert_eq!(o["exit_code"], "0");
    assert_eq!(o["outcome"], "succeeded");
    assert_eq!(o["layer"], "l1");
    assert_eq!(o["class"], "retried");
    assert_eq!(o["run_id"], id);
    assert_eq!(o["cost_usd"], "");
    assert_eq!(o.len(), 7);
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("### ✅ backstop run flaky\\.sh: succeeded (retried, l1), exit 0"),
        "{md}"
    );
    assert!(
        md.contains("| # | link | layer | duration | end | delay after |"),
        "{md}"
    );
    assert!(md.contains("| 1 | flaky\\.sh | primary |"), "{md}");
    assert!(md.contains("exit_code (exit 1) | 10 ms |"), "{md}");
    assert!(md.contains("| 3 | flaky\\.sh | retry |"), "{md}");
    assert!(md.contains(&format!("`backstop show {id}`")), "{md}");
}

#[test]
fn failing_run_keeps_its_exit_code_and_says_failed() {
    let yaml = "version: 1\nretry: { max_attempts: 1 }\nrollback: { on: failure }\n";
    let (test, summary, output) = under_actions(Test::new().policy(yaml));
    let out = test
        .args(&["run", "--", "sh", "-c", "echo x > made.txt; exit 9"])
        .status(9)
        .run();
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    let o = outputs(&output);
    assert_eq!(o["exit_code"], "9");
    assert_eq!(o["outcome"], "failed");
    assert_eq!(o["class"], "failed");
    assert_eq!(o["layer"], "none");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("### ❌ backstop run sh: failed (failed, none), exit 9"),
        "{md}"
    );
    assert!(
        md.contains("**Rollback:** 1 paths put back, complete"),
        "{md}"
    );
    assert!(md.contains("- `made.txt`"), "{md}");
}

#[test]
fn call_reports_cost_and_tokens() {
    let server = Server::start(vec![
        Reply::Json(
            500,
            vec![],
            json!({"error": {"message": "oops", "type": "x"}}),
        ),
        ok("fine"),
    ]);
    let yaml = super::call::policy(&server.url(), "openai", "");
    let (test, summary, output) = under_actions(Test::new().policy(&yaml));
    // Kept: the files are in its directory.
    let _out = test
        .env("TEST_API_KEY", KEY)
        .args(&["call", "-p", "backstop.yaml", "hi"])
        .stdout("fine\n")
        .run();
    let o = outputs(&output);
    assert_eq!(o["attempts"], "2");
    assert_eq!(o["class"], "retried");
    assert_eq!(o["cost_usd"], "0.020000");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("### ✅ backstop call small: succeeded"),
        "{md}"
    );
    assert!(md.contains("server_5xx (HTTP 500)"), "{md}");
    assert!(
        md.contains("**Cost:** $0.0200 · **Tokens:** 10 in, 5 out"),
        "{md}"
    );
    assert!(!md.contains(KEY));
}

#[test]
fn markup_in_a_command_name_is_escaped() {
    let name = "x<script>alert(1)<|script>.sh";
    let (test, summary, _) = under_actions(Test::new().policy(POLICY).write_mode(
        name,
        "#!/bin/sh\nexit 0\n",
        0o755,
    ));
    let _out = test.args(&["run", "--", &format!("./{name}")]).run();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(!md.contains("<script>"), "{md}");
    assert!(!md.contains("<|"), "{md}");
    assert!(
        md.contains("x&lt;script&gt;alert\\(1\\)&lt;\\|script&gt;\\.sh"),
        "{md}"
    );
    // Every table row has its six cells: the `|` in the name did not add one.
    for row in md.lines().filter(|l| l.starts_with("| 1 ")) {
        assert_eq!(row.matches(" | ").count(), 5, "{row}");
    }
}

#[test]
fn unwritable_files_are_warnings_not_failures() {
    let test = Test::new().policy("version: 1\nretry: { max_attempts: 1 }\n");
    let output = test.out_path().join("output.txt");
    let out = test
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", "/nonexistent-dir/summary.md")
        .env("GITHUB_OUTPUT", output.to_str().unwrap())
        .args(&["run", "--", "sh", "-c", "echo hi; exit 4"])
        .status(4)
        .stdout("hi\n")
        .run();
    let warnings: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("::warning title=backstop export::"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("cannot write $GITHUB_STEP_SUMMARY (/nonexistent-dir/summary.md)"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        outputs(&output)["exit_code"],
        "4",
        "the outputs are still written"
    );
}

#[test]
fn nothing_is_written_when_off_or_not_under_actions() {
    let yaml = "version: 1\nmetrics: { github: false }\n";
    let (test, summary, output) = under_actions(Test::new().policy(yaml));
    let out = test.args(&["run", "--", "true"]).run();
    assert!(
        !summary.exists() && !output.exists(),
        "github: false wrote files"
    );
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    let test = Test::new().policy(POLICY);
    let summary = test.out_path().join("summary.md");
    let out = test
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .args(&["run", "--", "true"])
        .run();
    assert!(!summary.exists(), "written without GITHUB_ACTIONS=true");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // Under Actions with neither file named (a run by hand): nothing, and no warning.
    Test::new()
        .policy(POLICY)
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "--", "true"])
        .stderr_lacks("backstop export")
        .run();
}
