//! `backstop simulate` against closed forms computed here, sharing no code with the
//! simulator: success rates within three standard errors, exact latencies on the
//! virtual clock, the deadline, determinism for a seed, and bad fault files.

use serde_json::Value;

use crate::helpers::{Sandbox, Test};

const RUNS: u64 = 20_000;

/// `simulate --json` of `policy` against `faults`, parsed; the first policy's entry.
#[track_caller]
fn simulate(policy: &str, faults: &str, extra: &[&str]) -> Value {
    let t = Test::new().write("p.yaml", policy).write("f.yaml", faults);
    let doc = json(&t, extra);
    doc["policies"][0].clone()
}

#[track_caller]
fn json(t: &Sandbox, extra: &[&str]) -> Value {
    let runs = RUNS.to_string();
    let mut args = vec!["simulate", "-p", "p.yaml", "--faults", "f.yaml", "--json"];
    if !extra.contains(&"--runs") {
        args.extend(["--runs", &runs]);
    }
    args.extend_from_slice(extra);
    let ran = t.backstop(&args);
    assert_eq!(ran.status, 0, "simulate failed: {}", ran.stderr);
    let doc: Value = serde_json::from_str(&ran.stdout).expect("simulate --json is JSON");
    assert_eq!(doc["format"], 1);
    doc
}

/// `observed` is within three standard errors of the expected rate `q` over `n` runs.
#[track_caller]
fn near(observed: &Value, q: f64, n: u64) {
    let observed = observed.as_f64().expect("a rate");
    let se = (q * (1.0 - q) / n as f64).sqrt();
    assert!(
        (observed - q).abs() <= 3.0 * se,
        "observed {observed}, expected {q} ± {}",
        3.0 * se
    );
}

const FAST: &str = "backoff: { kind: constant, initial: 10ms, jitter: none }";

#[test]
fn independent_failures_succeed_at_one_minus_p_to_the_n() {
    let (p, n) = (0.3f64, 3);
    let policy = format!("version: 1\nretry: {{ max_attempts: {n}, {FAST} }}\n");
    let faults = format!("version: 1\ncommands:\n  default: {{ exit: {{ 1: {p} }} }}\n");
    let fig = simulate(&policy, &faults, &[]);
    near(&fig["summary"]["success_rate"], 1.0 - p.powi(n), RUNS);
    // The expected attempts: 1 + p + p² (an attempt follows every failure but the last).
    let attempts = fig["attempts_per_run"].as_f64().unwrap();
    assert!((attempts - (1.0 + p + p * p)).abs() < 0.02, "{attempts}");
}

#[test]
fn a_fallback_chain_succeeds_at_one_minus_both_failure_products() {
    let (p1, n1, p2, n2) = (0.5f64, 2, 0.4f64, 3);
    let policy = format!(
        "version: 1\nretry: {{ max_attempts: {n1}, {FAST} }}\nfallback:\n  chain:\n    - {{ name: backup, run: [backup], retry: {{ max_attempts: {n2} }} }}\n"
    );
    let faults = format!(
        "version: 1\ncommands:\n  task: {{ exit: {{ 1: {p1} }} }}\n  backup: {{ exit: {{ 1: {p2} }} }}\n"
    );
    let fig = simulate(&policy, &faults, &[]);
    let fail = p1.powi(n1) * p2.powi(n2);
    near(&fig["summary"]["success_rate"], 1.0 - fail, RUNS);
    near(&fig["summary"]["rates"]["fallback_rate"], p1.powi(n1), RUNS);
}

#[test]
fn sticky_failures_make_retries_useless() {
    let p = 0.3f64;
    let policy = format!("version: 1\nretry: {{ max_attempts: 4, {FAST} }}\n");
    let faults = format!(
        "version: 1\ncommands:\n  default: {{ exit: {{ 1: {p} }} }}\ncorrelation: {{ sticky: 1.0 }}\n"
    );
    let fig = simulate(&policy, &faults, &[]);
    near(&fig["summary"]["success_rate"], 1.0 - p, RUNS);
}

#[test]
fn a_constant_backoff_gives_an_exact_latency() {
    // Link 0 fails k times, 200ms each, 150ms apart; the fallback takes 50ms.
    let k = 3u64;
    let policy = format!(
        "version: 1\nretry: {{ max_attempts: {k}, backoff: {{ kind: constant, initial: 150ms, jitter: none }} }}\nfallback:\n  chain:\n    - {{ name: backup, run: [backup] }}\n"
    );
    let faults = "version: 1\ncommands:\n  task: { exit: { 1: 1.0 }, duration: { p50: 200ms, p99: 200ms } }\n  backup: { duration: { p50: 50ms, p99: 50ms } }\n";
    let fig = simulate(&policy, faults, &["--runs", "50"]);
    let want = k * 200 + (k - 1) * 150 + 50;
    let latency = &fig["summary"]["latency_ms"]["overall"];
    assert_eq!(latency["p50"], want, "{latency:#}");
    assert_eq!(latency["p99"], want, "{latency:#}");
    assert_eq!(fig["summary"]["success_rate"], 1.0);
    assert_eq!(fig["attempts_per_run"], (k + 1) as f64);
}

