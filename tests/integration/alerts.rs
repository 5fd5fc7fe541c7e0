//! Alert rules: evaluated at the end of every run (a line when a rule starts firing
//! or clears, `notify` once), and by `backstop stats --check` (a monitoring plugin).
//! Runs are real; runs older than a window are real records moved back in time.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::helpers::{Ran, Sandbox, Test};

/// Quick retries, so that a failing run is over in milliseconds.
const FAST: &str = "retry: { max_attempts: 1 }\n";

fn policy(rules: &str) -> String {
    format!("version: 1\n{FAST}alerts:\n{rules}")
}

/// Every record file of the store, in every tree.
fn record_files(t: &Sandbox) -> Vec<PathBuf> {
    let trees = t.path().parent().unwrap().join("store").join("trees");
    let mut out = Vec::new();
    for tree in std::fs::read_dir(trees).expect("the store has trees") {
        let runs = tree.unwrap().path().join("runs");
        for f in std::fs::read_dir(runs).into_iter().flatten() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Moves every record's start `by` into the past: out of a window shorter than that.
fn age_records(t: &Sandbox, by: Duration) {
    for f in record_files(t) {
        let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let started = humantime::parse_rfc3339(v["started_at"].as_str().unwrap()).unwrap();
        v["started_at"] = Value::from(rfc3339(started - by));
        std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    }
}

/// Writes a copy of the record `from` as run `id`, edited by `edit`.
fn copy_record(from: &PathBuf, id: &str, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(from).unwrap()).unwrap();
    v["id"] = Value::from(id);
    edit(&mut v);
    let to = from.with_file_name(format!("{id}.json"));
    std::fs::write(to, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn check(t: &Sandbox) -> Ran {
    t.backstop(&["stats", "--check"])
}

#[track_caller]
fn assert_status(ran: &Ran, code: i32) {
    assert_eq!(
        ran.status, code,
        "stdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
}

/// A rule fires after `bad` (which exits `code`), and clears once that run is out of
/// its window and a run of `true` followed; its twin, on the other side of every value
/// the test sees, never fires.
#[track_caller]
fn fires_then_clears(metric: &str, head: &str, rules: &str, bad: &[&str], code: i32) {
    let yaml = format!("version: 1\n{head}alerts:\n{rules}");
    let t = Test::new()
        .policy(&yaml)
        .args(&["run", "--"])
        .args(bad)
        .status(code)
        .run();
    assert!(
        t.stderr
            .contains(&format!("backstop: alert: critical: {metric} ")),
        "{metric}: no alert line in\n{}",
        t.stderr
    );
    let ran = check(&t);
    assert_status(&ran, 2);
    assert!(
        ran.stdout
            .starts_with(&format!("BACKSTOP CRITICAL - {metric} ")),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(&format!("\nOK: {metric} ")),
        "{metric}: the warning rule should not fire:\n{}",
        ran.stdout
    );
    age_records(&t, Duration::from_secs(2 * 3600));
    let ran = t.backstop(&["run", "--", "true"]);
    assert_status(&ran, 0);
    assert!(
        ran.stderr
            .contains(&format!("backstop: alert cleared: critical: {metric} ")),
        "{metric}: not cleared:\n{}",
        ran.stderr
    );
    assert_status(&check(&t), 0);
}

/// A warning rule that never fires on a rate.
fn never(metric: &str) -> String {
    format!("  warning: {{ {metric}: {{ above: 1, window: 1h }} }}\n")
}

#[test]
fn success_rate_fires_and_clears() {
    let rules = "  critical: { success_rate: { below: 0.5, window: 1h } }\n  warning: { success_rate: { below: 0, window: 1h } }\n";
    fires_then_clears("success_rate", FAST, rules, &["false"], 1);
}

#[test]
fn retry_rate_fires_and_clears() {
    let head = "retry: { max_attempts: 2, backoff: { initial: 1ms, max: 1ms } }\n";
    let rules = format!(
        "  critical: {{ retry_rate: {{ above: 0.3, window: 1h }} }}\n{}",
        never("retry_rate")
    );
    let bad = ["sh", "-c", "[ \"$BACKSTOP_ATTEMPT\" -ge 2 ]"];
    fires_then_clears("retry_rate", head, &rules, &bad, 0);
}

#[test]
fn fallback_rate_fires_and_clears() {
    let head = format!("{FAST}fallback: {{ chain: [ {{ run: [\"true\"] }} ] }}\n");
    let rules = format!(
        "  critical: {{ fallback_rate: {{ above: 0.5, window: 1h }} }}\n{}",
        never("fallback_rate")
    );
    fires_then_clears("fallback_rate", &head, &rules, &["false"], 0);
}

#[test]
fn escalation_rate_fires_and_clears() {
    let head = format!(
        "{FAST}fallback: {{ chain: [ {{ escalate: {{ run: \"true\", exit_code: 3 }} }} ] }}\n"
    );
    let rules = format!(
        "  critical: {{ escalation_rate: {{ above: 0.5, window: 1h }} }}\n{}",
        never("escalation_rate")
    );
    fires_then_clears("escalation_rate", &head, &rules, &["false"], 3);
}

#[test]
fn rollback_rate_fires_and_clears() {
    let rules = format!(
        "  critical: {{ rollback_rate: {{ above: 0.5, window: 1h }} }}\n{}",
        never("rollback_rate")
    );
    let bad = ["sh", "-c", "echo x > made-by-the-run; exit 1"];
    fires_then_clears("rollback_rate", FAST, &rules, &bad, 1);
}

#[test]
fn latency_p95_fires_and_clears() {
    let rules = "  critical: { latency_p95: { above: 300ms, window: 1h } }\n  warning: { latency_p95: { above: 1h, window: 1h } }\n";
    fires_then_clears("latency_p95", FAST, rules, &["sleep", "0.5"], 0);
}

#[test]
fn latency_p99_fires_and_clears() {
    let rules = "  critical: { latency_p99: { above: 300ms, window: 1h } }\n  warning: { latency_p99: { above: 1h, window: 1h } }\n";
    fires_then_clears("latency_p99", FAST, rules, &["sleep", "0.5"], 0);
}

/// Cost comes from model calls: a real run's record given a cost stands for one.
#[test]
fn cost_usd_fires_and_clears() {
    let rules = "  critical: { cost_usd: { above: 0.10, window: 1h } }\n  warning: { cost_usd: { above: 5, window: 1h } }\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "true"])
        .run();
    assert!(!t.stderr.contains("alert"), "{}", t.stderr);
    let first = record_files(&t).remove(0);
    copy_record(&first, "c0571c0571c0", |v| {
        v["outcome"]["cost_usd"] = Value::from(0.5)
    });
    let ran = t.backstop(&["run", "--", "true"]);
    assert!(
        ran.stderr
            .contains("backstop: alert: critical: cost_usd $0.50 above $0.10 over 1h (3 runs)"),
        "{}",
        ran.stderr
    );
    let ran = check(&t);
    assert_status(&ran, 2);
    assert!(
        ran.stdout.contains("\nOK: cost_usd $0.50, not above $5.00"),
        "{}",
        ran.stdout
    );
    age_records(&t, Duration::from_secs(2 * 3600));
    let ran = t.backstop(&["run", "--", "true"]);
    assert!(
        ran.stderr
            .contains("backstop: alert cleared: critical: cost_usd $0.00, not above $0.10"),
        "{}",
        ran.stderr
    );
    assert_status(&check(&t), 0);
}

#[test]
fn min_runs_holds_a_rule_back() {
    let rules = "  critical: { success_rate: { below: 0.99, window: 1h, min_runs: 3 } }\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "false"])
        .status(1)
        .stderr_lacks("alert")
        .run();
    assert_status(&t.backstop(&["run", "--", "false"]), 1);
    let ran = check(&t);
    assert_status(&ran, 0);
    assert!(
        ran.stdout
            .contains("\nOK: success_rate below 99.0% over 1h: not enough runs (2 of 3)\n"),
        "{}",
        ran.stdout
    );
    let ran = t.backstop(&["run", "--", "false"]);
    assert!(
        ran.stderr
            .contains("backstop: alert: critical: success_rate 0.0% below 99.0% over 1h (3 runs)"),
        "{}",
        ran.stderr
    );
}

/// Runs older than a rule's window do not count for it; a longer window sees them.
#[test]
fn a_window_holds_only_the_runs_that_started_in_it() {
    let rules = "  critical: { success_rate: { below: 0.9, window: 1h } }\n  warning: { success_rate: { below: 0.9, window: 3h } }\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "false"])
        .status(1)
        .run();
    age_records(&t, Duration::from_secs(2 * 3600));
    let old = record_files(&t).remove(0);
    for i in 0..4 {
        copy_record(&old, &format!("01d01d01d0{i:02}"), |_| {});
    }
    // Far outside both windows: never counted.
    copy_record(&old, "a9ca9ca9ca9c", |v| {
        v["started_at"] = Value::from(rfc3339(SystemTime::now() - Duration::from_secs(86400)))
    });
    assert_status(&t.backstop(&["run", "--", "true"]), 0);
    let ran = check(&t);
    assert_status(&ran, 1);
    assert_eq!(
        ran.stdout,
        "BACKSTOP WARNING - success_rate 16.7% below 90.0% over 3h (6 runs) | success_rate=1;0.9:;0.9:\n\
         WARNING: success_rate 16.7% below 90.0% over 3h (6 runs)\n\
         OK: success_rate 100.0%, not below 90.0% over 1h (1 run)\n"
    );
}

#[test]
fn check_says_ok_critical_and_perfdata() {
    let rules = "  critical: { success_rate: { below: 0.5, window: 5m }, latency_p95: { above: 2s, window: 5m } }\n  warning: { success_rate: { below: 0.9, window: 5m } }\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["stats", "--check"])
        .run();
    assert_eq!(
        t.stdout,
        "BACKSTOP OK - 3 rules, none firing (0 runs in the last 5m) | success_rate=U;0.9:;0.5: latency_p95=U;;2000\n\
         OK: success_rate below 50.0% over 5m: not enough runs (0 of 1)\n\
         OK: latency_p95 above 2s over 5m: not enough runs (0 of 1)\n\
         OK: success_rate below 90.0% over 5m: not enough runs (0 of 1)\n"
    );
    assert_status(&t.backstop(&["run", "--", "false"]), 1);
    let ran = check(&t);
    assert_status(&ran, 2);
    let first = ran.stdout.lines().next().unwrap();
    assert!(
        first.starts_with(
            "BACKSTOP CRITICAL - success_rate 0.0% below 50.0% over 5m (1 run); and 1 more | success_rate=0;0.9:;0.5: latency_p95="
        ),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("\nCRITICAL: success_rate 0.0% below 50.0% over 5m (1 run)\nWARNING: success_rate 0.0% below 90.0% over 5m (1 run)\n"), "{}", ran.stdout);
}

#[test]
fn check_is_unknown_without_rules_or_with_a_bad_policy() {
    let t = Test::new()
        .policy("version: 1\n")
        .args(&["stats", "--check"])
        .status(3)
        .stdout("BACKSTOP UNKNOWN - backstop.yaml has no alert rules (add `alerts.critical` or `alerts.warning`)\n")
        .run();
    let bad = t.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nalerts: { critical: { success_rate: { below: 2, window: 5m } } }\n",
    )
    .unwrap();
    let ran = t.backstop(&["stats", "--check", "-p", "bad.yaml"]);
    assert_status(&ran, 3);
    assert!(
        ran.stdout.starts_with("BACKSTOP UNKNOWN - "),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("alerts.critical.success_rate.below"),
        "{}",
        ran.stdout
    );
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    // An invalid ./backstop.yaml, found without -p.
    std::fs::write(t.path().join("backstop.yaml"), "version: 1\nnope: 1\n").unwrap();
    let ran = check(&t);
    assert_status(&ran, 3);
    assert!(
        ran.stdout.starts_with("BACKSTOP UNKNOWN - ") && ran.stdout.contains("nope"),
        "{}",
        ran.stdout
    );
    let ran = t.backstop(&["stats", "--check", "-p", "missing.yaml"]);
    assert_status(&ran, 3);
    assert!(ran.stdout.contains("missing.yaml"), "{}", ran.stdout);
    // A store that cannot be read: a file where its directory should be.
    let rules = "version: 1\nalerts: { critical: { success_rate: { below: 0.5, window: 5m } } }\n";
    std::fs::write(t.path().join("backstop.yaml"), rules).unwrap();
    let not_a_store = t.path().join("bad.yaml");
    let env = [("BACKSTOP_HOME", not_a_store.to_str().unwrap())];
    let ran = t.backstop_env(&env, &["stats", "--check"]);
    assert_status(&ran, 3);
    assert!(
        ran.stdout
            .starts_with("BACKSTOP UNKNOWN - cannot read the runs in ")
            && ran.stdout.contains("bad.yaml"),
        "{}",
        ran.stdout
    );
}

#[test]
fn check_never_notifies_nor_changes_the_state() {
    let rules = "  critical: { success_rate: { below: 0.6, window: 1h } }\n  notify: 'cat >> \"$OUT/notify.log\"'\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "true"])
        .run();
    let first = record_files(&t).remove(0);
    copy_record(&first, "fa11fa11fa11", |v| {
        v["outcome"]["outcome"] = Value::from("failed");
        v["outcome"]["exit_code"] = Value::from(1);
    });
    copy_record(&first, "fa11fa11fa12", |v| {
        v["outcome"]["outcome"] = Value::from("failed");
        v["outcome"]["exit_code"] = Value::from(1);
    });
    assert_status(&check(&t), 2);
    assert_status(&check(&t), 2);
    assert_eq!(t.read("notify.log"), "");
    assert!(
        !t.path()
            .parent()
            .unwrap()
            .join("store/alerts")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")))
    );
    // The next run is the one that sees it start.
    let ran = t.backstop(&["run", "--", "true"]);
    assert!(
        ran.stderr
            .contains("backstop: alert: critical: success_rate"),
        "{}",
        ran.stderr
    );
    assert_eq!(t.lines("notify.log").len(), 1);
}

fn notified(t: &Sandbox) -> Vec<Value> {
    t.lines("notify.log")
        .iter()
        .map(|l| serde_json::from_str(l).expect("notify gets JSON"))
        .collect()
}

#[test]
fn notify_is_told_once_while_firing_and_again_after_clearing() {
    let rules = "  critical: { success_rate: { below: 0.5, window: 1h } }\n  notify: 'cat >> \"$OUT/notify.log\"'\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "false"])
        .status(1)
        .run();
    assert_eq!(notified(&t).len(), 1);
    assert_status(&t.backstop(&["run", "--", "false"]), 1);
    assert_eq!(notified(&t).len(), 1, "still firing: not told again");
    assert_status(&t.backstop(&["run", "--", "true"]), 0);
    let ran = t.backstop(&["run", "--", "true"]);
    assert!(ran.stderr.contains("backstop: alert cleared: critical: success_rate 50.0%, not below 50.0% over 1h (4 runs)"), "{}", ran.stderr);
    assert_eq!(
        notified(&t).len(),
        1,
        "a clearing alone does not call notify"
    );
    let ran = t.backstop(&["run", "--", "false"]);
    assert!(
        ran.stderr
            .contains("backstop: alert: critical: success_rate 40.0% below 50.0% over 1h (5 runs)"),
        "{}",
        ran.stderr
    );
    let docs = notified(&t);
    assert_eq!(docs.len(), 2);
    let policy_path = t.path().join("backstop.yaml").canonicalize().unwrap();
    for d in &docs {
        assert_eq!(d["policy"], Value::from(policy_path.display().to_string()));
        assert_eq!(d["firing"].as_array().unwrap().len(), 1);
        let a = &d["firing"][0];
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["metric"], "success_rate");
        assert_eq!(a["comparison"], "below");
        assert_eq!(a["threshold"], 0.5);
        assert_eq!(a["window"], "1h");
        assert_eq!(a["describe"], "success_rate below 50.0% over 1h");
    }
    assert_eq!(docs[0]["firing"][0]["value"], 0.0);
    assert_eq!(docs[0]["firing"][0]["runs"], 1);
    assert_eq!(docs[0]["resolved"], Value::Array(vec![]));
    assert_eq!(docs[1]["firing"][0]["value"], 0.4);
    let resolved = docs[1]["resolved"].as_array().unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["key"], "alerts.critical.success_rate");
    assert_eq!(resolved[0]["value"], 0.5);
}

const BARRIER: &str =
    r#"touch "$OUT/ready-$1"; while [ ! -e "$OUT/go" ]; do sleep 0.01; done; exit 1"#;

/// Eight runs end at once, each in a tree of its own under one policy file: the
/// alert starts once, and notify is called once.
#[test]
fn concurrent_runs_notify_once() {
    let rules = "  critical: { success_rate: { below: 0.5, window: 1h } }\n  notify: 'cat >> \"$OUT/notify.log\"'\n";
    let t = Test::new().write("policy.yaml", &policy(rules));
    let policy_file = t.path().join("policy.yaml");
    let children: Vec<_> = (0..8)
        .map(|i| {
            let tree = t.path().join(format!("t{i}"));
            std::fs::create_dir(&tree).unwrap();
            let mut cmd = t.command();
            cmd.current_dir(&tree)
                .args(["run", "-p"])
                .arg(&policy_file)
                // All wait at a barrier, so that they end together.
                .args(["--", "sh", "-c", BARRIER, "barrier", &i.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let ready = |n| (0..8).filter(|i| t.exists(&format!("ready-{i}"))).count() == n;
    assert!(crate::helpers::eventually(Duration::from_secs(30), || {
        ready(8)
    }));
    std::fs::write(t.out_path().join("go"), "").unwrap();
    let mut started = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        started += String::from_utf8_lossy(&out.stderr)
            .matches("backstop: alert: critical:")
            .count();
    }
    assert_eq!(started, 1, "one run says the alert started");
    let docs = notified(&t);
    assert_eq!(docs.len(), 1, "{docs:?}");
}

#[test]
fn a_failing_notify_is_one_warning_and_changes_no_exit_code() {
    // `above` on a success rate: fires on a run that succeeds.
    let fires = "  warning: { success_rate: { above: 0.5, window: 1h } }\n";
    for (notify, said) in [
        (
            "['false']",
            "backstop: warning: alerts.notify: `false` exited with 1",
        ),
        (
            "['/nonexistent/notify']",
            "backstop: warning: alerts.notify: cannot run `/nonexistent/notify`",
        ),
        // Its arguments may carry a secret (a webhook's token): never in a warning.
        (
            "['sh', '-c', 'exit 3', 'https://hooks.example/T/B/s3cret-token']",
            "backstop: warning: alerts.notify: `sh` exited with 3",
        ),
    ] {
        let t = Test::new()
            .policy(&policy(&format!("{fires}  notify: {notify}\n")))
            .args(&["run", "--", "echo", "hello"])
            .stdout("hello\n")
            .stderr_contains(said)
            .stderr_lacks("s3cret")
            .run();
        assert_eq!(
            t.stderr.matches("backstop: warning:").count(),
            1,
            "{}",
            t.stderr
        );
    }
}

#[test]
fn a_hanging_notify_is_killed_after_ten_seconds() {
    let rules = "  warning: { success_rate: { above: 0.5, window: 1h } }\n  notify: 'echo notify-says-hi; sleep 60'\n";
    let started = Instant::now();
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["run", "--", "echo", "hello"])
        .stdout("hello\n")
        .stderr_contains("notify-says-hi")
        .stderr_contains("did not finish within 10s and was killed")
        .run();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(20),
        "{took:?}\n{}",
        t.stderr
    );
}

#[test]
fn github_actions_gets_annotations() {
    let rules = "  critical: { success_rate: { above: 0.5, window: 1h } }\n  warning: { retry_rate: { below: 0.5, window: 1h } }\n";
    Test::new()
        .policy(&policy(rules))
        .env("GITHUB_ACTIONS", "true")
        .args(&["run", "--", "true"])
        .stderr_contains("::error title=backstop alert::critical: success_rate 100.0%25 above 50.0%25 over 1h (1 run)\n")
        .stderr_contains("::warning title=backstop alert::warning: retry_rate 0.0%25 below 50.0%25 over 1h (1 run)\n")
        .stderr_lacks("backstop: alert:")
        .run();
}

#[test]
fn quiet_silences_the_lines_but_not_notify() {
    let rules = "  critical: { success_rate: { above: 0.5, window: 1h } }\n  notify: 'cat >> \"$OUT/notify.log\"'\n";
    let t = Test::new()
        .policy(&policy(rules))
        .args(&["-q", "run", "--", "true"])
        .stderr("")
        .run();
    assert_eq!(notified(&t).len(), 1);
}

#[test]
fn explain_shows_the_rules_and_notify() {
    let rules = "  critical: { success_rate: { below: 0.99, window: 5m, min_runs: 20 } }\n  warning: { latency_p95: { above: 2s, window: 10m } }\n  notify: ['./page.sh', '--team', 'ops']\n";
    Test::new()
        .policy(&policy(rules))
        .args(&["policy", "explain", "backstop.yaml"])
        .stdout_contains("\nalerts: over the runs of this policy file in every tree")
        .stdout_contains("\n  critical: success_rate below 99.0% over 5m (20 runs at least)\n")
        .stdout_contains("\n  warning: latency_p95 above 2s over 10m\n")
        .stdout_contains(
            "\n  notify: ./page.sh --team ops (once when rules start firing; 10s at most)\n",
        )
        .run();
}

#[test]
fn check_refuses_the_selection_flags_it_would_ignore() {
    let t = crate::helpers::Test::new()
        .policy("version: 1\nalerts: { warning: { retry_rate: { above: 0.5, window: 1h } } }\n");
    for flag in [
        &["--all-trees"][..],
        &["--since", "1d"],
        &["--from", "2026-01-01"],
        &["--to", "2026-01-01"],
    ] {
        let mut args = vec!["stats", "--check"];
        args.extend_from_slice(flag);
        let ran = t.backstop(&args);
        assert_eq!(ran.status, 125, "{flag:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(flag[0]), "{flag:?}: {}", ran.stderr);
    }
}
