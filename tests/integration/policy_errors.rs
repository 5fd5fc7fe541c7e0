//! A bad policy is reported with file:line:column and key, exits 125, and runs nothing.

use crate::helpers::Test;

/// Runs a command that would create `created` under `policy`, and checks that
/// backstop refused with 125, said each of `messages`, and ran and recorded nothing.
#[track_caller]
fn refused(policy: &str, messages: &[&str]) {
    let mut test = Test::new()
        .write("policy.yaml", policy)
        .args(&[
            "run",
            "-p",
            "policy.yaml",
            "--",
            "sh",
            "-c",
            "touch $OUT/created",
        ])
        .status(125);
    for m in messages {
        test = test.stderr_contains(m);
    }
    let out = test.run();
    assert!(!out.exists("created"), "the command ran");
    assert!(out.runs().is_empty(), "a run was recorded");
    assert_eq!(out.stdout, "");
}

#[test]
fn an_unknown_key_is_named_with_its_position() {
    refused(
        "version: 1\nretry:\n  max_attempts: 2\n  max_attempt: 3\n",
        &["policy.yaml:4:3: retry.max_attempt: unknown field `max_attempt`"],
    );
}

#[test]
fn an_unknown_top_level_key_is_named() {
    refused(
        "version: 1\nretries: 3\n",
        &["policy.yaml:2:1:", "unknown field `retries`"],
    );
}

#[test]
fn a_bad_duration_is_reported_at_its_value() {
    refused(
        "version: 1\ntimeout:\n  attempt: 10 parsecs\n",
        &["policy.yaml:3:12: timeout.attempt: invalid duration `10 parsecs`"],
    );
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    refused(
        "version: 1\nretry:\n  backoff: { initial: 100 }\n",
        &["policy.yaml:3:", "retry.backoff.initial:", "needs a unit"],
    );
}

#[test]
fn a_zero_timeout_is_refused() {
    refused(
        "version: 1\ntimeout:\n  attempt: 0s\n",
        &["policy.yaml:3:3: timeout.attempt:"],
    );
}

#[test]
fn a_bad_regex_is_reported_at_its_position() {
    refused(
        "version: 1\nretry:\n  on:\n    output: [\"ok\", \"(unclosed\"]\n",
        &[
            "policy.yaml:4:",
            "retry.on.output[1]: invalid regex `(unclosed`",
        ],
    );
}

#[test]
fn a_bad_critical_regex_is_refused() {
    refused(
        "version: 1\nfallback:\n  critical:\n    output: [\"[z-a]\"]\n",
        &[
            "policy.yaml:4:",
            "fallback.critical.output[0]: invalid regex",
        ],
    );
}

#[test]
fn an_empty_exit_code_range_is_refused() {
    refused(
        "version: 1\nretry:\n  on:\n    exit_codes: [1, 78..64]\n",
        &["policy.yaml:4:21: retry.on.exit_codes[1]: exit code range `78..64` is empty"],
    );
}

#[test]
fn an_exit_code_out_of_range_is_refused() {
    refused(
        "version: 1\nretry:\n  never:\n    exit_codes: [256]\n",
        &[
            "policy.yaml:4:",
            "retry.never.exit_codes[0]: invalid exit code `256`",
        ],
    );
}

#[test]
fn a_garbled_exit_code_range_is_refused() {
    refused(
        "version: 1\nfallback:\n  critical:\n    exit_codes: [\"3...9\"]\n",
        &[
            "policy.yaml:4:",
            "fallback.critical.exit_codes[0]: invalid exit code",
        ],
    );
}

#[test]
fn a_link_with_two_actions_is_refused() {
    refused(
        "version: 1\nfallback:\n  chain:\n    - run: \"true\"\n    - run: \"true\"\n      default: { stdout: x }\n",
        &[
            "policy.yaml:5:7: fallback.chain[1]:",
            "a link needs exactly one of `run`,",
        ],
    );
}

#[test]
fn a_link_with_no_action_is_refused() {
    refused(
        "version: 1\nfallback:\n  chain:\n    - name: nothing\n",
        &["fallback.chain[0]:", "exactly one of"],
    );
}

#[test]
fn retry_on_a_default_link_is_refused() {
    refused(
        "version: 1\nfallback:\n  chain:\n    - default: { stdout: x }\n      retry: { max_attempts: 2 }\n",
        &["policy.yaml:5:7: fallback.chain[0].retry:"],
    );
}

#[test]
fn max_attempts_of_zero_is_refused() {
    refused(
        "version: 1\nretry:\n  max_attempts: 0\n",
        &["policy.yaml:3:3: retry.max_attempts: must be from 1"],
    );
}

#[test]
fn a_wrong_version_is_refused() {
    refused(
        "version: 2\n",
        &["policy.yaml:1:1: version: unsupported version 2"],
    );
}

#[test]
fn a_missing_version_is_refused() {
    refused(
        "retry: { max_attempts: 2 }\n",
        &["policy.yaml:", "version", "missing `version: 1`"],
    );
}

#[test]
fn an_empty_file_is_refused() {
    refused("", &["policy.yaml: the policy is empty"]);
}

#[test]
fn a_file_of_only_comments_is_refused() {
    refused("# nothing here\n\n", &["policy.yaml: the policy is empty"]);
}

#[test]
fn a_file_that_is_not_yaml_is_refused() {
    refused("version: 1\nretry: [unclosed\n", &["policy.yaml:"]);
}

#[test]
fn a_missing_policy_file_is_refused() {
    let out = Test::new()
        .args(&[
            "run",
            "-p",
            "no-such-policy.yaml",
            "--",
            "sh",
            "-c",
            "touch $OUT/created",
        ])
        .status(125)
        .stderr_contains("no-such-policy.yaml: cannot read the policy")
        .run();
    assert!(!out.exists("created"));
}

#[test]
fn a_bad_implicit_backstop_yaml_is_refused_too() {
    let out = Test::new()
        .policy("version: 1\nbogus: true\n")
        .args(&["run", "--", "sh", "-c", "touch $OUT/created"])
        .status(125)
        .stderr_contains("backstop.yaml:2:1:")
        .run();
    assert!(!out.exists("created"));
}

#[test]
fn an_explicit_policy_wins_over_backstop_yaml() {
    let out = Test::new()
        .policy("version: 1\nbogus: true\n")
        .write(
            "other.yaml",
            "version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }\n",
        )
        .args(&[
            "run",
            "-p",
            "other.yaml",
            "--",
            "sh",
            "-c",
            "echo attempt >> $OUT/log; exit 1",
        ])
        .status(1)
        .run();
    assert_eq!(out.lines("log"), ["attempt", "attempt"]);
}
