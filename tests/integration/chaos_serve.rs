//! `backstop chaos serve`: the real binary on port 0, driven by the real `backstop
//! call` and by clients we did not write (python3's `http.client` and `urllib`), with
//! a real upstream on 127.0.0.1 for `--upstream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{BIN, attempts, wait_bounded};

/// A running `backstop chaos serve`; killed if a test ends without stopping it.
struct Chaos {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Chaos {
    #[track_caller]
    fn start(faults: &str, args: &[&str]) -> Chaos {
        let dir = tempfile::Builder::new()
            .prefix("backstop-chaos-")
            .tempdir()
            .unwrap();
        let file = dir.path().join("faults.yaml");
        std::fs::write(&file, faults).unwrap();
        let log = dir.path().join("stderr");
        let mut child = Command::new(BIN)
            .args(["chaos", "serve"])
            .arg(&file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let line = first_line(child.stdout.take().unwrap());
        let Some(line) = line else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no address on stdout: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Chaos {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// The request lines of the log: `#N METHOD PATH MODEL → WHAT`.
    fn requests(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("chaos: #"))
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    }

    /// SIGTERM (or `sig`), then its exit code and how long it took to exit.
    fn stop(mut self, sig: i32) -> (i32, Duration) {
        let started = Instant::now();
        // SAFETY: kill(2) on the child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let code = wait_bounded(&mut self.child, Duration::from_secs(10));
        (code, started.elapsed())
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line of `out`, within 10 seconds.
fn first_line(out: impl Read + Send + 'static) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).ok()?;
    (!line.is_empty()).then(|| line.trim_end().to_string())
}

/// A client we did not write: python3's `http.client`, one connection per request,
/// each read to its end, its cut or its timeout. Prints a JSON result per request.
const PY_CLIENT: &str = r#"
import http.client, json, socket, sys
url, requests = sys.argv[1], json.loads(sys.argv[2])
host, port = url.split("//")[1].rsplit(":", 1)
results = []
for r in requests:
    out = {"status": None, "headers": {}, "body": "", "error": None}
    conn = http.client.HTTPConnection(host, int(port), timeout=r.get("timeout", 10))
    try:
        headers = {"content-type": "application/json", "authorization": "Bearer sk-py-secret-1",
                   "x-api-key": "sk-py-secret-1", "anthropic-version": "2023-06-01"}
        if r.get("declare") is not None:
            conn.putrequest("POST", r["path"])
            for k, v in headers.items(): conn.putheader(k, v)
            conn.putheader("content-length", str(r["declare"]))
            conn.endheaders()
        else:
            conn.request(r.get("method", "POST"), r["path"], body=json.dumps(r["body"]).encode() if "body" in r else None, headers=headers)
        resp = conn.getresponse()
        out["status"] = resp.status
        out["headers"] = {k.lower(): v for k, v in resp.getheaders()}
        data = b""
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk: break
                data += chunk
        except http.client.IncompleteRead as e:
            data += e.partial
            out["error"] = "IncompleteRead"
        except (socket.timeout, TimeoutError):
            out["error"] = "timeout"
        except ConnectionError as e:
            out["error"] = type(e).__name__
        out["body"] = data.decode("utf-8", "replace")
    except (socket.timeout, TimeoutError):
        out["error"] = "timeout"
    except ConnectionError as e:
        out["error"] = type(e).__name__
    conn.close()
    results.append(out)
print(json.dumps(results))
"#;

/// `requests` through python's `http.client`, their results in order.
#[track_caller]
fn python(url: &str, requests: &[Value]) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            PY_CLIENT,
            url,
            &Value::from(requests.to_vec()).to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("python prints JSON") {
        Value::Array(v) => v,
        other => panic!("{other}"),
    }
}

#[track_caller]
fn one(url: &str, request: Value) -> Value {
    python(url, &[request]).remove(0)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({ "path": "/v1/chat/completions", "body": {
        "model": model, "stream": stream, "messages": [{ "role": "user", "content": "hi" }],
        "stream_options": { "include_usage": true } } })
}

fn messages(model: &str, stream: bool) -> Value {
    json!({ "path": "/v1/messages", "body": {
        "model": model, "stream": stream, "max_tokens": 10,
        "messages": [{ "role": "user", "content": "hi" }] } })
}

/// The `data:` payloads of an SSE body, and the `event:` names.
fn sse(body: &str) -> (Vec<String>, Vec<String>) {
    let data = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(String::from)
        .collect();
    let events = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(String::from)
        .collect();
    (data, events)
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

const PLAIN: &str = "version: 1\ncalls:\n  default: { tokens: { input: 11, output: 4 } }\n";

#[test]
fn openai_answers_whole_and_streamed_in_its_wire_shape() {
    let chaos = Chaos::start(PLAIN, &[]);
    let r = python(&chaos.url, &[chat("gpt-x", false), chat("gpt-x", true)]);
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["headers"]["content-type"], "application/json");
    let whole = json_of(r[0]["body"].as_str().unwrap());
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "gpt-x");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_eq!(whole["choices"][0]["message"]["content"], "chaos: ok");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        whole["usage"],
        json!({ "prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15 })
    );

    assert_eq!(r[1]["status"], 200);
    assert_eq!(r[1]["error"], Value::Null, "the stream ends properly");
    assert_eq!(r[1]["headers"]["content-type"], "text/event-stream");
    let (data, events) = sse(r[1]["body"].as_str().unwrap());
    assert!(events.is_empty(), "OpenAI names no events");
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json_of(d)).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "chaos: ok");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
}

#[test]
fn anthropic_answers_whole_and_streamed_with_its_event_types() {
    let chaos = Chaos::start(PLAIN, &[]);
    let r = python(
        &chaos.url,
        &[messages("claude-x", false), messages("claude-x", true)],
    );
    let whole = json_of(r[0]["body"].as_str().unwrap());
    assert_eq!(whole["type"], "message");
    assert_eq!(
        whole["content"],
        json!([{ "type": "text", "text": "chaos: ok" }])
    );
    assert_eq!(whole["stop_reason"], "end_turn");
    assert_eq!(
        whole["usage"],
        json!({ "input_tokens": 11, "output_tokens": 4 })
    );

    assert_eq!(r[1]["error"], Value::Null);
    let (data, events) = sse(r[1]["body"].as_str().unwrap());
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let parsed: Vec<Value> = data.iter().map(|d| json_of(d)).collect();
    for (event, payload) in events.iter().zip(&parsed) {
        assert_eq!(
            &payload["type"],
            event.as_str(),
            "each data names its event"
        );
    }
    assert_eq!(parsed[6]["delta"]["stop_reason"], "end_turn");
    assert_eq!(parsed[6]["usage"]["output_tokens"], 4);
}

#[test]
fn truncated_streams_lack_their_end_and_are_cut_mid_body() {
    let faults = "version: 1\ncalls:\n  default: { truncated: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    let r = python(
        &chaos.url,
        &[chat("m", true), messages("m", true), chat("m", false)],
    );
    for (i, result) in r.iter().enumerate() {
        assert_eq!(result["status"], 200, "{i}");
        assert_eq!(
            result["error"], "IncompleteRead",
            "{i}: the connection is cut mid-body"
        );
    }
    let openai = r[0]["body"].as_str().unwrap();
    assert!(openai.starts_with("data: {"), "{openai}");
    assert!(!openai.contains("[DONE]") && !openai.contains("\"finish_reason\":\"stop\""));
    let anthropic = r[1]["body"].as_str().unwrap();
    assert!(
        anthropic.starts_with("event: message_start\n"),
        "{anthropic}"
    );
    assert!(!anthropic.contains("message_stop") && !anthropic.contains("message_delta"));
    let whole = r[2]["body"].as_str().unwrap();
    assert!(
        !whole.is_empty() && serde_json::from_str::<Value>(whole).is_err(),
        "{whole}"
    );
    assert_eq!(
        chaos
            .requests()
            .iter()
            .filter(|l| l.ends_with("→ truncated"))
            .count(),
        3
    );
}

#[test]
fn errors_come_in_each_providers_shape() {
    let faults = "version: 1\ncalls:\n  busy: { status: { 529: 1.0 } }\n  limited: { status: { 429: 1.0 }, retry_after: { p50: 2500ms, p99: 2500ms } }\n  long: { context_length: 1.0 }\n  refuse: { content_policy: 1.0 }\n  down: { network: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    let r = python(
        &chaos.url,
        &[
            messages("busy", false),
            chat("limited", false),
            messages("limited", true),
            chat("long", false),
            messages("long", false),
            chat("refuse", false),
            messages("refuse", false),
            chat("down", false),
            messages("down", true),
        ],
    );
    let body = |i: usize| json_of(r[i]["body"].as_str().unwrap());
    assert_eq!(r[0]["status"], 529);
    assert_eq!(body(0)["type"], "error");
    assert_eq!(body(0)["error"]["type"], "overloaded_error");
    assert_eq!(r[1]["status"], 429);
    assert_eq!(body(1)["error"]["code"], "rate_limit_exceeded");
    assert_eq!(r[1]["headers"]["retry-after"], "3");
    assert_eq!(r[1]["headers"]["retry-after-ms"], "2500");
    assert_eq!(
        r[2]["status"], 429,
        "a stream asked for still gets its error as JSON"
    );
    assert_eq!(body(2)["error"]["type"], "rate_limit_error");
    assert_eq!(r[3]["status"], 400);
    assert_eq!(body(3)["error"]["code"], "context_length_exceeded");
    assert!(
        body(3)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );
    assert_eq!(r[4]["status"], 400);
    assert_eq!(body(4)["error"]["type"], "invalid_request_error");
    assert!(
        body(4)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("prompt is too long")
    );
    assert_eq!(body(5)["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(body(6)["stop_reason"], "refusal");
    for i in [7, 8] {
        assert_eq!(r[i]["status"], Value::Null, "{i}");
        assert_eq!(
            r[i]["error"], "ConnectionResetError",
            "{i}: reset, not answered"
        );
    }
}

#[test]
fn a_stall_holds_the_head_or_goes_silent_mid_answer() {
    let faults = "version: 1\ncalls:\n  head: { first_token_stall: 1.0 }\n  mid: { stall: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    let mut first = messages("head", true);
    first["timeout"] = json!(1);
    let mut mid = chat("mid", true);
    mid["timeout"] = json!(1);
    let started = Instant::now();
    let r = python(&chaos.url, &[first, mid]);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(r[0]["status"], Value::Null, "no head arrives");
    assert_eq!(r[0]["error"], "timeout");
    assert_eq!(r[1]["status"], 200, "the head and some events arrive");
    assert_eq!(r[1]["error"], "timeout");
    let body = r[1]["body"].as_str().unwrap();
    assert!(
        body.starts_with("data: {") && !body.contains("[DONE]"),
        "{body}"
    );
}

#[test]
fn urllib_reads_the_answer_and_the_rate_limit() {
    let faults = "version: 1\ncalls:\n  limited: { status: { 429: 1.0 }, retry_after: { p50: 1s, p99: 1s } }\n";
    let chaos = Chaos::start(faults, &[]);
    let script = r#"
import json, sys, urllib.request, urllib.error
url = sys.argv[1]
def post(model):
    req = urllib.request.Request(url + "/v1/chat/completions", method="POST",
        data=json.dumps({"model": model, "messages": []}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer sk-u"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, json.load(r)["choices"][0]["message"]["content"], None]
    except urllib.error.HTTPError as e:
        return [e.code, json.load(e)["error"]["type"], e.headers["Retry-After"]]
print(json.dumps([post("fine"), post("limited")]))
"#;
    let got = python_json(script, &chaos.url);
    assert_eq!(
        got,
        json!([[200, "chaos: ok", null], [429, "requests", "1"]])
    );
}

#[test]
fn the_same_seed_deals_the_same_faults_and_another_seed_others() {
    let faults =
        "version: 1\ncalls:\n  default: { status: { 500: 0.3, 503: 0.2 }, network: 0.1 }\n";
    let requests: Vec<Value> = (0..30).map(|i| chat(&format!("m{i}"), false)).collect();
    let outcomes = |seed: &str| {
        let chaos = Chaos::start(faults, &["--seed", seed]);
        python(&chaos.url, &requests)
            .iter()
            .map(|r| format!("{} {}", r["status"], r["error"]))
            .collect::<Vec<_>>()
    };
    let a = outcomes("42");
    assert_eq!(a, outcomes("42"));
    assert_ne!(a, outcomes("43"));
    let failed = a.iter().filter(|o| !o.starts_with("200")).count();
    assert!(
        (5..=27).contains(&failed),
        "{failed} of 30 failed at p = 0.6: {a:?}"
    );
}

#[test]
fn sticky_fails_a_retry_of_the_same_request_again() {
    let faults =
        "version: 1\ncalls:\n  default: { status: { 503: 0.5 } }\ncorrelation: { sticky: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    // The same body until it fails once, then every retry of it fails the same way.
    let r = python(&chaos.url, &vec![chat("same", false); 12]);
    let first = r
        .iter()
        .position(|x| x["status"] == 503)
        .expect("one of 12 fails at p = 0.5");
    assert!(r[first..].iter().all(|x| x["status"] == 503), "{r:?}");
    assert!(chaos.requests().last().unwrap().ends_with("→ 503 [sticky]"));
}

/// A `backstop call` policy whose provider is the chaos server.
fn call_policy(dir: &Path, url: &str, max_attempts: u32) -> PathBuf {
    let policy = format!(
        "version: 1\nretry: {{ max_attempts: {max_attempts}, backoff: {{ initial: 5ms, max: 10ms, jitter: none }} }}\n\
         providers:\n  p: {{ kind: openai, base_url: \"{url}/v1\", api_key_env: TEST_API_KEY }}\n\
         models:\n  small: {{ provider: p, model: small-1, max_tokens: 50 }}\n  large: {{ provider: p, model: large-1, max_tokens: 50 }}\n\
         model: small\nfallback:\n  chain:\n    - call: {{ model: large }}\n"
    );
    let path = dir.join("p.yaml");
    std::fs::write(&path, policy).unwrap();
    path
}

fn backstop_call(dir: &Path, policy: &Path, extra: &[&str]) -> (i32, String, String, Value) {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("BACKSTOP_HOME", dir.join("store"))
            .env("TEST_API_KEY", "sk-chaos-test-key-93f1")
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut args = vec!["call", "-p", policy.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("hello");
    let (code, stdout, stderr) = run(&args);
    let (_, runs, _) = run(&["runs", "--json"]);
    let id = json_of(&runs)[0]["id"].as_str().unwrap().to_string();
    let (_, record, _) = run(&["show", &id, "--json"]);
    (code, stdout, stderr, json_of(&record))
}

#[test]
fn backstop_call_retries_a_rate_limited_model_then_falls_back() {
    let faults = "version: 1\ncalls:\n  small-1: { status: { 429: 1.0 }, retry_after: { p50: 30ms, p99: 30ms } }\n  default: { tokens: { input: 7, output: 2 } }\n";
    let chaos = Chaos::start(faults, &[]);
    let dir = tempfile::tempdir().unwrap();
    let policy = call_policy(dir.path(), &chaos.url, 3);
    let (code, stdout, stderr, record) = backstop_call(dir.path(), &policy, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "chaos: ok");
    let tries = attempts(&record);
    assert_eq!(tries.len(), 4, "{record:#}");
    for a in &tries[..3] {
        assert_eq!(a["link"], 0);
        assert_eq!(a["end"]["status"], 429);
        assert_eq!(a["verdict"]["class"], "status");
    }
    assert_eq!(tries[0]["delay_reason"], "retry-after-ms header: 30ms");
    assert_eq!(tries[3]["link"], 1);
    assert_eq!(tries[3]["end"]["kind"], "answered");
    assert_eq!(tries[3]["call"]["input_tokens"], 7);
    let lines = chaos.requests();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[..3].iter().all(|l| l.contains("small-1 → 429")),
        "{lines:?}"
    );
    assert!(lines[3].ends_with("large-1 → ok"));
    assert!(
        !chaos.stderr().contains("sk-chaos-test-key"),
        "the key is never logged"
    );
}

#[test]
fn backstop_call_records_the_seeded_500s_it_retried() {
    let faults = "version: 1\ncalls:\n  default: { status: { 500: 0.5 } }\n";
    let chaos = Chaos::start(faults, &["--seed", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = call_policy(dir.path(), &chaos.url, 8);
    let (code, _, stderr, record) = backstop_call(dir.path(), &policy, &[]);
    let lines = chaos.requests();
    let tries = attempts(&record);
    assert_eq!(
        tries.len(),
        lines.len(),
        "one attempt per request: {lines:?}"
    );
    for (a, line) in tries.iter().zip(&lines) {
        let served = if line.ends_with("→ 500") {
            json!(500)
        } else {
            Value::Null
        };
        assert_eq!(a["end"]["status"], served, "{line}");
    }
    let retried = tries.iter().filter(|a| a["end"]["status"] == 500).count();
    assert!(
        retried > 0 && code == 0,
        "seed 5 fails some and answers at last: {stderr}"
    );
}

/// A real upstream: answers every request with `answer` (`x-upstream: yes`), a stream
/// for a body that asks for one, and keeps what it was sent.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

const UPSTREAM_JSON: &str = r#"{"id":"up-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from upstream"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
const UPSTREAM_SSE: &str = "data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"n\":3}\n\ndata: {\"finish_reason\":\"stop\"}\n\ndata: [DONE]\n\n";

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || upstream_reply(conn, &log));
            }
        });
        Upstream { url, seen }
    }
}

