//! `run --chaos` and `call --chaos`: a fault model's faults injected into real
//! attempts — real commands on a real tree, real calls to an HTTP server on
//! 127.0.0.1 — marked in the record, `show` and the reporter, and left out of `stats`.

use std::time::Duration;

use serde_json::Value;

use super::call::{End, Reply, Sandbox, Server, ok, openai_stream, policy, status, stderr};
use super::helpers::{Test, attempts};

const RETRY3: &str =
    "version: 1\nretry: { max_attempts: 3, backoff: { kind: constant, initial: 10ms } }\n";

/// A file of the tree, if it is there.
fn tree(sandbox: &super::helpers::Sandbox, name: &str) -> Option<String> {
    std::fs::read_to_string(sandbox.path().join(name)).ok()
}

fn injected(record: &Value) -> Vec<Option<String>> {
    attempts(record)
        .iter()
        .map(|a| a["injected"].as_str().map(String::from))
        .collect()
}

/// Every attempt runs for real, then fails as drawn; the run's real rollback puts
/// back what the attempts changed.
#[test]
fn an_injected_exit_fails_real_attempts_and_the_real_rollback_puts_the_tree_back() {
    let out = Test::new()
        .policy(RETRY3)
        .write("a.txt", "before\n")
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 3: 1.0 }\n",
        )
        .args(&["run", "--chaos", "faults.yaml", "--chaos-seed", "7", "--"])
        .args(&[
            "sh",
            "-c",
            "echo ran >> \"$OUT/count\"; echo after >> a.txt; echo new > b.txt",
        ])
        .status(3)
        .stderr_contains("chaos: injecting the faults of")
        .stderr_contains("--chaos-seed 7")
        .stderr_contains("attempt 1/3 failed: exit 3 [injected]")
        .stderr_contains("rolled back")
        .run();
    assert_eq!(out.lines("count").len(), 3, "each attempt ran");
    assert_eq!(tree(&out, "a.txt").as_deref(), Some("before\n"));
    assert_eq!(tree(&out, "b.txt"), None);
    let record = out.record();
    assert_eq!(record["chaos"]["seed"], 7);
    assert!(
        record["chaos"]["faults"]
            .as_str()
            .is_some_and(|f| f.starts_with('/') && f.ends_with("faults.yaml")),
        "{}",
        record["chaos"]
    );
    assert_eq!(injected(&record), vec![Some("exit 3".to_string()); 3]);
    let show = out.backstop(&["show"]);
    assert!(
        show.stdout.contains("chaos    faults injected from"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("injected: exit 3"), "{}", show.stdout);

    // Left out of stats unless asked for, and said so.
    let stats = out.backstop(&["stats", "--json"]);
    let doc: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(doc["summary"]["runs"]["total"], 0, "{}", stats.stdout);
    assert_eq!(doc["scope"]["chaos_left_out"], 1);
    let table = out.backstop(&["stats"]);
    assert!(
        table.stdout.contains("1 run(s) under --chaos left out"),
        "{}",
        table.stdout
    );
    let all = out.backstop(&["stats", "--json", "--include-chaos"]);
    let doc: Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(doc["summary"]["runs"]["total"], 1, "{}", all.stdout);
    assert_eq!(doc["scope"]["chaos"], "included");
}

/// A real failure stands as it is, whatever was drawn: the engine must act on it. A
/// command that exits 5 is not retried as an injected signal would be, and one that
/// gets SIGINT (a Ctrl-C from its terminal) ends the run as interrupted, exit 130.
#[test]
fn a_real_failure_is_never_replaced_by_an_injected_one() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 1 }\n")
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    signal: { 9: 1.0 }\n",
        )
        .args(&["run", "--chaos", "faults.yaml", "--", "sh", "-c", "exit 5"])
        .status(5)
        .stderr_lacks("[injected]")
        .run();
    assert_eq!(injected(&out.record()), vec![None]);
    let out = Test::new()
        .policy(RETRY3)
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 1: 1.0 }\n",
        )
        .write("a.txt", "before\n")
        .args(&["run", "--chaos", "faults.yaml", "--"])
        .args(&["sh", "-c", "echo after > a.txt; kill -INT $$"])
        .status(130)
        .run();
    let record = out.record();
    assert_eq!(injected(&record), vec![None], "{record}");
    assert_eq!(record["outcome"]["outcome"], "interrupted");
    assert_eq!(tree(&out, "a.txt").as_deref(), Some("before\n"));
}

