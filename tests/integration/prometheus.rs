//! Prometheus exports judged by Prometheus's own tools (Debian's `prometheus` for
//! `promtool`, `prometheus-pushgateway`; `.ci/run` installs both): `stats
//! --prometheus`, the node_exporter textfile written after each run, and the push to
//! a real Pushgateway started by the test.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::call::{KEY, Server, ok, policy, status};
use crate::helpers::Test;

const FAST: &str =
    "version: 1\nretry: { max_attempts: 2, backoff: { initial: 10ms, max: 20ms, jitter: none } }\n";

/// Debian's packages these tests judge by, installed once (under a lock, as root with
/// apt-get) on a machine that lacks them, so that `cargo test` alone works on a fresh
/// one; elsewhere a failure says how to get them.
fn tools() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        crate::helpers::debian_tools(
            &["promtool", "prometheus-pushgateway"],
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-pushgateway >/dev/null",
        );
    });
}

/// `promtool check metrics` on `text`: its verdict, or a failure saying how to get it.
#[track_caller]
fn promtool_accepts(text: &str) {
    tools();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed ({e}): apt-get install prometheus (see .ci/run)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused it:\n{}{}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the series whose line starts with `prefix` (labels included).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn stats_prometheus_is_accepted_by_promtool() {
    let server = Server::start(vec![status(500), ok("fine")]);
    let t = Test::new()
        .policy(&policy(&server.url(), "openai", ""))
        .env("TEST_API_KEY", KEY)
        .args(&["call", "hi"])
        .stdout("fine\n")
        .run();
    for cmd in [["run", "--", "true"], ["run", "--", "false"]] {
        let mut args = vec!["-q"];
        args.extend(cmd);
        t.backstop(&args);
    }
    let ran = t.backstop(&["stats", "--prometheus"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    promtool_accepts(&ran.stdout);
    assert_eq!(
        value(
            &ran.stdout,
            "backstop_runs_total{policy=\"backstop.yaml\",layer=\"l1\",outcome=\"retried\"}"
        ),
        Some(1.0),
        "{}",
        ran.stdout
    );
    assert_eq!(
        value(
            &ran.stdout,
            "backstop_attempt_errors_total{policy=\"backstop.yaml\",error_type=\"server_5xx\"}"
        ),
        Some(1.0)
    );
    assert!(
        ran.stdout
            .contains("backstop_cost_usd_total{policy=\"backstop.yaml\",model=\"small\"}")
    );
    assert!(ran.stdout.contains("backstop_run_duration_seconds_bucket{"));
    // Bounded labels: never a run id, a command line or a key.
    for run in t.runs() {
        assert!(!ran.stdout.contains(run["id"].as_str().unwrap()));
    }
    assert!(!ran.stdout.contains(KEY));
    assert!(!ran.stdout.contains("\"false\""));
}

#[test]
fn a_policy_name_with_quotes_and_newlines_is_escaped() {
    let name = "we\"ird\\na\nme.yaml";
    let t = Test::new()
        .write(name, FAST)
        .args(&["run", "-q", "-p", name, "--", "true"])
        .run();
    let ran = t.backstop(&["stats", "--prometheus"]);
    promtool_accepts(&ran.stdout);
    // The newline in the name forged no line: every line is a comment or a series.
    for line in ran.stdout.lines() {
        assert!(
            line.starts_with("# ") || line.starts_with("backstop_"),
            "a forged line: {line:?}"
        );
    }
    let runs: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("backstop_runs_total{"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].contains("\\n"),
        "the newline kept, escaped: {}",
        runs[0]
    );
}

#[test]
fn the_textfile_is_rewritten_after_each_run_and_its_counters_only_go_up() {
    let t = Test::new();
    let dir = t.out_path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let t = t
        .policy(&format!(
            "{FAST}metrics: {{ textfile: \"{}\" }}\n",
            dir.display()
        ))
        .args(&["run", "--", "true"])
        .run();
    let file = dir.join("backstop.prom");
    let text = std::fs::read_to_string(&file).expect("the textfile is written after the run");
    promtool_accepts(&text);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter's user reads it");
    let first_try =
        "backstop_runs_total{policy=\"backstop.yaml\",layer=\"l1\",outcome=\"first_try\"}";
    assert_eq!(value(&text, first_try), Some(1.0), "{text}");
    assert_eq!(t.backstop(&["run", "--", "true"]).status, 0);
    // gc drops every record: the counters carry on from where they were.
    assert_eq!(t.backstop(&["gc", "--keep", "0"]).status, 0);
    assert_eq!(t.backstop(&["run", "--", "true"]).status, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(value(&text, first_try), Some(3.0), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "backstop.prom")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[test]
fn a_textfile_directory_that_is_missing_is_a_warning_not_a_failure() {
    Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ textfile: /nonexistent/textfile }}\n"
        ))
        .args(&["run", "--", "true"])
        .stderr_contains("/nonexistent/textfile")
        .run();
    Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ textfile: /nonexistent/textfile }}\n"
        ))
        .args(&["run", "--", "sh", "-c", "exit 3"])
        .status(3)
        .run();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Pushgateway on a free loopback port, stopped when dropped.
