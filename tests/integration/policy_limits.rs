//! What a hostile policy can ask for is bounded at load: durations, the size and
//! nesting of the file, the compiled size of a link's output patterns; and what a
//! pattern costs per line of output is bounded while the output passes through whole.

use std::time::Duration;

use crate::helpers::{Output, Test};

/// The bug was 35 s; anything near this bound is the bug back.
const PROMPT: Duration = Duration::from_secs(5);

/// `backstop policy check` of `text`, written as `name`, ends 125 and its stderr
/// says each of `says`.
#[track_caller]
fn check_refuses(name: &str, text: &str, says: &[&str]) -> Output {
    let mut test = Test::new()
        .write(name, text)
        .args(&["policy", "check", name])
        .status(125);
    for said in says {
        test = test.stderr_contains(said);
    }
    test.run()
}

#[test]
fn deeply_nested_brackets_in_the_implicit_policy_are_refused_at_once() {
    let text = format!(
        "version: 1\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let out = Test::new()
        .policy(&text)
        .args(&["run", "--", "sh", "-c", "touch $OUT/created"])
        .status(125)
        .stderr_contains("backstop.yaml:2:68: collections nested deeper than 64 levels")
        .run();
    assert!(out.elapsed < PROMPT, "took {:?}", out.elapsed);
    assert!(!out.exists("created"), "the command ran");
}

#[test]
fn deeply_nested_mappings_are_refused_at_once_by_policy_check() {
    let text = format!(
        "version: 1\nx: {}1{}\n",
        "{a: ".repeat(50_000),
        "}".repeat(50_000)
    );
    let out = check_refuses(
        "deep.yaml",
        &text,
        &["deep.yaml:2:", "nested deeper than 64 levels"],
    );
    assert!(out.elapsed < PROMPT, "took {:?}", out.elapsed);
}

#[test]
fn a_policy_over_one_mib_is_refused() {
    let text = format!("version: 1\n{}", "# padding\n".repeat(110_000));
    check_refuses("big.yaml", &text, &["big.yaml: the policy is over 1 MiB"]);
}

#[test]
fn a_policy_that_never_ends_is_refused() {
    Test::new()
        .args(&["policy", "check", "/dev/zero"])
        .status(125)
        .stderr_contains("/dev/zero: the policy is over 1 MiB")
        .run();
}

#[test]
fn durations_over_365_days_are_refused_naming_the_key() {
    let cases = [
        ("timeout: {total: 10000000000000000000s}", "timeout.total"),
        (
            "timeout: {attempt: 9223372036854775807s}",
            "timeout.attempt",
        ),
        ("timeout: {kill_grace: 366days}", "timeout.kill_grace"),
        ("timeout: {stall: 366days}", "timeout.stall"),
        (
            "retry: {backoff: {initial: 18446744073709551615s, max: 18446744073709551615s}}",
            "retry.backoff.initial",
        ),
        (
            "retry: {backoff: {max: 18446744073709551615s}}",
            "retry.backoff.max",
        ),
        ("retry: {backoff: {step: 400days}}", "retry.backoff.step"),
        (
            "retry: {retry_after: {max: 400days}}",
            "retry.retry_after.max",
        ),
        (
            "fallback: {chain: [{run: 'true', timeout: 400days}]}",
            "fallback.chain[0].timeout",
        ),
    ];
    for (yaml, key) in cases {
        let text = format!("version: 1\n{yaml}\n");
        for args in [
            &["policy", "check", "p.yaml"][..],
            &["policy", "explain", "p.yaml"],
            &[
                "run",
                "-p",
                "p.yaml",
                "--",
                "sh",
                "-c",
                "touch $OUT/created",
            ],
        ] {
            let out = Test::new()
                .write("p.yaml", &text)
                .args(args)
                .status(125)
                .stderr_contains("p.yaml:2:")
                .stderr_contains(&format!("{key}: duration"))
                .stderr_contains("365 days")
                .run();
            assert!(!out.exists("created"));
        }
    }
}

/// The longest durations allowed are added to the clock and summed without
/// overflow: a year's backoff after a failed attempt crosses `timeout.total`, so
/// backstop stops waiting, and the run's work is still rolled back.
#[test]
fn a_year_of_backoff_ends_at_the_deadline_and_rolls_back() {
    let policy = "version: 1\n\
        retry:\n  max_attempts: 1000\n  backoff: {initial: 365days, max: 365days, multiplier: 1.0e300, jitter: none}\n\
        timeout: {total: 365days, attempt: 365days, kill_grace: 365days}\n";
    let out = Test::new()
        .write("p.yaml", policy)
        .args(&[
            "run",
            "-p",
            "p.yaml",
            "--",
            "sh",
            "-c",
            "touch made; exit 3",
        ])
        .status(3)
        .stderr_contains("it would cross timeout.total")
        .run();
    assert!(
        !out.path().join("made").exists(),
        "the run was not rolled back"
    );
    Test::new()
        .write("p.yaml", policy)
        .args(&["policy", "explain", "p.yaml"])
        .stdout_contains("worst case")
        .run();
}

/// Patterns that each compile under the limit but not as one set.
fn too_many_patterns() -> String {
    vec![r"'\w{8}'"; 40].join(", ")
}

/// The set limit leaves room for the Unicode classes people write: `\w{10}` alone
/// takes over 256 KiB compiled.
#[test]
fn common_unicode_patterns_load() {
    Test::new()
        .write(
            "p.yaml",
            r"version: 1
retry:
  on:
    output: ['\b\w{8}\b', '\w{40}', '(?i)rate.?limit', '\d{12}', '[[:alpha:]]{20}']
",
        )
        .args(&["policy", "check", "p.yaml"])
        .status(0)
        .run();
}

#[test]
fn patterns_that_compile_alone_but_not_together_are_refused_at_load() {
    let list = too_many_patterns();
    for (yaml, key) in [
        (
            format!("retry: {{on: {{output: [{list}]}}}}"),
            "retry.on.output",
        ),
        (
            format!("fallback: {{critical: {{output: [{list}]}}}}"),
            "fallback.critical.output",
        ),
    ] {
        let yaml = format!("version: 1\n{yaml}\n");
        check_refuses(
            "p.yaml",
            &yaml,
            &[&format!("{key}: these patterns together are too large")],
        );
        let out = Test::new()
            .write("p.yaml", &yaml)
            .args(&[
                "run",
                "-p",
                "p.yaml",
                "--",
                "sh",
                "-c",
                "touch $OUT/created",
            ])
            .status(125)
            .stderr_contains(key)
            .run();
        assert!(!out.exists("created"), "the command ran");
    }
}

/// `x{4000}y` made the lazy DFA give up and the scan crawl at ~50 KB/s, which the
/// pipe passed back to the command; only a line's first 64 KiB is matched now.
#[test]
fn a_costly_pattern_does_not_throttle_a_50_mb_line() {
    let out = Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry: {on: {output: ['x{4000}y']}}\nrollback: {on: never}\n",
        )
        .args(&[
            "run",
            "-p",
            "p.yaml",
            "--",
            "sh",
            "-c",
            "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo done",
        ])
        .run();
    assert_eq!(out.stdout.len(), 50_000_000 + "\ndone\n".len());
    assert!(out.stdout.ends_with("x\ndone\n"));
    assert!(out.stdout[..50_000_000].bytes().all(|b| b == b'x'));
    eprintln!("50 MB line through x{{4000}}y in {:?}", out.elapsed);
    assert!(
        out.elapsed < Duration::from_secs(40),
        "took {:?}",
        out.elapsed
    );
}

