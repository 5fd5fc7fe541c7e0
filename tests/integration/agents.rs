//! The ready policies for coding agents (`policies/agents/`), against stub agents
//! (`tests/support/agents/`) that print each agent's real failure messages in their
//! real form (stdout or stderr, colour, JSON) and exit as the real ones do: each
//! policy retries what is worth retrying, never retries a usage limit, a missing
//! login or a bad flag, and starts every retry from the same tree; the cross-agent
//! fallback ends on the first agent whose work passes the tests, with its tree; an
//! agent's terminal UI keeps the terminal under backstop and gets Ctrl-C.

use std::path::{Path, PathBuf};

use crate::helpers::{Output, Test, attempts};
use crate::job_control::{PTY, drive};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stubs() -> PathBuf {
    repo().join("tests/support/agents")
}

/// `policies/agents/NAME.yaml` with its backoff made 1 ms, written outside the tree:
/// the patterns, codes and rollback are the shipped ones, the waits are not.
fn fast_policy(test: &Test, name: &str) -> String {
    let text = std::fs::read_to_string(repo().join(format!("policies/agents/{name}.yaml")))
        .expect("read the agent policy");
    let backoff: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("backoff:"))
        .collect();
    assert_eq!(backoff.len(), 1, "{name}.yaml has one backoff line");
    let text = text.replace(backoff[0], "  backoff: { kind: constant, initial: 1ms }");
    let path = test.out_path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write the policy");
    path.to_string_lossy().into_owned()
}

/// A test whose PATH finds the stubs first, each stub told its plan.
fn with_stubs(test: Test, plans: &[(&str, &str)]) -> Test {
    let path = format!(
        "{}:{}",
        stubs().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let state = test.out_path().to_string_lossy().into_owned();
    // NO_COLOR empty is NO_COLOR unset (no-color.org): the stubs colour as the real
    // agents do on a colour terminal (Gemini CLI's red fatal errors).
    let mut test = test
        .env("PATH", &path)
        .env("STUB_STATE", &state)
        .env("NO_COLOR", "")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (agent, plan) in plans {
        test = test.env(&format!("{}_STUB_PLAN", agent.to_uppercase()), plan);
    }
    test
}

/// What a policy must make of a scenario.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Retried, and the retry (which succeeds) starts from the same tree.
    Retried(&'static str),
    /// Not retried: the run fails with this exit code, by a rule saying this.
    Never(i32, &'static str),
}

struct Case {
    policy: &'static str,
    argv: &'static [&'static str],
    scenario: &'static str,
    want: Want,
}

const fn case(
    policy: &'static str,
    argv: &'static [&'static str],
    scenario: &'static str,
    want: Want,
) -> Case {
    Case {
        policy,
        argv,
        scenario,
        want,
    }
}

const CLAUDE: &[&str] = &["claude", "-p", "fix the parser"];
const CLAUDE_JSON: &[&str] = &["claude", "-p", "--output-format", "json", "fix the parser"];
const CODEX: &[&str] = &["codex", "exec", "--full-auto", "fix the parser"];
const GEMINI: &[&str] = &["gemini", "--yolo", "-p", "fix the parser"];
const AIDER: &[&str] = &["aider", "--yes-always", "--message", "fix the parser"];
const OPENCODE: &[&str] = &["opencode", "run", "fix the parser"];
const OPENCODE_JSON: &[&str] = &["opencode", "run", "--format", "json", "fix the parser"];

const ON: &str = "retry.on.output matched";
const NEVER: &str = "retry.never.output matched";
const FAIL_ON: &str = "exit 0, but retry.fail_on.output matched";