struct Gateway {
    child: Child,
    port: u16,
}

impl Gateway {
    fn start() -> Gateway {
        tools();
        let port = free_port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus-pushgateway is needed ({e}): apt-get install prometheus-pushgateway (see .ci/run)"
                )
            });
        let gw = Gateway { child, port };
        let until = Instant::now() + Duration::from_secs(20);
        while gw.get("/-/ready").is_none() {
            assert!(Instant::now() < until, "the Pushgateway did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        gw
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP/1.0 GET: the body of a 200 answer.
    fn get(&self, path: &str) -> Option<String> {
        use std::io::Read;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?;
        (status == "200").then(|| body.to_string())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_pushgateway_receives_each_run_and_serves_it_back() {
    let gw = Gateway::start();
    let t = Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ pushgateway: \"{}\" }}\n",
            gw.url()
        ))
        .args(&["run", "--", "true"])
        .stderr_lacks("warning")
        .run();
    assert_eq!(t.backstop(&["run", "--", "false"]).status, 1);
    let served = gw.get("/metrics").expect("the gateway serves its metrics");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let ours: Vec<&str> = served
        .lines()
        .filter(|l| l.starts_with("backstop_runs_total{"))
        .collect();
    assert!(!ours.is_empty(), "no backstop_runs_total served:\n{served}");
    for line in &ours {
        assert!(line.contains("job=\"backstop\""), "{line}");
        assert!(line.contains(&format!("instance=\"{host}\"")), "{line}");
    }
    assert!(
        ours.iter()
            .any(|l| l.contains("outcome=\"failed\"") && l.ends_with(" 1")),
        "{served}"
    );
    assert!(
        ours.iter()
            .any(|l| l.contains("outcome=\"first_try\"") && l.ends_with(" 1")),
        "{served}"
    );
}

#[test]
fn an_unreachable_pushgateway_is_a_warning_and_the_exit_code_stands() {
    let port = free_port(); // nothing listens there once the probe is dropped
    let started = Instant::now();
    Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ pushgateway: \"http://127.0.0.1:{port}\" }}\n"
        ))
        .args(&["run", "--", "sh", "-c", "exit 5"])
        .status(5)
        .stderr_contains("metrics not pushed")
        .stderr_contains(&format!("127.0.0.1:{port}"))
        .run();
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_pushgateway_that_never_answers_costs_at_most_its_timeout() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let out = Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ pushgateway: \"http://127.0.0.1:{port}\" }}\n"
        ))
        .args(&["run", "--", "true"])
        .stderr_contains("timed out")
        .run();
    assert!(
        out.elapsed < Duration::from_secs(6),
        "the push is bounded: {:?}",
        out.elapsed
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);
}

