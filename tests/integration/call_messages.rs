//! `backstop call --messages`, provider `headers`, `stop`, and the command line's
//! `--temperature`, `--max-tokens`, `--stop`: the exact wire shape against the
//! project's scripted server (`call.rs`), and whole conversations against a
//! third-party mock from PyPI (`fakellm`, run from the test venv), both providers,
//! streamed and not.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::call::{
    KEY, Reply, Sandbox, Server, anthropic_answer, ok, openai_answer, policy, status, stderr,
    stdout,
};

/// A conversation with everything both formats must carry: a system prompt, a user
/// turn, the assistant's reply, and the user turn to answer.
const CONVERSATION: &str = r#"[
  {"role": "system", "content": "Answer in one word."},
  {"role": "user", "content": "Capital of France?"},
  {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
  {"role": "user", "content": "And of Italy?"}
]"#;

const ORG: &str = "org-5e1d0c9b8a7f6e5d";

fn write(sb: &Sandbox, name: &str, text: &str) -> String {
    let path = sb.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().into()
}

fn json_doc(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

// ---------------------------------------------------------------- the conversation on the wire

#[test]
fn a_conversation_reaches_openai_turn_by_turn() {
    let server = Server::start(vec![ok("Rome.")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let m = write(&sb, "messages.json", CONVERSATION);
    let out = sb.run(&["call", "-p", &p, "--messages", &m, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_doc(&out)["text"], "Rome.");
    assert_eq!(
        server.seen()[0].body["messages"],
        json!([
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ])
    );
}

#[test]
fn anthropic_gets_the_system_apart_and_turns_that_alternate() {
    let server = Server::start(vec![Reply::Json(200, vec![], anthropic_answer("Rome."))]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "anthropic", ""));
    // Two user turns in a row: Anthropic needs them as one message of two blocks.
    let m = write(
        &sb,
        "messages.json",
        r#"[{"role":"system","content":"Be terse."},{"role":"system","content":"Use English."},
            {"role":"user","content":"Capital of France?"},{"role":"assistant","content":"Paris."},
            {"role":"user","content":"Here is a hint: it is in Lazio."},{"role":"user","content":"Capital of Italy?"}]"#,
    );
    let out = sb.run(&["call", "-p", &p, "--messages", &m]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Rome.\n");
    let body = &server.seen()[0].body;
    assert_eq!(body["system"], "Be terse.\n\nUse English.");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [
                {"type": "text", "text": "Here is a hint: it is in Lazio."},
                {"type": "text", "text": "Capital of Italy?"},
            ]},
        ])
    );
}