const CASES: &[Case] = &[
    case("claude", CLAUDE, "overloaded", Want::Retried(ON)),
    case("claude", CLAUDE, "rate_limit", Want::Retried(ON)),
    case("claude", CLAUDE, "connection", Want::Retried(ON)),
    case("claude", CLAUDE, "rate_limit_exit0", Want::Retried(FAIL_ON)),
    case(
        "claude",
        CLAUDE_JSON,
        "json_overloaded",
        Want::Retried(FAIL_ON),
    ),
    case("claude", CLAUDE, "usage_limit", Want::Never(1, NEVER)),
    case("claude", CLAUDE, "usage_limit_new", Want::Never(1, NEVER)),
    case("claude", CLAUDE, "auth", Want::Never(1, NEVER)),
    case("claude", CLAUDE, "credit", Want::Never(1, NEVER)),
    case("claude", CLAUDE, "context", Want::Never(1, NEVER)),
    case("claude", CLAUDE_JSON, "json_context", Want::Never(1, NEVER)),
    case("claude", CLAUDE, "bad_flag", Want::Never(1, NEVER)),
    case("codex", CODEX, "rate_limit", Want::Retried(ON)),
    case("codex", CODEX, "overloaded", Want::Retried(ON)),
    case("codex", CODEX, "json_stream", Want::Retried(ON)),
    case("codex", CODEX, "usage_limit", Want::Never(1, NEVER)),
    case("codex", CODEX, "auth", Want::Never(1, NEVER)),
    case("codex", CODEX, "context", Want::Never(1, NEVER)),
    case(
        "codex",
        CODEX,
        "bad_flag",
        Want::Never(2, "retry.never.exit_codes contains 2"),
    ),
    case("gemini", GEMINI, "rate_limit", Want::Retried(ON)),
    case("gemini", GEMINI, "overloaded", Want::Retried(ON)),
    case("gemini", GEMINI, "json_capacity", Want::Retried(ON)),
    case("gemini", GEMINI, "daily_quota", Want::Never(1, NEVER)),
    case("gemini", GEMINI, "auth", Want::Never(41, NEVER)),
    case(
        "gemini",
        GEMINI,
        "turn_limit",
        Want::Never(53, "retry.never.exit_codes contains 53"),
    ),
    case("aider", AIDER, "rate_limit", Want::Retried(FAIL_ON)),
    case("aider", AIDER, "overloaded", Want::Retried(FAIL_ON)),
    case("aider", AIDER, "rate_limit_old", Want::Retried(FAIL_ON)),
    case("aider", AIDER, "auth", Want::Never(1, NEVER)),
    case("aider", AIDER, "credits", Want::Never(1, NEVER)),
    case("aider", AIDER, "context", Want::Never(1, NEVER)),
    case(
        "aider",
        AIDER,
        "bad_flag",
        Want::Never(2, "retry.never.exit_codes contains 2"),
    ),
    case("opencode", OPENCODE, "rate_limit", Want::Retried(ON)),
    case("opencode", OPENCODE, "rate_limit_openai", Want::Retried(ON)),
    case("opencode", OPENCODE, "overloaded", Want::Retried(ON)),
    case(
        "opencode",
        OPENCODE_JSON,
        "json_auth",
        Want::Never(1, NEVER),
    ),
    case("opencode", OPENCODE, "context", Want::Never(1, NEVER)),
    case("opencode", OPENCODE, "no_message", Want::Never(1, NEVER)),
];

/// Runs one case: the agent plays `scenario` first and succeeds after.
fn run_case(c: &Case) -> Output {
    let test = Test::new().write("src.txt", "the project\n");
    let policy = fast_policy(&test, c.policy);
    let plan = format!("{},ok", c.scenario);
    let mut args = vec!["run", "-p", &policy, "--"];
    args.extend_from_slice(c.argv);
    let status = match c.want {
        Want::Retried(_) => 0,
        Want::Never(code, _) => code,
    };
    with_stubs(test, &[(c.policy, &plan)])
        .args(&args)
        .status(status)
        .run()
}

#[track_caller]
fn check_case(c: &Case, out: &Output) {
    let what = format!("{} {}", c.policy, c.scenario);
    let record = out.record();
    let tries = attempts(&record);
    let first = &tries[0]["verdict"];
    let rule = first["rule"].as_str().unwrap_or_default();
    let tree = out.path();
    assert!(
        !tree.join("half-done.txt").exists(),
        "{what}: the failed attempt's edit is gone"
    );
    match c.want {
        Want::Retried(because) => {
            assert_eq!(tries.len(), 2, "{what}: {record:#}");
            assert_eq!(first["retry"], true, "{what}: {record:#}");
            assert!(rule.contains(because), "{what}: rule {rule:?}");
            let solution = std::fs::read_to_string(tree.join("solution.txt")).unwrap_or_default();
            assert_eq!(solution, format!("solved by {}\n", c.policy), "{what}");
        }
        Want::Never(_, because) => {
            assert_eq!(tries.len(), 1, "{what}: {record:#}");
            assert_eq!(first["retry"], false, "{what}: {record:#}");
            assert!(rule.contains(because), "{what}: rule {rule:?}");
            assert!(!tree.join("solution.txt").exists(), "{what}: nothing left");
        }
    }
    assert_eq!(
        std::fs::read_to_string(tree.join("src.txt")).unwrap_or_default(),
        "the project\n"
    );
}

