//! The two wire formats: OpenAI-compatible chat completions and Anthropic Messages.
//! Requests, answers (whole and streamed), and error bodies.

use serde_json::{Value, json};

use super::secret::Secrets;
use super::sse::SseEvent;
use crate::attempt::{CallError, Prompt, Speaker};
use crate::policy::{Model, Provider, ProviderKind};

pub struct Request {
    pub url: String,
    /// Header name and value: backstop's own, the key's, then the provider's `headers`.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// What goes into a request besides the model and the prompt.
pub struct Extras<'a> {
    pub stream: bool,
    pub key: Option<&'a str>,
    /// The provider's `headers`, values read.
    pub headers: &'a [(String, String)],
    pub idempotency_key: &'a str,
}

pub fn build(provider: &Provider, model: &Model, prompt: &Prompt, extras: &Extras) -> Request {
    let mut headers = vec![(
        "idempotency-key".to_string(),
        extras.idempotency_key.to_string(),
    )];
    let (url, mut body) = match provider.kind {
        ProviderKind::Openai => {
            if let Some(k) = extras.key {
                headers.push(("authorization".into(), format!("Bearer {k}")));
            }
            let mut body = json!({
                "model": model.model,
                "messages": openai_messages(prompt),
                "max_tokens": model.max_tokens,
                "stream": extras.stream,
            });
            if extras.stream {
                body["stream_options"] = json!({ "include_usage": true });
            }
            if !model.stop.is_empty() {
                body["stop"] = json!(model.stop);
            }
            (format!("{}/chat/completions", provider.base_url), body)
        }
        ProviderKind::Anthropic => {
            if let Some(k) = extras.key {
                headers.push(("x-api-key".into(), k.to_string()));
            }
            headers.push((
                "anthropic-version".into(),
                provider.anthropic_version.clone(),
            ));
            let mut body = json!({
                "model": model.model,
                "max_tokens": model.max_tokens,
                "messages": anthropic_messages(prompt),
                "stream": extras.stream,
            });
            if let Some(s) = &prompt.system {
                body["system"] = json!(s);
            }
            if !model.stop.is_empty() {
                body["stop_sequences"] = json!(model.stop);
            }
            (format!("{}/v1/messages", provider.base_url), body)
        }
    };
    if let Some(t) = model.temperature {
        body["temperature"] = json!(t);
    }
    headers.extend(extras.headers.iter().cloned());
    Request { url, headers, body }
}

/// OpenAI's messages: the system prompt, every turn as it was said, the final message.
fn openai_messages(prompt: &Prompt) -> Vec<Value> {
    let mut messages = Vec::new();
    if let Some(s) = &prompt.system {
        messages.push(json!({ "role": "system", "content": s }));
    }
    for turn in &prompt.earlier {
        messages.push(json!({ "role": turn.speaker.role(), "content": turn.text }));
    }
    messages.push(json!({ "role": "user", "content": prompt.user }));
    messages
}

/// Anthropic's messages, which must alternate: consecutive turns of one speaker
/// become one message of several text blocks (the system prompt is apart).
fn anthropic_messages(prompt: &Prompt) -> Vec<Value> {
    let turns = prompt
        .earlier
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .chain(std::iter::once((Speaker::User, prompt.user.as_str())));
    let mut grouped: Vec<(Speaker, Vec<&str>)> = Vec::new();
    for (speaker, text) in turns {
        match grouped.last_mut() {
            Some((last, texts)) if *last == speaker => texts.push(text),
            _ => grouped.push((speaker, vec![text])),
        }
    }
    grouped
        .into_iter()
        .map(|(speaker, texts)| match texts[..] {
            [one] => json!({ "role": speaker.role(), "content": one }),
            _ => {
                let blocks: Vec<Value> = texts
                    .iter()
                    .map(|t| json!({ "type": "text", "text": t }))
                    .collect();
                json!({ "role": speaker.role(), "content": blocks })
            }
        })
        .collect()
}

/// An answer, whole or put together from a stream.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The provider's finish or stop reason.
    pub finish: Option<String>,
}

impl Answer {
    /// A provider that answers with a refusal has not answered.
    pub fn refused(&self) -> bool {
        matches!(self.finish.as_deref(), Some("content_filter" | "refusal"))
    }
}

