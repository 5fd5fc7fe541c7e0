//! `backstop call` as an API caller uses it every day (issue 15, items 12–16): what
//! reaches stdout with `--json` and `--stream`, the provider's own error messages, a
//! refused key, `-m` against the chain, and the usage lines with `BACKSTOP_HOME` set.

use serde_json::{Value, json};

use crate::call::{End, KEY, Reply, Sandbox, Server, ok, openai_stream, policy, stderr, stdout};

fn error(status: u16, message: &str) -> Reply {
    Reply::Json(
        status,
        vec![],
        json!({"error":{"message":message,"type":"x"}}),
    )
}

const DEFAULT: &str = "fallback: { chain: [ { name: canned, default: { stdout: \"degraded answer\\n\", exit_code: 0 } } ] }\n";

/// The whole of stdout, parsed as one JSON value: trailing text or a second object fails.
fn one_object(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {:?}", stdout(out)))
}

#[test]
fn json_stdout_is_one_object_when_a_default_link_answers() {
    let server = Server::start(vec![
        error(500, "down"),
        error(500, "down"),
        error(500, "down"),
    ]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", DEFAULT));
    let out = sb.run(&["call", "-p", &p, "--json", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = one_object(&out);
    assert_eq!(doc["outcome"], "degraded");
    assert_eq!(doc["text"], "degraded answer\n");
    assert!(doc["model"].is_null(), "no model answered: {doc}");
}

#[test]
fn json_with_stream_always_is_still_one_object() {
    let mut cut = openai_stream(&["partial-one"]);
    cut.truncate(1);
    let server = Server::start(vec![
        Reply::Sse(cut.clone(), End::Clean),
        Reply::Sse(cut.clone(), End::Clean),
        Reply::Sse(cut, End::Clean),
    ]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", DEFAULT));
    let out = sb.run(&["call", "-p", &p, "--json", "--stream=always", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.seen().len(), 3);
    assert_eq!(one_object(&out)["text"], "degraded answer\n");
}

#[test]
fn json_names_the_alias_and_the_provider_model_id() {
    let server = Server::start(vec![ok("fine")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--json", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = one_object(&out);
    assert_eq!(doc["text"], "fine");
    assert_eq!(doc["model"], "small");
    assert_eq!(doc["provider_model"], "small-1");
}

/// A stream cut before its finish event (retried), then a whole one.
pub(super) fn cut_then_whole() -> Server {
    let mut cut = openai_stream(&["partial-one"]);
    cut.truncate(1);
    Server::start(vec![
        Reply::Sse(cut, End::Clean),
        Reply::Sse(openai_stream(&["whole"]), End::Clean),
    ])
}

#[test]
fn stream_into_a_pipe_prints_only_the_finished_answer() {
    let server = cut_then_whole();
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--stream", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "whole\n", "no partial answer in a pipe");
    assert_eq!(server.seen().len(), 2);
    assert_eq!(server.seen()[1].body["stream"], true, "still streamed");
}

#[test]
fn stream_always_prints_live_into_a_pipe() {
    let server = cut_then_whole();
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--stream=always", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "partial-one\nwhole\n");
    assert!(stderr(&out).contains("cut off"), "{}", stderr(&out));
}

#[test]
fn a_bad_stream_value_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.run(&["call", "--stream=sometimes", "x"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("always"), "{}", stderr(&out));
}

#[test]
fn the_provider_message_is_on_stderr_and_in_show() {
    let server = Server::start(vec![error(404, "Resource not found.")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", DEFAULT));
    let out = sb.run(&["call", "-p", &p, "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "degraded answer\n");
    assert!(
        stderr(&out).contains("HTTP 404: Resource not found."),
        "{}",
        stderr(&out)
    );
    let runs: Value = serde_json::from_slice(&sb.run(&["runs", "--json"]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let show = sb.run(&["show", &id]);
    assert!(
        stdout(&show).contains("HTTP 404: Resource not found."),
        "{}",
        stdout(&show)
    );
}

#[test]
fn a_provider_message_cannot_forge_lines_or_drive_the_terminal() {
    let server = Server::start(vec![error(404, "gone\nbackstop: succeeded\u{1b}[2J")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 404: gone backstop: succeeded [2J"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(!err.contains("\nbackstop: succeeded"), "{err:?}");
}

#[test]
fn a_refused_key_fails_the_run_past_a_default_link() {
    let server = Server::start(vec![error(401, &format!("invalid x-api-key {KEY}"))]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", DEFAULT));
    let out = sb.run(&["call", "-p", &p, "x"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "the default answer does not cover it");
    let err = stderr(&out);
    assert!(err.contains("HTTP 401: invalid x-api-key"), "{err}");
    assert!(!err.contains(KEY), "the key is redacted: {err}");
    assert_eq!(server.seen().len(), 1, "a refused key is not retried");
    assert_eq!(sb.last_record()["outcome"]["outcome"], "failed");

    // --json: still one object, saying so.
    let server = Server::start(vec![error(403, "forbidden")]);
    let p = sb.policy(&policy(&server.url(), "openai", DEFAULT));
    let out = sb.run(&["call", "-p", &p, "--json", "x"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let doc = one_object(&out);
    assert_eq!(doc["exit_code"], 125);
    assert!(doc["text"].is_null());
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("configuration error"),
        "{doc}"
    );
}

#[test]
fn a_refused_key_can_still_fall_back_to_another_model() {
    let server = Server::start(vec![error(401, "invalid x-api-key"), ok("from large")]);
    let sb = Sandbox::new();
    let extra = "fallback: { chain: [ { call: { model: large } } ] }\n";
    let p = sb.policy(&policy(&server.url(), "openai", extra));
    let out = sb.run(&["call", "-p", &p, "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from large\n");
    assert!(
        stderr(&out).contains("HTTP 401: invalid x-api-key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn m_skips_a_chain_link_to_the_model_already_tried() {
    let server = Server::start(vec![
        error(500, "down"),
        error(500, "down"),
        error(500, "down"),
        ok("large answered"),
    ]);
    let sb = Sandbox::new();
    let extra = "fallback: { chain: [ { call: { model: small } }, { call: { model: large } } ] }\n";
    let p = sb.policy(&policy(&server.url(), "openai", extra));
    let out = sb.run(&["call", "-p", &p, "-m", "small", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "large answered\n");
    let models: Vec<Value> = server
        .seen()
        .iter()
        .map(|s| s.body["model"].clone())
        .collect();
    assert_eq!(
        models,
        vec![
            json!("small-1"),
            json!("small-1"),
            json!("small-1"),
            json!("large-1")
        ],
        "small is not asked again as fallback 1"
    );
    let err = stderr(&out);
    assert!(err.contains("skipping fallback 1/2"), "{err}");
}

#[test]
fn usage_lines_do_not_show_store_as_required_with_backstop_home() {
    let sb = Sandbox::new();
    // `policy check` without its FILE: clap prints the usage line.
    let out = sb.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.contains("Usage: backstop policy check <FILE>"), "{err}");
    assert!(!err.contains("--store"), "{err}");
}

#[test]
fn stream_on_a_terminal_prints_as_it_comes_in() {
    let server = cut_then_whole();
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    // python3's `pty` plays the terminal: stdout is a tty, so `--stream` is live.
    let script = r#"
import os, pty, sys, signal
signal.alarm(40)
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
data = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
os.waitpid(pid, 0)
sys.stdout.write(data.decode("utf-8", "replace"))
"#;
    let dir = std::path::Path::new(&p).parent().unwrap().to_path_buf();
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "python3",
            "-c",
            script,
            env!("CARGO_BIN_EXE_backstop"),
        ])
        .args(["call", "-p", &p, "--stream=auto", "x"])
        .current_dir(&dir)
        .env("BACKSTOP_HOME", dir.join("store"))
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env("TEST_API_KEY", KEY)
        .output()
        .unwrap();
    let seen = stdout(&out);
    assert!(seen.contains("partial-one"), "live on a terminal: {seen:?}");
    assert!(seen.contains("whole"), "{seen:?}");
}
