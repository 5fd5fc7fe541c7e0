//! `backstop policy check | explain | schema`.

use std::collections::BTreeSet;

use crate::helpers::Test;

#[test]
fn check_prints_the_resolved_policy_with_every_default() {
    let out = Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry:\n  max_attempts: 3\n  on: { exit_codes: [75, 64..78] }\n",
        )
        .args(&["policy", "check", "p.yaml"])
        .stdout_contains("# p.yaml: valid")
        .stderr("")
        .run();
    let resolved: serde_yaml::Value =
        serde_yaml::from_str(&out.stdout).expect("policy check prints YAML");
    let get = |path: &str| path.split('.').fold(&resolved, |v, key| &v[key]).clone();
    let yaml = |text: &str| serde_yaml::from_str::<serde_yaml::Value>(text).expect("YAML");
    assert_eq!(get("version"), yaml("1"));
    // What the file says...
    assert_eq!(get("retry.max_attempts"), yaml("3"));
    assert_eq!(
        codes(&get("retry.on.exit_codes")),
        codes(&yaml("[75, 64..78]"))
    );
    // ...and the defaults it did not.
    assert_eq!(get("retry.backoff.kind"), yaml("exponential"));
    assert_eq!(get("retry.backoff.initial"), yaml("100ms"));
    assert_eq!(get("retry.backoff.max"), yaml("2s"));
    assert_eq!(get("retry.backoff.jitter"), yaml("full"));
    assert_eq!(get("retry.on.timeout"), yaml("true"));
    assert_eq!(
        codes(&get("retry.never.exit_codes")),
        codes(&yaml("[2, 126, 127]"))
    );
    assert_eq!(get("timeout.kill_grace"), yaml("5s"));
    assert_eq!(get("fallback.chain"), yaml("[]"));
}

/// The exit codes a list of codes and `a..b` ranges covers, however it is spelt.
fn codes(list: &serde_yaml::Value) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for item in list.as_sequence().expect("a list of exit codes") {
        match (item.as_u64(), item.as_str()) {
            (Some(n), _) => {
                out.insert(n);
            }
            (None, Some(range)) => {
                let (a, b) = range
                    .split_once("..=")
                    .or_else(|| range.split_once(".."))
                    .expect("a range");
                out.extend(a.parse::<u64>().expect("start")..=b.parse::<u64>().expect("end"));
            }
            _ => panic!("not an exit code: {item:?}"),
        }
    }
    out
}

#[test]
fn check_of_a_resolved_policy_round_trips() {
    // What `check` prints is itself a valid policy that resolves to the same thing.
    let first = Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry: { max_attempts: 2 }\nfallback:\n  chain:\n    - run: [\"./b\"]\n    - default: { stdout: x }\n",
        )
        .args(&["policy", "check", "p.yaml"])
        .run();
    let resolved = first.stdout.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(first.path().join("resolved.yaml"), &resolved).expect("write");
    let second = first.backstop(&["policy", "check", "resolved.yaml"]);
    assert_eq!(second.status, 0, "{}", second.stderr);
    assert_eq!(
        second.stdout.lines().skip(1).collect::<Vec<_>>(),
        first.stdout.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn check_refuses_an_invalid_policy_with_125() {
    Test::new()
        .write("p.yaml", "version: 1\nretry:\n  max_attempts: many\n")
        .args(&["policy", "check", "p.yaml"])
        .status(125)
        .stdout("")
        .stderr_contains("p.yaml:3:")
        .stderr_contains("retry.max_attempts")
        .run();
}

#[test]
fn check_warns_when_the_worst_case_overruns_the_deadline() {
    Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry: { max_attempts: 5 }\ntimeout: { attempt: 10s, total: 20s }\n",
        )
        .args(&["policy", "check", "p.yaml"])
        .stderr_contains("warning")
        .stderr_contains("overruns timeout.total (20s)")
        .run();
}

const OVERRUN: &str = "version: 1
retry: { max_attempts: 5, backoff: { initial: 1s, max: 4s, jitter: none } }
timeout: { attempt: 10s, total: 20s }
";

#[test]
fn explain_prints_the_schedule_and_its_worst_case() {
    let out = Test::new()
        .write("p.yaml", OVERRUN)
        .args(&["policy", "explain", "p.yaml"])
        .run();
    // Attempt, the wait before it (no jitter: exact), worst case at its end:
    // 10s, 1s+10s, 2s+10s, 4s+10s, 4s+10s.
    let rows = [
        ("1", "-", "10s"),
        ("2", "1s", "21s"),
        ("3", "2s", "33s"),
        ("4", "4s", "47s"),
        ("5", "4s", "1m 1s"),
    ];
    for (attempt, wait, worst) in rows {
        assert!(
            out.stdout.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() >= 3
                    && cols[0] == attempt
                    && cols[1] == wait
                    && cols[2..].join(" ") == worst
            }),
            "no row {attempt} {wait} {worst} in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("worst case: 1m 1s"), "{}", out.stdout);
    assert!(out.stdout.contains("timeout.total 20s"), "{}", out.stdout);
}

#[test]
fn explain_warns_when_the_worst_case_overruns_the_deadline() {
    Test::new()
        .write("p.yaml", OVERRUN)
        .args(&["policy", "explain", "p.yaml"])
        .stdout_contains("warning: the worst case (1m 1s) overruns timeout.total (20s)")
        .run();
}

#[test]
fn explain_does_not_warn_when_the_deadline_is_enough() {
    let out = Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry: { max_attempts: 2, backoff: { initial: 1s, jitter: none } }\ntimeout: { attempt: 1s, total: 1m }\n",
        )
        .args(&["policy", "explain", "p.yaml"])
        .stdout_contains("worst case: 3s")
        .run();
    assert!(!out.stdout.contains("warning"), "{}", out.stdout);
}

#[test]
fn explain_shows_jitter_ranges_and_fallback_links() {
    Test::new()
        .write(
            "p.yaml",
            "version: 1
retry: { max_attempts: 3, backoff: { initial: 100ms, max: 2s } }
fallback:
  chain:
    - run: [\"./plan-b\"]
    - default: { stdout: x, exit_code: 2 }
    - escalate: { run: [\"./page-someone\"] }
",
        )
        .args(&["policy", "explain", "p.yaml"])
        .stdout_contains("0s..100ms")
        .stdout_contains("0s..200ms")
        .stdout_contains("run ./plan-b")
        .stdout_contains("default answer, exit 2")
        .stdout_contains("escalate to `./page-someone`")
        .run();
}

#[test]
fn explain_refuses_an_invalid_policy_with_125() {
    Test::new()
        .write("p.yaml", "version: 3\n")
        .args(&["policy", "explain", "p.yaml"])
        .status(125)
        .stderr_contains("p.yaml:1:1: version")
        .run();
}

#[test]
fn schema_is_json_naming_the_top_level_keys() {
    let out = Test::new().args(&["policy", "schema"]).run();
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    for key in ["version", "retry", "timeout", "fallback"] {
        assert!(
            schema["properties"].get(key).is_some(),
            "no property {key} in the schema"
        );
    }
}
