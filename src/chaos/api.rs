//! The two APIs `backstop chaos serve` speaks: what a request asks for, and the error
//! bodies as OpenAI and Anthropic send them.

use bytes::Bytes;
use serde_json::{Value, json};

/// The two API shapes the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

/// What a request asked for, as far as the faults need to know.
#[derive(Clone, Debug)]
pub struct Asked {
    pub api: Api,
    pub model: String,
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
}

impl Asked {
    /// Reads the fields of a request body; `Err` with a message a provider would give.
    pub fn of(api: Api, body: &[u8]) -> Result<Asked, String> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        if !v.is_object() {
            return Err("the request body must be a JSON object".into());
        }
        let model = match &v["model"] {
            Value::String(m) => m.clone(),
            Value::Null => return Err("model: field required".into()),
            _ => return Err("model: must be a string".into()),
        };
        Ok(Asked {
            api,
            model,
            stream: v["stream"].as_bool().unwrap_or(false),
            include_usage: v["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
        })
    }
}

/// An error body in the provider's shape: `(content-type, body)`.
pub fn error_body(api: Api, status: u16, message: &str, request: u64) -> Bytes {
    let v = match api {
        Api::OpenAi => {
            let (kind, code) = openai_kind(status);
            json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
        }
        Api::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_kind(status), "message": message },
            "request_id": format!("req_chaos_{request}"),
        }),
    };
    Bytes::from(v.to_string())
}

/// The 404 of a path the server does not serve, as each provider words it.
pub fn unknown_url(api: Api, method: &str, path: &str, request: u64) -> Bytes {
    let message = format!("Invalid URL ({method} {path})");
    match api {
        Api::OpenAi => Bytes::from(
            json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } })
                .to_string(),
        ),
        Api::Anthropic => error_body(api, 404, &message, request),
    }
}

/// The message a provider gives with `status`, as the fault's error.
pub fn status_message(api: Api, status: u16) -> &'static str {
    match (api, status) {
        (Api::Anthropic, 529) => "Overloaded",
        (Api::Anthropic, 429) => "Number of request tokens has exceeded your per-minute rate limit",
        (Api::Anthropic, 500) => "Internal server error",
        (Api::OpenAi, 429) => "Rate limit reached for requests. Please try again later.",
        (Api::OpenAi, 500) => {
            "The server had an error while processing your request. Sorry about that!"
        }
        (Api::OpenAi, 503) => "The server is overloaded or not ready yet.",
        (_, 401) => "Incorrect API key provided (chaos)",
        (_, 403) => "Your API key does not have permission to use the specified resource",
        (_, 404) => "The model does not exist or you do not have access to it",
        (_, 400..=499) => "Invalid request (chaos)",
        _ => "The service is unavailable (chaos)",
    }
}

/// OpenAI's `type` and `code` for a status.
fn openai_kind(status: u16) -> (&'static str, Value) {
    match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    }
}

/// Anthropic's error `type` for a status.
fn anthropic_kind(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The 400 each provider gives for a prompt over the context window.
pub fn context_length_body(api: Api, request: u64) -> Bytes {
    match api {
        Api::OpenAi => Bytes::from(
            json!({ "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            } })
            .to_string(),
        ),
        Api::Anthropic => error_body(
            api,
            400,
            "prompt is too long: 210000 tokens > 200000 maximum",
            request,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_overload_is_an_overloaded_error() {
        let v: Value =
            serde_json::from_slice(&error_body(Api::Anthropic, 529, "Overloaded", 3)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["error"]["message"], "Overloaded");
    }

    #[test]
    fn openai_rate_limit_has_its_code() {
        let v: Value = serde_json::from_slice(&error_body(Api::OpenAi, 429, "x", 1)).unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn backstop_reads_the_context_length_bodies_as_context_length() {
        for api in [Api::OpenAi, Api::Anthropic] {
            let body = context_length_body(api, 1);
            let (error, _) = crate::call::wire::parse_error(
                &body,
                &crate::call::secret::Secrets::of_key(None),
                1000,
                false,
            );
            assert_eq!(
                error,
                Some(crate::attempt::CallError::ContextLength),
                "{api:?}"
            );
        }
    }

    #[test]
    fn a_request_without_a_model_is_refused() {
        assert!(Asked::of(Api::OpenAi, br#"{"messages":[]}"#).is_err());
        assert!(Asked::of(Api::OpenAi, b"nope").is_err());
        let a = Asked::of(Api::Anthropic, br#"{"model":"x","stream":true}"#).unwrap();
        assert!(a.stream && a.model == "x");
    }
}
