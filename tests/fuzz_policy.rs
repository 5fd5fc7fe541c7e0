//! A fuzz harness for the policy loader and `policy explain`, on stable Rust.
//!
//! Each case is a mutation of an example policy in `policies/` (keys swapped,
//! values made absurd, nesting, duplication, truncation, splices, random bytes) or
//! plain random bytes, fed to `load_str`; a policy that loads is then explained,
//! warned about, serialized as `policy check` prints it, and its backoff schedules
//! drawn. Every case runs under `catch_unwind` and is timed: a panic or a case over
//! [`SLOW`] fails the test with the seed and case number that reproduce it.
//!
//! `cargo test --test fuzz_policy` runs a bounded number of cases (20 s at most);
//! `BACKSTOP_FUZZ_CASES=1000000` runs that many, `BACKSTOP_FUZZ_SEED=N` picks the
//! seed, `BACKSTOP_FUZZ_CASE=I` reruns one case and prints its input.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use backstop::backoff::Schedule;
use backstop::policy::{explain, load_str};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A case slower than this is a failure: a policy must load or be refused at once.
const SLOW: Duration = Duration::from_secs(1);
/// Cases in the bounded run, and the time it stops at whatever the count.
const DEFAULT_CASES: u64 = 20_000;
const DEFAULT_BUDGET: Duration = Duration::from_secs(20);

const VALUES: &[&str] = &[
    "18446744073709551615s",
    "18446744073709551616s",
    "9223372036854775807s",
    "10000000000000000000s",
    "365days",
    "366days",
    "8760h",
    "0s",
    "0",
    "1ns",
    "-1s",
    "1e308",
    "-1e308",
    "1.0e300",
    ".nan",
    ".inf",
    "-.inf",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "-9223372036854775808",
    "1000",
    "1001",
    "0.5",
    "~",
    "''",
    "\"\"",
    "true",
    "[]",
    "{}",
    "[1, 2, '64..78', '255..0', 256, -1]",
    "'x{4000}y'",
    "'(a+)+$'",
    "'\\w{20}'",
    "'['",
    "'(?i)'",
    "&a [1, 2]",
    "*a",
    "!!binary aGVsbG8=",
    "!!str 5s",
    "'\\u0000'",
    "|\n  multi\n  line",
    "'../../../etc/passwd'",
    "'/'",
    "100TiB",
    "18446744073709551615B",
    "1.8e19GiB",
];

const KEYS: &[&str] = &[
    "version",
    "retry",
    "max_attempts",
    "backoff",
    "kind",
    "initial",
    "multiplier",
    "step",
    "max",
    "jitter",
    "seed",
    "on",
    "never",
    "exit_codes",
    "output",
    "timeout",
    "signals",
    "status",
    "network",
    "retry_after",
    "honor",
    "on_retry",
    "attempt",
    "total",
    "first_token",
    "stall",
    "kill_grace",
    "fallback",
    "critical",
    "chain",
    "run",
    "call",
    "default",
    "escalate",
    "name",
    "rollback",
    "scope",
    "root",
    "exclude",
    "ignored",
    "max_file_size",
    "max_total_size",
    "between_attempts",
    "validate",
    "to",
    "steps",
    "approve",
    "providers",
    "models",
    "model",
    "budget",
    "max_cost_usd",
    "max_tokens",
    "<<",
    "? complex",
];

fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .expect("policies/ is there")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).expect("an example policy is text"))
        .collect();
    out.sort();
    out.push("version: 1\n".into());
    out
}

