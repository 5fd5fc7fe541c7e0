//! `backstop stats`: each definition of the README's "Outcome by layer" on real runs,
//! errors by type from a real model server, the time filters, and the index beside
//! the records (a changed, damaged or stale file is never trusted).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::call::{KEY, Reply, Server, ok, policy, status};
use crate::helpers::Test;

/// Fast retries, one fallback-free chain.
const FAST: &str =
    "version: 1\nretry: { max_attempts: 4, backoff: { initial: 10ms, max: 20ms, jitter: none } }\n";

/// Fails until the third attempt (counted in `$OUT/n`).
const THIRD_TIME: &str =
    "n=$(cat \"$OUT/n\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$OUT/n\"; [ $n -ge 3 ]";

#[track_caller]
fn stats(t: &crate::helpers::Sandbox, extra: &[&str]) -> Value {
    let mut args = vec!["stats", "--json"];
    args.extend_from_slice(extra);
    let ran = t.backstop(&args);
    assert_eq!(ran.status, 0, "stats --json failed: {}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("stats --json is one JSON document");
    assert_eq!(doc["format"], 1);
    doc["summary"].clone()
}

#[test]
fn a_first_try_success_is_l1_first_try() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["first_try"], 1, "{s:#}");
    assert_eq!(s["layers"]["l1"]["first_try"], 1);
    assert_eq!(s["success_rate"], 1.0);
    assert_eq!(s["rates"]["retry_rate"], 0.0);
}

#[test]
fn success_on_attempt_three_is_l1_after_retries() {
    let t = Test::new()
        .policy(FAST)
        .args(&["run", "--", "sh", "-c", THIRD_TIME])
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["retried"], 1, "{s:#}");
    assert_eq!(s["layers"]["l1"]["retried"], 1);
    assert_eq!(s["attempts"]["total"], 3);
    assert_eq!(s["attempts"]["retries"], 2);
    let rate = s["rates"]["retry_rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "retry rate {rate}");
    assert_eq!(s["errors"]["by_type"]["exit_code"], 2);
    assert!(s["latency_ms"]["backoff_total"].as_u64().unwrap() >= 20);
}

#[test]
fn a_fallback_link_rescue_is_l2_fallback_by_link_name() {
    let t = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 1 }\n\
             fallback: { chain: [ { name: backup, run: \"true\" } ] }\n",
        )
        .args(&["run", "--", "false"])
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["fallback"], 1, "{s:#}");
    assert_eq!(s["layers"]["l2"]["by_link"]["backup"], 1);
    assert_eq!(s["layers"]["l2"]["reached"], 1);
    assert_eq!(s["layers"]["l2"]["rescue_rate"], 1.0);
    assert_eq!(s["rates"]["fallback_rate"], 1.0);
    assert_eq!(s["success_rate"], 1.0);
}

#[test]
fn a_default_answer_is_l2_degraded_and_still_a_success() {
    let t = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 1 }\n\
             fallback: { chain: [ { name: canned, default: { stdout: \"x\\n\", exit_code: 0 } } ] }\n",
        )
        .args(&["run", "--", "false"])
        .stdout("x\n")
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["degraded"], 1, "{s:#}");
    assert_eq!(s["layers"]["l2"]["degraded"], 1);
    assert_eq!(s["success_rate"], 1.0);
}

#[test]
fn an_escalation_is_counted_and_is_not_a_success() {
    let t = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 1 }\n\
             fallback: { chain: [ { name: human, escalate: { run: [\"true\"], exit_code: 3 } } ] }\n",
        )
        .args(&["run", "--", "false"])
        .status(3)
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["escalated"], 1, "{s:#}");
    assert_eq!(s["layers"]["l2"]["escalated"], 1);
    assert_eq!(s["success_rate"], 0.0);
    assert_eq!(s["rates"]["escalation_rate"], 1.0);
}

#[test]
fn a_failure_is_failed_with_its_exit_codes_and_its_rollback() {
    let t = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 2, backoff: { initial: 10ms, jitter: none } }\n",
        )
        .args(&["run", "--", "sh", "-c", "echo new > made.txt; exit 7"])
        .status(7)
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["failed"], 1, "{s:#}");
    assert_eq!(s["success_rate"], 0.0);
    assert_eq!(s["errors"]["by_type"]["exit_code"], 2);
    assert_eq!(s["errors"]["top_exit_codes"][0]["code"], 7);
    assert_eq!(s["errors"]["top_exit_codes"][0]["count"], 2);
    assert_eq!(
        s["layers"]["l3"]["rolled_back"], 1,
        "the failed run's file was taken back"
    );
    assert_eq!(s["rates"]["rollback_rate"], 1.0);
    assert!(!t.path().join("made.txt").exists());
}

