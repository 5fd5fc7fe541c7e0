//! Circuit breakers and the retry budget across runs, local and through a real
//! Redis: the breaker's whole cycle, a fleet of two stores sharing one Redis, and a
//! Redis that dies, comes back, is unreachable or slow.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{BIN, Test, eventually};
use crate::redis_server::{RedisServer, free_port};

/// The primary: logs an attempt, and fails while `$OUT/down` exists.
const PRIMARY: &str = r#"sh -c 'echo x >> "$OUT/primary"; test ! -e "$OUT/down"'"#;

fn policy(state: &str, retry: &str, guard: &str) -> String {
    format!(
        "version: 1\nretry: {retry}\nrollback: {{ snapshot: false }}\n\
         fallback:\n  chain:\n    - name: fb\n      run: echo fallback\n{guard}{state}"
    )
}

fn breaker_policy(state: &str) -> String {
    policy(
        state,
        "{ max_attempts: 1 }",
        "breaker: { failures: 2, within: 1m, cooldown: 2s }\n",
    )
}

/// `backstop breaker status --json`, parsed.
#[track_caller]
fn status(t: &Test, env: &[(&str, &str)]) -> Value {
    let ran = t.backstop_env(env, &["breaker", "status", "--json"]);
    assert_eq!(ran.status, 0, "breaker status failed: {}", ran.stderr);
    serde_json::from_str(&ran.stdout).expect("breaker status --json is JSON")
}

#[track_caller]
fn the_breaker(t: &Test, env: &[(&str, &str)]) -> Value {
    let s = status(t, env);
    let all = s["breakers"].as_array().expect("breakers").clone();
    all.into_iter()
        .find(|b| b["key"].as_str().is_some_and(|k| k.contains("primary")))
        .unwrap_or_else(|| panic!("no breaker for the primary: {s:#}"))
}

/// Waits, by the backend's own clock, until the breaker lets a probe through.
#[track_caller]
fn wait_for_probe(t: &Test, env: &[(&str, &str)]) {
    let next = the_breaker(t, env)["next_probe_ms"].as_u64().expect("open");
    let ok = eventually(Duration::from_secs(10), || {
        status(t, env)["now_ms"].as_u64().unwrap_or(0) >= next
    });
    assert!(ok, "the cooldown never passed");
}

fn run(t: &Test, env: &[(&str, &str)]) -> crate::helpers::Ran {
    let ran = t.backstop_env(env, &["run", "--", "sh", "-c", PRIMARY]);
    assert_eq!(ran.status, 0, "the fallback answers: {}", ran.stderr);
    ran
}

/// Opens after the configured failures, skips without running, half-opens after
/// the cooldown, re-opens on a failed probe, closes on a successful one.
fn breaker_cycle(state: &str, env: &[(&str, &str)]) {
    let t = Test::new().policy(&breaker_policy(state));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    let primary = || t.lines("primary").len();
    run(&t, env);
    assert_eq!(the_breaker(&t, env)["state"], "closed");
    run(&t, env);
    assert_eq!(
        (primary(), the_breaker(&t, env)["state"].clone()),
        (2, "open".into())
    );

    let skipped = run(&t, env);
    assert_eq!(primary(), 2, "an open breaker runs nothing");
    assert!(
        skipped.stderr.contains("breaker open since"),
        "{}",
        skipped.stderr
    );
    assert!(
        skipped.stderr.contains("next probe at"),
        "{}",
        skipped.stderr
    );
    let record = t.record();
    assert_eq!(record["skipped"][0]["link"], 0, "{record:#}");
    assert_eq!(
        record["attempts"].as_array().unwrap().len(),
        1,
        "only the fallback"
    );
    let id = record["id"].as_str().unwrap().to_string();
    let shown = t.backstop(&["show", &id]);
    assert!(
        shown.stdout.contains("breaker open since"),
        "{}",
        shown.stdout
    );

    wait_for_probe(&t, env);
    run(&t, env);
    assert_eq!(primary(), 3, "one probe after the cooldown");
    let b = the_breaker(&t, env);
    assert_eq!(
        (b["state"].as_str(), b["opened"].as_u64()),
        (Some("open"), Some(2))
    );
    run(&t, env);
    assert_eq!(primary(), 3, "re-opened by the failed probe");

    std::fs::remove_file(t.out_path().join("down")).unwrap();
    wait_for_probe(&t, env);
    run(&t, env);
    assert_eq!(primary(), 4);
    assert_eq!(
        the_breaker(&t, env)["state"],
        "closed",
        "closed by the probe"
    );
    run(&t, env);
    assert_eq!(primary(), 5);
    assert_eq!(
        t.record()["outcome"]["link"],
        0,
        "the primary answers again"
    );
}

