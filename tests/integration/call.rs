//! `backstop call` against a real HTTP server on 127.0.0.1, scripted per test.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_backstop");
pub(super) const KEY: &str = "sk-test-7f3a9c1e5b2d4f60-secret";

/// One scripted reply.
#[derive(Clone)]
pub(super) enum Reply {
    Json(u16, Vec<(&'static str, String)>, Value),
    /// An SSE stream: events with a pause before each, then how it ends.
    Sse(Vec<(Duration, String)>, End),
    /// Headers promising `len` bytes, `sent` bytes of them, then a reset.
    ResetMidBody {
        len: usize,
        sent: usize,
    },
}

#[derive(Clone, Copy)]
pub(super) enum End {
    Clean,
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// Which connection (in accept order) the request came on.
    pub(super) conn: usize,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Value,
    pub(super) at: Instant,
}

impl Seen {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(super) struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(super) fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let replies = Arc::new(Mutex::new(
            replies
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        std::thread::spawn(move || {
            for (number, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { return };
                // A connection of its own thread: a hung stream must not hold up a retry.
                let (replies, log) = (Arc::clone(&replies), Arc::clone(&log));
                std::thread::spawn(move || serve(number, conn, &replies, &log));
            }
        });
        Server { port, seen }
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    number: usize,
    conn: TcpStream,
    replies: &Mutex<std::collections::VecDeque<Reply>>,
    log: &Mutex<Vec<Seen>>,
) -> bool {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return true;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        log.lock().unwrap().push(Seen {
            conn: number,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let next = replies.lock().unwrap().pop_front();
        let Some(reply) = next else {
            let _ =
                conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
            continue;
        };
        match reply {
            Reply::Json(status, extra, value) => {
                let data = value.to_string();
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    data.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if conn
                    .write_all(head.as_bytes())
                    .and_then(|()| conn.write_all(data.as_bytes()))
                    .is_err()
                {
                    return true;
                }
            }
            Reply::Sse(events, end) => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
                for (pause, ev) in events {
                    std::thread::sleep(pause);
                    let _ = conn.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes());
                    let _ = conn.flush();
                }
                match end {
                    End::Clean => {
                        let _ = conn.write_all(b"0\r\n\r\n");
                    }
                    End::Hang(d) => {
                        std::thread::sleep(d);
                        return false;
                    }
                }
            }
            Reply::ResetMidBody { len, sent } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&vec![b' '; sent]);
                let _ = conn.flush();
                reset(&conn);
                return false;
            }
        }
    }
}

/// Closes with RST rather than FIN.
fn reset(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn.try_clone());
}

pub(super) fn openai_answer(text: &str) -> Value {
    json!({"choices":[{"message":{"content":text},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5}})
}

pub(super) fn anthropic_answer(text: &str) -> Value {
    json!({"content":[{"type":"text","text":text}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5}})
}

pub(super) fn ok(text: &str) -> Reply {
    Reply::Json(200, vec![], openai_answer(text))
}

pub(super) fn status(s: u16) -> Reply {
    Reply::Json(
        s,
        vec![],
        json!({"error":{"message":format!("status {s}"),"type":"x"}}),
    )
}

pub(super) fn sse(events: &[Value]) -> Vec<(Duration, String)> {
    events
        .iter()
        .map(|e| (Duration::from_millis(5), format!("data: {e}\n\n")))
        .collect()
}

pub(super) fn openai_stream(words: &[&str]) -> Vec<(Duration, String)> {
    let mut out: Vec<Value> = words
        .iter()
        .map(|w| json!({"choices":[{"delta":{"content":w},"finish_reason":null}]}))
        .collect();
    out.push(json!({"choices":[{"delta":{},"finish_reason":"stop"}]}));
    out.push(json!({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}));
    let mut ev = sse(&out);
    ev.push((Duration::from_millis(5), "data: [DONE]\n\n".into()));
    ev
}

pub(super) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(super) fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("backstop-call-")
                .tempdir()
                .unwrap(),
        }
    }

    pub(super) fn policy(&self, yaml: &str) -> String {
        let path = self.dir.path().join("models.yaml");
        fs::write(&path, yaml).unwrap();
        path.to_str().unwrap().into()
    }

    /// A path in the sandbox (the directory backstop runs in).
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("BACKSTOP_HOME", self.dir.path().join("store"))
            .env("NO_COLOR", "1")
            // The tests fix the environment: under CI, backstop takes no snapshot.
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env("TEST_API_KEY", KEY)
            .stdin(Stdio::null());
        c
    }

    pub(super) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub(super) fn last_record(&self) -> Value {
        let runs = self.run(&["runs", "--json"]);
        let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
        let id = runs[0]["id"].as_str().unwrap().to_string();
        serde_json::from_slice(&self.run(&["show", &id, "--json"]).stdout).unwrap()
    }

    pub(super) fn store_files(&self) -> Vec<PathBuf> {
        fn walk(d: &std::path::Path, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("store"), &mut out);
        out
    }
}