#[test]
fn an_interrupted_run_is_left_out_of_the_rates() {
    let t = Test::new().policy(FAST);
    let mut cmd = t.command();
    cmd.args(["run", "--", "sleep", "30"]);
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    unsafe_kill(child.id(), libc::SIGINT);
    crate::helpers::wait_bounded(&mut child, Duration::from_secs(20));
    let t = t.args(&["run", "--", "true"]).run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["total"], 2, "{s:#}");
    assert_eq!(s["runs"]["by_class"]["interrupted"], 1);
    assert_eq!(s["runs"]["decided"], 1);
    assert_eq!(
        s["success_rate"], 1.0,
        "an interruption is not a failure of the defence"
    );
}

fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this test started and has not reaped.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn model_call_errors_are_typed_and_their_cost_counted() {
    let server = Server::start(vec![
        Reply::Json(
            429,
            vec![("retry-after", "0".into())],
            serde_json::json!({"error":{"message":"slow down","type":"x"}}),
        ),
        status(500),
        ok("fine"),
    ]);
    let t = Test::new()
        .policy(&policy(&server.url(), "openai", ""))
        .env("TEST_API_KEY", KEY)
        .args(&["call", "hello"])
        .stdout("fine\n")
        .run();
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["retried"], 1, "{s:#}");
    assert_eq!(s["errors"]["by_type"]["rate_limit"], 1);
    assert_eq!(s["errors"]["by_type"]["server_5xx"], 1);
    let small = &s["cost"]["by_model"]["small"];
    assert_eq!(small["calls"], 3);
    assert_eq!(small["failed"], 2);
    assert!(s["cost"]["total_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(s["cost"]["per_run_usd"]["count"], 1);
    let table = t.backstop(&["stats"]);
    assert_eq!(table.status, 0);
    assert!(table.stdout.contains("rate_limit"), "{}", table.stdout);
    assert!(!table.stdout.contains(KEY));
}

/// A copy of the tree's newest record, renamed, started `days` ago.
fn backdate_copy(t: &crate::helpers::Sandbox, new_id: &str, days: u64) {
    let store = t.path().parent().unwrap().join("store").join("trees");
    let tree = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let runs = tree.join("runs");
    let first = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    let then = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    let at = humantime::format_rfc3339_millis(then).to_string();
    record["id"] = Value::String(new_id.into());
    record["started_at"] = Value::String(at.clone());
    record["finished_at"] = Value::String(at);
    std::fs::write(
        runs.join(format!("{new_id}.json")),
        serde_json::to_vec_pretty(&record).unwrap(),
    )
    .unwrap();
}

#[test]
fn since_from_and_to_select_by_start_time() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    backdate_copy(&t, "0ld000000001", 10);
    assert_eq!(stats(&t, &[])["runs"]["total"], 2);
    assert_eq!(stats(&t, &["--since", "7d"])["runs"]["total"], 1);
    let week_ago = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - Duration::from_secs(7 * 86_400),
    )
    .to_string();
    assert_eq!(stats(&t, &["--to", &week_ago])["runs"]["total"], 1);
    assert_eq!(stats(&t, &["--from", &week_ago])["runs"]["total"], 1);
    let bad = t.backstop(&["stats", "--since", "7 fortnights"]);
    assert_eq!(bad.status, 125, "a usage error: {}", bad.stderr);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
    let both = t.backstop(&["stats", "--since", "1d", "--from", "2026-01-01"]);
    assert_eq!(both.status, 125, "{}", both.stderr);
}

#[test]
fn the_policy_filter_takes_that_files_runs_only() {
    let t = Test::new()
        .write("a.yaml", FAST)
        .write("b.yaml", FAST)
        .args(&["run", "-p", "a.yaml", "--", "true"])
        .run();
    assert_eq!(t.backstop(&["run", "-p", "b.yaml", "--", "true"]).status, 0);
    assert_eq!(t.backstop(&["run", "-p", "b.yaml", "--", "true"]).status, 0);
    assert_eq!(stats(&t, &["-p", "a.yaml"])["runs"]["total"], 1);
    assert_eq!(stats(&t, &["-p", "b.yaml"])["runs"]["total"], 2);
    // The same file by another name is the same policy.
    std::fs::create_dir(t.path().join("sub")).unwrap();
    let ran = t.backstop_in(
        "sub",
        &["stats", "--json", "--all-trees", "-p", "../b.yaml"],
    );
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["runs"]["total"], 2, "{}", ran.stderr);
}

fn runs_dir(t: &crate::helpers::Sandbox) -> std::path::PathBuf {
    let store = t.path().parent().unwrap().join("store").join("trees");
    let tree = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    tree.join("runs")
}