#[test]
fn local_breaker_opens_skips_half_opens_and_closes() {
    breaker_cycle("", &[]);
}

fn redis_state(prefix: &str) -> String {
    format!(
        "state: {{ backend: redis, url_env: BACKSTOP_REDIS_URL, prefix: \"{prefix}\", timeout: 250ms }}\n"
    )
}

#[test]
fn redis_breaker_opens_skips_half_opens_and_closes() {
    let redis = RedisServer::start();
    let url = redis.url();
    breaker_cycle(&redis_state("cycle:"), &[("BACKSTOP_REDIS_URL", &url)]);
}

#[test]
fn breaker_reset_forgets_a_key() {
    let t = Test::new().policy(&breaker_policy(""));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    run(&t, &[]);
    run(&t, &[]);
    let key = the_breaker(&t, &[])["key"].as_str().unwrap().to_string();
    let plain = t.backstop(&["breaker"]);
    assert_eq!(plain.status, 0, "{}", plain.stderr);
    assert!(plain.stdout.contains("backend: local"), "{}", plain.stdout);
    assert!(
        plain.stdout.contains(&format!("{key}: open, 0 failure(s)")),
        "{}",
        plain.stdout
    );
    assert!(
        plain.stdout.contains("opened 1 time(s), open since"),
        "{}",
        plain.stdout
    );
    let ran = t.backstop(&["breaker", "reset", &key]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let kept = status(&t, &[])["breakers"].to_string();
    assert!(!kept.contains("primary"), "{kept}");
    run(&t, &[]);
    assert_eq!(
        t.lines("primary").len(),
        3,
        "closed again: the primary runs"
    );
}

#[test]
fn an_exhausted_budget_turns_retries_off_but_first_attempts_run() {
    let t = Test::new().policy(&policy(
        "",
        "{ max_attempts: 3, backoff: { initial: 10ms, jitter: none } }",
        "retry_budget: { ratio: 0.5, min_per_second: 0, window: 60s }\n",
    ));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    // One first attempt allows 0.5 retries: none. The second run's primary is the
    // third first attempt (the first fallback counted too): 1.5, so one retry.
    let first = run(&t, &[]);
    assert!(first.stderr.contains("retries off"), "{}", first.stderr);
    assert_eq!(t.record()["retries_off"], true);
    run(&t, &[]);
    assert_eq!(t.lines("primary").len(), 3, "1, then 1 + one retry");
    let budget = &status(&t, &[])["budget"];
    // First attempts: the primary's two and the fallback's two.
    assert_eq!(
        (
            budget["first_attempts"].as_u64(),
            budget["retries"].as_u64()
        ),
        (Some(4), Some(1))
    );
}

/// Starts `backstop run` with its own store, for the fleet.
fn spawn(t: &Test, store: &Path, url: &str) -> std::process::Child {
    Command::new(BIN)
        .current_dir(t.path())
        .env("BACKSTOP_HOME", store)
        .env("OUT", t.out_path())
        .env("BACKSTOP_REDIS_URL", url)
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .args(["run", "-q", "--", "sh", "-c", PRIMARY])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn backstop")
}

/// 50 concurrent runs, half on each of two stores ("machines"): how many attempts
/// the primary got; every run answered (by the fallback or the primary).
fn fleet(t: &Test, url: &str) -> usize {
    let stores = [
        t.out_path().join("../store-a"),
        t.out_path().join("../store-b"),
    ];
    runs(t, url, &stores)
}

/// 50 concurrent runs spread over `stores`: how many attempts the primary got.
fn runs(t: &Test, url: &str, stores: &[std::path::PathBuf]) -> usize {
    let before = t.lines("primary").len();
    let children: Vec<_> = (0..50)
        .map(|i| spawn(t, &stores[i % stores.len()], url))
        .collect();
    for mut c in children {
        assert_eq!(
            crate::helpers::wait_bounded(&mut c, Duration::from_secs(60)),
            0
        );
    }
    t.lines("primary").len() - before
}

#[test]
fn a_fleet_sharing_redis_opens_once_stays_within_the_budget_and_recovers() {
    fleet_opens_once_within_the_budget_and_recovers(&RedisServer::start());
}

/// The same against Valkey: the scripts use only what both servers have.
#[test]
fn a_fleet_sharing_valkey_opens_once_stays_within_the_budget_and_recovers() {
    fleet_opens_once_within_the_budget_and_recovers(&RedisServer::start_valkey());
}

#[test]
fn valkey_breaker_opens_skips_half_opens_and_closes() {
    let valkey = RedisServer::start_valkey();
    let url = valkey.url();
    breaker_cycle(&redis_state("cycle:"), &[("BACKSTOP_REDIS_URL", &url)]);
}

fn fleet_opens_once_within_the_budget_and_recovers(redis: &RedisServer) {
    let url = redis.url();
    let retry = "{ max_attempts: 4, backoff: { initial: 20ms, max: 100ms } }";
    let plain = Test::new().policy(&policy(&redis_state("plain:"), retry, ""));
    std::fs::write(plain.out_path().join("down"), "").unwrap();
    let without = fleet(&plain, &url);
    assert_eq!(
        without, 200,
        "50 runs × 4 attempts without a breaker or budget"
    );

    // A cooldown longer than the 50 runs take even on a loaded machine: no probe
    // before the outage ends, so the breaker opens exactly once.
    let guard = "breaker: { failures: 5, within: 1m, cooldown: 8s }\n\
                 retry_budget: { ratio: 0.2, min_per_second: 0.1, window: 60s }\n";
    let t = Test::new().policy(&policy(&redis_state("fleet:"), retry, guard));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    let with = fleet(&t, &url);
    let env = [("BACKSTOP_REDIS_URL", url.as_str())];
    let b = the_breaker(&t, &env);
    assert_eq!(
        (b["state"].as_str(), b["opened"].as_u64()),
        (Some("open"), Some(1)),
        "{b:#}"
    );
    let budget = &status(&t, &env)["budget"];
    let firsts = budget["first_attempts"].as_u64().unwrap() as usize;
    let retries = budget["retries"].as_u64().unwrap() as usize;
    // Retries within 0.2 × first attempts + 0.1/s × 60s; every attempt was one or the other.
    assert!(retries as f64 <= 0.2 * firsts as f64 + 6.0, "{budget:#}");
    // Every run's fallback made one first attempt; the rest are the primary's. A
    // retry the budget allowed may still be skipped by the breaker opened meanwhile.
    assert!(with <= firsts - 50 + retries, "{with} attempts: {budget:#}");
    assert!(with >= 5, "the breaker opened after 5 failures, not before");
    assert!(
        with < without / 2,
        "{with} attempts with, {without} without"
    );
    eprintln!("fleet: {without} primary attempts without breaker + budget, {with} with");

    // The outage ends: a probe closes the breaker and runs succeed on the primary.
    std::fs::remove_file(t.out_path().join("down")).unwrap();
    wait_for_probe(&t, &env);
    let after = fleet(&t, &url);
    assert!(after >= 1, "probes ran");
    let b = the_breaker(&t, &env);
    assert_eq!(b["state"], "closed", "{b:#}");
    let recovered = fleet(&t, &url);
    assert_eq!(
        recovered, 50,
        "every run succeeds on the primary, first try"
    );
}

#[test]
fn concurrent_local_runs_see_each_others_failures_at_once() {
    let retry = "{ max_attempts: 4, backoff: { initial: 20ms, max: 100ms } }";
    let guard = "breaker: { failures: 5, within: 1m, cooldown: 30s }\n";
    let t = Test::new().policy(&policy("", retry, guard));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    let store = t.out_path().join("../store");
    let attempts = runs(&t, "", &[store]);
    let b = the_breaker(&t, &[]);
    assert_eq!(
        (b["state"].as_str(), b["opened"].as_u64()),
        (Some("open"), Some(1)),
        "{b:#}"
    );
    assert!(
        (5..200).contains(&attempts),
        "{attempts} attempts of 50 runs × 4"
    );
    eprintln!("local: {attempts} primary attempts of 50 concurrent runs (200 without a breaker)");
}

#[test]
fn a_redis_that_dies_mid_run_comes_back_or_is_unreachable_never_fails_a_run() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let env = [("BACKSTOP_REDIS_URL", url.as_str())];
    let t = Test::new().policy(&breaker_policy(&redis_state("dies:")));
    // Killed mid-run: the attempt's result cannot be recorded.
    let kill = format!("kill {}; sleep 0.2; exit 1", redis.pid());
    let ran = t.backstop_env(&env, &["run", "--", "sh", "-c", &kill]);
    assert_eq!(ran.status, 0, "the fallback still answers: {}", ran.stderr);
    assert!(
        ran.stderr.contains("warning: breaker state:"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("goes on without breakers"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        ran.stderr.matches("breaker state:").count(),
        1,
        "warned once"
    );
    assert!(
        t.record()["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Redis at")
    );
    redis.kill();

    // Unreachable: the run goes on as if no breaker were configured.
    let ran = run(&t, &env);
    assert!(
        ran.stderr
            .contains("cannot connect to Redis at redis://127.0.0.1"),
        "{}",
        ran.stderr
    );
    assert_eq!(t.lines("primary").len(), 1);

    // Restarted: breakers work again, without a warning.
    redis.restart();
    let ran = run(&t, &env);
    assert!(!ran.stderr.contains("warning"), "{}", ran.stderr);
    assert_eq!(the_breaker(&t, &env)["attempts"], 1);
}

#[test]
fn a_slow_redis_costs_one_timeout_and_a_warning() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [("BACKSTOP_REDIS_URL", url.as_str())];
    let t = Test::new().policy(&breaker_policy(&redis_state("slow:")));
    redis.cli(&["CLIENT", "PAUSE", "5000", "ALL"]);
    let ran = run(&t, &env);
    assert!(ran.stderr.contains("Redis at"), "{}", ran.stderr);
    assert!(ran.stderr.contains("timed out"), "{}", ran.stderr);
    assert_eq!(t.lines("primary").len(), 1, "the run went on");
}

#[test]
fn a_password_in_the_url_is_never_printed() {
    let port = free_port();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/");
    let env = [("BACKSTOP_REDIS_URL", url.as_str())];
    let t = Test::new().policy(&breaker_policy(&redis_state("pw:")));
    let ran = run(&t, &env);
    assert!(
        ran.stderr.contains("Redis at redis://127.0.0.1"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("s3cret"), "{}", ran.stderr);
    assert!(!t.backstop(&["show", "--json"]).stdout.contains("s3cret"));
    // The client library also takes a password from a unix URL's query.
    let unix = "redis+unix:///nonexistent/redis.sock?pass=s3cret-unix";
    let ran = run(&t, &[("BACKSTOP_REDIS_URL", unix)]);
    assert!(
        ran.stderr
            .contains("Redis at redis+unix:///nonexistent/redis.sock"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("s3cret"), "{}", ran.stderr);
    let missing = t.backstop(&["run", "--", "true"]);
    assert!(
        missing
            .stderr
            .contains("`BACKSTOP_REDIS_URL` (state.url_env) is not set"),
        "{}",
        missing.stderr
    );
}

#[test]
fn policy_check_names_the_key_and_explain_describes_the_guard() {
    let t = Test::new()
        .write("bad.yaml", "version: 1\nretry_budget:\n  ratio: 1.5\n")
        .write(
            "url.yaml",
            "version: 1\nbreaker: {}\nstate: { backend: redis, url_env: \"redis://:pw@h\" }\n",
        )
        .write(
            "good.yaml",
            "version: 1\nbreaker: { failures: 3, cooldown: 10s }\nretry_budget: {}\n\
             state: { backend: redis, url_env: BACKSTOP_REDIS_URL }\n",
        );
    let bad = t.backstop(&["policy", "check", "bad.yaml"]);
    assert_eq!(bad.status, 125);
    assert!(
        bad.stderr
            .contains("bad.yaml:3:3: retry_budget.ratio: 1.5 is not a share from 0 to 1"),
        "{}",
        bad.stderr
    );
    let url = t.backstop(&["policy", "check", "url.yaml"]);
    assert_eq!(url.status, 125);
    assert!(
        url.stderr
            .contains("state.url_env: must name an environment variable"),
        "{}",
        url.stderr
    );
    assert!(!url.stderr.contains("pw@"), "{}", url.stderr);
    let explain = t.backstop(&["policy", "explain", "good.yaml"]);
    assert_eq!(explain.status, 0, "{}", explain.stderr);
    assert!(
        explain.stdout.contains("breaker: per link"),
        "{}",
        explain.stdout
    );
    assert!(
        explain
            .stdout
            .contains("opens after 3 failed attempt(s) within 1m"),
        "{}",
        explain.stdout
    );
    assert!(
        explain
            .stdout
            .contains("retry budget: retries only while retries <= 0.2 x first attempts"),
        "{}",
        explain.stdout
    );
    assert!(
        explain
            .stdout
            .contains("state: redis at $BACKSTOP_REDIS_URL"),
        "{}",
        explain.stdout
    );
}

#[test]
fn a_lone_link_whose_breaker_is_open_fails_the_run_without_running() {
    let t = Test::new().policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { snapshot: false }\n\
         breaker: { failures: 1, cooldown: 1m }\n",
    );
    std::fs::write(t.out_path().join("down"), "").unwrap();
    let first = t.backstop(&["run", "--", "sh", "-c", PRIMARY]);
    assert_eq!(first.status, 1, "{}", first.stderr);
    let skipped = t.backstop(&["run", "--", "sh", "-c", PRIMARY]);
    assert_eq!(skipped.status, 1, "{}", skipped.stderr);
    assert!(
        skipped.stderr.contains("breaker open since"),
        "{}",
        skipped.stderr
    );
    assert_eq!(t.lines("primary").len(), 1, "the second run ran nothing");
    let stats = t.backstop(&["stats", "--json"]);
    let doc: Value = serde_json::from_str(&stats.stdout).expect("stats --json");
    assert_eq!(
        doc["summary"]["attempts"]["total"], 1,
        "a skipped link is no attempt: {doc:#}"
    );
}

#[test]
fn rediss_with_a_password_shares_breakers_and_never_prints_the_password() {
    let t = Test::new().policy(&breaker_policy(&redis_state("tls:")));
    let certs = t.out_path().join("../certs");
    std::fs::create_dir_all(&certs).unwrap();
    let redis = RedisServer::start_tls(&certs, "s3cret-pw");
    let url = format!("rediss://:s3cret-pw@127.0.0.1:{}/", redis.port);
    let ca = certs.join("ca.pem");
    let env = [
        ("BACKSTOP_REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ];
    std::fs::write(t.out_path().join("down"), "").unwrap();
    for _ in 0..3 {
        let ran = run(&t, &env);
        assert!(
            !ran.stderr.contains("warning: breaker state"),
            "{}",
            ran.stderr
        );
    }
    assert_eq!(
        t.lines("primary").len(),
        2,
        "opened after 2 failures, through TLS"
    );
    assert_eq!(the_breaker(&t, &env)["state"], "open");
    assert!(
        redis.cli(&["KEYS", "tls:*"]).contains("tls:b:"),
        "the state is in this Redis"
    );

    // A wrong password: refused, said without either password.
    let wrong = format!("rediss://:wrong-pw@127.0.0.1:{}/", redis.port);
    let env = [
        ("BACKSTOP_REDIS_URL", wrong.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ];
    let ran = run(&t, &env);
    assert!(
        ran.stderr.contains("Redis at rediss://127.0.0.1"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("-pw"), "{}", ran.stderr);
    assert!(!t.backstop(&["show", "--json"]).stdout.contains("-pw"));
}

/// `breaker status` only looks: the local state file is the same bytes after it,
/// whatever windows the policy it is asked with would prune by.
#[test]
fn breaker_status_never_rewrites_the_local_state() {
    let t = Test::new().policy(&breaker_policy(""));
    std::fs::write(t.out_path().join("down"), "").unwrap();
    run(&t, &[]);
    let file = t.path().parent().unwrap().join("store/state/breakers.json");
    let before = std::fs::read(&file).expect("the state file");
    let other = t.out_path().join("short.yaml");
    std::fs::write(
        &other,
        "version: 1\nbreaker: { failures: 2, within: 1s, cooldown: 1s }\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let ran = t.backstop(&["breaker", "status", "-p", other.to_str().unwrap()]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

/// A run never waits on the local state's lock past `state.timeout`: a holder that is
/// stopped or stuck costs that long once, and the run goes on, warned.
#[test]
fn a_held_local_state_lock_costs_its_timeout_and_a_warning() {
    let t = Test::new().policy(&policy(
        "state: { backend: local, timeout: 200ms }\n",
        "{ max_attempts: 1 }",
        "breaker: { failures: 2, within: 1m, cooldown: 2s }\n",
    ));
    let lock = t.path().parent().unwrap().join("store/state/breakers.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let ran = run(&t, &[]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        ran.stderr.contains("longer than state.timeout (200ms)"),
        "{}",
        ran.stderr
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

/// The Redis index of breaker names forgets a name unused past the TTL, as its hashes
/// expire: a key per commit (`./deploy.sh $SHA`) does not grow it for good.
#[test]
fn the_redis_index_forgets_names_unused_past_their_ttl() {
    let redis = RedisServer::start();
    let url = redis.url();
    let env = [("BACKSTOP_REDIS_URL", url.as_str())];
    let t = Test::new().policy(&breaker_policy(&redis_state("idx:")));
    // A name last used long ago (score 1 ms after the epoch), as an old commit's key.
    assert_eq!(
        redis
            .cli(&["ZADD", "idx:keys", "1", "./deploy.sh 0ld"])
            .trim(),
        "1"
    );
    run(&t, &env);
    let names = redis.cli(&["ZRANGE", "idx:keys", "0", "-1"]);
    assert!(!names.contains("0ld"), "{names}");
    assert!(names.contains("primary"), "{names}");
    assert!(status(&t, &env)["breakers"].as_array().unwrap().len() == 1);
}