fn upstream_reply(conn: TcpStream, log: &Mutex<Vec<(String, String)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let streamed = serde_json::from_str::<Value>(&body).is_ok_and(|b| b["stream"] == true);
    let (kind, answer) = if streamed {
        ("text/event-stream", UPSTREAM_SSE)
    } else {
        ("application/json", UPSTREAM_JSON)
    };
    log.lock().unwrap().push((head, body));
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\nx-upstream: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

#[test]
fn upstream_gets_the_key_and_its_answer_is_relayed_or_broken() {
    let upstream = Upstream::start();
    let faults =
        "version: 1\ncalls:\n  cut: { truncated: 1.0 }\n  busy: { status: { 503: 1.0 } }\n";
    let chaos = Chaos::start(faults, &["--upstream", &format!("{}/v1", upstream.url)]);
    let r = python(
        &chaos.url,
        &[chat("fine", false), chat("cut", true), chat("busy", false)],
    );

    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["body"], UPSTREAM_JSON, "relayed byte for byte");
    assert_eq!(r[0]["headers"]["x-upstream"], "yes");
    assert_eq!(r[0]["error"], Value::Null);

    assert_eq!(r[1]["status"], 200);
    assert_eq!(r[1]["error"], "IncompleteRead");
    assert_eq!(
        r[1]["body"], "data: {\"n\":1}\n\ndata: {\"n\":2}\n\n",
        "the first half of its events"
    );

    assert_eq!(r[2]["status"], 503);
    let seen = upstream.seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "an error the fault makes is not sent upstream"
    );
    for (head, body) in &seen {
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_lowercase()
                .contains("authorization: bearer sk-py-secret-1\r\n"),
            "the key goes upstream"
        );
        assert!(!head.to_lowercase().contains("accept-encoding"), "{head}");
        assert!(body.contains("\"model\""));
    }
    assert!(
        !chaos.stderr().contains("sk-py-secret"),
        "the key is never logged"
    );
}