/// Sets a file's times an hour back, so the index takes it as settled.
/// The one record in `runs`, made old enough for the index to trust.
fn settle_first_record(runs: &std::path::Path) {
    let first = std::fs::read_dir(runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    settle(&first);
}

fn settle(path: &std::path::Path) {
    let ok = Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn a_record_changed_after_it_was_indexed_is_read_again() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    let file = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    settle(&file);
    assert_eq!(stats(&t, &[])["runs"]["by_class"]["first_try"], 1);
    let index = runs.parent().unwrap().join("stats-index");
    assert!(index.exists(), "a settled record is indexed");
    // Rewritten behind the index's back, then dated as settled again.
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replacen("\"outcome\": \"succeeded\"", "\"outcome\": \"failed\"", 1);
    assert_ne!(text, changed);
    std::fs::write(&file, changed).unwrap();
    settle(&file);
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["failed"], 1, "{s:#}");
    assert!(s["runs"]["by_class"].get("first_try").is_none());
}

#[test]
fn a_damaged_record_or_index_costs_a_warning_never_a_wrong_figure() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    std::fs::write(runs.join("badbadbadbad.json"), "{ not json").unwrap();
    std::fs::write(runs.parent().unwrap().join("stats-index"), "garbage\n{}\n").unwrap();
    let ran = t.backstop(&["stats", "--json"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("badbadbadbad.json"), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["runs"]["total"], 1);
}

#[test]
fn the_table_fits_80_columns_and_an_empty_store_says_so() {
    let empty = Test::new().args(&["stats"]).run();
    assert!(empty.stdout.starts_with("0 runs"), "{}", empty.stdout);
    let t = Test::new()
        .policy(FAST)
        .args(&["run", "--", "sh", "-c", THIRD_TIME])
        .run();
    let ran = t.backstop(&["stats"]);
    assert_eq!(ran.status, 0);
    for line in ran.stdout.lines() {
        assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
    }
    assert!(ran.stdout.contains("L1 after retries"), "{}", ran.stdout);
    assert!(!ran.stdout.contains('\x1b'), "no colour into a pipe");
}

#[test]
fn all_trees_takes_every_tree_of_the_store() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let other = t.path().parent().unwrap().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("backstop.yaml"), FAST).unwrap();
    assert_eq!(t.backstop_in("../other", &["run", "--", "true"]).status, 0);
    assert_eq!(stats(&t, &[])["runs"]["total"], 1);
    assert_eq!(stats(&t, &["--all-trees"])["runs"]["total"], 2);
}

#[test]
fn hostile_files_in_the_records_neither_hang_nor_break_the_figures() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    let file = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    rec["id"] = Value::String("huge00000001".into());
    rec["outcome"]["input_tokens"] = Value::from(u64::MAX);
    rec["outcome"]["elapsed_ms"] = Value::from(u64::MAX);
    rec["outcome"]["cost_usd"] = Value::from(1e308);
    rec["attempts"][0]["delay_ms"] = Value::from(u64::MAX);
    let second = rec["attempts"][0].clone();
    rec["attempts"].as_array_mut().unwrap().push(second);
    for id in ["huge00000001", "huge00000002"] {
        rec["id"] = Value::String(id.into());
        std::fs::write(runs.join(format!("{id}.json")), rec.to_string()).unwrap();
    }
    let fifo = runs.join("fifo.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::create_dir(runs.join("dir.json")).unwrap();
    for args in [
        &["stats"][..],
        &["stats", "--json"],
        &["stats", "--prometheus"],
    ] {
        let started = std::time::Instant::now();
        let ran = t.backstop(args);
        assert_eq!(ran.status, 0, "{args:?}: {}", ran.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a FIFO must not block"
        );
        assert!(ran.stderr.contains("fifo.json"), "{}", ran.stderr);
        assert!(ran.stderr.contains("not a regular file"), "{}", ran.stderr);
    }
    assert_eq!(stats(&t, &[])["runs"]["total"], 3);
    let empty = t.backstop(&["stats", "--from", "2026-02-01", "--to", "2026-01-01"]);
    assert_eq!(empty.status, 125);
    assert!(
        empty.stderr.contains("--from must be before --to"),
        "{}",
        empty.stderr
    );
}

#[test]
fn a_window_reads_nothing_of_a_run_the_index_knows_started_before_it() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    backdate_copy(&t, "0ld000000002", 10);
    let runs = runs_dir(&t);
    let old = runs.join("0ld000000002.json");
    settle(&old);
    assert_eq!(stats(&t, &[])["runs"]["total"], 2, "indexed");
    // Damaged behind the index's back: a window that starts after it never opens it...
    std::fs::write(&old, "{ damaged").unwrap();
    let ran = t.backstop(&["stats", "--json", "--since", "1d"]);
    assert_eq!(ran.status, 0);
    assert!(!ran.stderr.contains("0ld000000002"), "{}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["summary"]["runs"]["total"], 1);
    // ...and a query over every run checks it, and says so.
    let ran = t.backstop(&["stats", "--json"]);
    assert!(ran.stderr.contains("0ld000000002.json"), "{}", ran.stderr);
}

