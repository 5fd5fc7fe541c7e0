//! Policies as written every day (issue 15, item 16): `rollback.validate` is judged
//! by its own rule, `retry.on.validate`, not by the command's exit-code lists; a
//! YAML indentation mistake names its line and what was expected.

use crate::helpers::Test;

/// The command logs each attempt; `validate` fails with `code` every time.
fn validate_failing_with(code: u8, on: &str) -> Test {
    let policy = format!(
        "version: 1\nretry:\n  max_attempts: 3\n  backoff: {{ initial: 1ms, max: 5ms }}\n  on: {on}\n\
         rollback: {{ validate: [\"sh\", \"-c\", \"exit {code}\"] }}\n"
    );
    Test::new()
        .policy(&policy)
        .args(&["run", "--", "sh", "-c", "echo attempt >> $OUT/log"])
}

#[test]
fn a_failed_validate_is_retried_whatever_its_exit_code() {
    // 2 is in the default `never.exit_codes`, and 1 is not in `on.exit_codes: [75]`:
    // neither list is about the check.
    for (code, on) in [(2, "{}"), (1, "{ exit_codes: [75] }")] {
        let out = validate_failing_with(code, on)
            .status(i32::from(code))
            .stderr_contains("retry.on.validate is true")
            .run();
        assert_eq!(out.lines("log").len(), 3, "validate exit {code}");
    }
}

#[test]
fn retry_on_validate_false_stops_at_the_first_failed_check() {
    let out = validate_failing_with(1, "{ validate: false }")
        .status(1)
        .stderr_contains("retry.on.validate is false")
        .run();
    assert_eq!(out.lines("log").len(), 1);
}

#[test]
fn an_indentation_mistake_names_the_line_and_what_was_expected() {
    Test::new()
        .policy("version: 1\nretry:\n  max_attempts: 3\n backoff: { initial: 1s }\n")
        .args(&["run", "--", "true"])
        .status(125)
        .stderr_contains(
            "backstop.yaml:4:2: YAML: the indentation is off: line 4 starts at column 2",
        )
        .stderr_contains("the keys of the mapping from line 1 (`version: 1`) start at column 1")
        .stderr_lacks("?:")
        .run();
}