#[test]
fn sigterm_and_sigint_end_it_promptly_with_0_even_with_a_stalled_client() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let chaos = Chaos::start(
            "version: 1\ncalls:\n  default: { first_token_stall: 1.0 }\n",
            &[],
        );
        let url = chaos.url.clone();
        let stalled = std::thread::spawn(move || {
            let mut req = chat("m", true);
            req["timeout"] = json!(20);
            one(&url, req)
        });
        assert!(crate::helpers::eventually(Duration::from_secs(5), || {
            !chaos.requests().is_empty()
        }));
        let (code, took) = chaos.stop(sig);
        assert_eq!(code, 0, "signal {sig}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let client = stalled.join().unwrap();
        assert_eq!(
            client["status"],
            Value::Null,
            "the stalled client was let go: {client}"
        );
    }
}

#[test]
fn quiet_logs_nothing_and_json_prints_the_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.yaml"), PLAIN).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "-q",
            "chaos",
            "serve",
            "f.yaml",
            "--json",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let line = first_line(child.stdout.take().unwrap()).expect("an address");
    let doc = json_of(&line);
    let url = doc["url"].as_str().unwrap();
    assert_eq!(url, format!("http://{}", doc["address"].as_str().unwrap()));
    assert_eq!(one(url, chat("m", false))["status"], 200);
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(wait_bounded(&mut child, Duration::from_secs(10)), 0);
    assert_eq!(std::fs::read_to_string(dir.path().join("err")).unwrap(), "");
}