/// A policy of `policies/agents/` against each failure its agent really prints: it
/// retries what its agent says is passing, and nothing else.
fn check_policy(policy: &str) {
    let mut seen = 0;
    for c in CASES.iter().filter(|c| c.policy == policy) {
        let out = run_case(c);
        check_case(c, &out);
        seen += 1;
    }
    assert!(seen >= 5, "{policy}: {seen} cases");
}

#[test]
fn the_claude_code_policy_classifies_its_failures() {
    check_policy("claude");
}

#[test]
fn the_codex_policy_classifies_its_failures() {
    check_policy("codex");
}

#[test]
fn the_gemini_policy_classifies_its_failures() {
    check_policy("gemini");
}

#[test]
fn the_aider_policy_classifies_its_failures() {
    check_policy("aider");
}

#[test]
fn the_opencode_policy_classifies_its_failures() {
    check_policy("opencode");
}

#[test]
fn each_agent_policy_lets_a_success_through_at_once() {
    for (policy, argv) in [
        ("claude", CLAUDE),
        ("codex", CODEX),
        ("gemini", GEMINI),
        ("aider", AIDER),
        ("opencode", OPENCODE),
    ] {
        let test = Test::new();
        let path = fast_policy(&test, policy);
        let mut args = vec!["run", "-p", &path, "--"];
        args.extend_from_slice(argv);
        let out = with_stubs(test, &[(policy, "ok")]).args(&args).run();
        assert_eq!(attempts(&out.record()).len(), 1, "{policy}");
        assert_eq!(
            std::fs::read_to_string(out.path().join("solution.txt")).unwrap_or_default(),
            format!("solved by {policy}\n")
        );
    }
}

/// The project the fallback tests work on: its tests fail while `BROKEN` exists.
fn project() -> Test {
    Test::new().write("src.txt", "the project\n").write_mode(
        "run-tests.sh",
        "#!/bin/sh\ntest ! -e BROKEN\n",
        0o755,
    )
}

#[test]
fn the_fallback_ends_on_the_first_agent_whose_tests_pass_with_its_tree() {
    let test = project();
    let policy = fast_policy(&test, "fallback");
    let out = with_stubs(
        test,
        &[
            ("claude", "usage_limit"),
            ("codex", "broken,broken"),
            ("gemini", "ok"),
        ],
    )
    .env("AGENT_TESTS", "./run-tests.sh")
    .stdin("make the test pass\n")
    .args(&["run", "-p", &policy, "--", "claude", "-p"])
    .run();
    let record = out.record();
    assert_eq!(record["outcome"]["outcome"], "succeeded", "{record:#}");
    assert_eq!(record["outcome"]["link"], 2, "gemini, the third agent");
    let tree = out.path();
    assert_eq!(
        std::fs::read_to_string(tree.join("solution.txt")).unwrap(),
        "solved by gemini\n"
    );
    assert!(!tree.join("BROKEN").exists(), "codex's broken tree is gone");
    assert!(
        !tree.join("half-done.txt").exists(),
        "claude's edit is gone"
    );
    // Codex "succeeded" twice, but its tests failed: failed attempts, by validation.
    let classes: Vec<_> = attempts(&record)
        .iter()
        .map(|a| (a["link"].as_u64().unwrap(), a["verdict"]["class"].clone()))
        .collect();
    assert_eq!(
        classes,
        [
            (0, "exit".into()),
            (1, "validation".into()),
            (1, "validation".into()),
            (2, serde_json::Value::Null)
        ]
    );
    // Every agent got the task the first one read from stdin.
    assert_eq!(
        out.lines("calls"),
        [
            "claude usage_limit make the test pass",
            "codex broken make the test pass",
            "codex broken make the test pass",
            "gemini ok make the test pass",
        ]
    );
}

