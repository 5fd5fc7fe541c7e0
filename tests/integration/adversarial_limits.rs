//! Hostile policies and hostile model servers, found by trying to break the policy
//! loader and model calls: each test names what backstop does with the input.

use std::time::Duration;

use crate::call::{Reply, Sandbox, Server, ok, policy, stderr};
use crate::helpers::Test;

/// The bugs guarded against hang or crawl; a correct load takes milliseconds.
const PROMPT: Duration = Duration::from_secs(10);

fn priced(url: &str, price: &str, extra: &str) -> String {
    policy(url, "openai", extra).replace(
        "price: { input_per_mtok: 1000, output_per_mtok: 2000 }",
        &format!("price: {price}"),
    )
}

/// A NaN price made every cost NaN: recorded as `null`, and every comparison with
/// `budget.max_cost_usd` false, so the budget never stopped a call. `.inf` does the
/// same through `0 * inf`.
#[test]
fn a_price_that_is_nan_or_infinite_is_refused_at_load_naming_the_key() {
    for price in [
        "{ input_per_mtok: .nan, output_per_mtok: 1 }",
        "{ input_per_mtok: 1, output_per_mtok: .NaN }",
        "{ input_per_mtok: .inf, output_per_mtok: 0 }",
        "{ input_per_mtok: 0, output_per_mtok: -.inf }",
    ] {
        let sb = Sandbox::new();
        let p = sb.policy(&priced(
            "http://127.0.0.1:9",
            price,
            "budget: { max_cost_usd: 0.5 }\n",
        ));
        for sub in ["check", "explain"] {
            let out = sb.run(&["policy", sub, &p]);
            assert_eq!(out.status.code(), Some(125), "{price}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("models.small.price"), "{price}: {err}");
            assert!(err.contains("finite"), "{price}: {err}");
        }
    }
}

/// serde_json writes a non-finite float as `null`, so `temperature: .nan` was sent
/// to the provider as `"temperature": null` instead of being refused where written.
#[test]
fn a_temperature_that_is_nan_or_infinite_is_refused_before_any_request() {
    for t in [".nan", ".inf", "-.inf"] {
        let server = Server::start(vec![ok("answer")]);
        let sb = Sandbox::new();
        let p = sb.policy(&policy(&server.url(), "openai", "").replace(
            "large: { provider: p,",
            &format!("large: {{ temperature: {t}, provider: p,"),
        ));
        let out = sb.run(&["call", "-p", &p, "x"]);
        assert_eq!(out.status.code(), Some(125), "{t}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("models.large.temperature"),
            "{t}: {}",
            stderr(&out)
        );
        assert!(server.seen().is_empty(), "{t}: a request was sent");
    }
    // A finite one still loads.
    let sb = Sandbox::new();
    let p = sb.policy(&policy("http://127.0.0.1:9", "openai", "").replace(
        "large: { provider: p,",
        "large: { temperature: 0.7, provider: p,",
    ));
    let out = sb.run(&["policy", "check", &p]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Held: block (not flow) collections nested 10,000 deep are refused by serde_yaml's
/// recursion limit, promptly and without overflowing the stack.
#[test]
fn block_sequences_nested_ten_thousand_deep_are_refused_promptly() {
    let text = format!(
        "version: 1\nretry:\n  on:\n    exit_codes:\n    {}1\n",
        "- ".repeat(10_000)
    );
    for sub in ["check", "explain"] {
        let out = Test::new()
            .write("deep.yaml", &text)
            .args(&["policy", sub, "deep.yaml"])
            .status(125)
            .stderr_contains("deep.yaml:5:")
            .run();
        assert!(out.elapsed < PROMPT, "took {:?}", out.elapsed);
    }
}

/// `backstop call x < /dev/zero` read stdin to the end: gigabytes a second until the
/// machine ran out of memory, with no request ever sent. The prompt is bounded.
#[test]
fn a_prompt_on_stdin_that_never_ends_is_refused_without_eating_memory() {
    let server = Server::start(vec![ok("answer")]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let started = std::time::Instant::now();
    let out = sb
        .cmd(&["call", "-p", &p, "x"])
        .stdin(zero)
        .output()
        .unwrap();
    assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("over 32 MiB"), "{}", stderr(&out));
    assert!(server.seen().is_empty(), "a request was sent");
}

/// A server claiming 2^64 tokens at a large (finite) price made the cost infinite,
/// which JSON cannot hold: `--json` and the record said `"cost_usd": null` and `show`
/// said "no price set". The cost saturates at the largest finite number instead.
#[test]
fn a_cost_too_large_for_a_float_is_recorded_as_a_number_not_null() {
    let answer = serde_json::json!({
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX},
    });
    let server = Server::start(vec![Reply::Json(200, vec![], answer)]);
    let sb = Sandbox::new();
    let p = sb.policy(&priced(
        &server.url(),
        "{ input_per_mtok: 1e300, output_per_mtok: 1e300 }",
        "",
    ));
    let out = sb.run(&["call", "-p", &p, "--json", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["cost_usd"].as_f64(), Some(f64::MAX), "{doc}");
    let record = sb.last_record();
    let text = record.to_string();
    assert!(!text.contains("\"cost_usd\":null"), "{text}");
    let shown = sb.run(&["show"]);
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("no price set"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
}

/// The answer was written to stdout from the run's own (single) thread: a reader
/// that stops reading (a paused pager, `| sleep`) blocked that write on a full pipe,
/// and with it the runtime, so SIGTERM went unheard and the call hung until SIGKILL.
/// Each way an answer is printed: whole, streamed, and as `--json`.
#[test]
fn sigterm_ends_a_call_whose_stdout_reader_stopped_reading() {
    let big = "x".repeat(1 << 20);
    let words: Vec<String> = (0..512).map(|_| "y".repeat(4096)).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let cases: Vec<(Reply, &[&str])> = vec![
        (ok(&big), &[]),
        (
            Reply::Sse(crate::call::openai_stream(&words), crate::call::End::Clean),
            &["--stream=always"],
        ),
        (ok(&big), &["--json"]),
    ];
    for (reply, flags) in cases {
        let server = Server::start(vec![reply]);
        let sb = Sandbox::new();
        let p = sb.policy(&policy(&server.url(), "openai", ""));
        let mut args = vec!["call", "-p", &p];
        args.extend_from_slice(flags);
        args.push("x");
        // stdout is a pipe this test holds open and never reads.
        let mut child = sb
            .cmd(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            crate::helpers::eventually(PROMPT, || !server.seen().is_empty()),
            "{flags:?}: the request arrived"
        );
        // Time to fill the pipe and block on it.
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on the child this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let code = crate::helpers::wait_bounded(&mut child, PROMPT);
        assert_eq!(code, 143, "{flags:?}");
    }
}

/// The same freeze with a `default` link whose answer is larger than a pipe holds:
/// written from the runtime's thread, it left SIGTERM unheard.
#[test]
fn sigterm_ends_a_run_whose_default_answer_is_held_up_by_its_reader() {
    let sb = Sandbox::new();
    let p = sb.policy(&format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nfallback:\n  chain:\n    - default: {{ stdout: \"{}\", exit_code: 0 }}\n",
        "z".repeat(512 * 1024)
    ));
    let mut child = sb
        .cmd(&["run", "-p", &p, "--", "false"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    // Wait for the fallback to start, then for the pipe to fill.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("default answer") {
        use std::io::Read;
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = crate::helpers::wait_bounded(&mut child, PROMPT);
    assert_eq!(code, 143);
    drop(err);
}

/// A `304` (no `Location`) was reported as "redirects to an unreadable location,
/// another origin than ...: set the provider's base_url to where the API now lives",
/// sending the user to fix a base_url that was fine.
#[test]
fn a_304_is_not_reported_as_a_redirect_to_another_origin() {
    let server = Server::start(vec![Reply::Json(304, vec![], serde_json::json!({}))]);
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("HTTP 304 without a usable Location"), "{err}");
    assert!(!err.contains("another origin"), "{err}");
}

/// `eprintln!` panics when stderr's reader is gone: an error message longer than a
/// pipe holds (here a 100,000-character `api_key_env`), with the reader gone before
/// it was all read (`2>&1 | head -c 300`), exited 101, not the documented 125.
#[test]
fn a_long_error_to_a_stderr_whose_reader_went_away_exits_125_not_a_panic() {
    let sb = Sandbox::new();
    let p = sb.policy(&format!(
        "version: 1\nproviders:\n  p: {{ kind: openai, base_url: \"http://127.0.0.1:9\", api_key_env: {} }}\nmodels:\n  m: {{ provider: p, model: x }}\n",
        "A".repeat(100_000)
    ));
    let mut child = sb
        .cmd(&["call", "-p", &p, "x"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let code = crate::helpers::wait_bounded(&mut child, PROMPT);
    assert_eq!(code, 125);
}

/// Serves every connection `response` after reading its request; returns its URL.
fn raw_server(response: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let response = response.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let _ = conn.write_all(&response);
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A base64 key holds `/`, which some servers' JSON encoders (PHP's) write `\/`. An
/// error body too long to parse whole (cut at 64 KiB) was redacted as plain text,
/// where only the key's literal spelling was looked for: `sk-Ab\/cd+ef\/GH==` went to
/// stderr, the record and `show --json`.
#[test]
fn a_key_echoed_with_json_escapes_in_an_unparsable_error_body_is_redacted() {
    let key = "sk-Ab/cd+ef/GH0123456789==";
    let escaped = key.replace('/', "\\/");
    let body = format!(
        "{{\"error\":{{\"message\":\"invalid api key {escaped}: {}\"}}}}",
        "x".repeat(70_000)
    );
    let response = format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let url = raw_server(response.into_bytes());
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&url, "openai", ""));
    let out = sb
        .cmd(&["call", "-p", &p, "x"])
        .env("TEST_API_KEY", key)
        .output()
        .unwrap();
    // A refused key is a configuration error (see `call_everyday`).
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let unescape = |s: &str| s.replace('\\', "");
    let err = stderr(&out);
    assert!(!unescape(&err).contains(key), "stderr: {err}");
    let shown = String::from_utf8_lossy(&sb.run(&["show", "--json"]).stdout).into_owned();
    assert!(
        shown.contains("invalid api key"),
        "the message is kept: {shown}"
    );
    assert!(!unescape(&shown).contains(key), "show --json: {shown}");
    for file in sb.store_files() {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!unescape(&text).contains(key), "{}", file.display());
    }
}