/// Matching still works before the bound, and on the line after a long one.
#[test]
fn a_match_after_a_long_line_is_still_seen() {
    Test::new()
        .write(
            "p.yaml",
            "version: 1\nretry: {max_attempts: 1, never: {output: ['^FATAL']}}\nrollback: {on: never}\n",
        )
        .args(&[
            "run",
            "-p",
            "p.yaml",
            "--",
            "sh",
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' x; echo; echo FATAL; exit 1",
        ])
        .status(1)
        .stderr_contains("FATAL")
        .run();
}

#[test]
fn more_than_64_output_patterns_are_refused() {
    let list: Vec<String> = (0..65).map(|i| format!("'e{i}'")).collect();
    let yaml = format!(
        "version: 1\nretry: {{on: {{output: [{}]}}}}\n",
        list.join(", ")
    );
    check_refuses(
        "p.yaml",
        &yaml,
        &["retry.on.output[64]: more than 64 output patterns in one policy"],
    );
}

#[test]
fn a_fallback_chain_over_100_links_is_refused() {
    let links = vec!["{run: 'true'}"; 101].join(", ");
    check_refuses(
        "p.yaml",
        &format!("version: 1\nfallback: {{chain: [{links}]}}\n"),
        &["fallback.chain: at most 100 links, not 101"],
    );
}

/// Duplicate step names were found by scanning the steps so far: 40,000 steps in a
/// 1 MiB policy took 12 s to check.
#[test]
fn a_policy_of_40000_steps_is_checked_at_once() {
    let steps: String = (0..40_000)
        .map(|i| format!("- {{name: s{i}, run: x}}\n"))
        .collect();
    let out = check_refuses(
        "p.yaml",
        &format!("version: 1\nsteps:\n{steps}- {{name: s7, run: x}}\n"),
        &["steps[40000].name: two steps are named `s7`"],
    );
    assert!(out.elapsed < PROMPT, "took {:?}", out.elapsed);
}

/// `./backstop.yaml` comes with whatever tree backstop runs in: a FIFO there would
/// hang every run until something wrote to it.
#[test]
fn an_implicit_policy_that_is_not_a_file_is_refused_not_waited_on() {
    let t = Test::new().args(&["run", "--", "sh", "-c", "touch $OUT/created"]);
    let status = std::process::Command::new("mkfifo")
        .arg(t.path().join("backstop.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = t
        .status(125)
        .stderr_contains("backstop.yaml: not a regular file")
        .run();
    assert!(out.elapsed < PROMPT, "took {:?}", out.elapsed);
    assert!(!out.exists("created"), "the command ran");

    let t = Test::new().args(&["run", "--", "sh", "-c", "touch $OUT/created"]);
    std::os::unix::fs::symlink("gone.yaml", t.path().join("backstop.yaml")).unwrap();
    let out = t
        .status(125)
        .stderr_contains("backstop.yaml: a symlink to nothing")
        .run();
    assert!(!out.exists("created"), "the command ran");
}
