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
