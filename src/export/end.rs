//! The one step at the end of `run` and `call`: read the final record, then send it
//! wherever `metrics:` says. Every failure here is a warning on stderr.

use std::path::PathBuf;

use super::names::Kind;
use super::otlp::Service;
use super::trace_context::parse_traceparent;
use super::{github, otlp, send};
use crate::policy::{Otlp, Policy};
use crate::record::RunRecord;
use crate::reporter::Reporter;
use crate::store::RunRecords;

/// A run that is over, and the exit code backstop is about to return.
pub struct Finished<'a> {
    pub policy: &'a Policy,
    pub records: &'a RunRecords,
    pub id: &'a str,
    pub exit_code: u8,
    pub kind: Kind,
}

/// Whether the policy sends this run anywhere from here (OTLP, GitHub Actions).
pub fn wanted(policy: &Policy) -> bool {
    policy.metrics.otlp.is_some() || github_on(policy)
}

fn github_on(policy: &Policy) -> bool {
    policy.metrics.github && std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// Exports the run (its final record) as the policy's `metrics:` asks; never fails
/// the run.
pub fn after_run(record: &RunRecord, done: &Finished, reporter: &mut Reporter) {
    let env = |name: &str| std::env::var(name).ok();
    if let Some(otlp) = done.policy.metrics.otlp.as_ref() {
        for w in export_trace(record, done.policy, done.kind, otlp, &env) {
            warn(reporter, &w);
        }
    }
    if github_on(done.policy) {
        for w in to_github(record, done, &env) {
            warn(reporter, &w);
        }
    }
}

/// Builds and posts the run's trace; the warnings to give.
pub fn export_trace(
    record: &RunRecord,
    policy: &Policy,
    kind: Kind,
    otlp: &Otlp,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let parent =
        env("TRACEPARENT").and_then(|t| parse_traceparent(&t, env("TRACESTATE").as_deref()));
    let service = Service {
        name: env("OTEL_SERVICE_NAME")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "backstop".into()),
    };
    let request = otlp::request(record, policy, kind, parent, &service);
    let (headers, mut warnings) = send::headers(otlp, env);
    let (body, content_type) = send::encode(&request, otlp.protocol);
    if let Err(e) = send::post(otlp, headers, body, content_type) {
        warnings.push(e);
    }
    warnings
}

/// Appends the summary and the outputs to the files GitHub names; the warnings to give.
fn to_github(
    record: &RunRecord,
    done: &Finished,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let files = [
        (
            "GITHUB_STEP_SUMMARY",
            github::summary(record, done.policy, done.kind, done.exit_code),
        ),
        (
            "GITHUB_OUTPUT",
            github::output_lines(&github::outputs(record, done.exit_code)),
        ),
    ];
    for (var, text) in files {
        // Unset (backstop run by hand with GITHUB_ACTIONS=true): nothing asked for.
        let Some(path) = env(var).filter(|p| !p.is_empty()) else {
            continue;
        };
        if let Err(e) = github::append(var, &PathBuf::from(path), &text) {
            warnings.push(e);
        }
    }
    warnings
}

pub fn warn(reporter: &mut Reporter, text: &str) {
    reporter.warn("backstop export", text);
}
