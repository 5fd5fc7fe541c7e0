//! What the child is given: the environment, BACKSTOP_* variables, the working
//! directory, and stdin replayed to every attempt.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Test, wait_bounded};

#[test]
fn the_environment_and_backstop_variables_reach_every_attempt_and_link() {
    let policy = r#"version: 1
retry: { max_attempts: 2, backoff: { initial: 1ms, max: 5ms } }
fallback:
  chain:
    - run: 'echo "$MY_SETTING|$BACKSTOP_ATTEMPT|$BACKSTOP_MAX_ATTEMPTS|$BACKSTOP_LINK|$BACKSTOP_RUN_ID" >> $OUT/log'
      retry: { max_attempts: 1 }
"#;
    let out = Test::new()
        .policy(policy)
        .env("MY_SETTING", "from the test")
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            r#"echo "$MY_SETTING|$BACKSTOP_ATTEMPT|$BACKSTOP_MAX_ATTEMPTS|$BACKSTOP_LINK|$BACKSTOP_RUN_ID" >> $OUT/log; exit 1"#,
        ])
        .status(0)
        .run();
    let id = out.record()["id"].as_str().expect("run id").to_string();
    assert_eq!(id.len(), 12, "{id}");
    assert_eq!(
        out.lines("log"),
        [
            format!("from the test|1|2|0|{id}"),
            format!("from the test|2|2|0|{id}"),
            format!("from the test|1|1|1|{id}"),
        ]
    );
}

#[test]
fn the_link_name_is_given_to_the_child() {
    let policy = r#"version: 1
retry: { max_attempts: 1 }
fallback:
  chain:
    - name: plan-b
      run: 'echo "$BACKSTOP_LINK_NAME" >> $OUT/log'
"#;
    let out = Test::new()
        .policy(policy)
        .args(&["run", "--", "false"])
        .status(0)
        .run();
    assert_eq!(out.lines("log"), ["plan-b"]);
}

#[test]
fn the_child_runs_in_backstops_working_directory() {
    let out = Test::new()
        .policy("version: 1\n")
        .args(&["run", "--", "sh", "-c", "pwd -P > $OUT/log"])
        .run();
    let expected = out.path().canonicalize().expect("canonical tempdir");
    assert_eq!(
        out.read("log").trim_end(),
        expected.to_str().expect("utf-8")
    );
}

#[test]
fn piped_stdin_is_replayed_to_every_attempt() {
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }\n")
        .stdin("hello\n")
        .args(&["run", "--", "sh", "-c", "cat >> $OUT/log; exit 1"])
        .status(1)
        .run();
    assert_eq!(out.lines("log"), ["hello", "hello", "hello"]);
}

#[test]
fn stdin_from_a_file_is_replayed_to_every_attempt() {
    let test = Test::new()
        .policy("version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }\n")
        .write("input.txt", "from a file\n")
        .args(&["run", "--", "sh", "-c", "cat >> $OUT/log; exit 1"]);
    let input = std::fs::File::open(test.path().join("input.txt")).expect("open input");
    let mut child = test
        .command()
        .stdin(input)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn backstop");
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(20)), 1);
    let log = test.read("log");
    assert_eq!(log, "from a file\n".repeat(3));
}

#[test]
fn a_larger_stdin_is_replayed_whole_even_when_an_attempt_reads_part_of_it() {
    // 300 KB: more than one pipe buffer and more than one replay chunk. The first
    // attempt reads only the first line; later attempts still get everything.
    let input: String = (0..30_000).map(|i| format!("line {i:05}\n")).collect();
    assert_eq!(input.len(), 330_000);
    let out = Test::new()
        .policy("version: 1\nretry: { max_attempts: 3, backoff: { initial: 1ms, max: 5ms } }\n")
        .stdin(input.clone())
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "if [ $BACKSTOP_ATTEMPT = 1 ]; then head -n 1 > $OUT/got1; else cat > $OUT/got$BACKSTOP_ATTEMPT; fi; exit 1",
        ])
        .status(1)
        .run();
    assert_eq!(out.read("got1"), "line 00000\n");
    assert!(out.read("got2") == input, "attempt 2 got a different input");
    assert!(out.read("got3") == input, "attempt 3 got a different input");
}