pub fn parse_answer(kind: ProviderKind, body: &[u8]) -> Result<Answer, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let u64_at = |v: &Value| v.as_u64().unwrap_or(0);
    match kind {
        ProviderKind::Openai => {
            let choice = v["choices"].get(0).ok_or("the answer has no choices")?;
            let text = choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let finish = choice["finish_reason"].as_str().map(String::from);
            if finish.is_none() {
                return Err("the answer has no finish_reason".into());
            }
            Ok(Answer {
                text,
                input_tokens: u64_at(&v["usage"]["prompt_tokens"]),
                output_tokens: u64_at(&v["usage"]["completion_tokens"]),
                finish,
            })
        }
        ProviderKind::Anthropic => {
            let blocks = v["content"].as_array().ok_or("the answer has no content")?;
            let text = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<String>();
            let finish = v["stop_reason"].as_str().map(String::from);
            if finish.is_none() {
                return Err("the answer has no stop_reason".into());
            }
            Ok(Answer {
                text,
                input_tokens: u64_at(&v["usage"]["input_tokens"]),
                output_tokens: u64_at(&v["usage"]["output_tokens"]),
                finish,
            })
        }
    }
}

/// Puts a streamed answer together, event by event.
#[derive(Debug)]
pub struct StreamState {
    kind: ProviderKind,
    pub answer: Answer,
    /// The protocol's end marker was seen: `[DONE]` or `message_stop`.
    pub done: bool,
}

impl StreamState {
    pub fn new(kind: ProviderKind) -> StreamState {
        StreamState {
            kind,
            answer: Answer::default(),
            done: false,
        }
    }

    /// Takes one event; returns the text it adds. A malformed event is an error.
    pub fn on_event(&mut self, ev: &SseEvent) -> Result<String, String> {
        if self.kind == ProviderKind::Openai && ev.data.trim() == "[DONE]" {
            self.done = true;
            return Ok(String::new());
        }
        if ev.data.trim().is_empty() {
            return Ok(String::new());
        }
        let v: Value =
            serde_json::from_str(&ev.data).map_err(|e| format!("malformed chunk: {e}"))?;
        let mut delta = String::new();
        match self.kind {
            ProviderKind::Openai => {
                if !v.is_object() || v.get("error").is_some() {
                    return Err(format!(
                        "error in stream: {}",
                        v["error"]["message"].as_str().unwrap_or("unknown")
                    ));
                }
                if let Some(choice) = v["choices"].get(0) {
                    if let Some(t) = choice["delta"]["content"].as_str() {
                        delta.push_str(t);
                    }
                    if let Some(f) = choice["finish_reason"].as_str() {
                        self.answer.finish = Some(f.to_string());
                    }
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.answer.input_tokens = u["prompt_tokens"]
                        .as_u64()
                        .unwrap_or(self.answer.input_tokens);
                    self.answer.output_tokens = u["completion_tokens"]
                        .as_u64()
                        .unwrap_or(self.answer.output_tokens);
                }
            }
            ProviderKind::Anthropic => match v["type"].as_str().unwrap_or_default() {
                "message_start" => {
                    let u = &v["message"]["usage"];
                    self.answer.input_tokens = u["input_tokens"].as_u64().unwrap_or(0);
                    self.answer.output_tokens = u["output_tokens"].as_u64().unwrap_or(0);
                }
                "content_block_delta" => {
                    if let Some(t) = v["delta"]["text"].as_str() {
                        delta.push_str(t);
                    }
                }
                "message_delta" => {
                    if let Some(r) = v["delta"]["stop_reason"].as_str() {
                        self.answer.finish = Some(r.to_string());
                    }
                    if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                        self.answer.output_tokens = o;
                    }
                }
                "message_stop" => self.done = true,
                "error" => {
                    return Err(format!(
                        "error in stream: {}",
                        v["error"]["message"].as_str().unwrap_or("unknown")
                    ));
                }
                "content_block_start" | "content_block_stop" | "ping" => {}
                "" => return Err("malformed chunk: an event without a type".into()),
                _ => {}
            },
        }
        self.answer.text.push_str(&delta);
        Ok(delta)
    }

    /// Whether the stream ended as its protocol says a whole answer ends.
    pub fn complete(&self) -> bool {
        match self.kind {
            ProviderKind::Openai => self.answer.finish.is_some() && self.done,
            ProviderKind::Anthropic => self.done && self.answer.finish.is_some(),
        }
    }
}