#[test]
fn when_no_agent_passes_the_tree_is_put_back_and_a_person_is_called() {
    let test = project();
    let policy = fast_policy(&test, "fallback");
    let tmp = test.out_path().to_string_lossy().into_owned();
    let out = with_stubs(
        test,
        &[
            ("claude", "broken"),
            ("codex", "auth"),
            ("gemini", "daily_quota"),
        ],
    )
    .env("AGENT_TESTS", "./run-tests.sh")
    .env("TMPDIR", &tmp)
    .stdin("make the test pass\n")
    .args(&["run", "-p", &policy, "--", "claude", "-p"])
    .status(3)
    .run();
    let record = out.record();
    assert_eq!(record["outcome"]["outcome"], "escalated", "{record:#}");
    let tree = out.path();
    for gone in ["solution.txt", "BROKEN", "half-done.txt"] {
        assert!(!tree.join(gone).exists(), "{gone} was put back");
    }
    let id = record["id"].as_str().unwrap();
    let summary = out.read(&format!("backstop-agents-{id}.json"));
    assert!(
        summary.contains("\"run_id\""),
        "the hook got the summary: {summary}"
    );
    // Claude failed its tests twice, codex's login and gemini's quota once each.
    assert_eq!(attempts(&record).len(), 4, "{record:#}");
}

/// Runs the stub terminal UI under `policy` (a file of `policies/agents/`) on a pty:
/// types `x` at its raw prompt and Ctrl-C at its cooked one. Returns the test (its
/// `$OUT/tui` says what the stub saw) and what the terminal showed.
fn drive_tui(policy: &str) -> (Test, String) {
    let test = Test::new().write(
        "backstop.yaml",
        &std::fs::read_to_string(repo().join(format!("policies/agents/{policy}"))).unwrap(),
    );
    let tui = stubs().join("tui");
    let script = format!(
        r#"{PTY}
pid, fd = start("run", "--", "{tui}")
seen = b""
while b"raw>" not in seen:
    seen += os.read(fd, 4096)
os.write(fd, b"x")
while b"cooked>" not in seen:
    seen += os.read(fd, 4096)
os.write(fd, b"\x03")
text = read_all(fd).decode(errors="replace")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
print(seen.decode(errors="replace") + text)
"#,
        tui = tui.display()
    );
    let said = drive(&test, &script);
    (test, said)
}

/// An agent's terminal UI under `policies/agents/interactive.yaml`: it gets the
/// terminal (stdin, stdout and stderr, in the foreground), its raw keys, and Ctrl-C.
#[test]
fn an_agents_terminal_ui_keeps_the_terminal_and_gets_ctrl_c() {
    let (test, said) = drive_tui("interactive.yaml");
    assert!(said.contains("exit 130"), "{said}");
    assert_eq!(
        test.lines("tui"),
        [
            "terminal: stdin True stdout True stderr True",
            "foreground True",
            "key b'x'",
            "SIGINT",
        ],
        "{said}"
    );
}

/// `retry.fail_on.output` on its own: an exit 0 that prints a matching line is a
/// failure, `validate` is not run for it, and backstop does not exit 0 for it.
#[test]
fn an_exit_0_that_fail_on_matches_is_a_failure_not_validated_and_exits_1() {
    let out = Test::new()
        .policy(
            "version: 1\nretry: { max_attempts: 1, fail_on: { output: ['^API Error'] } }\nrollback: { validate: ['sh', '-c', 'echo validated >> \"$OUT/log\"'] }\n",
        )
        .args(&["run", "--", "sh", "-c", "echo 'API Error: 500'"])
        .status(1)
        .stderr_contains("exit 0, but retry.fail_on.output matched `^API Error`")
        .run();
    assert_eq!(out.read("log"), "", "validate did not run");
    assert_eq!(out.record()["outcome"]["outcome"], "failed");
}

/// `policy explain` says which links take an exit 0 for a failure.
#[test]
fn explain_names_fail_on_for_the_agents_that_exit_0_on_failure() {
    let aider = repo().join("policies/agents/aider.yaml");
    Test::new()
        .args(&["policy", "explain", &aider.to_string_lossy()])
        .stdout_contains(
            "an exit 0 that prints a line matching retry.fail_on.output (5 pattern(s)) is a failure",
        )
        .run();
    let codex = repo().join("policies/agents/codex.yaml");
    let out = Test::new()
        .args(&["policy", "explain", &codex.to_string_lossy()])
        .run();
    assert!(!out.stdout.contains("fail_on"), "{}", out.stdout);
}

/// Why `interactive.yaml` has no output patterns: under a headless policy, which has
/// them, the agent still gets the keyboard and Ctrl-C, but its stdout and stderr are
/// pipes backstop reads, not the terminal.
#[test]
fn under_a_headless_policy_the_ui_writes_to_pipes() {
    let (test, said) = drive_tui("claude.yaml");
    assert!(said.contains("exit 130"), "{said}");
    assert_eq!(
        test.lines("tui")[..2],
        [
            "terminal: stdin True stdout False stderr False",
            "foreground True"
        ],
        "{said}"
    );
}