/// A random position in `s` on a character boundary.
fn boundary(rng: &mut StdRng, s: &str) -> usize {
    let mut at = rng.gen_range(0..=s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

fn random_text(rng: &mut StdRng, len: usize) -> String {
    let alphabet = b" \n\t:-[]{},#&*!|>'\"%@`?0123456789abcxyz.\\";
    (0..len)
        .map(|_| {
            if rng.gen_bool(0.8) {
                alphabet[rng.gen_range(0..alphabet.len())] as char
            } else {
                char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{fffd}')
            }
        })
        .collect()
}

/// One structure-aware change to `text`.
fn mutate(rng: &mut StdRng, text: &str, corpus: &[String]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let i = rng.gen_range(0..lines.len());
    match rng.gen_range(0..14) {
        // A value made absurd.
        0 | 1 => {
            let line = &lines[i];
            let value = pick(rng, VALUES);
            lines[i] = match line.find(": ") {
                Some(at) => format!("{}: {value}", &line[..at]),
                None => match line.find("- ") {
                    Some(at) => format!("{}- {value}", &line[..at]),
                    None => format!("{line} {value}"),
                },
            };
        }
        // A value inside a flow mapping made absurd (`{ a: 1, b: 2 }`): the arm
        // above replaces the whole mapping, so the prices and temperatures of the
        // example models were never mutated alone (a NaN price loaded unseen).
        12 | 13 => {
            let line = lines[i].clone();
            let colons: Vec<usize> = line.match_indices(": ").map(|(at, _)| at).collect();
            if !colons.is_empty() {
                let start = colons[rng.gen_range(0..colons.len())] + 2;
                let end = line[start..]
                    .find([',', '}'])
                    .map_or(line.len(), |n| start + n);
                let value = pick(rng, VALUES);
                lines[i] = format!("{}{value}{}", &line[..start], &line[end..]);
            }
        }
        // A key swapped for another, keeping the indentation.
        2 => {
            let line = lines[i].clone();
            let indent = line.len() - line.trim_start().len();
            let rest = line.split_once(':').map_or("", |(_, r)| r);
            lines[i] = format!("{}{}:{rest}", &line[..indent], pick(rng, KEYS));
        }
        // A line duplicated, dropped or moved.
        3 => {
            let line = lines[i].clone();
            lines.insert(rng.gen_range(0..=lines.len()), line);
        }
        4 => {
            lines.remove(i);
        }
        5 => {
            let j = rng.gen_range(0..lines.len());
            lines.swap(i, j);
        }
        // Truncated anywhere.
        6 => {
            let at = boundary(rng, text);
            return text[..at].to_string();
        }
        // A value nested in brackets or mappings, deep or not.
        7 => {
            let depth = if rng.gen_bool(0.5) {
                rng.gen_range(1..10)
            } else {
                rng.gen_range(10..3000)
            };
            let (open, close) = if rng.gen_bool(0.5) {
                ("[", "]")
            } else {
                ("{a: ", "}")
            };
            let inner = pick(rng, VALUES);
            let closed = rng.gen_bool(0.8);
            let value = format!(
                "{}{inner}{}",
                open.repeat(depth),
                if closed {
                    close.repeat(depth)
                } else {
                    String::new()
                }
            );
            let line = &lines[i];
            lines[i] = match line.find(": ") {
                Some(at) => format!("{}: {value}", &line[..at]),
                None => format!("{line}{value}"),
            };
        }
        // Random text inserted.
        8 => {
            let at = boundary(rng, text);
            let len = rng.gen_range(1..64);
            return format!("{}{}{}", &text[..at], random_text(rng, len), &text[at..]);
        }
        // Two policies spliced.
        9 => {
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let (a, b) = (boundary(rng, text), boundary(rng, other));
            return format!("{}{}", &text[..a], &other[b..]);
        }
        // A block repeated many times, or aliases of aliases.
        10 => {
            let j = rng.gen_range(i..lines.len());
            let block = lines[i..=j].join("\n");
            let times = rng.gen_range(2..200);
            lines.splice(i..=j, std::iter::repeat_n(block, times));
        }
        _ => {
            let mut laughs = String::from("version: 1\nx0: &x0 [a, a, a, a, a, a, a, a, a]\n");
            for k in 1..rng.gen_range(2..12) {
                let alias = format!("*x{}", k - 1);
                let row = [alias.as_str(); 9].join(", ");
                laughs.push_str(&format!("x{k}: &x{k} [{row}]\n"));
            }
            return laughs + text;
        }
    }
    let mut out = lines.join("\n");
    if rng.gen_bool(0.9) {
        out.push('\n');
    }
    out
}

fn case(seed: u64, index: u64, corpus: &[String]) -> String {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if rng.gen_bool(0.1) {
        let len = rng.gen_range(0..2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut text = corpus[rng.gen_range(0..corpus.len())].clone();
    // Half the cases change one thing, so that more of them load and are explained.
    let changes = if rng.gen_bool(0.5) {
        1
    } else {
        rng.gen_range(2..5)
    };
    for _ in 0..changes {
        text = mutate(&mut rng, &text, corpus);
    }
    text
}

/// What `policy check` and `policy explain` do with a text, and the engine's schedules.
fn exercise(text: &str) -> bool {
    let Ok(policy) = load_str(text, "fuzz.yaml") else {
        return false;
    };
    let _ = explain::explain(&policy);
    let _ = explain::warnings(&policy);
    let _ = serde_yaml::to_string(&policy);
    // A NaN or infinite number that loads is one no comparison can bound: a NaN price
    // made every cost NaN and the budget moot; a non-finite temperature went out as
    // `null`. (An infinite `max_cost_usd` is "no limit", and fine.)
    for (name, model) in &policy.models {
        if let Some(p) = &model.price {
            assert!(
                p.input_per_mtok.is_finite() && p.output_per_mtok.is_finite(),
                "models.{name}.price loaded non-finite"
            );
        }
        assert!(
            model.temperature.is_none_or(f64::is_finite),
            "models.{name}.temperature loaded non-finite"
        );
    }
    assert!(!policy.budget.max_cost_usd.is_some_and(f64::is_nan));
    let retries = std::iter::once(&policy.retry).chain(
        policy
            .fallback
            .chain
            .iter()
            .filter_map(|l| l.retry.as_ref()),
    );
    for retry in retries {
        assert!(
            retry.backoff.multiplier.is_finite(),
            "a non-finite multiplier loaded"
        );
        let mut backoff = retry.backoff.clone();
        backoff.seed = Some(1);
        for delay in Schedule::new(&backoff, retry.max_attempts) {
            assert!(delay.chosen <= delay.base.max(backoff.max.0));
        }
    }
    true
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

#[test]
fn the_loader_and_explain_never_panic_or_stall() {
    let corpus = corpus();
    let seed = env_u64("BACKSTOP_FUZZ_SEED").unwrap_or(0x5eed_2026);
    if let Some(index) = env_u64("BACKSTOP_FUZZ_CASE") {
        let text = case(seed, index, &corpus);
        eprintln!("case {index} of seed {seed}:\n{text}");
        eprintln!("loaded: {}", exercise(&text));
        return;
    }
    let full = env_u64("BACKSTOP_FUZZ_CASES");
    let cases = full.unwrap_or(DEFAULT_CASES);
    let budget = if full.is_some() {
        Duration::MAX
    } else {
        DEFAULT_BUDGET
    };

    let quiet = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let (mut ran, mut loaded) = (0u64, 0u64);
    let mut panics = Vec::new();
    let mut slow = Vec::new();
    let mut slowest = (Duration::ZERO, 0);
    for index in 0..cases {
        if started.elapsed() > budget {
            break;
        }
        let text = case(seed, index, &corpus);
        let t = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| exercise(&text)));
        let took = t.elapsed();
        ran += 1;
        match result {
            Ok(true) => loaded += 1,
            Ok(false) => {}
            Err(_) => panics.push(index),
        }
        if took > slowest.0 {
            slowest = (took, index);
        }
        if took > SLOW {
            slow.push(index);
        }
    }
    panic::set_hook(quiet);
    eprintln!(
        "fuzz: seed {seed}, {ran} cases ({loaded} loaded) in {:.1?}; {} panics, {} over {SLOW:?}; \
         slowest {:.1?} (case {})",
        started.elapsed(),
        panics.len(),
        slow.len(),
        slowest.0,
        slowest.1,
    );
    assert!(
        panics.is_empty() && slow.is_empty(),
        "seed {seed}: panics in cases {panics:?}, slow cases {slow:?}; rerun one with \
         BACKSTOP_FUZZ_SEED={seed} BACKSTOP_FUZZ_CASE=<case>"
    );
}
