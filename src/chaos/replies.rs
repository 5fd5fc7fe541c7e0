//! What `backstop chaos serve` answers with, in each provider's own wire shapes:
//! error bodies as OpenAI and Anthropic send them, and the canned answer (whole, or as
//! the events of a stream) that stands in for a model when there is no upstream.

use bytes::Bytes;
use serde_json::{Value, json};

/// The text of every canned answer.
pub const CANNED_TEXT: &str = "chaos: ok";

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

/// How an answer ends: as asked, or refused (the content policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Done,
    Refused,
}

/// The canned answer, tokens from the fault model: one JSON body, or the stream's
/// events in order (each a piece the faults may cut between).
pub fn canned(asked: &Asked, tokens: (u64, u64), finish: Finish, request: u64) -> Vec<Bytes> {
    match (asked.api, asked.stream) {
        (Api::OpenAi, false) => vec![json_bytes(openai_whole(asked, tokens, finish, request))],
        (Api::OpenAi, true) => openai_stream(asked, tokens, finish, request),
        (Api::Anthropic, false) => {
            vec![json_bytes(anthropic_whole(asked, tokens, finish, request))]
        }
        (Api::Anthropic, true) => anthropic_stream(asked, tokens, finish, request),
    }
}

fn json_bytes(v: Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// The text and finish reason of a canned answer.
fn said(api: Api, finish: Finish) -> (Value, &'static str) {
    match (api, finish) {
        (Api::OpenAi, Finish::Done) => (json!(CANNED_TEXT), "stop"),
        (Api::OpenAi, Finish::Refused) => (Value::Null, "content_filter"),
        (Api::Anthropic, Finish::Done) => (json!(CANNED_TEXT), "end_turn"),
        (Api::Anthropic, Finish::Refused) => (json!(""), "refusal"),
    }
}

fn openai_usage((input, output): (u64, u64)) -> Value {
    json!({ "prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output })
}

fn openai_whole(asked: &Asked, tokens: (u64, u64), finish: Finish, request: u64) -> Value {
    let (content, reason) = said(Api::OpenAi, finish);
    json!({
        "id": format!("chatcmpl-chaos{request}"),
        "object": "chat.completion",
        "created": created(),
        "model": asked.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": reason,
        }],
        "usage": openai_usage(tokens),
    })
}

fn openai_stream(asked: &Asked, tokens: (u64, u64), finish: Finish, request: u64) -> Vec<Bytes> {
    let (_, reason) = said(Api::OpenAi, finish);
    let chunk = |delta: Value, reason: Value| {
        json!({
            "id": format!("chatcmpl-chaos{request}"),
            "object": "chat.completion.chunk",
            "created": created(),
            "model": asked.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": reason }],
        })
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    if finish == Finish::Done {
        for word in ["chaos:", " ok"] {
            events.push(chunk(json!({ "content": word }), Value::Null));
        }
    }
    events.push(chunk(json!({}), json!(reason)));
    if asked.include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = openai_usage(tokens);
        events.push(last);
    }
    let mut out: Vec<Bytes> = events
        .into_iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn anthropic_whole(
    asked: &Asked,
    (input, output): (u64, u64),
    finish: Finish,
    request: u64,
) -> Value {
    let (text, reason) = said(Api::Anthropic, finish);
    let content = match finish {
        Finish::Done => json!([{ "type": "text", "text": text }]),
        Finish::Refused => json!([]),
    };
    json!({
        "id": format!("msg_chaos{request}"),
        "type": "message",
        "role": "assistant",
        "model": asked.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": { "input_tokens": input, "output_tokens": output },
    })
}

fn anthropic_stream(
    asked: &Asked,
    (input, output): (u64, u64),
    finish: Finish,
    request: u64,
) -> Vec<Bytes> {
    let (_, reason) = said(Api::Anthropic, finish);
    let mut events = vec![(
        "message_start",
        json!({ "type": "message_start", "message": {
            "id": format!("msg_chaos{request}"), "type": "message", "role": "assistant",
            "model": asked.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": input, "output_tokens": 1 },
        } }),
    )];
    if finish == Finish::Done {
        events.push((
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "text", "text": "" } }),
        ));
        for word in ["chaos:", " ok"] {
            events.push((
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": word } }),
            ));
        }
        events.push((
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ));
    }
    events.push((
        "message_delta",
        json!({ "type": "message_delta",
        "delta": { "stop_reason": reason, "stop_sequence": null },
        "usage": { "output_tokens": output } }),
    ));
    events.push(("message_stop", json!({ "type": "message_stop" })));
    events
        .into_iter()
        .map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
        .collect()
}

/// `GET /v1/models`: the fault model's named models, in OpenAI's list shape.
pub fn models_list<'a>(names: impl Iterator<Item = &'a String>) -> Bytes {
    let data: Vec<Value> = names
        .filter(|n| n.as_str() != "default")
        .map(|n| json!({ "id": n, "object": "model", "created": 0, "owned_by": "backstop-chaos" }))
        .collect();
    json_bytes(json!({ "object": "list", "data": data }))
}

fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(api: Api, stream: bool) -> Asked {
        Asked {
            api,
            model: "m".into(),
            stream,
            include_usage: true,
        }
    }

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
            let (error, _) = crate::call::wire::parse_error(&body, "", 1000, false);
            assert_eq!(
                error,
                Some(crate::attempt::CallError::ContextLength),
                "{api:?}"
            );
        }
    }

    #[test]
    fn streams_end_with_their_finish_events() {
        let o = canned(&asked(Api::OpenAi, true), (1, 2), Finish::Done, 1);
        assert_eq!(o.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        let a = canned(&asked(Api::Anthropic, true), (1, 2), Finish::Done, 1);
        assert!(a.last().unwrap().starts_with(b"event: message_stop\n"));
        assert!(a[0].starts_with(b"event: message_start\n"));
    }

    #[test]
    fn a_request_without_a_model_is_refused() {
        assert!(Asked::of(Api::OpenAi, br#"{"messages":[]}"#).is_err());
        assert!(Asked::of(Api::OpenAi, b"nope").is_err());
        let a = Asked::of(Api::Anthropic, br#"{"model":"x","stream":true}"#).unwrap();
        assert!(a.stream && a.model == "x");
    }
}