#[test]
fn bodies_over_16_mib_get_a_413_and_bad_requests_a_400() {
    let chaos = Chaos::start(PLAIN, &[]);
    let big = json!({ "path": "/v1/messages", "declare": 17 << 20 });
    let bad = json!({ "path": "/v1/chat/completions", "body": { "messages": [] } });
    let r = python(&chaos.url, &[big, bad]);
    assert_eq!(r[0]["status"], 413);
    assert_eq!(
        json_of(r[0]["body"].as_str().unwrap())["error"]["type"],
        "request_too_large"
    );
    assert_eq!(r[1]["status"], 400);
    assert_eq!(
        json_of(r[1]["body"].as_str().unwrap())["error"]["type"],
        "invalid_request_error"
    );
}

#[test]
fn a_bad_fault_file_names_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.yaml"),
        "version: 1\ncalls:\n  m:\n    network: 1.5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["chaos", "serve", "f.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        out.stdout.is_empty(),
        "no address for a server that never listened"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("f.yaml:4:5: calls.m.network: 1.5 is not a probability from 0 to 1"),
        "{stderr}"
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.yaml"), PLAIN).unwrap();
    let out = Command::new(BIN)
        .args(["chaos", "serve", "f.yaml", "--listen", &addr])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}: Address already in use")),
        "{stderr}"
    );
    let bad = Command::new(BIN)
        .args(["chaos", "serve", "f.yaml", "--upstream", "ftp://x"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--upstream ftp://x: not an http or https URL")
    );
}