/// The drawn fault applies whoever reads backstop's output: with both of its outputs
/// gone, every attempt still fails as drawn (the same seed fails the same way).
#[test]
fn the_faults_apply_when_backstops_output_is_gone() {
    let test = Test::new().policy(RETRY3).write(
        "faults.yaml",
        "version: 1\ncommands:\n  default:\n    exit: { 1: 1.0 }\n",
    );
    let mut cmd = test.command();
    cmd.args(["run", "--chaos", "faults.yaml", "--chaos-seed", "1", "--"])
        .args(["sh", "-c", "sleep 0.2; touch ran"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let record = test.record();
    assert_eq!(
        injected(&record),
        vec![Some("exit 1".to_string()); 3],
        "{record}"
    );
    assert_eq!(tree(&test, "ran"), None, "rolled back");
}

/// A drawn seed can be read back by tools that keep numbers as doubles (jq), and the
/// record keeps the fault file's canonical path and digest.
#[test]
fn a_drawn_seed_and_the_fault_file_are_recorded_exactly() {
    let out = Test::new()
        .write("sub/faults.yaml", "version: 1\n")
        .args(&["run", "--chaos", "sub/../sub/faults.yaml", "--", "true"])
        .run();
    let chaos = out.record()["chaos"].clone();
    assert!(chaos["seed"].as_u64().unwrap() < 1 << 53, "{chaos}");
    let faults = chaos["faults"].as_str().unwrap();
    assert!(!faults.contains(".."), "{faults}");
    assert!(faults.ends_with("/sub/faults.yaml"), "{faults}");
    let digest = blake3::hash(b"version: 1\n").to_hex().to_string();
    assert_eq!(chaos["digest"], digest.as_str());
}

/// The same seed draws the same faults; a run without one records the seed it drew,
/// and that seed replays it.
#[test]
fn a_seed_draws_the_same_faults_again() {
    let faults = "version: 1\ncommands:\n  default:\n    exit: { 1: 0.5 }\n";
    let policy =
        "version: 1\nretry: { max_attempts: 8, backoff: { kind: constant, initial: 1ms } }\n";
    let test = Test::new().policy(policy).write("faults.yaml", faults);
    let draws = |seed: Option<&str>| {
        let mut args = vec!["run", "--chaos", "faults.yaml"];
        if let Some(s) = seed {
            args.extend(["--chaos-seed", s]);
        }
        args.extend(["--", "true"]);
        let ran = test.backstop(&args);
        assert!([0, 1].contains(&ran.status), "{}", ran.stderr);
        let record = test.record();
        (injected(&record), record["chaos"]["seed"].as_u64().unwrap())
    };
    let (first, _) = draws(Some("42"));
    let (again, _) = draws(Some("42"));
    assert_eq!(first, again);
    assert!(!first.is_empty());
    let (fresh, seed) = draws(None);
    let (replayed, _) = draws(Some(&seed.to_string()));
    assert_eq!(fresh, replayed, "seed {seed}");
}

/// A fault aimed at link 0 by its name fails it; the fallback link, which the model
/// does not name (and there is no `default`), runs clean and rescues the run.
#[test]
fn a_fallback_link_rescues_an_injected_failure() {
    let out = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms } }\n\
             fallback:\n  chain:\n    - { name: backup, run: \"echo backup > done.txt\" }\n",
        )
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  \"sh -c 'echo primary > done.txt'\":\n    exit: { 1: 1.0 }\n",
        )
        .args(&[
            "run",
            "--chaos",
            "faults.yaml",
            "--",
            "sh",
            "-c",
            "echo primary > done.txt",
        ])
        .run();
    assert_eq!(tree(&out, "done.txt").as_deref(), Some("backup\n"));
    let record = out.record();
    let marks = injected(&record);
    assert_eq!(
        marks,
        vec![Some("exit 1".into()), Some("exit 1".into()), None]
    );
    assert_eq!(record["outcome"]["link_name"], "backup");
}

