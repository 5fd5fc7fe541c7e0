//! `metrics.otlp`: each run sent as a trace to a real OTLP/HTTP receiver on
//! 127.0.0.1, a python3 process that decodes it with the official
//! `opentelemetry-proto` package (`tests/support/otlp_receiver.py`).
//!
//! The python3 used is `$BACKSTOP_TEST_PYTHON`, else `target/test-venv/bin/python3`,
//! which these tests create (once, under a lock) when it is missing. A python3 that
//! cannot import the package fails the test, saying how to install it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::call::{KEY, Reply, Server, ok};
use super::helpers::Test;

const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/otlp_receiver.py"
);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The python3 that has `opentelemetry-proto`.
pub(super) fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(find_python)
}

fn importable(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const HOW: &str = "install it with `python3 -m venv target/test-venv && \
     target/test-venv/bin/pip install opentelemetry-proto` (apt-get install python3-venv \
     first if venv is missing), or set BACKSTOP_TEST_PYTHON to a python3 that has it";

fn find_python() -> PathBuf {
    if let Some(p) = std::env::var_os("BACKSTOP_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            importable(&p),
            "BACKSTOP_TEST_PYTHON={} cannot import opentelemetry-proto: {HOW}",
            p.display()
        );
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python3");
    if importable(&python) {
        return python;
    }
    make_venv(&venv);
    assert!(
        importable(&python),
        "{} cannot import opentelemetry-proto after setting it up: {HOW}",
        python.display()
    );
    python
}

/// `python3 -m venv` and `pip install opentelemetry-proto`, once across the parallel
/// test threads and processes (a lock file beside the venv).
fn make_venv(venv: &Path) {
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if importable(&venv.join("bin/python3")) {
        return;
    }
    let pip = venv.join("bin/pip");
    let steps: [(&str, Vec<&str>); 2] = [
        ("python3", vec!["-m", "venv", venv.to_str().unwrap()]),
        (
            pip.to_str().unwrap(),
            vec!["install", "-q", "opentelemetry-proto"],
        ),
    ];
    for (program, args) in steps {
        let out = Command::new(program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {HOW}"));
        assert!(
            out.status.success(),
            "`{program} {}` failed: {}\n{HOW}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A receiver process; what it decoded is in `out`, one JSON line per request.
pub(super) struct Receiver {
    child: Child,
    pub(super) port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    pub(super) fn start() -> Receiver {
        Receiver::with(&[])
    }

    /// `--delay S`, `--status N`.
    pub(super) fn with(extra: &[&str]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let (port_file, out) = (dir.path().join("port"), dir.path().join("out.jsonl"));
        let mut child = Command::new(python())
            .arg(RECEIVER)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver");
        let started = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                panic!("the OTLP receiver exited ({status}): {err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request decoded so far.
    pub(super) fn requests(&self) -> Vec<Value> {
        let Ok(f) = std::fs::File::open(&self.out) else {
            return Vec::new();
        };
        BufReader::new(f)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    /// The one request a run sent, decoded without error.
    #[track_caller]
    pub(super) fn only(&self) -> Value {
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "expected one request: {reqs:#?}");
        let req = reqs.into_iter().next().unwrap();
        assert!(
            req.get("error").is_none(),
            "the receiver could not decode: {req:#}"
        );
        assert_eq!(req["path"], "/v1/traces");
        req
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spans(req: &Value) -> &Vec<Value> {
    req["spans"].as_array().unwrap()
}

fn named<'a>(req: &'a Value, name: &str) -> Vec<&'a Value> {
    spans(req).iter().filter(|s| s["name"] == name).collect()
}

fn root(req: &Value) -> &Value {
    let roots: Vec<_> = spans(req)
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("backstop "))
        .collect();
    assert_eq!(roots.len(), 1, "one root span: {req:#}");
    roots[0]
}

fn int(n: i64) -> Value {
    json!({ "int": n })
}

fn policy(endpoint: &str, otlp_extra: &str, rest: &str) -> String {
    format!(
        "version: 1\nretry: {{ max_attempts: 3, backoff: {{ initial: 10ms, max: 20ms, jitter: none }} }}\n\
         metrics:\n  otlp: {{ endpoint: \"{endpoint}\"{otlp_extra} }}\n{rest}"
    )
}

/// Fails until its third run (a counter in `$OUT`).
const FLAKY: &str = "#!/bin/sh\nn=$(cat \"$OUT/n\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$OUT/n\"\necho out-$n\n[ $n -ge 3 ]\n";

#[test]
fn retried_run_is_one_trace_of_attempts_and_waits() {
    let rx = Receiver::start();
    let out = Test::new()
        .policy(&policy(&rx.endpoint(), "", ""))
        .write_mode("flaky.sh", FLAKY, 0o755)
        .env("OTEL_SERVICE_NAME", "nightly-agent")
        .args(&["run", "--", "./flaky.sh", "--token=arg-secret-31337"])
        .stdout("out-1\nout-2\nout-3\n")
        .run();
    let req = rx.only();
    assert_eq!(req["content_type"], "application/x-protobuf");
    assert_eq!(req["resources"][0]["service.name"], "nightly-agent");
    assert_eq!(
        req["resources"][0]["service.version"],
        env!("CARGO_PKG_VERSION")
    );
    let root = root(&req);
    assert_eq!(root["name"], "backstop run");
    assert_eq!(
        root["parent_span_id"], "",
        "no TRACEPARENT: a trace of its own"
    );
    assert_eq!(root["status_code"], 0, "a success leaves the status unset");
    let a = &root["attributes"];
    assert_eq!(a["backstop.layer"], "l1");
    assert_eq!(a["backstop.outcome"], "retried");
    assert_eq!(a["backstop.run_id"], out.record()["id"]);
    assert_eq!(a["process.executable.name"], "flaky.sh");
    let attempts: Vec<_> = (1..=3)
        .map(|n| named(&req, &format!("attempt {n} of flaky.sh")))
        .collect();
    assert!(attempts.iter().all(|a| a.len() == 1), "{req:#}");
    assert_eq!(named(&req, "backoff wait").len(), 2);
    assert_eq!(spans(&req).len(), 6, "root, 3 attempts, 2 waits");
    for s in spans(&req)
        .iter()
        .filter(|s| s["span_id"] != root["span_id"])
    {
        assert_eq!(s["parent_span_id"], root["span_id"], "{s:#}");
        assert_eq!(s["trace_id"], root["trace_id"]);
    }
    let first = &attempts[0][0]["attributes"];
    assert_eq!(first["backstop.layer"], "primary");
    assert_eq!(first["backstop.link"], "flaky.sh");
    assert_eq!(first["backstop.link.index"], int(0));
    assert_eq!(first["backstop.attempt"], int(1));
    assert_eq!(first["error.type"], "exit_code");
    assert_eq!(first["process.exit.code"], int(1));
    assert_eq!(
        attempts[0][0]["status_code"], 2,
        "a failed attempt is an error"
    );
    let third = &attempts[2][0]["attributes"];
    assert_eq!(third["backstop.layer"], "retry");
    assert_eq!(third["process.exit.code"], int(0));
    assert!(third.get("error.type").is_none());
    let wait = named(&req, "backoff wait")[0];
    assert_eq!(wait["attributes"]["backstop.delay_ms"], int(10));
    assert_eq!(
        wait["start"], attempts[0][0]["end"],
        "the wait follows its attempt"
    );
    let text = req.to_string();
    assert!(
        !text.contains("arg-secret-31337"),
        "an argument reached the trace: {text}"
    );
}

#[test]
fn failed_run_has_fallback_event_rollback_span_and_error_status() {
    let rx = Receiver::start();
    let yaml = format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nmetrics:\n  otlp: {{ endpoint: \"{}\" }}\n\
         fallback:\n  chain:\n    - run: [\"./also-fails.sh\", \"--secret-arg\"]\n\
         rollback: {{ on: failure }}\n",
        rx.endpoint()
    );
    let script = "#!/bin/sh\necho x > made.txt\nexit 5\n";
    let out = Test::new()
        .policy(&yaml)
        .write_mode("fails.sh", script, 0o755)
        .write_mode("also-fails.sh", "#!/bin/sh\nexit 6\n", 0o755)
        .args(&["run", "--", "./fails.sh"])
        .status(6)
        .run();
    assert!(!out.path().join("made.txt").exists(), "rolled back");
    let req = rx.only();
    let root = root(&req);
    assert_eq!(root["status_code"], 2, "a failed run is an error");
    assert_eq!(root["attributes"]["backstop.outcome"], "failed");
    assert_eq!(root["attributes"]["backstop.layer"], "none");
    let events = root["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{root:#}");
    assert_eq!(events[0]["name"], "backstop.fallback");
    assert_eq!(events[0]["attributes"]["backstop.link.index"], int(1));
    assert_eq!(
        events[0]["attributes"]["backstop.link"],
        "run also-fails.sh"
    );
    let fallback = named(&req, "attempt 1 of run also-fails.sh");
    assert_eq!(fallback.len(), 1, "{req:#}");
    assert_eq!(fallback[0]["attributes"]["backstop.layer"], "fallback");
    assert_eq!(fallback[0]["attributes"]["process.exit.code"], int(6));
    let rollback = named(&req, "rollback");
    assert_eq!(rollback.len(), 1, "{req:#}");
    let r = &rollback[0]["attributes"];
    assert_eq!(r["backstop.rollback.paths"], int(1));
    assert_eq!(r["backstop.rollback.complete"], true);
    assert_eq!(rollback[0]["parent_span_id"], root["span_id"]);
    assert!(
        root["end"].as_u64() >= rollback[0]["end"].as_u64(),
        "the run ends after its rollback"
    );
}

#[test]
fn call_spans_carry_gen_ai_attributes_and_status_codes() {
    let server = Server::start(vec![
        Reply::Json(
            503,
            vec![],
            json!({"error": {"message": "busy", "type": "x"}}),
        ),
        ok("the answer"),
    ]);
    let rx = Receiver::start();
    let yaml = super::call::policy(
        &server.url(),
        "openai",
        &format!("metrics:\n  otlp: {{ endpoint: \"{}\" }}\n", rx.endpoint()),
    );
    Test::new()
        .policy(&yaml)
        .env("TEST_API_KEY", KEY)
        .args(&["call", "-p", "backstop.yaml", "PROMPT-SENTINEL-4242"])
        .stdout("the answer\n")
        .run();
    let req = rx.only();
    let root = root(&req);
    assert_eq!(root["name"], "backstop call");
    assert_eq!(root["attributes"]["gen_ai.request.model"], "small-1");
    let first = &named(&req, "attempt 1 of call small")[0]["attributes"];
    assert_eq!(first["http.response.status_code"], int(503));
    assert_eq!(first["error.type"], "server_5xx");
    let second = &named(&req, "attempt 2 of call small")[0]["attributes"];
    assert_eq!(second["http.response.status_code"], int(200));
    assert_eq!(second["gen_ai.operation.name"], "chat");
    assert_eq!(second["gen_ai.provider.name"], "openai");
    assert_eq!(second["gen_ai.system"], "openai");
    assert_eq!(second["gen_ai.request.model"], "small-1");
    assert_eq!(second["gen_ai.usage.input_tokens"], int(10));
    assert_eq!(second["gen_ai.usage.output_tokens"], int(5));
    let cost = second["backstop.cost_usd"].as_f64().unwrap();
    assert!((cost - 0.02).abs() < 1e-9, "{cost}");
    assert!(second.get("process.exit.code").is_none());
    let text = req.to_string();
    assert!(
        !text.contains("PROMPT-SENTINEL-4242"),
        "the prompt reached the trace"
    );
    assert!(!text.contains(KEY), "the API key reached the trace");
}

#[test]
fn traceparent_makes_the_run_a_child_and_an_invalid_one_is_ignored() {
    let rx = Receiver::start();
    let test = Test::new().policy(&policy(&rx.endpoint(), "", ""));
    let ran = test.backstop_env(
        &[("TRACEPARENT", TRACEPARENT), ("TRACESTATE", "vendor=x")],
        &["run", "--", "true"],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let ran = test.backstop_env(
        &[(
            "TRACEPARENT",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        &["run", "--", "true"],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    let child = root(&reqs[0]);
    assert_eq!(child["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(child["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(child["trace_state"], "vendor=x");
    let attempt = named(&reqs[0], "attempt 1 of true")[0];
    assert_eq!(attempt["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let own = root(&reqs[1]);
    assert_ne!(own["trace_id"], "00000000000000000000000000000000");
    assert_eq!(own["parent_span_id"], "");
}

/// Every file under `dir`, as text.
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            text.push_str(&all_text(&e.path()));
        } else {
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(e.path()).unwrap_or_default(),
            ));
        }
    }
    text
}

#[test]
fn header_is_sent_and_its_value_shown_nowhere() {
    let sentinel = format!(
        "Bearer otlp-sentinel-{:x}",
        std::process::id() ^ 0x5eed_f00d
    );
    let rx = Receiver::start();
    let extra = ", headers_env: { authorization: OTLP_TOKEN, x-tenant: OTLP_TENANT_UNSET }";
    let out = Test::new()
        .policy(&policy(&rx.endpoint(), extra, ""))
        .env("OTLP_TOKEN", &sentinel)
        .env("RUST_LOG", "trace")
        .args(&["run", "--", "sh", "-c", "echo done"])
        .stdout("done\n")
        .stderr_contains("$OTLP_TENANT_UNSET is not set")
        .run();
    let req = rx.only();
    assert_eq!(req["headers"]["authorization"], sentinel.as_str());
    assert!(req["headers"].get("x-tenant").is_none());
    let explain = out.backstop(&["policy", "explain", "backstop.yaml"]).stdout;
    assert!(
        explain.contains("    header authorization from $OTLP_TOKEN"),
        "{explain}"
    );
    assert!(
        explain.contains(&format!(
            "otlp: each run as a trace to {}/v1/traces (protobuf, timeout 2s)",
            rx.endpoint()
        )),
        "{explain}"
    );
    let store = out.path().parent().unwrap().join("store");
    for (what, text) in [
        ("stdout", out.stdout.clone()),
        ("stderr", out.stderr.clone()),
        ("the store", all_text(&store)),
        ("show --json", out.record().to_string()),
        ("policy explain", explain),
    ] {
        assert!(
            !text.contains("otlp-sentinel"),
            "the header's value is in {what}: {text}"
        );
    }
}

#[test]
fn unreachable_collector_is_one_warning_and_changes_no_exit_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let yaml = format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nmetrics:\n  otlp: {{ endpoint: \"{endpoint}\" }}\n"
    );
    for (script, status, outcome) in [
        ("echo ok; exit 0", 0, "succeeded"),
        ("echo no; exit 7", 7, "failed"),
    ] {
        let out = Test::new()
            .policy(&yaml)
            .args(&["run", "--", "sh", "-c", script])
            .status(status)
            .run();
        assert_eq!(out.stdout, if status == 0 { "ok\n" } else { "no\n" });
        let warnings: Vec<_> = out
            .stderr
            .lines()
            .filter(|l| l.contains("warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", out.stderr);
        assert!(
            warnings[0].starts_with("backstop: warning: cannot send the trace to "),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0].contains(&format!("{endpoint}/v1/traces")),
            "{}",
            warnings[0]
        );
        assert_eq!(out.record()["outcome"]["outcome"], outcome);
    }
}

#[test]
fn slow_collector_is_bounded_by_the_timeout() {
    let rx = Receiver::with(&["--delay", "20"]);
    let started = Instant::now();
    let out = Test::new()
        .policy(&policy(&rx.endpoint(), ", timeout: 500ms", ""))
        .args(&["run", "--", "true"])
        .stderr_contains("no answer within 500ms (metrics.otlp.timeout)")
        .run();
    let elapsed = started.elapsed();
    // The receiver holds its answer for 20 s; the send gives up at 500 ms. The margin
    // is for the run itself on a loaded machine.
    assert!(
        elapsed < Duration::from_secs(8),
        "took {elapsed:?}: {}",
        out.stderr
    );
    assert_eq!(rx.requests().len(), 1, "the trace did arrive");
}

#[test]
fn rejected_and_redirected_sends_are_warnings() {
    for (status, says) in [
        ("500", "HTTP 500"),
        ("307", "HTTP 307 (a redirect, not followed)"),
    ] {
        let rx = Receiver::with(&["--status", status]);
        Test::new()
            .policy(&policy(&rx.endpoint(), "", ""))
            .args(&["run", "--", "sh", "-c", "exit 0"])
            .stderr_contains(&format!(
                "the trace was not accepted by {}/v1/traces: {says}",
                rx.endpoint()
            ))
            .run();
        assert_eq!(rx.requests().len(), 1, "one request, no redirect followed");
    }
}

#[test]
fn json_protocol_is_otlp_json_and_decodes() {
    let rx = Receiver::start();
    Test::new()
        .policy(&policy(&rx.endpoint(), ", protocol: json", ""))
        .write_mode("flaky.sh", FLAKY, 0o755)
        .env("TRACEPARENT", TRACEPARENT)
        .args(&["run", "--", "./flaky.sh"])
        .run();
    let req = rx.only();
    assert_eq!(req["content_type"], "application/json");
    let shape = &req["json_shape"];
    // OTLP/JSON: hex ids (not base64), 64-bit integers as strings, enums as numbers.
    assert_eq!(shape["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(shape["spanId"].as_str().unwrap().len(), 16);
    assert_eq!(shape["startTimeUnixNano"], "str");
    assert_eq!(shape["kind"], "int");
    assert_eq!(shape["intValue"], json!(["str"]));
    let root = root(&req);
    assert_eq!(root["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(root["attributes"]["backstop.outcome"], "retried");
    assert_eq!(
        named(&req, "attempt 1 of flaky.sh")[0]["attributes"]["process.exit.code"],
        int(1)
    );
    assert_eq!(spans(&req).len(), 6);
}

/// A header backstop sets itself would go out twice, and a send every run waits
/// minutes for is not an export: both refused by `policy check`, naming the key.
#[test]
fn otlp_headers_backstop_sets_and_endless_timeouts_are_refused() {
    for (otlp, said) in [
        (
            "{ endpoint: \"http://127.0.0.1:4318\", headers_env: { content-type: CT } }",
            "metrics.otlp.headers_env.content-type: backstop sets this header itself",
        ),
        (
            "{ endpoint: \"http://127.0.0.1:4318\", headers_env: { x-tenant: \"A=B\" } }",
            "metrics.otlp.headers_env.x-tenant: `A=B` is not an environment variable's name",
        ),
        (
            "{ endpoint: \"http://127.0.0.1:4318\", timeout: 10m }",
            "metrics.otlp.timeout: at most 1m",
        ),
    ] {
        Test::new()
            .write(
                "p.yaml",
                &format!("version: 1\nmetrics: {{ otlp: {otlp} }}\n"),
            )
            .args(&["policy", "check", "p.yaml"])
            .status(125)
            .stderr_contains(said)
            .run();
    }
}
