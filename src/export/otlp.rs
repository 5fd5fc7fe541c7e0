//! A finished run as an OpenTelemetry trace: the run is the root span, each attempt,
//! backoff wait and rollback a child, a move down the fallback chain an event on the
//! root. Built from the run record alone, after the run (and any rollback) is over.
//!
//! Nothing a command line or a prompt holds goes in an attribute: they can carry
//! secrets. A command is named by its executable's name only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::Event as SpanEvent, span::SpanKind,
    status::StatusCode,
};

use super::attributes::{call_attributes, kv};
use super::names::{Kind, link_label};
use super::trace_context::{Ids, Parent};
use crate::events::AttemptReport;
use crate::policy::Policy;
use crate::record::RunRecord;
use crate::stats::class::{error_type, run_class};

/// What names the sender: `service.name` (from `OTEL_SERVICE_NAME`) and the version.
pub struct Service {
    pub name: String,
}

/// The request that carries one run's trace.
pub fn request(
    record: &RunRecord,
    policy: &Policy,
    kind: Kind,
    parent: Option<Parent>,
    service: &Service,
) -> ExportTraceServiceRequest {
    let mut ids = Ids::new(parent);
    let root_id = ids.span_id();
    let mut spans = vec![root_span(record, policy, kind, &ids, &root_id)];
    for a in &record.attempts {
        let label = link_label(record, policy, kind, a.link, &a.link_name);
        spans.push(attempt_span(a, &label, policy, &mut ids, &root_id));
        if let Some(wait) = wait_span(a, &label, &mut ids, &root_id) {
            spans.push(wait);
        }
    }
    spans.extend(rollback_spans(record, &mut ids, &root_id));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", service.name.as_str()),
                    kv("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "backstop".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn root_span(record: &RunRecord, policy: &Policy, kind: Kind, ids: &Ids, root_id: &[u8]) -> Span {
    let class = run_class(record);
    let mut attributes = vec![
        kv("backstop.run_id", record.id.as_str()),
        kv("backstop.layer", class.layer()),
        kv("backstop.outcome", class.as_str()),
        kv("backstop.attempts", record.attempts.len() as i64),
    ];
    // A run under `--chaos`: a backend can tell its injected failures apart.
    if let Some(chaos) = &record.chaos {
        attributes.push(kv("backstop.chaos.seed", chaos.seed.to_string()));
    }
    if let Some(summary) = &record.outcome {
        attributes.push(kv("backstop.record.outcome", summary.outcome.as_str()));
        attributes.push(kv("backstop.exit_code", i64::from(summary.exit_code)));
        if let Some(cost) = summary.cost_usd {
            attributes.push(kv("backstop.cost_usd", cost));
        }
    }
    match kind {
        Kind::Run => {
            if let Some(exe) = super::names::executable(record) {
                attributes.push(kv("process.executable.name", exe));
            }
        }
        Kind::Call => {
            if let Some(model) = record.command.get(1).and_then(|m| policy.models.get(m)) {
                attributes.push(kv("gen_ai.operation.name", "chat"));
                attributes.push(kv("gen_ai.request.model", model.model.as_str()));
            }
        }
    }
    let failed = !class.succeeded();
    let reason = record.outcome.as_ref().and_then(|o| o.reason.clone());
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: root_id.to_vec(),
        parent_span_id: ids.parent_span_id(),
        trace_state: ids.trace_state(),
        name: kind.span_name().into(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: nanos(record.started_at),
        end_time_unix_nano: nanos(run_end(record)),
        attributes,
        events: fallback_events(record, policy, kind),
        status: Some(status(failed, reason.unwrap_or_default())),
        ..Default::default()
    }
}

/// When the run was over: its record's end, or a rollback's end after it.
fn run_end(record: &RunRecord) -> SystemTime {
    let finished = record.finished_at.unwrap_or(record.started_at);
    record
        .snapshot
        .iter()
        .flat_map(|s| s.rollbacks())
        .map(|r| r.at)
        .fold(finished, SystemTime::max)
}

fn attempt_span(
    a: &AttemptReport,
    label: &str,
    policy: &Policy,
    ids: &mut Ids,
    root_id: &[u8],
) -> Span {
    let mut attributes = vec![
        kv("backstop.layer", a.layer.as_str()),
        kv("backstop.link", label),
        kv("backstop.link.index", a.link as i64),
        kv("backstop.attempt", i64::from(a.attempt)),
    ];
    if let Some(injected) = &a.injected {
        attributes.push(kv("backstop.chaos.injected", injected.as_str()));
    }
    let error = error_type(a);
    if let Some(e) = error {
        attributes.push(kv("error.type", e.as_str()));
    }
    match &a.call {
        Some(call) => attributes.extend(call_attributes(call, policy)),
        None => attributes.push(kv("process.exit.code", exit_code(a))),
    }
    let start = a.started_at;
    Span {
        name: format!("attempt {} of {label}", a.attempt),
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(after(start, a.duration_ms)),
        attributes,
        status: Some(status(error.is_some(), String::new())),
        ..child(ids, root_id)
    }
}

/// The process's own exit code: the child's, or the code backstop gave it (a signal,
/// a timeout, a spawn failure).
fn exit_code(a: &AttemptReport) -> i64 {
    match &a.end {
        crate::attempt::End::Exited { code } => i64::from(*code),
        _ => i64::from(a.exit_code),
    }
}

/// The wait after an attempt, before the next one of its link.
fn wait_span(a: &AttemptReport, label: &str, ids: &mut Ids, root_id: &[u8]) -> Option<Span> {
    let delay = a.delay_ms?;
    let start = after(a.started_at, a.duration_ms);
    let mut attributes = vec![
        kv("backstop.link", label),
        kv("backstop.link.index", a.link as i64),
        kv("backstop.attempt", i64::from(a.attempt)),
        kv("backstop.delay_ms", delay as i64),
    ];
    if let Some(reason) = &a.delay_reason {
        attributes.push(kv("backstop.delay.reason", reason.as_str()));
    }
    Some(Span {
        name: "backoff wait".into(),
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(after(start, delay)),
        attributes,
        ..child(ids, root_id)
    })
}

/// An event on the root span each time the run moves to a later link.
fn fallback_events(record: &RunRecord, policy: &Policy, kind: Kind) -> Vec<SpanEvent> {
    let mut events = Vec::new();
    let mut link = 0;
    for a in &record.attempts {
        if a.link > link {
            events.push(fallback_event(record, policy, kind, link, a));
            link = a.link;
        }
    }
    events
}

fn fallback_event(
    record: &RunRecord,
    policy: &Policy,
    kind: Kind,
    from: usize,
    to: &AttemptReport,
) -> SpanEvent {
    SpanEvent {
        time_unix_nano: nanos(to.started_at),
        name: "backstop.fallback".into(),
        attributes: vec![
            kv("backstop.link.from", from as i64),
            kv("backstop.link.index", to.link as i64),
            kv(
                "backstop.link",
                link_label(record, policy, kind, to.link, &to.link_name),
            ),
        ],
        dropped_attributes_count: 0,
    }
}

/// Each rollback of the run (or of a step of its task). `at` is when it ended; its
/// length is known when it was the only one (`backstop_time.rollback_ms`).
fn rollback_spans(record: &RunRecord, ids: &mut Ids, root_id: &[u8]) -> Vec<Span> {
    let Some(s) = &record.snapshot else {
        return Vec::new();
    };
    let rollbacks: Vec<_> = s.rollbacks().collect();
    let took = match (rollbacks.len(), &record.backstop_time) {
        (1, Some(t)) => Duration::from_millis(t.rollback_ms),
        _ => Duration::ZERO,
    };
    rollbacks
        .into_iter()
        .map(|r| {
            let start = r.at.checked_sub(took).unwrap_or(r.at);
            Span {
                name: "rollback".into(),
                start_time_unix_nano: nanos(start),
                end_time_unix_nano: nanos(r.at),
                attributes: vec![
                    kv("backstop.rollback.paths", r.paths as i64),
                    kv("backstop.rollback.not_restored", r.not_restored as i64),
                    kv("backstop.rollback.complete", r.not_restored == 0),
                ],
                status: Some(status(r.not_restored > 0, String::new())),
                ..child(ids, root_id)
            }
        })
        .collect()
}

/// A span of the run's trace under the root, with an id of its own.
fn child(ids: &mut Ids, root_id: &[u8]) -> Span {
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: ids.span_id().to_vec(),
        parent_span_id: root_id.to_vec(),
        trace_state: ids.trace_state(),
        kind: SpanKind::Internal as i32,
        ..Default::default()
    }
}

fn status(error: bool, message: String) -> Status {
    if error {
        Status {
            message,
            code: StatusCode::Error as i32,
        }
    } else {
        Status::default()
    }
}

/// `ms` after `t` (a record's figures are trusted to add up, not to be sane).
fn after(t: SystemTime, ms: u64) -> SystemTime {
    t.checked_add(Duration::from_millis(ms)).unwrap_or(t)
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