#[test]
fn the_deadline_cuts_the_schedule() {
    // Instant failures 600ms apart under a 1s deadline: the second delay would cross
    // it, so every run ends after two attempts, at 600ms.
    let policy = "version: 1\nretry: { max_attempts: 10, backoff: { kind: constant, initial: 600ms, jitter: none } }\ntimeout: { total: 1s }\n";
    let faults = "version: 1\ncommands:\n  default: { exit: { 7: 1.0 } }\n";
    let fig = simulate(policy, faults, &["--runs", "100"]);
    assert_eq!(fig["attempts_per_run"], 2.0);
    assert_eq!(fig["deadline_share"], 1.0);
    assert_eq!(fig["summary"]["latency_ms"]["overall"]["p50"], 600);
    assert_eq!(fig["summary"]["success_rate"], 0.0);
}

#[test]
fn a_model_call_is_simulated_with_retry_after_and_cost() {
    // Every attempt gets 429 with a 5s Retry-After, over `retry_after.max` (1s): the
    // run goes to its `default` answer at once, without waiting.
    let policy = "version: 1\nretry: { retry_after: { max: 1s } }\nproviders: { p: { kind: openai, base_url: \"http://127.0.0.1:9\" } }\nmodels: { m: { provider: p, model: m-1, price: { input_per_mtok: 1, output_per_mtok: 2 } } }\nmodel: m\nfallback: { chain: [ { default: { stdout: none } } ] }\n";
    let faults =
        "version: 1\ncalls:\n  m: { status: { 429: 1.0 }, retry_after: { p50: 5s, p99: 5s } }\n";
    let fig = simulate(policy, faults, &["--runs", "20"]);
    assert_eq!(fig["primary"], "call m");
    assert_eq!(fig["attempts_per_run"], 1.0);
    assert_eq!(fig["summary"]["runs"]["by_class"]["degraded"], 20);
    // Answered calls cost their tokens at the policy's price.
    let faults = "version: 1\ncalls:\n  default: { tokens: { input: 1000, output: 500 } }\n";
    let fig = simulate(policy, faults, &["--runs", "10"]);
    let total = fig["summary"]["cost"]["total_usd"].as_f64().unwrap();
    assert!(
        (total - 10.0 * (1000.0 + 1000.0) / 1e6).abs() < 1e-9,
        "{total}"
    );
}

#[test]
fn a_seed_repeats_a_simulation_and_another_seed_differs() {
    let t = Test::new()
        .write("p.yaml", "version: 1\n")
        .write("f.yaml", &std::fs::read_to_string(design_mix()).unwrap());
    let run = |seed: &str| {
        let ran = t.backstop(&[
            "simulate", "-p", "p.yaml", "--faults", "f.yaml", "--runs", "2000", "--seed", seed,
        ]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
        ran.stdout
    };
    let first = run("7");
    assert_eq!(first, run("7"));
    assert_ne!(first, run("8"));
    let doc = json(&t, &["--seed", "7"]);
    assert_eq!(doc["seed"], 7);
}

fn design_mix() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/faults/design-mix.yaml")
}

#[test]
fn a_bad_fault_file_names_its_key_and_line() {
    let t = Test::new().write("p.yaml", "version: 1\n").write(
        "f.yaml",
        "version: 1\ncommands:\n  default:\n    exit: { 1: 1.5 }\n",
    );
    let ran = t.backstop(&["simulate", "-p", "p.yaml", "--faults", "f.yaml"]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("f.yaml:4:") && ran.stderr.contains("commands.default.exit.1"),
        "{}",
        ran.stderr
    );
    let ran = t.backstop(&[
        "simulate", "-p", "p.yaml", "--faults", "f.yaml", "--runs", "0",
    ]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    // An endless file is cut at the size limit, and called what it is.
    let ran = t.backstop(&["simulate", "-p", "p.yaml", "--faults", "/dev/zero"]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("the fault model is over 1 MiB"),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_outage_fails_every_attempt_it_covers_across_runs() {
    // Outages start about once a second and last an hour: from the first one on,
    // every attempt of every run fails, whatever the policy retries.
    let policy = format!("version: 1\nretry: {{ max_attempts: 3, {FAST} }}\n");
    let faults = "version: 1\ncorrelation:\n  outages:\n    - { target: \"*\", start_per_hour: 3600, duration: { p50: 1h, p99: 1h }, fails_with: 503 }\nruns: { interval: 30s }\n";
    let fig = simulate(&policy, faults, &["--runs", "200"]);
    let success = fig["summary"]["success_rate"].as_f64().unwrap();
    assert!(success <= 0.01, "{success}");
    // A command in an outage of a status exits 1.
    assert_eq!(fig["summary"]["errors"]["top_exit_codes"][0]["code"], 1);
}

#[test]
fn a_retry_after_within_its_max_replaces_the_backoff_exactly() {
    // Three attempts, each a 429 asking for 2s: the run waits 2s twice, not 10ms.
    let policy = format!(
        "version: 1\nretry: {{ max_attempts: 3, {FAST} }}\nproviders: {{ p: {{ kind: openai, base_url: \"http://127.0.0.1:9\" }} }}\nmodels: {{ m: {{ provider: p, model: m-1 }} }}\n"
    );
    let faults = "version: 1\ncalls:\n  default: { status: { 429: 1.0 }, retry_after: { p50: 2s, p99: 2s } }\n";
    let fig = simulate(&policy, faults, &["--runs", "20", "--call", "m"]);
    assert_eq!(fig["attempts_per_run"], 3.0);
    assert_eq!(fig["summary"]["latency_ms"]["overall"]["p50"], 4000);
    assert_eq!(
        fig["summary"]["errors"]["by_type"]["rate_limit"], 60,
        "{:#}",
        fig["summary"]["errors"]
    );
}