/// What an error body says: its kind, when it is one of ours, and its message, with
/// `secret` redacted before it is cut to `max` characters. `cut`: the body is the
/// start of a longer one.
pub fn parse_error(
    body: &[u8],
    secrets: &Secrets,
    max: usize,
    cut: bool,
) -> (Option<CallError>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = secrets.redact_then_truncate(text.trim(), max, cut);
        return (None, (!text.is_empty()).then_some(text));
    };
    let err = if v["error"].is_object() {
        &v["error"]
    } else {
        &v
    };
    // Parsing undid any JSON escapes a key was hidden behind: redact what was parsed.
    let message = err["message"]
        .as_str()
        .map(|m| secrets.redact_then_truncate(m, max, false));
    let code = err["code"].as_str().unwrap_or_default();
    let kind = err["type"].as_str().unwrap_or_default();
    let m = message.as_deref().unwrap_or_default().to_lowercase();
    let error = if code == "context_length_exceeded"
        || m.contains("maximum context length")
        || m.contains("context length")
        || m.contains("context window")
        || m.contains("prompt is too long")
        || m.contains("too many tokens")
    {
        Some(CallError::ContextLength)
    } else if code == "content_policy_violation"
        || code == "content_filter"
        || m.contains("content policy")
        || m.contains("content filtering")
    {
        Some(CallError::ContentPolicy)
    } else if kind == "authentication_error"
        || kind == "permission_error"
        || code == "invalid_api_key"
    {
        Some(CallError::Auth)
    } else {
        None
    };
    (error, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_of_a_context_length_error() {
        let none = Secrets::default();
        let openai = br#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        let anthropic = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert_eq!(
            parse_error(openai, &none, 300, false).0,
            Some(CallError::ContextLength)
        );
        assert_eq!(
            parse_error(anthropic, &none, 300, false).0,
            Some(CallError::ContextLength)
        );
        let auth = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(
            parse_error(auth, &none, 300, false).0,
            Some(CallError::Auth)
        );
        assert_eq!(
            parse_error(b"<html>bad gateway</html>", &none, 300, false)
                .1
                .as_deref(),
            Some("<html>bad gateway</html>")
        );
    }

    #[test]
    fn a_key_is_redacted_before_the_message_is_cut() {
        let key = "sk-test-7f3a9c1e5b2d4f60-secret";
        let plain = format!("{}{key}", "x".repeat(290));
        let (_, m) = parse_error(plain.as_bytes(), &Secrets::of_key(Some(key)), 300, false);
        assert!(!m.unwrap().contains("sk-test"));
        // A key spelled with JSON escapes is whole again once parsed.
        let escaped = r#"{"error":{"message":"bad key \u0073k-test-7f3a9c1e5b2d4f60-secret"}}"#;
        let (_, m) = parse_error(escaped.as_bytes(), &Secrets::of_key(Some(key)), 300, false);
        assert_eq!(m.as_deref(), Some("bad key [redacted]"));
    }

    fn conversation() -> Prompt {
        let turn = |speaker, text: &str| crate::attempt::Turn {
            speaker,
            text: text.into(),
        };
        Prompt {
            system: Some("Be terse.".into()),
            earlier: vec![
                turn(Speaker::User, "Capital of France?"),
                turn(Speaker::Assistant, "Paris."),
                turn(Speaker::User, "Now a harder one."),
            ],
            user: "Capital of Italy?".into(),
        }
    }

    fn target(kind: ProviderKind) -> (Provider, Model) {
        let provider = Provider {
            kind,
            base_url: "http://127.0.0.1:9".into(),
            api_key_env: None,
            anthropic_version: "2023-06-01".into(),
            headers: Default::default(),
        };
        let model = Model {
            name: "m".into(),
            provider: "p".into(),
            model: "m-1".into(),
            max_tokens: 64,
            temperature: Some(0.5),
            stop: vec!["END".into()],
            price: None,
        };
        (provider, model)
    }

    fn request(kind: ProviderKind, prompt: &Prompt) -> Request {
        let (provider, model) = target(kind);
        let headers = [("x-team".to_string(), "blue".to_string())];
        let extras = Extras {
            stream: false,
            key: Some("k-1234"),
            headers: &headers,
            idempotency_key: "i",
        };
        build(&provider, &model, prompt, &extras)
    }

    #[test]
    fn openai_gets_every_turn_as_said() {
        let r = request(ProviderKind::Openai, &conversation());
        assert_eq!(
            r.body["messages"],
            json!([
                { "role": "system", "content": "Be terse." },
                { "role": "user", "content": "Capital of France?" },
                { "role": "assistant", "content": "Paris." },
                { "role": "user", "content": "Now a harder one." },
                { "role": "user", "content": "Capital of Italy?" },
            ])
        );
        assert_eq!(r.body["stop"], json!(["END"]));
        assert_eq!(r.body["temperature"], json!(0.5));
        assert!(r.headers.contains(&("x-team".into(), "blue".into())));
    }

    #[test]
    fn anthropic_gets_the_system_apart_and_alternating_turns() {
        let r = request(ProviderKind::Anthropic, &conversation());
        assert_eq!(r.body["system"], json!("Be terse."));
        assert_eq!(
            r.body["messages"],
            json!([
                { "role": "user", "content": "Capital of France?" },
                { "role": "assistant", "content": "Paris." },
                { "role": "user", "content": [
                    { "type": "text", "text": "Now a harder one." },
                    { "type": "text", "text": "Capital of Italy?" },
                ] },
            ])
        );
        assert_eq!(r.body["stop_sequences"], json!(["END"]));
        assert!(r.body.get("stop").is_none());
        // A one-message prompt is as it always was.
        let plain = request(ProviderKind::Anthropic, &Prompt::new(None, "hi".into()));
        assert_eq!(
            plain.body["messages"],
            json!([{ "role": "user", "content": "hi" }])
        );
        assert!(plain.body.get("system").is_none());
    }

    proptest::proptest! {
        /// Whatever the turns, Anthropic's messages start with the user, alternate,
        /// and hold every turn's text once, in order; OpenAI's hold each turn as said.
        #[test]
        fn anthropic_turns_alternate_and_keep_every_text(
            said in proptest::collection::vec(proptest::bool::ANY, 0..12)
        ) {
            let mut earlier = vec![crate::attempt::Turn { speaker: Speaker::User, text: "t0".into() }];
            for (i, assistant) in said.iter().enumerate() {
                let speaker = if *assistant { Speaker::Assistant } else { Speaker::User };
                earlier.push(crate::attempt::Turn { speaker, text: format!("t{}", i + 1) });
            }
            let prompt = Prompt { system: None, earlier, user: "last".into() };
            let body = request(ProviderKind::Anthropic, &prompt).body;
            let messages = body["messages"].as_array().unwrap();
            let mut texts = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                let want = if i % 2 == 0 { "user" } else { "assistant" };
                proptest::prop_assert_eq!(m["role"].as_str(), Some(want));
                match &m["content"] {
                    Value::String(t) => texts.push(t.clone()),
                    blocks => {
                        let blocks = blocks.as_array().unwrap();
                        proptest::prop_assert!(blocks.len() > 1);
                        texts.extend(blocks.iter().map(|b| b["text"].as_str().unwrap().to_string()));
                    }
                }
            }
            proptest::prop_assert_eq!(messages.last().unwrap()["role"].as_str(), Some("user"));
            let mut want: Vec<String> = prompt.earlier.iter().map(|t| t.text.clone()).collect();
            want.push("last".into());
            proptest::prop_assert_eq!(&texts, &want);
            let openai = request(ProviderKind::Openai, &prompt).body;
            proptest::prop_assert_eq!(openai["messages"].as_array().unwrap().len(), want.len());
        }
    }

    #[test]
    fn whole_answers_of_both_providers() {
        let o = br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let a = br#"{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;
        let want = |f: &str| Answer {
            text: "hi".into(),
            input_tokens: 3,
            output_tokens: 1,
            finish: Some(f.into()),
        };
        assert_eq!(parse_answer(ProviderKind::Openai, o).unwrap(), want("stop"));
        assert_eq!(
            parse_answer(ProviderKind::Anthropic, a).unwrap(),
            want("end_turn")
        );
        assert!(
            parse_answer(
                ProviderKind::Openai,
                br#"{"choices":[{"message":{"content":"x"}}]}"#
            )
            .is_err()
        );
    }
}
