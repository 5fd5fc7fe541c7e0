//! Run records: every attempt with its layer, link, number, timing, verdict and
//! delay; `runs` newest first; `show` by id prefix.

use serde_json::Value;

use crate::helpers::{Test, attempts};

const RETRIES_THEN_FALLBACK: &str = r#"version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - name: rescue
      run: "echo rescued"
"#;

#[test]
fn show_json_lists_every_attempt_with_layer_link_timing_and_verdict() {
    let out = Test::new()
        .policy(RETRIES_THEN_FALLBACK)
        .args(&["run", "--", "sh", "-c", "exit 4"])
        .stdout("rescued\n")
        .run();
    let record = out.record();
    assert_eq!(record["status"], "finished");
    assert_eq!(record["command"], serde_json::json!(["sh", "-c", "exit 4"]));
    let attempts = attempts(&record);
    assert_eq!(attempts.len(), 4, "{record:#}");

    let expect = [
        ("primary", 0, 1, 3),
        ("retry", 0, 2, 3),
        ("retry", 0, 3, 3),
        ("fallback", 1, 1, 3),
    ];
    for (a, (layer, link, number, max)) in attempts.iter().zip(expect) {
        assert_eq!(a["layer"], layer, "{a:#}");
        assert_eq!(a["link"], link, "{a:#}");
        assert_eq!(a["attempt"], number, "{a:#}");
        assert_eq!(a["max_attempts"], max, "{a:#}");
        assert!(a["duration_ms"].is_u64(), "{a:#}");
        assert!(a["started_at"].is_string(), "{a:#}");
    }
    for a in &attempts[..3] {
        assert_eq!(a["exit_code"], 4, "{a:#}");
        assert_eq!(a["end"], serde_json::json!({"kind": "exited", "code": 4}));
        assert_eq!(a["verdict"]["class"], "exit", "{a:#}");
        assert_eq!(a["verdict"]["retry"], true, "{a:#}");
        assert_eq!(a["verdict"]["rule"], "retry.on.exit_codes contains 4");
    }
    // The two retries were each preceded by a delay, recorded with its reason.
    for a in &attempts[..2] {
        let delay = a["delay_ms"].as_u64().expect("delay_ms");
        assert!(delay <= 5, "{a:#}");
        let reason = a["delay_reason"].as_str().expect("delay_reason");
        assert!(reason.contains("exponential backoff"), "{reason}");
    }
    // The third was out of retries: no delay, the chain moved on.
    assert!(attempts[2]["delay_ms"].is_null(), "{:#}", attempts[2]);
    assert_eq!(attempts[0]["link_name"], "sh -c 'exit 4'");
    assert_eq!(attempts[3]["link_name"], "rescue");
    assert_eq!(attempts[3]["exit_code"], 0);
    assert!(attempts[3]["verdict"].is_null(), "{:#}", attempts[3]);

    let outcome = &record["outcome"];
    assert_eq!(outcome["outcome"], "succeeded");
    assert_eq!(outcome["exit_code"], 0);
    assert_eq!(outcome["link"], 1);
    assert_eq!(outcome["attempts"], 4);
    assert_eq!(outcome["retries"], 2);
}

#[test]
fn show_prints_a_readable_table_of_the_attempts() {
    let out = Test::new()
        .policy(RETRIES_THEN_FALLBACK)
        .args(&["run", "--", "sh", "-c", "exit 4"])
        .run();
    let id = out.runs()[0]["id"].as_str().expect("id").to_string();
    let shown = out.backstop(&["show", &id]);
    assert_eq!(shown.status, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains(&format!("run      {id}")),
        "{}",
        shown.stdout
    );
    for layer in ["primary", "retry", "fallback"] {
        assert!(
            shown
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with(layer)),
            "no {layer} line in:\n{}",
            shown.stdout
        );
    }
    assert!(shown.stdout.contains("then: exponential backoff"));
}

#[test]
fn runs_lists_runs_newest_first() {
    let first = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .args(&["run", "--", "true"])
        .run();
    let second = first.backstop(&["run", "--", "sh", "-c", "exit 3"]);
    assert_eq!(second.status, 3);
    let third = first.backstop(&["run", "--", "echo", "third"]);
    assert_eq!(third.status, 0);

    let runs = first.runs();
    let commands: Vec<&Value> = runs.iter().map(|r| &r["command"]).collect();
    assert_eq!(
        commands,
        [
            &serde_json::json!(["echo", "third"]),
            &serde_json::json!(["sh", "-c", "exit 3"]),
            &serde_json::json!(["true"]),
        ]
    );
    let codes: Vec<&Value> = runs.iter().map(|r| &r["exit_code"]).collect();
    assert_eq!(codes, [&Value::from(0), &Value::from(3), &Value::from(0)]);
    let states: Vec<&Value> = runs.iter().map(|r| &r["state"]).collect();
    assert_eq!(
        states,
        [
            &Value::from("succeeded"),
            &Value::from("failed"),
            &Value::from("succeeded")
        ]
    );
    let limited = first.backstop(&["runs", "--limit", "1", "--json"]);
    let limited: Vec<Value> = serde_json::from_str(&limited.stdout).expect("JSON");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0]["id"], runs[0]["id"]);
}

#[test]
fn runs_with_no_runs_is_empty() {
    let out = Test::new().args(&["runs", "--json"]).stdout("[]\n").run();
    assert!(out.runs().is_empty());
}