/// Hooks and `validate` are never injected: an `on_retry` hook between injected
/// failures runs and succeeds.
#[test]
fn hooks_are_not_injected() {
    let out = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms }, \
             on_retry: \"echo hook >> $OUT/hook\" }\n",
        )
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 4: 1.0 }\n",
        )
        .args(&["run", "--chaos", "faults.yaml", "--", "true"])
        .status(4)
        .stderr_lacks("on_retry")
        .run();
    assert_eq!(out.lines("hook"), vec!["hook"]);
}

/// A named pipe that no one writes to is refused at once, as a policy and as a fault
/// model, instead of waiting forever for a writer.
#[test]
fn a_named_pipe_with_no_writer_is_refused_not_waited_for() {
    let test = Test::new();
    let fifo = test.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    for args in [["run", "--chaos", "fifo"], ["run", "-p", "fifo"]] {
        let ran = test.backstop(&[&args[..], &["--", "true"]].concat());
        assert_eq!(ran.status, 125, "{args:?}: {}", ran.stderr);
        assert!(
            ran.stderr
                .contains("a named pipe with nothing written to it"),
            "{}",
            ran.stderr
        );
    }
}

/// A fault file that cannot be used stops the run before anything starts, naming
/// the file, line and key; `--chaos-seed` alone is a usage error.
#[test]
fn a_bad_fault_file_is_named_and_nothing_runs() {
    let out = Test::new()
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 1: 1.5 }\n",
        )
        .args(&[
            "run",
            "--chaos",
            "faults.yaml",
            "--",
            "sh",
            "-c",
            "echo ran > \"$OUT/ran\"",
        ])
        .status(125)
        .stderr_contains("faults.yaml:4:")
        .run();
    assert!(!out.exists("ran"));
    for (yaml, said) in [
        (
            "version: 1\ncommands:\n  default:\n    exit: { 1: 0.1, 1: 0.2 }\n",
            "faults.yaml:4:11: commands.default.exit: `1` is written twice",
        ),
        (
            "version: 1\ncalls:\n  default:\n    status: { 200: 0.1 }\n",
            "200 is not an error status",
        ),
    ] {
        Test::new()
            .write("faults.yaml", yaml)
            .args(&["run", "--chaos", "faults.yaml", "--", "true"])
            .status(125)
            .stderr_contains(said)
            .run();
    }
    let long = format!(
        "version: 1\ncommands:\n  {}:\n    exit: {{ 1: 1.5 }}\n",
        "x".repeat(100_000)
    );
    let ran = Test::new()
        .write("faults.yaml", &long)
        .args(&["run", "--chaos", "faults.yaml", "--", "true"])
        .status(125)
        .run();
    assert!(
        ran.stderr.len() < 1_000,
        "{} bytes of error",
        ran.stderr.len()
    );
    Test::new()
        .args(&["run", "--chaos", "missing.yaml", "--", "true"])
        .status(125)
        .stderr_contains("missing.yaml")
        .run();
    Test::new()
        .args(&["run", "--chaos-seed", "3", "--", "true"])
        .status(125)
        .stderr_contains("--chaos")
        .run();
}

// ---------------------------------------------------------------- model calls

