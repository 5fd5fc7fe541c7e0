use std::path::Path;

use super::*;

#[track_caller]
fn error(text: &str) -> String {
    load_str(text, "f.yaml")
        .expect_err("the fault model is refused")
        .to_string()
}

#[test]
fn the_design_mix_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/faults/design-mix.yaml");
    let faults = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let default = faults.call("sonnet").expect("default calls");
    assert_eq!(default.status.len(), 3);
    assert_eq!(faults.outages.len(), 1);
    assert_eq!(faults.interval_ms, 30_000.0);
}

#[test]
fn each_bad_value_names_its_key_line_and_column() {
    let cases = [
        ("version: 2\n", "f.yaml:1:1: version: unsupported version 2"),
        (
            "version: 1\ncalls:\n  default:\n    network: 1.5\n",
            "f.yaml:4:5: calls.default.network: 1.5 is not a probability",
        ),
        (
            "version: 1\ncalls:\n  default:\n    network: -0.1\n",
            "calls.default.network: -0.1 is not a probability",
        ),
        (
            "version: 1\ncalls:\n  default:\n    network: .nan\n",
            "calls.default.network: NaN is not a probability",
        ),
        (
            "version: 1\ncalls:\n  default:\n    stall: 1e308\n",
            "calls.default.stall:",
        ),
        (
            "version: 1\ncalls:\n  default:\n    status: { 429: 0.6, 500: 0.6 }\n",
            "f.yaml:3:3: calls.default: its probabilities add up to 1.2",
        ),
        (
            "version: 1\ncalls:\n  default:\n    status: { 42: 0.1 }\n",
            "calls.default.status.42: 42 is not an error status: a call fails with 400 to 599",
        ),
        (
            "version: 1\ncorrelation:\n  outages:\n    - { target: \"*\", start_per_hour: 1, duration: { p50: 1m, p99: 2m }, fails_with: 302 }\n",
            "correlation.outages[0].fails_with: 302 is neither an exit code (1 to 255) nor an error status (400 to 599)",
        ),
        (
            "version: 1\ncommands:\n  default:\n    exit: { 0: 0.1 }\n",
            "commands.default.exit.0: 0 is not a failing exit code",
        ),
        (
            "version: 1\ncommands:\n  default:\n    signal: { 99: 0.1 }\n",
            "commands.default.signal.99:",
        ),
        (
            "version: 1\ncommands:\n  default:\n    duration: { p50: 2s, p99: 1s }\n",
            "commands.default.duration.p99: must be at least p50",
        ),
        (
            "version: 1\ncommands:\n  default:\n    duration: { p50: 0s, p99: 1s }\n",
            "commands.default.duration.p50: must be over 0",
        ),
        (
            "version: 1\ncommands:\n  default:\n    duration: { p50: 1, p99: 1s }\n",
            "commands.default.duration.p50: a duration needs a unit",
        ),
        (
            "version: 1\ncommands:\n  default:\n    exits: { 1: 0.1 }\n",
            "f.yaml:4:5: commands.default.exits: unknown field `exits`",
        ),
        (
            "version: 1\ncorrelation:\n  sticky: 2\n",
            "correlation.sticky: 2 is not a probability",
        ),
        (
            "version: 1\ncorrelation:\n  outages:\n    - { target: x, start_per_hour: 1e308, duration: { p50: 1s, p99: 1s }, fails_with: 503 }\n",
            "correlation.outages[0].start_per_hour:",
        ),
        (
            "version: 1\ncorrelation:\n  outages:\n    - { target: x, start_per_hour: 1, duration: { p50: 1s, p99: 1s }, fails_with: dns }\n",
            "correlation.outages[0].fails_with: `dns`",
        ),
        (
            "version: 1\ncorrelation:\n  outages:\n    - { target: x, start_per_hour: 1, duration: { p50: 1s, p99: 1s }, fails_with: 700 }\n",
            "correlation.outages[0].fails_with: 700 is not from 1 to 599",
        ),
        (
            "version: 1\nruns: { interval: 1000 days }\n",
            "runs.interval:",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.contains(want),
            "{text:?}\n  gave {got:?}\n  want {want:?}"
        );
    }
}

#[test]
fn absurd_inputs_are_refused_without_a_panic() {
    // Too many targets.
    let mut text = String::from("version: 1\ncommands:\n");
    for i in 0..=MAX_ENTRIES {
        text.push_str(&format!("  l{i}: {{ exit: {{ 1: 0.001 }} }}\n"));
    }
    assert!(
        error(&text).contains("commands: 257 entries"),
        "{}",
        error(&text)
    );
    // A huge status map in one flow mapping.
    let statuses: Vec<String> = (100..600).map(|s| format!("{s}: 0.0")).collect();
    let text = format!(
        "version: 1\ncalls:\n  default:\n    status: {{ {} }}\n",
        statuses.join(", ")
    );
    assert!(error(&text).contains("calls.default.status: 500 entries"));
    // Over the size limit, deep nesting, an empty file, not YAML at all.
    let big = format!("version: 1\n#{}\n", "x".repeat(2 << 20));
    assert!(error(&big).contains("f.yaml"));
    let deep = format!(
        "version: 1\ncalls: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(error(&deep).contains("f.yaml"));
    assert!(error("").contains("f.yaml"));
    assert!(error("{{{").contains("f.yaml"));
    assert!(
        error("version: 1\ncalls: { default: { latency: { p50: 1s, p99: 400 days } } }\n")
            .contains("calls.default.latency.p99")
    );
}

#[test]
fn probabilities_may_add_up_to_exactly_one() {
    let text = "version: 1\ncalls:\n  default: { network: 0.1, status: { 500: 0.2 }, stall: 0.7 }\ncommands:\n  default: { exit: { 1: 0.5 }, timeout: 0.25, signal: { 9: 0.25 } }\n";
    load_str(text, "f.yaml").unwrap_or_else(|e| panic!("{e}"));
}

/// `policies/faults.schema.json` is the fault model's schema.
/// `BACKSTOP_BLESS=1 cargo test` rewrites it.
#[test]
fn committed_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/faults.schema.json");
    crate::policy::schema::assert_committed(&path, &schema_json());
}