#[test]
fn show_accepts_a_unique_prefix_of_the_id() {
    let out = Test::new()
        .policy("version: 1\n")
        .args(&["run", "--", "true"])
        .run();
    let id = out.runs()[0]["id"].as_str().expect("id").to_string();
    let record = out.show(&id[..4]);
    assert_eq!(record["id"], id.as_str());
}

#[test]
fn show_of_an_unknown_id_fails_clearly_with_125() {
    let out = Test::new()
        .policy("version: 1\n")
        .args(&["run", "--", "true"])
        .run();
    let id = out.runs()[0]["id"].as_str().expect("id").to_string();
    // A valid-looking id that differs from the only run's in its first digit.
    let other = if id.starts_with('0') { "1" } else { "0" };
    let unknown = format!("{other}{}", &id[1..]);
    let shown = out.backstop(&["show", &unknown, "--json"]);
    assert!(
        shown
            .stderr
            .contains(&format!("no run matches `{unknown}`")),
        "{}",
        shown.stderr
    );
    assert_eq!(shown.stdout, "");
    assert_eq!(shown.status, 125, "{}", shown.stderr);
}

#[test]
fn show_of_an_ambiguous_prefix_names_the_candidates() {
    // 17 runs: by pigeonhole, two ids share a first hex digit.
    let out = Test::new()
        .policy("version: 1\n")
        .args(&["run", "--", "true"])
        .run();
    for _ in 0..16 {
        assert_eq!(out.backstop(&["run", "--", "true"]).status, 0);
    }
    let ids: Vec<String> = out
        .runs()
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 17);
    let prefix = (0..16u32)
        .map(|d| char::from_digit(d, 16).expect("hex digit").to_string())
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() >= 2)
        .expect("pigeonhole");
    let shown = out.backstop(&["show", &prefix]);
    assert_ne!(shown.status, 0);
    assert!(shown.stderr.contains("ambiguous"), "{}", shown.stderr);
    for id in ids.iter().filter(|id| id.starts_with(prefix.as_str())) {
        assert!(shown.stderr.contains(id.as_str()), "{}", shown.stderr);
    }
}

#[test]
fn the_record_names_the_policy_it_ran_under() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .args(&["run", "--", "true"])
        .run();
    let record = out.record();
    assert_eq!(record["policy"]["source"], "backstop.yaml");
    let digest = record["policy"]["digest"].as_str().expect("digest");
    assert_eq!(digest.len(), 64);
}

#[test]
fn runs_are_kept_per_working_tree() {
    // A `.git` directory marks a tree's root: a run started in a subdirectory belongs
    // to that tree, and a directory outside it has runs of its own (none).
    let out = Test::new()
        .write("repo/.git/HEAD", "ref: refs/heads/main\n")
        .write("repo/sub/.keep", "")
        .write("other/.keep", "")
        .args(&["runs", "--json"])
        .stdout("[]\n")
        .run();
    let ran = out.backstop_in("repo/sub", &["run", "--", "true"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);

    let listed = |dir: &str| -> Vec<Value> {
        let ran = out.backstop_in(dir, &["runs", "--json"]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
        serde_json::from_str(&ran.stdout).expect("JSON")
    };
    assert_eq!(listed("repo").len(), 1);
    assert_eq!(listed("repo/sub").len(), 1);
    assert_eq!(listed("other").len(), 0);

    let id = listed("repo")[0]["id"].as_str().expect("id").to_string();
    let shown = out.backstop_in("repo", &["show", &id, "--json"]);
    let record: Value = serde_json::from_str(&shown.stdout).expect("JSON");
    let root = out.path().join("repo").canonicalize().expect("canonical");
    let cwd = out
        .path()
        .join("repo/sub")
        .canonicalize()
        .expect("canonical");
    assert_eq!(record["root"], root.to_str().expect("utf-8"));
    assert_eq!(record["cwd"], cwd.to_str().expect("utf-8"));
}

/// A record file someone replaced with a FIFO, or with a link to a file elsewhere, is
/// read as damage, never waited on nor followed: `runs` and `show` still answer.
#[test]
fn a_record_replaced_by_a_fifo_or_a_link_is_damage_not_a_hang() {
    let t = Test::new().args(&["run", "--", "true"]).run();
    let id = t.runs()[0]["id"].as_str().unwrap().to_string();
    let store = t.path().parent().unwrap().join("store").join("trees");
    let tree = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = tree.join("runs").join(format!("{id}.json"));
    let outside = t.out_path().join("elsewhere.json");
    std::fs::copy(&record, &outside).unwrap();
    for replace in ["fifo", "link"] {
        std::fs::remove_file(&record).unwrap();
        if replace == "fifo" {
            let made = std::process::Command::new("mkfifo")
                .arg(&record)
                .status()
                .unwrap();
            assert!(made.success());
        } else {
            std::os::unix::fs::symlink(&outside, &record).unwrap();
        }
        let runs = t.backstop(&["runs", "--json"]);
        assert_eq!(runs.status, 0, "{replace}: {}", runs.stderr);
        assert!(
            runs.stdout.contains("damaged"),
            "{replace}: {}",
            runs.stdout
        );
        let show = t.backstop(&["show", &id]);
        assert_ne!(show.status, 0, "{replace}: {}", show.stdout);
    }
}