#[test]
fn a_torn_index_line_costs_a_read_never_a_run() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    settle_first_record(&runs);
    assert_eq!(stats(&t, &[])["runs"]["total"], 1);
    let index = runs.parent().unwrap().join("stats-index");
    // A crash in the middle of an append: half a line, no newline.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .unwrap();
    std::io::Write::write_all(&mut f, b"1764547200000\t12\t34").unwrap();
    drop(f);
    backdate_copy(&t, "0ld000000003", 3);
    settle(&runs.join("0ld000000003.json"));
    for _ in 0..3 {
        assert_eq!(stats(&t, &[])["runs"]["total"], 2);
    }
    let text = std::fs::read_to_string(&index).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "rewritten whole: a header and two lines\n{text}"
    );
}

#[test]
fn a_rollback_stays_counted_after_the_run_is_redone() {
    let t = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .args(&["run", "--", "sh", "-c", "echo new > made.txt; exit 7"])
        .status(7)
        .run();
    assert_eq!(stats(&t, &[])["layers"]["l3"]["rolled_back"], 1);
    let redo = t.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert!(t.path().join("made.txt").exists(), "redone");
    let s = stats(&t, &[]);
    assert_eq!(s["layers"]["l3"]["rolled_back"], 1, "{s:#}");
    assert_eq!(s["rates"]["rollback_rate"], 1.0);
}

#[test]
fn a_fifo_or_a_symlink_for_the_index_is_never_read_or_written_through() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    settle_first_record(&runs);
    let index = runs.parent().unwrap().join("stats-index");
    assert!(
        Command::new("mkfifo")
            .arg(&index)
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    assert_eq!(stats(&t, &[])["runs"]["total"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a FIFO must not block"
    );
    // A symlink to a file elsewhere that looks like an index (which a new record would
    // be appended to): neither read as the index nor written through.
    std::fs::remove_file(&index).unwrap();
    assert_eq!(stats(&t, &[])["runs"]["total"], 1);
    let victim = t.out_path().join("victim");
    let looks_right = std::fs::read_to_string(&index).unwrap();
    assert_eq!(looks_right.lines().count(), 2, "{looks_right}");
    std::fs::write(&victim, &looks_right).unwrap();
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink(&victim, &index).unwrap();
    backdate_copy(&t, "0ld000000004", 2);
    settle(&runs.join("0ld000000004.json"));
    assert_eq!(stats(&t, &[])["runs"]["total"], 2);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), looks_right);
    assert!(
        !index.is_symlink(),
        "the index was written anew in its place"
    );
}

/// A run killed with `kill -9` stays unfinished for good: its settled record is
/// indexed like any other, so it is not parsed again by every query; and when its
/// record is rewritten (a recovery finishing it), the index sees a new file.
#[test]
fn an_unfinished_record_is_indexed_and_its_rewrite_is_seen() {
    let t = Test::new().policy(FAST).args(&["run", "--", "true"]).run();
    let runs = runs_dir(&t);
    settle_first_record(&runs);
    backdate_copy(&t, "0ld000000004", 2);
    let killed = runs.join("0ld000000004.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&killed).unwrap()).unwrap();
    record["status"] = Value::String("running".into());
    record["outcome"] = Value::Null;
    std::fs::write(&killed, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    settle(&killed);
    let s = stats(&t, &[]);
    assert_eq!(s["runs"]["by_class"]["unfinished"], 1, "{s:#}");
    let index = std::fs::read_to_string(runs.parent().unwrap().join("stats-index")).unwrap();
    assert!(index.contains("0ld000000004.json"), "indexed:\n{index}");
    // Finished after all: a new file (written and renamed over), seen at once.
    let finished = std::fs::read(
        runs.join(
            std::fs::read_dir(&runs)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .find(|n| n != "0ld000000004.json")
                .unwrap(),
        ),
    )
    .unwrap();
    let mut done: Value = serde_json::from_slice(&finished).unwrap();
    done["id"] = Value::String("0ld000000004".into());
    let tmp = runs.join(".tmp-record");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&done).unwrap()).unwrap();
    std::fs::rename(&tmp, &killed).unwrap();
    let s = stats(&t, &[]);
    assert!(s["runs"]["by_class"].get("unfinished").is_none(), "{s:#}");
    assert_eq!(s["runs"]["total"], 2);
}
