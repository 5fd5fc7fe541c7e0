//! The canned answer of `backstop chaos serve` without an upstream: `chaos: ok`, whole
//! or as the events of a stream, in each provider's own wire shape, with the fault
//! model's tokens as its usage; and the models list.

use bytes::Bytes;
use serde_json::{Value, json};

use super::api::{Api, Asked};

/// The text of every canned answer.
pub const CANNED_TEXT: &str = "chaos: ok";

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
        events.push(("ping", json!({ "type": "ping" })));
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
    fn streams_end_with_their_finish_events() {
        let o = canned(&asked(Api::OpenAi, true), (1, 2), Finish::Done, 1);
        assert_eq!(o.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        let a = canned(&asked(Api::Anthropic, true), (1, 2), Finish::Done, 1);
        assert!(a.last().unwrap().starts_with(b"event: message_stop\n"));
        assert!(a[0].starts_with(b"event: message_start\n"));
    }

    /// The canned answers are read back by backstop's own client code (`call/wire.rs`,
    /// `call/sse.rs`): whole, each is an answer with its text and tokens; streamed,
    /// complete; the first half of a stream (what a cut leaves), not complete.
    #[test]
    fn the_clients_own_parsers_read_every_canned_answer() {
        use crate::call::sse::SseParser;
        use crate::call::wire::{StreamState, parse_answer};
        use crate::policy::ProviderKind;
        for (api, kind) in [
            (Api::OpenAi, ProviderKind::Openai),
            (Api::Anthropic, ProviderKind::Anthropic),
        ] {
            let whole = canned(&asked(api, false), (7, 3), Finish::Done, 1);
            let answer = parse_answer(kind, &whole[0]).unwrap();
            assert_eq!(
                (
                    answer.text.as_str(),
                    answer.input_tokens,
                    answer.output_tokens
                ),
                (CANNED_TEXT, 7, 3)
            );
            let read = |pieces: Vec<Bytes>| {
                let mut parser = SseParser::default();
                let mut state = StreamState::new(kind);
                for piece in pieces {
                    for event in parser.feed(&piece).unwrap() {
                        state.on_event(&event).unwrap();
                    }
                }
                state
            };
            let stream = canned(&asked(api, true), (7, 3), Finish::Done, 1);
            let state = read(stream.clone());
            assert!(state.complete(), "{api:?}");
            assert_eq!(state.answer.text, CANNED_TEXT, "{api:?}");
            assert!(
                !read(crate::chaos::play::first_half(stream)).complete(),
                "{api:?}"
            );
        }
    }
}