pub(super) fn policy(url: &str, kind: &str, extra: &str) -> String {
    format!(
        "version: 1\nretry: {{ max_attempts: 3, backoff: {{ initial: 10ms, max: 20ms, jitter: none }} }}\n\
         providers:\n  p: {{ kind: {kind}, base_url: \"{url}\", api_key_env: TEST_API_KEY }}\n\
         models:\n  small: {{ provider: p, model: small-1, max_tokens: 50, price: {{ input_per_mtok: 1000, output_per_mtok: 2000 }} }}\n  large: {{ provider: p, model: large-1, max_tokens: 50 }}\n\
         model: small\n{extra}"
    )
}

pub(super) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(super) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------- wire formats

#[test]
fn openai_request_and_response_without_streaming() {
    let server = Server::start(vec![ok("the answer")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--system", "be terse", "Summarise this"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "the answer\n");
    let req = &server.seen()[0];
    assert_eq!(req.path, "/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(req.header("idempotency-key").is_some());
    assert_eq!(req.body["model"], "small-1");
    assert_eq!(req.body["max_tokens"], 50);
    assert_eq!(req.body["stream"], false);
    assert_eq!(
        req.body["messages"][0],
        json!({"role":"system","content":"be terse"})
    );
    assert_eq!(
        req.body["messages"][1],
        json!({"role":"user","content":"Summarise this"})
    );
}

#[test]
fn anthropic_request_and_response_without_streaming() {
    let server = Server::start(vec![Reply::Json(200, vec![], anthropic_answer("bonjour"))]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "anthropic", ""));
    let mut child = sb
        .cmd(&["call", "-p", &p, "--system", "sys", "--json", "Say hi"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"diff --git a b\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["text"], "bonjour");
    assert_eq!(doc["model"], "small");
    assert_eq!(doc["input_tokens"], 10);
    assert_eq!(doc["output_tokens"], 5);
    // 10 input and 5 output tokens at $1000 and $2000 per million.
    assert!(
        (doc["cost_usd"].as_f64().unwrap() - 0.02).abs() < 1e-9,
        "{doc}"
    );
    let req = &server.seen()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.body["system"], "sys");
    assert_eq!(
        req.body["messages"][0]["content"], "Say hi\n\ndiff --git a b\n",
        "stdin is appended"
    );
}

#[test]
fn streamed_answers_of_both_providers() {
    let server = Server::start(vec![Reply::Sse(openai_stream(&["Hel", "lo"]), End::Clean)]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--stream", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hello\n");
    assert_eq!(server.seen()[0].body["stream"], true);
    assert_eq!(sb.last_record()["outcome"]["output_tokens"], 3);

    let events = vec![
        json!({"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":0}}}),
        json!({"type":"content_block_delta","delta":{"type":"text_delta","text":"Bon"}}),
        json!({"type":"content_block_delta","delta":{"type":"text_delta","text":"jour"}}),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}),
        json!({"type":"message_stop"}),
    ];
    let server = Server::start(vec![Reply::Sse(sse(&events), End::Clean)]);
    let p = sb.policy(&policy(&server.url(), "anthropic", ""));
    let out = sb.run(&["call", "-p", &p, "--stream", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Bonjour\n");
}

// ---------------------------------------------------------------- the status table

#[test]
fn retryable_statuses_are_retried_and_the_others_are_not() {
    for s in [408u16, 409, 429, 500, 502, 503, 504, 529] {
        let server = Server::start(vec![status(s), ok("fine")]);
        let sb = Sandbox::new();
        let out = sb.run(&[
            "call",
            "-p",
            &sb.policy(&policy(&server.url(), "openai", "")),
            "x",
        ]);
        assert_eq!(out.status.code(), Some(0), "{s}: {}", stderr(&out));
        assert_eq!(server.seen().len(), 2, "{s} is retried");
    }
    for s in [400u16, 401, 403, 404, 422] {
        let server = Server::start(vec![status(s), ok("never")]);
        let sb = Sandbox::new();
        let out = sb.run(&[
            "call",
            "-p",
            &sb.policy(&policy(&server.url(), "openai", "")),
            "x",
        ]);
        // A refused key is a configuration error (see `call_everyday`).
        let code = if matches!(s, 401 | 403) { 125 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{s}: {}", stderr(&out));
        assert_eq!(server.seen().len(), 1, "{s} is not retried");
        let class = sb.last_record()["attempts"][0]["verdict"]["class"].clone();
        assert_eq!(
            class,
            if matches!(s, 401 | 403) {
                "auth"
            } else {
                "status"
            },
            "{s}"
        );
    }
}

#[test]
fn x_should_retry_overrides_the_status_both_ways() {
    let yes = Reply::Json(
        400,
        vec![("x-should-retry", "true".into())],
        json!({"error":{"message":"try again"}}),
    );
    let server = Server::start(vec![yes, ok("fine")]);
    let sb = Sandbox::new();
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", "")),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(server.seen().len(), 2);

    let no = Reply::Json(
        503,
        vec![("x-should-retry", "false".into())],
        json!({"error":{"message":"do not"}}),
    );
    let server = Server::start(vec![no, ok("never")]);
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", "")),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        sb.last_record()["attempts"][0]["verdict"]["rule"],
        "the server said x-should-retry: false"
    );
}

#[test]
fn retries_reuse_the_connection_and_the_idempotency_key() {
    let server = Server::start(vec![status(503), status(503), ok("third time")]);
    let sb = Sandbox::new();
    let extra = "fallback:\n  chain:\n    - call: { model: large }\n";
    // The small model fails twice with 503 and answers on its third attempt.
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", extra)),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|r| r.conn == seen[0].conn),
        "one connection for every retry: {seen:?}"
    );
    let keys: Vec<_> = seen
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one idempotency key per logical call: {keys:?}"
    );

    // A fallback link is another logical call: a key of its own.
    let server = Server::start(vec![status(400), ok("from large")]);
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", extra)),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.seen();
    assert_ne!(
        seen[0].header("idempotency-key"),
        seen[1].header("idempotency-key")
    );
}

