//! Posting a trace to an OTLP/HTTP collector: protobuf or JSON, the headers taken
//! from the environment, no redirect followed (it could carry an auth header to
//! another origin), the whole exchange bounded by `metrics.otlp.timeout`.
//!
//! A header's value is never part of a message: errors name the header and the
//! variable, and the values are marked sensitive for reqwest's own formatting.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::policy::Otlp;
use crate::policy::OtlpProtocol;

/// The headers to send, from `headers_env`; a warning for each that is left out.
pub fn headers(otlp: &Otlp, env: impl Fn(&str) -> Option<String>) -> (HeaderMap, Vec<String>) {
    let mut map = HeaderMap::new();
    let mut warnings = Vec::new();
    for (name, var) in &otlp.headers_env {
        let Some(value) = env(var) else {
            warnings.push(format!(
                "metrics.otlp.headers_env.{name}: ${var} is not set; the trace is sent without the `{name}` header"
            ));
            continue;
        };
        let (Ok(name_), Ok(mut value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            warnings.push(format!(
                "metrics.otlp.headers_env.{name}: the value of ${var} is not a valid HTTP header value; the trace is sent without it"
            ));
            continue;
        };
        value.set_sensitive(true);
        map.insert(name_, value);
    }
    (map, warnings)
}

/// The request body and its content type.
pub fn encode(
    request: &ExportTraceServiceRequest,
    protocol: OtlpProtocol,
) -> (Vec<u8>, &'static str) {
    match protocol {
        OtlpProtocol::Protobuf => (request.encode_to_vec(), "application/x-protobuf"),
        // The crate's serde mapping is OTLP/JSON's: hex ids, camelCase names, enums
        // as numbers, 64-bit integers as strings.
        OtlpProtocol::Json => (
            serde_json::to_vec(request).unwrap_or_default(),
            "application/json",
        ),
    }
}

/// Posts the body; `Err` says why it did not arrive, naming the endpoint only.
pub fn post(
    otlp: &Otlp,
    headers: HeaderMap,
    body: Vec<u8>,
    content_type: &'static str,
) -> Result<(), String> {
    let endpoint = &otlp.endpoint;
    let limit: Duration = otlp.timeout.0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot send the trace to {endpoint}: no async runtime: {e}"))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("backstop/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(limit)
        .timeout(limit)
        .build()
        .map_err(|e| {
            format!(
                "cannot send the trace to {endpoint}: {}",
                crate::call::exchange_error(&e)
            )
        })?;
    let request = client
        .post(endpoint.as_str())
        .headers(headers)
        .header(CONTENT_TYPE, content_type)
        .body(body);
    // reqwest's own timeout covers the whole exchange; the outer one is a backstop
    // for anything it might not (a resolver that never answers).
    let result = runtime.block_on(async { tokio::time::timeout(limit, request.send()).await });
    match result {
        Err(_) => Err(timed_out(endpoint, limit)),
        Ok(Err(e)) if e.is_timeout() => Err(timed_out(endpoint, limit)),
        Ok(Err(e)) => Err(format!(
            "cannot send the trace to {endpoint}: {}",
            crate::call::exchange_error(&e)
        )),
        Ok(Ok(response)) if response.status().is_success() => Ok(()),
        Ok(Ok(response)) if response.status().is_redirection() => Err(format!(
            "the trace was not accepted by {endpoint}: HTTP {} (a redirect, not followed)",
            response.status().as_u16()
        )),
        Ok(Ok(response)) => Err(format!(
            "the trace was not accepted by {endpoint}: HTTP {}",
            response.status().as_u16()
        )),
    }
}

fn timed_out(endpoint: &str, limit: Duration) -> String {
    format!(
        "cannot send the trace to {endpoint}: no answer within {} (metrics.otlp.timeout)",
        crate::policy::values::format_duration(limit)
    )
}