#[test]
fn backstop_call_times_out_a_stall_and_fails_a_cut_stream_then_falls_back() {
    let faults = "version: 1\ncalls:\n  small-1: { stall: 0.5, truncated: 0.5 }\n";
    let chaos = Chaos::start(faults, &["--seed", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = call_policy(dir.path(), &chaos.url, 3);
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("timeout: { first_token: 5s, stall: 300ms }\n");
    std::fs::write(&policy, text).unwrap();
    let (code, stdout, stderr, record) = backstop_call(dir.path(), &policy, &["--stream=never"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "chaos: ok");
    let lines = chaos.requests();
    let tries = attempts(&record);
    assert_eq!(tries.len(), 4, "{lines:?}");
    for (a, line) in tries[..3].iter().zip(&lines) {
        let class = if line.ends_with("→ stall mid-answer") {
            "timeout"
        } else {
            "stream"
        };
        assert!(
            line.ends_with("→ stall mid-answer") || line.ends_with("→ truncated"),
            "{line}"
        );
        assert_eq!(a["verdict"]["class"], class, "{line}: {a:#}");
    }
    assert_eq!(tries[3]["link"], 1);
    let stalls = lines
        .iter()
        .filter(|l| l.ends_with("→ stall mid-answer"))
        .count();
    assert!(
        (1..=2).contains(&stalls),
        "seed 3 deals both faults: {lines:?}"
    );
}

#[test]
fn clients_that_give_up_on_stalls_free_their_connections() {
    let faults = "version: 1\ncalls:\n  head: { first_token_stall: 1.0 }\n  mid: { stall: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    // More stalled clients than the server serves at once (256), each giving up after
    // a second: had their connections stayed held, the last request would wait minutes.
    let script = r#"
import http.client, json, sys, threading
host, port = sys.argv[1].split("//")[1].rsplit(":", 1)
def req(model, timeout, out):
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("POST", "/v1/chat/completions", body=json.dumps({"model": model, "stream": True}))
        r = c.getresponse(); r.read(); out.append(r.status)
    except Exception as e:
        out.append(type(e).__name__)
    finally:
        c.close()
given_up = []
for model in ["head", "mid"]:
    ts = [threading.Thread(target=req, args=(model, 1, given_up)) for _ in range(300)]
    [t.start() for t in ts]; [t.join() for t in ts]
last = []
req("fine", 5, last)
print(json.dumps({"given_up": len([g for g in given_up if g in ("timeout", "TimeoutError")]), "last": last[0]}))
"#;
    let got = python_json(script, &chaos.url);
    assert_eq!(got, json!({ "given_up": 600, "last": 200 }));
}

// ------------------------------------------------------- the official SDKs as clients

const SDK_HOW: &str = "install them with `python3 -m venv target/test-venv-sdk && \
     target/test-venv-sdk/bin/pip install openai anthropic` (apt-get install python3-venv \
     first if venv is missing), or set BACKSTOP_TEST_SDK_PYTHON to a python3 that has them";

fn sdks_importable(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import openai, anthropic"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A python3 with the `openai` and `anthropic` packages: `$BACKSTOP_TEST_SDK_PYTHON`,
/// else `target/test-venv-sdk`, made (once, under a lock) when missing.
fn sdk_python() -> PathBuf {
    if let Some(p) = std::env::var_os("BACKSTOP_TEST_SDK_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            sdks_importable(&p),
            "{} cannot import openai and anthropic: {SDK_HOW}",
            p.display()
        );
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv-sdk");
    let python = venv.join("bin/python3");
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !sdks_importable(&python) {
        let pip = venv.join("bin/pip");
        let steps: [(&str, Vec<&str>); 2] = [
            ("python3", vec!["-m", "venv", venv.to_str().unwrap()]),
            (
                pip.to_str().unwrap(),
                vec!["install", "-q", "openai", "anthropic"],
            ),
        ];
        for (program, args) in steps {
            let out = Command::new(program).args(&args).output();
            let out = out.unwrap_or_else(|e| panic!("cannot run {program}: {e}; {SDK_HOW}"));
            assert!(
                out.status.success(),
                "`{program}` failed: {}\n{SDK_HOW}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(sdks_importable(&python), "{SDK_HOW}");
    python
}

/// Each call through the official SDKs: `["ok", what it returned]` or `["error", the
/// exception's class]`.
const SDK_CLIENT: &str = r#"
import json, sys, openai, anthropic
u = sys.argv[1]
o = openai.OpenAI(base_url=u + "/v1", api_key="sk-sdk-secret", max_retries=2)
a = anthropic.Anthropic(base_url=u, api_key="sk-sdk-secret", max_retries=2)
msgs = [{"role": "user", "content": "hi"}]
def ostream(model):
    parts = []
    for c in o.chat.completions.create(model=model, messages=msgs, stream=True, stream_options={"include_usage": True}):
        parts.append(c.choices[0].delta.content or "" if c.choices else "|usage %d" % c.usage.total_tokens)
    return "".join(parts)
def astream(model):
    with a.messages.stream(model=model, max_tokens=10, messages=msgs) as s:
        text = "".join(s.text_stream)
        m = s.get_final_message()
        return [text, m.stop_reason, m.usage.output_tokens]
calls = {
    "openai whole": lambda: o.chat.completions.create(model="fine", messages=msgs).choices[0].message.content,
    "openai stream": lambda: ostream("fine"),
    "openai 429": lambda: o.chat.completions.create(model="limited", messages=msgs),
    "openai cut": lambda: ostream("cut"),
    "openai context": lambda: o.chat.completions.create(model="long", messages=msgs),
    "openai refusal": lambda: o.chat.completions.create(model="refuse", messages=msgs).choices[0].finish_reason,
    "anthropic whole": lambda: a.messages.create(model="fine", max_tokens=10, messages=msgs).content[0].text,
    "anthropic stream": lambda: astream("fine"),
    "anthropic 529": lambda: a.messages.create(model="busy", max_tokens=10, messages=msgs),
    "anthropic cut": lambda: astream("cut"),
    "anthropic network": lambda: a.messages.create(model="down", max_tokens=10, messages=msgs),
}
out = {}
for name, call in calls.items():
    try:
        out[name] = ["ok", call()]
    except Exception as e:
        out[name] = ["error", type(e).__name__]
print(json.dumps(out))
"#;

#[test]
fn the_official_openai_and_anthropic_sdks_meet_each_fault_as_their_own() {
    let python = sdk_python();
    let faults = "version: 1\ncalls:\n  fine: { tokens: { input: 10, output: 3 } }\n  limited: { status: { 429: 1.0 }, retry_after: { p50: 20ms, p99: 20ms } }\n  busy: { status: { 529: 1.0 } }\n  cut: { truncated: 1.0 }\n  long: { context_length: 1.0 }\n  refuse: { content_policy: 1.0 }\n  down: { network: 1.0 }\n";
    let chaos = Chaos::start(faults, &[]);
    let out = Command::new(python)
        .args(["-c", SDK_CLIENT, &chaos.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = json!({
        "openai whole": ["ok", "chaos: ok"],
        "openai stream": ["ok", "chaos: ok|usage 13"],
        "openai 429": ["error", "RateLimitError"],
        "openai cut": ["error", "APIConnectionError"],
        "openai context": ["error", "BadRequestError"],
        "openai refusal": ["ok", "content_filter"],
        "anthropic whole": ["ok", "chaos: ok"],
        "anthropic stream": ["ok", ["chaos: ok", "end_turn", 3]],
        "anthropic 529": ["error", "OverloadedError"],
        "anthropic network": ["error", "APIConnectionError"],
    });
    for (name, expected) in want.as_object().unwrap() {
        assert_eq!(&got[name], expected, "{name}: {got:#}");
    }
    assert_eq!(
        got["anthropic cut"][0], "error",
        "a cut stream is no message: {got:#}"
    );
    // The SDKs retry what they should (max_retries = 2), and nothing else.
    let lines = chaos.requests();
    let count = |model: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" {model} → ")))
            .count()
    };
    assert_eq!(
        (count("limited"), count("busy"), count("down")),
        (3, 3, 3),
        "{lines:#?}"
    );
    assert_eq!((count("long"), count("cut")), (1, 2), "{lines:#?}");
}

#[test]
fn upstream_without_v1_gets_anthropic_paths_and_an_unreachable_one_is_a_502() {
    let upstream = Upstream::start();
    let chaos = Chaos::start(PLAIN, &["--upstream", &upstream.url]);
    let mut models = json!({ "path": "/v1/models", "method": "GET" });
    models["timeout"] = json!(10);
    let r = python(&chaos.url, &[messages("claude-x", false), models]);
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["body"], UPSTREAM_JSON);
    assert_eq!(
        r[1]["headers"]["x-upstream"], "yes",
        "other paths pass through"
    );
    let seen = upstream.seen.lock().unwrap().clone();
    assert!(
        seen[0].0.starts_with("POST /v1/messages HTTP/1.1\r\n"),
        "{}",
        seen[0].0
    );
    assert!(
        seen[0]
            .0
            .to_lowercase()
            .contains("x-api-key: sk-py-secret-1\r\n")
    );
    assert!(
        seen[1].0.starts_with("GET /v1/models HTTP/1.1\r\n"),
        "{}",
        seen[1].0
    );

    // A port nothing listens on: bound, then let go.
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let chaos = Chaos::start(PLAIN, &["--upstream", &format!("http://{gone}")]);
    let r = one(&chaos.url, chat("m", false));
    assert_eq!(r["status"], 502);
    let error = json_of(r["body"].as_str().unwrap());
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{error}"
    );
    assert!(!chaos.stderr().contains("sk-py-secret"));
}

/// Runs a python3 `script` (a client we did not write) with `url` as its argument;
/// what it printed, as JSON.
#[track_caller]
fn python_json(script: &str, url: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", script, url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