// ---------------------------------------------------------------- Retry-After

fn retry_after_case(header: (&'static str, String)) -> (Value, Duration) {
    let server = Server::start(vec![
        Reply::Json(429, vec![header], json!({"error":{"message":"slow down"}})),
        ok("fine"),
    ]);
    let sb = Sandbox::new();
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", "")),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = server.seen();
    (
        sb.last_record()["attempts"][0].clone(),
        seen[1].at - seen[0].at,
    )
}

#[test]
fn retry_after_in_each_valid_form_sets_the_delay() {
    for (header, ms, rule) in [
        (
            ("retry-after-ms", "300".to_string()),
            300,
            "retry-after-ms header",
        ),
        (
            ("retry-after", "0.4".to_string()),
            400,
            "retry-after header (seconds)",
        ),
        (
            ("retry-after", "1".to_string()),
            1000,
            "retry-after header (seconds)",
        ),
    ] {
        let (attempt, gap) = retry_after_case(header.clone());
        assert_eq!(attempt["delay_ms"], ms, "{header:?}");
        assert!(
            attempt["delay_reason"].as_str().unwrap().starts_with(rule),
            "{attempt}"
        );
        assert!(
            gap >= Duration::from_millis(ms),
            "{header:?}: waited {gap:?}"
        );
        assert!(
            gap < Duration::from_millis(ms + 900),
            "{header:?}: waited {gap:?}, not the backoff's guess"
        );
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    let (attempt, gap) = retry_after_case(("retry-after", date));
    assert!(
        attempt["delay_reason"]
            .as_str()
            .unwrap()
            .starts_with("retry-after header (HTTP-date)"),
        "{attempt}"
    );
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_millis(3000),
        "{gap:?}"
    );
}

#[test]
fn invalid_retry_after_values_fall_back_to_the_backoff() {
    for value in [
        "0",
        "-5",
        "soon",
        "99999999",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        let (attempt, _) = retry_after_case(("retry-after", value.into()));
        assert_eq!(attempt["delay_ms"], 10, "{value}: the backoff's 10ms");
        assert!(
            attempt["delay_reason"]
                .as_str()
                .unwrap()
                .starts_with("exponential backoff"),
            "{value}: {attempt}"
        );
    }
}

#[test]
fn a_retry_after_over_the_cap_goes_to_the_fallback_without_waiting() {
    let slow = Reply::Json(
        429,
        vec![("retry-after", "30".into())],
        json!({"error":{"message":"later"}}),
    );
    let server = Server::start(vec![slow, ok("from large")]);
    let sb = Sandbox::new();
    let extra = "fallback:\n  chain:\n    - call: { model: large }\n";
    let mut p = policy(&server.url(), "openai", extra);
    p = p.replace("retry: {", "retry: { retry_after: { max: 2s },");
    let started = Instant::now();
    let out = sb.run(&["call", "-p", &sb.policy(&p), "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait 30s"
    );
    assert_eq!(stdout(&out), "from large\n");
    let models: Vec<Value> = server
        .seen()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert_eq!(models, [json!("small-1"), json!("large-1")]);
    let reason = sb.last_record()["attempts"][0]["delay_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("over retry.retry_after.max"), "{reason}");
}

// ---------------------------------------------------------------- broken connections and streams

#[test]
fn a_connection_reset_mid_body_is_retried() {
    let server = Server::start(vec![
        Reply::ResetMidBody { len: 400, sent: 40 },
        ok("whole"),
    ]);
    let sb = Sandbox::new();
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", "")),
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "whole\n");
    let class = sb.last_record()["attempts"][0]["verdict"]["class"].clone();
    assert!(class == "network" || class == "stream", "{class}");
}

#[test]
fn a_stream_that_stalls_is_abandoned_and_retried() {
    let mut stalled = openai_stream(&["par"]);
    stalled.truncate(1);
    let server = Server::start(vec![
        Reply::Sse(stalled, End::Hang(Duration::from_secs(5))),
        Reply::Sse(openai_stream(&["whole"]), End::Clean),
    ]);
    let sb = Sandbox::new();
    let p = policy(&server.url(), "openai", "timeout: { stall: 300ms }\n");
    let started = Instant::now();
    let out = sb.run(&["call", "-p", &sb.policy(&p), "--stream=always", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        stderr(&out).contains("cut off"),
        "--stream says so: {}",
        stderr(&out)
    );
    assert!(stdout(&out).ends_with("whole\n"), "{}", stdout(&out));
    assert_eq!(
        sb.last_record()["attempts"][0]["verdict"]["class"],
        "timeout"
    );
}

#[test]
fn a_stream_truncated_before_its_finish_event_is_a_failure() {
    let mut cut = openai_stream(&["half"]);
    cut.truncate(1); // the delta, no finish_reason, no [DONE]; then a clean end
    let server = Server::start(vec![
        Reply::Sse(cut.clone(), End::Clean),
        Reply::Sse(cut, End::Clean),
        Reply::Sse(cut_anthropic(), End::Clean),
    ]);
    let sb = Sandbox::new();
    let p = policy(&server.url(), "openai", "").replace("max_attempts: 3", "max_attempts: 2");
    let out = sb.run(&["call", "-p", &sb.policy(&p), "--stream", "--json", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["text"],
        Value::Null,
        "a truncated stream is never an answer"
    );
    assert_eq!(server.seen()[0].body["stream"], true);
    let rec = sb.last_record();
    assert!(
        rec["attempts"][0]["end"]["message"]
            .as_str()
            .unwrap()
            .contains("before its finish event"),
        "{rec}"
    );
}

fn cut_anthropic() -> Vec<(Duration, String)> {
    sse(&[json!({"type":"message_start","message":{"usage":{"input_tokens":1}}})])
}

#[test]
fn a_malformed_chunk_fails_the_attempt() {
    let bad = vec![(
        Duration::from_millis(5),
        "data: {\"choices\": [ nope\n\n".to_string(),
    )];
    let server = Server::start(vec![
        Reply::Sse(bad, End::Clean),
        Reply::Sse(openai_stream(&["ok"]), End::Clean),
    ]);
    let sb = Sandbox::new();
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "openai", "")),
        "--stream",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rec = sb.last_record();
    assert!(
        rec["attempts"][0]["end"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed chunk"),
        "{rec}"
    );
}

// ---------------------------------------------------------------- fallbacks and budget

#[test]
fn a_context_length_error_falls_over_to_the_larger_model_without_a_retry() {
    let too_long = Reply::Json(
        400,
        vec![],
        json!({"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}),
    );
    let server = Server::start(vec![too_long, ok("from large")]);
    let sb = Sandbox::new();
    let p = policy(
        &server.url(),
        "openai",
        "fallback:\n  chain:\n    - call: { model: large }\n",
    );
    let out = sb.run(&["call", "-p", &sb.policy(&p), "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let models: Vec<Value> = server
        .seen()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert_eq!(
        models,
        [json!("small-1"), json!("large-1")],
        "no retry of the small model"
    );
    assert_eq!(
        sb.last_record()["attempts"][0]["verdict"]["class"],
        "context-length"
    );
}

#[test]
fn a_budget_stops_the_chain() {
    // A small call may cost up to (1 prompt token + 50 output tokens) at $1000 and $2000
    // per million: $0.101, over the $0.05 budget; so none is made and the default answers.
    let server = Server::start(vec![status(503), status(503), ok("never")]);
    let sb = Sandbox::new();
    let p = policy(
        &server.url(),
        "openai",
        "budget: { max_cost_usd: 0.05 }\nfallback:\n  chain:\n    - default: { stdout: \"cheap default\\n\" }\n",
    );
    let out = sb.run(&["call", "-p", &sb.policy(&p), "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "cheap default\n");
    assert_eq!(server.seen().len(), 0, "no call could fit the budget");
    assert!(
        sb.last_record()["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("budget.max_cost_usd")
    );
}

#[test]
fn a_budget_counts_what_was_spent() {
    let server = Server::start(vec![
        Reply::Json(
            200,
            vec![],
            json!({"choices":[{"message":{"content":""},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":10,"completion_tokens":5}}),
        ),
        ok("never"),
    ]);
    let sb = Sandbox::new();
    // The refused call spends $0.02 (10 and 5 tokens); the fallback could spend $0.102
    // more: over $0.11, so it is not made. (Its own prompt: the same model asked the
    // same thing again is a link skipped.)
    let p = policy(
        &server.url(),
        "openai",
        "budget: { max_cost_usd: 0.11 }\nfallback:\n  chain:\n    - call: { model: small, prompt: again }\n",
    );
    let out = sb.run(&["call", "-p", &sb.policy(&p), "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rec = sb.last_record();
    assert_eq!(rec["attempts"][0]["verdict"]["class"], "content-policy");
    assert_eq!(server.seen().len(), 1);
    assert!(
        rec["outcome"]["reason"]
            .as_str()
            .unwrap()
            .contains("budget.max_cost_usd"),
        "{rec}"
    );
}

// ---------------------------------------------------------------- secrets, keys, commands

#[test]
fn the_api_key_appears_in_no_output_and_no_record() {
    let echo = Reply::Json(
        401,
        vec![],
        json!({"error":{"type":"authentication_error","message":format!("invalid key {KEY}")}}),
    );
    let server = Server::start(vec![echo]);
    let sb = Sandbox::new();
    let out = sb.run(&[
        "call",
        "-p",
        &sb.policy(&policy(&server.url(), "anthropic", "")),
        "--json",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        server.seen()[0].header("x-api-key") == Some(KEY),
        "the key was sent"
    );
    let mut everything = out.stdout.clone();
    everything.extend(&out.stderr);
    for f in sb.store_files() {
        everything.extend(fs::read(f).unwrap());
    }
    everything.extend(sb.run(&["runs", "--json"]).stdout);
    let hay = String::from_utf8_lossy(&everything);
    assert!(!hay.contains(KEY), "the key leaked");
    assert!(!hay.contains("7f3a9c1e5b2d4f60"), "part of the key leaked");
    assert!(
        hay.contains("[redacted]"),
        "the server's echo of it was redacted"
    );
}

#[test]
fn an_inline_key_in_a_policy_is_refused() {
    let sb = Sandbox::new();
    let p = "version: 1\nproviders:\n  p: { kind: openai, base_url: \"http://127.0.0.1:9\", api_key: sk-inline-987654 }\nmodels:\n  m: { provider: p, model: x }\n";
    let out = sb.run(&["call", "-p", &sb.policy(p), "x"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("api_key_env"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("sk-inline-987654"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failing_command_falls_back_to_a_call() {
    let server = Server::start(vec![ok("the model's answer")]);
    let sb = Sandbox::new();
    let p = policy(&server.url(), "openai", "rollback: { on: never }\nfallback:\n  chain:\n    - call: { model: large, prompt: \"the script failed; say what to do\" }\n")
        .replace("max_attempts: 3", "max_attempts: 1");
    let out = sb.run(&["run", "-p", &sb.policy(&p), "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "the model's answer\n");
    assert_eq!(
        server.seen()[0].body["messages"][0]["content"],
        "the script failed; say what to do"
    );
}