/// Writes the fault model beside the policy file `policy`.
fn call_faults(policy: &str, yaml: &str) -> String {
    let path = std::path::Path::new(policy).with_file_name("faults.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().into()
}

/// A 429 is answered in the request's place, with a drawn Retry-After the engine
/// waits for: no request reaches the server, and the record says so.
#[test]
fn an_injected_status_answers_in_place_of_the_request() {
    let server = Server::start(vec![ok("never"); 3]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let faults = call_faults(
        &p,
        "version: 1\ncalls:\n  small:\n    status: { 429: 1.0 }\n    retry_after: { p50: 20ms, p99: 40ms }\n",
    );
    let out = sb.run(&["call", "-p", &p, "--chaos", &faults, "hello"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(server.seen().is_empty(), "no request was made");
    let record = sb.last_record();
    for a in attempts(&record) {
        assert_eq!(a["call"]["status"], 429);
        let said = a["injected"].as_str().unwrap();
        assert!(said.starts_with("HTTP 429, Retry-After "), "{said}");
        assert!(said.ends_with("in place of the request"), "{said}");
        let wait = a["call"]["retry_after_ms"].as_u64().unwrap();
        assert!((1..1_000).contains(&wait), "{wait}");
    }
    assert_eq!(attempts(&record).len(), 3);
    assert!(stderr(&out).contains("[injected]"), "{}", stderr(&out));
}

/// A truncation is cut into the real stream: the request is made, the body ends
/// early, and the client's own parser finds the stream unfinished.
#[test]
fn an_injected_truncation_cuts_into_the_real_stream() {
    let stream = || Reply::Sse(openai_stream(&["Hel", "lo"]), End::Clean);
    let server = Server::start(vec![stream(), stream(), stream()]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let faults = call_faults(&p, "version: 1\ncalls:\n  default:\n    truncated: 1.0\n");
    let out = sb.run(&["call", "-p", &p, "--stream=never", "--chaos", &faults, "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(server.seen().len(), 3, "each attempt was made");
    for a in attempts(&sb.last_record()) {
        assert_eq!(a["end"]["kind"], "stream", "{a}");
        let said = a["injected"].as_str().unwrap();
        assert!(said.starts_with("the stream cut after "), "{said}");
    }
}

/// A cut is drawn for an answer's body: when the server fails the request on its
/// own (a real 500), nothing was cut, and the failure is not called injected.
#[test]
fn a_real_error_status_under_a_drawn_cut_is_not_called_injected() {
    let server = Server::start(vec![status(500), status(500), status(500)]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let faults = call_faults(&p, "version: 1\ncalls:\n  default:\n    truncated: 1.0\n");
    let out = sb.run(&["call", "-p", &p, "--chaos", &faults, "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(server.seen().len(), 3, "each attempt was made");
    for a in attempts(&sb.last_record()) {
        assert_eq!(a["call"]["status"], 500, "{a}");
        assert!(a.get("injected").is_none(), "{a}");
    }
    assert!(!stderr(&out).contains("[injected]"), "{}", stderr(&out));
}

/// Stalls meet the client's own limits: no first token ends at
/// `timeout.first_token`, a stream gone quiet at `timeout.stall`.
#[test]
fn injected_stalls_meet_the_clients_own_limits() {
    for (fault, limit) in [
        ("first_token_stall", "timeout.first_token"),
        ("stall", "timeout.stall"),
    ] {
        let stream = || {
            Reply::Sse(
                openai_stream(&["a", "b"]),
                End::Hang(Duration::from_secs(5)),
            )
        };
        let server = Server::start(vec![stream()]);
        let sb = Sandbox::new();
        let extra = "timeout: { first_token: 300ms, stall: 300ms }\n";
        let p = sb.policy(
            &policy(&server.url(), "openai", extra).replace("max_attempts: 3", "max_attempts: 1"),
        );
        let faults = call_faults(
            &p,
            &format!("version: 1\ncalls:\n  default:\n    {fault}: 1.0\n"),
        );
        let out = sb.run(&["call", "-p", &p, "--stream=never", "--chaos", &faults, "hi"]);
        assert_eq!(out.status.code(), Some(124), "{fault}: {}", stderr(&out));
        let record = sb.last_record();
        let a = &attempts(&record)[0];
        assert_eq!(a["end"]["kind"], "call_timed_out", "{a}");
        assert_eq!(a["end"]["limit"], limit, "{a}");
        assert!(a["injected"].as_str().is_some(), "{a}");
    }
}

/// Without `--chaos` nothing is injected and nothing is said of it.
#[test]
fn without_chaos_nothing_is_injected() {
    let server = Server::start(vec![ok("fine")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("chaos"));
    let record = sb.last_record();
    assert!(record.get("chaos").is_none_or(Value::is_null), "{record}");
    assert!(attempts(&record)[0].get("injected").is_none());
}

/// Injected failures are not the service's: the Prometheus tally (the textfile here)
/// never adds a run under `--chaos`.
#[test]
fn a_chaos_run_stays_out_of_the_metrics_tally() {
    let test = Test::new();
    let dir = test.out_path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let test = test
        .policy(&format!(
            "{RETRY3}metrics: {{ textfile: \"{}\" }}\n",
            dir.display()
        ))
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 1: 1.0 }\n",
        );
    let runs_total = || {
        let text = std::fs::read_to_string(dir.join("backstop.prom")).unwrap();
        text.lines()
            .filter(|l| l.starts_with("backstop_runs_total"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    assert_eq!(test.backstop(&["run", "--", "true"]).status, 0);
    assert_eq!(runs_total(), 1.0);
    let chaos = test.backstop(&["run", "--chaos", "faults.yaml", "--", "true"]);
    assert_eq!(chaos.status, 1, "{}", chaos.stderr);
    assert_eq!(runs_total(), 1.0, "the chaos run was not counted");
    assert_eq!(test.backstop(&["run", "--", "true"]).status, 0);
    assert_eq!(runs_total(), 2.0);
}

/// Injected failures never reach the breakers or the retry budget other runs share:
/// after a chaos run whose every attempt failed, a breaker that opens after one failure
/// is still closed, and the next real run runs its command.
#[test]
fn a_chaos_run_leaves_the_shared_breakers_alone() {
    let test = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 2, backoff: { kind: constant, initial: 1ms } }\n\
             breaker: { failures: 1, within: 1m, cooldown: 10m }\n",
        )
        .write(
            "faults.yaml",
            "version: 1\ncommands:\n  default:\n    exit: { 1: 1.0 }\n",
        );
    let chaos = test.backstop(&["run", "--chaos", "faults.yaml", "--", "true"]);
    assert_eq!(chaos.status, 1, "{}", chaos.stderr);
    assert!(
        chaos
            .stderr
            .contains("breakers and retry budget sit this run out"),
        "{}",
        chaos.stderr
    );
    let real = test.backstop(&["run", "--", "sh", "-c", "echo ran >> \"$OUT/ran\""]);
    assert_eq!(real.status, 0, "{}", real.stderr);
    assert_eq!(test.lines("ran"), vec!["ran"]);
    let real = test.backstop(&["run", "--", "true"]);
    assert_eq!(real.status, 0, "{}", real.stderr);
    assert!(!real.stderr.contains("breaker open"), "{}", real.stderr);
}

/// `call --json` under `--chaos` carries `chaos` with exactly the keys its committed
/// schema describes.
#[test]
fn the_chaos_key_of_call_json_is_the_one_its_schema_describes() {
    let server = Server::start(vec![ok("fine")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let faults = call_faults(&p, "version: 1\n");
    let out = sb.run(&["call", "-p", &p, "--json", "--chaos", &faults, "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut said: Vec<String> = doc["chaos"].as_object().unwrap().keys().cloned().collect();
    let schema = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/call-json.schema.json"),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(&schema).unwrap();
    let mut described: Vec<String> = schema["definitions"]["Chaos"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    said.sort();
    described.sort();
    assert_eq!(said, described);
}