#[test]
fn runs_ending_at_once_each_count_once_in_the_textfile() {
    let t = Test::new();
    let dir = t.out_path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let t = t.policy(&format!(
        "version: 1\nrollback: {{ snapshot: false }}\nmetrics: {{ textfile: \"{}\" }}\n",
        dir.display()
    ));
    // Rounds: the race is between the runs' ends (a run that added itself earlier must
    // not write its older tally over a later one).
    for round in 1..=4u32 {
        eight_runs_at_once(&t);
        let text = std::fs::read_to_string(dir.join("backstop.prom")).unwrap();
        let first_try =
            "backstop_runs_total{policy=\"backstop.yaml\",layer=\"l1\",outcome=\"first_try\"}";
        assert_eq!(
            value(&text, first_try),
            Some(f64::from(8 * round)),
            "round {round}: {text}"
        );
        promtool_accepts(&text);
    }
}

/// Eight `backstop run -q -- true` started at once, each succeeding without a word.
fn eight_runs_at_once(t: &Test) {
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut c = t.command();
            c.args(["run", "-q", "--", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.is_empty(), "{said}");
    }
}

/// The same for a Pushgateway: pushes go one at a time, each of the tally as it is
/// when sent, so the gateway ends with every run counted, never an older tally. Run
/// many times over, as the race is between the runs' ends.
#[test]
fn runs_ending_at_once_each_count_once_at_the_pushgateway() {
    let gw = Gateway::start();
    let t = Test::new().policy(&format!(
        "version: 1\nrollback: {{ snapshot: false }}\nmetrics: {{ pushgateway: \"{}\" }}\n",
        gw.url()
    ));
    let mut total = 0;
    for round in 1..=4 {
        eight_runs_at_once(&t);
        total += 8;
        let served = gw.get("/metrics").expect("the gateway serves its metrics");
        let counted: f64 = served
            .lines()
            .filter(|l| l.starts_with("backstop_runs_total{") && l.contains("first_try"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(counted, f64::from(total), "round {round}:\n{served}");
    }
}

#[test]
fn a_fifo_for_the_tally_neither_blocks_a_run_nor_loses_its_count() {
    let t = Test::new();
    let dir = t.out_path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let store = t.path().parent().unwrap().join("store").join("metrics");
    std::fs::create_dir_all(&store).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(store.join("tally.json"))
            .status()
            .unwrap()
            .success()
    );
    let out = t
        .policy(&format!(
            "{FAST}metrics: {{ textfile: \"{}\" }}\n",
            dir.display()
        ))
        .args(&["run", "--", "true"])
        .run();
    assert!(
        out.elapsed < Duration::from_secs(20),
        "a FIFO must not block"
    );
    let text = std::fs::read_to_string(dir.join("backstop.prom")).unwrap();
    let first_try =
        "backstop_runs_total{policy=\"backstop.yaml\",layer=\"l1\",outcome=\"first_try\"}";
    assert_eq!(value(&text, first_try), Some(1.0), "{text}");
}

#[test]
fn a_full_textfile_directory_is_a_warning_and_leaves_nothing_half_written() {
    let _mounting = crate::helpers::mounting();
    let t = Test::new();
    let dir = t.out_path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        // Mounting needs root (CI runs as root); say so rather than pass quietly.
        assert!(
            !rustix::process::geteuid().is_root(),
            "root but cannot mount a tmpfs"
        );
        eprintln!("SKIPPED a_full_textfile_directory: needs root to mount a tmpfs");
        return;
    }
    let _mount = crate::undo::Mount(dir.clone());
    // Fill it to the last block.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat /dev/zero > '{}/fill' 2>/dev/null",
            dir.display()
        ))
        .status();
    Test::new()
        .policy(&format!(
            "{FAST}metrics: {{ textfile: \"{}\" }}\n",
            dir.display()
        ))
        .args(&["run", "--", "sh", "-c", "exit 3"])
        .status(3)
        .stderr_contains("metrics textfile not written")
        .run();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("fill")],
        "no half-written file"
    );
}