#[test]
fn messages_are_read_from_stdin_with_a_dash() {
    let server = Server::start(vec![ok("Rome.")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let mut child = sb
        .cmd(&["call", "-p", &p, "--messages", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CONVERSATION.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server.seen()[0].body["messages"].as_array().unwrap().len(),
        4
    );
}

#[test]
fn a_bad_conversation_is_refused_naming_the_file_and_the_turn() {
    let server = Server::start(vec![]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let cases = [
        (
            r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"tool","content":"c"}]"#,
            "messages.json: turn 3: role must be system, user or assistant",
        ),
        (
            r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b","tool_calls":[{"id":"x"}]},{"role":"user","content":"c"}]"#,
            "messages.json: turn 2: unknown key `tool_calls`",
        ),
        (
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]"#,
            "messages.json: turn 1: part 1: a part of type `image_url` is not supported",
        ),
        (
            r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#,
            "messages.json: turn 2: the last turn must be a user turn",
        ),
        ("[]", "messages.json: the conversation has no turns"),
    ];
    for (text, want) in cases {
        let m = write(&sb, "messages.json", text);
        let out = sb.run(&["call", "-p", &p, "--messages", &m]);
        assert_eq!(out.status.code(), Some(125), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{text}: {}", stderr(&out));
    }
    let m = write(&sb, "messages.json", CONVERSATION);
    let out = sb.run(&["call", "-p", &p, "--messages", "no-such.json"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no-such.json"), "{}", stderr(&out));
    // --messages is the whole prompt: a prompt or --system beside it is refused.
    for extra in [&["a prompt"][..], &["--system", "s"][..]] {
        let mut args = vec!["call", "-p", &p, "--messages", &m];
        args.extend(extra);
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(125), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
    assert!(server.seen().is_empty(), "a request was sent");
}

#[test]
fn a_fallback_link_inherits_the_conversation_unless_it_asks_its_own_question() {
    let chain = "fallback:\n  chain:\n    - call: { model: large }\n    - call: { model: large, prompt: \"say sorry\" }\n";
    let p = policy("URL", "openai", chain).replace("max_attempts: 3", "max_attempts: 1");
    let server = Server::start(vec![status(500), status(500), ok("sorry")]);
    let sb = Sandbox::new();
    let p = sb.policy(&p.replace("URL", &server.url()));
    let m = write(&sb, "messages.json", CONVERSATION);
    let out = sb.run(&["call", "-p", &p, "--messages", &m]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].body["model"], "large-1");
    assert_eq!(seen[1].body["messages"], seen[0].body["messages"]);
    assert_eq!(
        seen[2].body["messages"],
        json!([{"role": "user", "content": "say sorry"}])
    );
}

#[test]
fn the_budget_counts_every_turn_of_the_conversation() {
    // 50 output tokens + a short message fit in 100; 400 bytes of earlier turns
    // (some 100 tokens more) do not, so no request is made.
    let sb = Sandbox::new();
    let server = Server::start(vec![ok("fits")]);
    let p = sb.policy(&policy(
        &server.url(),
        "openai",
        "budget: { max_tokens: 100 }\n",
    ));
    let long = "x".repeat(400);
    let m = write(
        &sb,
        "messages.json",
        &json!([
            {"role": "user", "content": long},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "short"},
        ])
        .to_string(),
    );
    let out = sb.run(&["call", "-p", &p, "--messages", &m]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("budget.max_tokens"),
        "{}",
        stderr(&out)
    );
    assert!(
        server.seen().is_empty(),
        "a request over the budget was sent"
    );
    let short = write(&sb, "short.json", r#"[{"role":"user","content":"short"}]"#);
    let out = sb.run(&["call", "-p", &p, "--messages", &short]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ---------------------------------------------------------------- headers

fn with_headers(url: &str, kind: &str) -> String {
    policy(url, kind, "").replace(
        "api_key_env: TEST_API_KEY }",
        "api_key_env: TEST_API_KEY,\n      headers: { x-team: blue, OpenAI-Organization: { env: TEST_ORG_ID } } }",
    )
}

#[test]
fn provider_headers_are_sent_and_a_value_from_the_environment_is_never_shown() {
    let echo = Reply::Json(
        403,
        vec![],
        json!({"error":{"type":"permission_error","message":format!("organization {ORG} may not use this model")}}),
    );
    let server = Server::start(vec![echo]);
    let sb = Sandbox::new();
    let p = sb.policy(&with_headers(&server.url(), "anthropic"));
    let out = sb
        .cmd(&["call", "-p", &p, "--json", "hi"])
        .env("TEST_ORG_ID", ORG)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let req = &server.seen()[0];
    assert_eq!(req.header("x-team"), Some("blue"));
    assert_eq!(req.header("openai-organization"), Some(ORG));
    assert_eq!(req.header("x-api-key"), Some(KEY));
    let mut everything = out.stdout.clone();
    everything.extend(&out.stderr);
    for f in sb.store_files() {
        everything.extend(std::fs::read(f).unwrap());
    }
    let id = json_doc(&out)["run_id"].as_str().unwrap().to_string();
    everything.extend(sb.run(&["show", &id]).stdout);
    everything.extend(sb.run(&["show", &id, "--json"]).stdout);
    let hay = String::from_utf8_lossy(&everything);
    assert!(!hay.contains(ORG), "the header's value leaked: {hay}");
    assert!(
        hay.contains("organization [redacted] may not"),
        "the server's echo was redacted: {hay}"
    );
    // `policy check` shows where the value comes from, not the value.
    let check = sb
        .cmd(&["policy", "check", &p])
        .env("TEST_ORG_ID", ORG)
        .output()
        .unwrap();
    assert!(stdout(&check).contains("TEST_ORG_ID"), "{}", stdout(&check));
    assert!(!stdout(&check).contains(ORG));
}

#[test]
fn a_header_variable_that_is_not_set_stops_the_run_before_any_request() {
    let server = Server::start(vec![ok("never")]);
    let sb = Sandbox::new();
    let p = sb.policy(&with_headers(&server.url(), "openai"));
    let out = sb.run(&["call", "-p", &p, "hi"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TEST_ORG_ID is not set")
            && stderr(&out).contains("providers.p.headers"),
        "{}",
        stderr(&out)
    );
    // A value that would forge a header line is refused, and not repeated.
    let out = sb
        .cmd(&["call", "-p", &p, "hi"])
        .env("TEST_ORG_ID", "org-1\r\nx-evil: 1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("line break"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("x-evil"), "{}", stderr(&out));
    assert!(server.seen().is_empty(), "a request was sent");
}

#[test]
fn headers_that_carry_the_key_or_that_backstop_sets_are_policy_errors() {
    let sb = Sandbox::new();
    for (name, want) in [
        ("Authorization", "carries the API key"),
        ("x-api-key", "carries the API key"),
        ("Content-Type", "backstop sets this header itself"),
        ("anthropic-version", "anthropic_version"),
    ] {
        let p = policy("http://127.0.0.1:9", "openai", "").replace(
            "api_key_env: TEST_API_KEY }",
            &format!("api_key_env: TEST_API_KEY, headers: {{ {name}: x }} }}"),
        );
        let out = sb.run(&["policy", "check", &sb.policy(&p)]);
        assert_eq!(out.status.code(), Some(125), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("providers.p.headers.{name}")) && err.contains(want),
            "{name}: {err}"
        );
        assert!(
            err.contains("models.yaml:"),
            "{name}: the file is named: {err}"
        );
    }
}

// ---------------------------------------------------------------- stop, temperature, max_tokens

#[test]
fn stop_and_temperature_from_the_policy_and_overrides_from_the_command_line() {
    let replies = vec![
        ok("a"),
        ok("b"),
        Reply::Json(200, vec![], anthropic_answer("c")),
    ];
    let server = Server::start(replies);
    let sb = Sandbox::new();
    let with = |kind| {
        policy(&server.url(), kind, "").replace(
            "small: { provider: p,",
            "small: { stop: [\"###\", \"END\"], temperature: 0.2, provider: p,",
        )
    };
    let p = sb.policy(&with("openai"));
    let out = sb.run(&["call", "-p", &p, "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = &server.seen()[0].body;
    assert_eq!(body["stop"], json!(["###", "END"]));
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["max_tokens"], 50);

    let overrides = [
        "--temperature",
        "0.9",
        "--max-tokens",
        "7",
        "--stop",
        "STOP",
        "--stop",
        "\n\n",
    ];
    let mut args = vec!["call", "-p", &p, "hi"];
    args.extend(overrides);
    let out = sb.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = &server.seen()[1].body;
    assert_eq!(body["stop"], json!(["STOP", "\n\n"]));
    assert_eq!(body["temperature"], json!(0.9));
    assert_eq!(body["max_tokens"], 7);

    let p = sb.policy(&with("anthropic"));
    let mut args = vec!["call", "-p", &p, "hi"];
    args.extend(overrides);
    let out = sb.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = &server.seen()[2].body;
    assert_eq!(body["stop_sequences"], json!(["STOP", "\n\n"]));
    assert!(body.get("stop").is_none(), "{body}");
    assert_eq!(body["temperature"], json!(0.9));
    assert_eq!(body["max_tokens"], 7);
}

#[test]
fn bad_overrides_are_refused_before_any_request() {
    let server = Server::start(vec![]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let five = [
        "--stop", "a", "--stop", "b", "--stop", "c", "--stop", "d", "--stop", "e",
    ];
    let cases: [(&[&str], &str); 5] = [
        (&["--temperature", "2.5"], "from 0 to 2"),
        (&["--temperature", "nan"], "from 0 to 2"),
        (&["--max-tokens", "0"], "--max-tokens"),
        (&["--stop", ""], "a stop sequence is empty"),
        (&five, "at most 4"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["call", "-p", &p, "hi"];
        args.extend(extra);
        let out = sb.run(&args);
        assert_eq!(out.status.code(), Some(125), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{extra:?}: {}", stderr(&out));
    }
    let p5 = policy(&server.url(), "openai", "").replace(
        "small: { provider: p,",
        "small: { stop: [a, b, c, d, e], provider: p,",
    );
    let out = sb.run(&["policy", "check", &sb.policy(&p5)]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("models.small.stop"),
        "{}",
        stderr(&out)
    );
    assert!(server.seen().is_empty());
}

#[test]
fn the_json_document_has_every_key_its_schema_requires() {
    let server = Server::start(vec![Reply::Json(200, vec![], openai_answer("Rome."))]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--json", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json_doc(&out);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/call-json.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut want: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut got: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "{doc}");
    assert_eq!(doc["outcome"], "succeeded");
    assert_eq!(doc["chaos"], Value::Null);
}

// ---------------------------------------------------------------- a third-party mock: fakellm

/// The python3 of the test venv, with `fakellm` (PyPI) installed.
fn fakellm_python() -> PathBuf {
    if let Some(p) = std::env::var_os("BACKSTOP_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            has_fakellm(&p),
            "BACKSTOP_TEST_PYTHON={} cannot import fakellm: pip install fakellm into it",
            p.display()
        );
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/test-venv");
    // The same lock as export_otlp.rs's: one process sets the venv up at a time.
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let python = venv.join("bin/python3");
    if !has_fakellm(&python) {
        if !python.exists() {
            run_step("python3", &["-m", "venv", venv.to_str().unwrap()]);
        }
        let pip = venv.join("bin/pip");
        run_step(pip.to_str().unwrap(), &["install", "-q", "fakellm"]);
    }
    assert!(
        has_fakellm(&python),
        "fakellm is not importable after pip install"
    );
    python
}

fn has_fakellm(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import fakellm.server"])
        .env("FAKELLM_CONFIG", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_step(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed (the fakellm tests need python3-venv and PyPI): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fakellm server on a loopback port of its own choosing (uvicorn says which).
struct Fakellm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The one rule: it answers only a request whose previous message is the
/// assistant's `Paris.`, whose text holds the system prompt, and that carries both
/// provider headers. Anything else gets fakellm's fallback echo.
const RULES: &str = r#"version: 1
rules:
  - name: conversation
    when:
      previous_message_role: assistant
      previous_message_contains: "Paris."
      messages_contain: "answer in one word"
      header.x-team: blue
      header.openai-organization: org-5e1d0c9b8a7f6e5d
    respond:
      content: "Rome, as asked."
"#;

impl Fakellm {
    fn start() -> Fakellm {
        let python = fakellm_python();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fakellm.yaml");
        std::fs::write(&config, RULES).unwrap();
        let mut child = Command::new(python)
            .args([
                "-m",
                "fakellm.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ])
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fakellm");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            // Every line is read to the end, so the server never blocks on a full pipe.
            let mut said = String::new();
            for line in err.lines().map_while(Result::ok) {
                let port = line
                    .split("Uvicorn running on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|p| p.parse::<u16>().ok());
                said.push_str(&line);
                said.push('\n');
                if let Some(port) = port {
                    let _ = tx.send(Ok(port));
                }
            }
            let _ = tx.send(Err(said));
        });
        let started = Instant::now();
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(port)) => port,
            other => {
                let _ = child.kill();
                panic!(
                    "fakellm did not start in {:?}: {other:?}",
                    started.elapsed()
                )
            }
        };
        Fakellm {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Fakellm {
    /// What fakellm logged of the requests it got, newest first: `api`, `model`,
    /// `stream`, `matched_rule` (its `/_fakellm/stats`).
    fn recent(&self) -> Vec<Value> {
        use std::io::Read;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(
            b"GET /_fakellm/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let stats: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
        stats["recent"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Fakellm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fakellm's own token count of `texts` (its `_util`, as it counts a request's
/// messages and an answer).
fn fakellm_tokens(texts: &[&str]) -> u64 {
    let out = Command::new(fakellm_python())
        .args([
            "-c",
            "import json, sys\nfrom fakellm._util import approx_tokens\nprint(sum(approx_tokens(t) for t in json.load(sys.stdin)))",
        ])
        .env("FAKELLM_CONFIG", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(json!(texts).to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn fakellm_answers_a_conversation_from_both_providers_streamed_and_not() {
    let mock = Fakellm::start();
    let sb = Sandbox::new();
    let m = write(&sb, "messages.json", CONVERSATION);
    let answer = "Rome, as asked.";
    let prompt = [
        "Answer in one word.",
        "Capital of France?",
        "Paris.",
        "And of Italy?",
    ];
    let (input, output) = (fakellm_tokens(&prompt), fakellm_tokens(&[answer]));
    for kind in ["openai", "anthropic"] {
        // fakellm serves OpenAI under /v1/chat/completions; backstop adds /v1/messages.
        let base = match kind {
            "openai" => format!("http://127.0.0.1:{}/v1", mock.port),
            _ => format!("http://127.0.0.1:{}", mock.port),
        };
        let p = sb.policy(&with_headers(&base, kind));
        for stream in [false, true] {
            let mut args = vec!["call", "-p", &p, "--messages", &m, "--json"];
            if stream {
                args.push("--stream=never");
            }
            let out = sb.cmd(&args).env("TEST_ORG_ID", ORG).output().unwrap();
            let what = format!("{kind}, stream {stream}");
            assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
            let doc = json_doc(&out);
            assert_eq!(doc["text"], answer, "{what}: the rule did not match: {doc}");
            assert_eq!(doc["outcome"], "succeeded", "{what}");
            assert_eq!(doc["provider_model"], "small-1", "{what}");
            assert_eq!(doc["attempts"], 1, "{what}");
            // What fakellm reports: whole answers count every message and the answer;
            // its Anthropic stream says 1 input token and len/4 output tokens; its
            // OpenAI stream sends no usage chunk at all.
            let want = match (kind, stream) {
                (_, false) => (input, output),
                ("anthropic", true) => (1, (answer.len() / 4) as u64),
                _ => (0, 0),
            };
            assert_eq!(
                (doc["input_tokens"].as_u64(), doc["output_tokens"].as_u64()),
                (Some(want.0), Some(want.1)),
                "{what}: {doc}"
            );
        }
    }
    // fakellm's own log: each request on the API it was meant for, streamed when
    // asked, and answered by the rule.
    let seen: Vec<(String, bool, String)> = mock
        .recent()
        .iter()
        .rev()
        .map(|r| {
            (
                r["api"].as_str().unwrap_or_default().to_string(),
                r["stream"].as_bool().unwrap_or_default(),
                r["matched_rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, bool, String)> = [
        ("openai", false),
        ("openai", true),
        ("anthropic", false),
        ("anthropic", true),
    ]
    .iter()
    .map(|(api, stream)| (api.to_string(), *stream, "conversation".to_string()))
    .collect();
    assert_eq!(seen, want);
}

#[test]
fn fakellm_is_told_apart_from_a_conversation_it_did_not_get() {
    // The same mock, without the assistant's turn: its rule does not match, and the
    // answer is its fallback echo. The rule above is a real check, not a constant.
    let mock = Fakellm::start();
    let sb = Sandbox::new();
    let m = write(
        &sb,
        "messages.json",
        r#"[{"role":"system","content":"Answer in one word."},{"role":"user","content":"And of Italy?"}]"#,
    );
    let p = sb.policy(&with_headers(
        &format!("http://127.0.0.1:{}", mock.port),
        "anthropic",
    ));
    let out = sb
        .cmd(&["call", "-p", &p, "--messages", &m, "--json"])
        .env("TEST_ORG_ID", ORG)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = json_doc(&out)["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("[mock response for small-1"), "{text}");
}

#[test]
fn overrides_are_checked_against_the_models_the_call_may_use() {
    let server = Server::start(vec![Reply::Json(200, vec![], anthropic_answer("ok"))]);
    let sb = Sandbox::new();
    // An OpenAI-compatible model the call never uses does not limit `--stop`.
    let p = sb.policy(
        &policy(&server.url(), "anthropic", "")
            .replace(
                "providers:\n",
                "providers:\n  o: { kind: openai, base_url: \"http://127.0.0.1:9\" }\n",
            )
            .replace(
                "models:\n",
                "models:\n  unused: { provider: o, model: gpt-x }\n",
            ),
    );
    let stops = [
        "--stop", "a", "--stop", "b", "--stop", "c", "--stop", "d", "--stop", "e",
    ];
    let mut args = vec!["call", "-p", &p, "hi"];
    args.extend(stops);
    let out = sb.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        server.seen()[0].body["stop_sequences"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // Anthropic's models take temperatures up to 1: more is refused before a request,
    // on the command line and in the policy.
    let out = sb.run(&["call", "-p", &p, "--temperature", "1.5", "hi"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "--temperature: must be a number from 0 to 1 for Anthropic models (model `small`)"
        ),
        "{}",
        stderr(&out)
    );
    let hot = policy(&server.url(), "anthropic", "").replace(
        "small: { provider: p,",
        "small: { temperature: 1.5, provider: p,",
    );
    let out = sb.run(&["policy", "check", &sb.policy(&hot)]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("models.small.temperature"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_run_whose_fallback_needs_a_header_variable_checks_it_before_the_command() {
    let server = Server::start(vec![ok("never")]);
    let sb = Sandbox::new();
    let chain = "rollback: { on: never }\nfallback:\n  chain:\n    - call: { model: large, prompt: \"help\" }\n";
    let p = with_headers(&server.url(), "openai")
        .replace("model: small\n", &format!("model: small\n{chain}"));
    let marker = sb.path("ran");
    let touch = format!("touch {}", marker.display());
    let out = sb.run(&["run", "-p", &sb.policy(&p), "--", "sh", "-c", &touch]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TEST_ORG_ID is not set"),
        "{}",
        stderr(&out)
    );
    assert!(!marker.exists(), "the command ran");
    assert!(server.seen().is_empty());
}
