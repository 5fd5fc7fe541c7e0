//! Span attributes: typed values, and the semantic conventions of a model call.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use crate::policy::Policy;

/// GenAI semantic conventions for a model call attempt: the provider's kind and the
/// model's id at the provider (the policy's names as `backstop.*`).
pub fn call_attributes(call: &crate::attempt::CallReport, policy: &Policy) -> Vec<KeyValue> {
    let model = policy.models.get(&call.model);
    let provider = policy.providers.get(&call.provider).map(|p| match p.kind {
        crate::policy::ProviderKind::Anthropic => "anthropic",
        crate::policy::ProviderKind::Openai => "openai",
    });
    let provider = provider.unwrap_or(call.provider.as_str());
    let mut out = vec![
        kv("gen_ai.operation.name", "chat"),
        kv("gen_ai.provider.name", provider),
        kv("gen_ai.system", provider),
        kv(
            "gen_ai.request.model",
            model.map_or(call.model.as_str(), |m| m.model.as_str()),
        ),
        kv("gen_ai.usage.input_tokens", call.input_tokens as i64),
        kv("gen_ai.usage.output_tokens", call.output_tokens as i64),
        kv("backstop.model", call.model.as_str()),
        kv("backstop.provider", call.provider.as_str()),
    ];
    if let Some(status) = call.status {
        out.push(kv("http.response.status_code", i64::from(status)));
    }
    if let Some(cost) = call.cost_usd {
        out.push(kv("backstop.cost_usd", cost));
    }
    out
}

/// A typed attribute value.
pub enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Attr {
        Attr::Str(s.to_string())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Attr {
        Attr::Str(s)
    }
}
impl From<i64> for Attr {
    fn from(n: i64) -> Attr {
        Attr::Int(n)
    }
}
impl From<f64> for Attr {
    fn from(n: f64) -> Attr {
        Attr::Float(n)
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Attr {
        Attr::Bool(b)
    }
}

pub fn kv(key: &str, value: impl Into<Attr>) -> KeyValue {
    let value = match value.into() {
        Attr::Str(s) => Value::StringValue(s),
        Attr::Int(n) => Value::IntValue(n),
        Attr::Float(n) => Value::DoubleValue(n),
        Attr::Bool(b) => Value::BoolValue(b),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}
