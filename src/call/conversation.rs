//! `call --messages FILE`: a conversation written as a JSON array of
//! `{role, content}` turns, validated into a [`Prompt`].
//!
//! The checks are the ones both wire formats need: system turns first (Anthropic
//! takes them apart from the turns), a user turn to start and one to end (the model
//! answers the last), and nothing backstop would have to drop silently: a key other
//! than `role` and `content` (a tool call, a name) or a part other than text is
//! refused by name.

use serde_json::{Map, Value};

use crate::attempt::{Prompt, Speaker, Turn};

/// The conversation in `text`, read from `name` (which every error names, with the
/// turn, counted from 1).
pub fn parse(name: &str, text: &str) -> Result<Prompt, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("{name}: not JSON: {e}"))?;
    let Value::Array(turns) = value else {
        return Err(format!(
            "{name}: must be a JSON array of {{\"role\", \"content\"}} turns"
        ));
    };
    if turns.is_empty() {
        return Err(format!("{name}: the conversation has no turns"));
    }
    let mut system: Vec<String> = Vec::new();
    let mut said: Vec<Turn> = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        let at = |m: String| format!("{name}: turn {}: {m}", i + 1);
        let (role, content) = read_turn(turn).map_err(at)?;
        match role {
            Role::System if said.is_empty() => system.push(content),
            Role::System => {
                return Err(at(
                    "a system turn must come before the first user turn".into()
                ));
            }
            Role::Said(Speaker::Assistant) if said.is_empty() => {
                return Err(at(
                    "the conversation must start with a user turn (after any system turns)".into(),
                ));
            }
            Role::Said(speaker) => said.push(Turn {
                speaker,
                text: content,
            }),
        }
    }
    let user = match said.pop() {
        Some(Turn {
            speaker: Speaker::User,
            text,
        }) => text,
        Some(_) => {
            return Err(format!(
                "{name}: turn {}: the last turn must be a user turn: it is the one the model answers",
                turns.len()
            ));
        }
        None => return Err(format!("{name}: the conversation has no user turn")),
    };
    Ok(Prompt {
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        earlier: said,
        user,
    })
}

enum Role {
    System,
    Said(Speaker),
}

/// One turn's role and text.
fn read_turn(turn: &Value) -> Result<(Role, String), String> {
    let Value::Object(fields) = turn else {
        return Err("must be an object {\"role\", \"content\"}".into());
    };
    if let Some(key) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "role" | "content"))
    {
        return Err(format!(
            "unknown key `{key}`: a turn has only `role` and `content` (tool calls and names are not supported)"
        ));
    }
    let role = match fields.get("role").and_then(Value::as_str) {
        Some("system") => Role::System,
        Some("user") => Role::Said(Speaker::User),
        Some("assistant") => Role::Said(Speaker::Assistant),
        _ => return Err("role must be system, user or assistant".into()),
    };
    let text = read_content(fields)?;
    if text.trim().is_empty() {
        return Err("the content is empty".into());
    }
    Ok((role, text))
}

/// `content`: a string, or an array of `{type: text, text}` parts, joined.
fn read_content(fields: &Map<String, Value>) -> Result<String, String> {
    match fields.get("content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                texts.push(read_part(part).map_err(|m| format!("part {}: {m}", j + 1))?);
            }
            Ok(texts.join("\n\n"))
        }
        Some(_) => Err("content must be a string or an array of text parts".into()),
        None => Err("has no `content`".into()),
    }
}

fn read_part(part: &Value) -> Result<String, String> {
    let Value::Object(fields) = part else {
        return Err("must be an object {\"type\": \"text\", \"text\"}".into());
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some(other) => {
            return Err(format!(
                "a part of type `{other}` is not supported: only `text` parts are"
            ));
        }
        None => return Err("has no `type`".into()),
    }
    if let Some(key) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "text"))
    {
        return Err(format!(
            "unknown key `{key}`: a text part has only `type` and `text`"
        ));
    }
    fields
        .get("text")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| "`text` must be a string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("m.json", text).unwrap_err()
    }

    #[test]
    fn a_conversation_becomes_system_earlier_turns_and_the_last_message() {
        let p = parse(
            "m.json",
            r#"[{"role":"system","content":"Be terse."},
                {"role":"system","content":[{"type":"text","text":"Answer in French."}]},
                {"role":"user","content":"Capital of France?"},
                {"role":"assistant","content":"Paris."},
                {"role":"user","content":"And of Italy?"}]"#,
        )
        .unwrap();
        assert_eq!(p.system.as_deref(), Some("Be terse.\n\nAnswer in French."));
        assert_eq!(
            p.earlier,
            vec![
                Turn {
                    speaker: Speaker::User,
                    text: "Capital of France?".into()
                },
                Turn {
                    speaker: Speaker::Assistant,
                    text: "Paris.".into()
                },
            ]
        );
        assert_eq!(p.user, "And of Italy?");
    }

    #[test]
    fn each_mistake_names_the_file_and_the_turn() {
        let cases = [
            ("{}", "m.json: must be a JSON array"),
            ("[]", "m.json: the conversation has no turns"),
            ("[1", "m.json: not JSON"),
            (
                r#"[{"role":"tool","content":"x"}]"#,
                "m.json: turn 1: role must be system, user or assistant",
            ),
            (
                r#"[{"role":"user","content":"x"},{"role":"assistant","content":"y","tool_calls":[]}]"#,
                "m.json: turn 2: unknown key `tool_calls`",
            ),
            (
                r#"[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]"#,
                "m.json: turn 1: part 1: a part of type `image_url` is not supported",
            ),
            (
                r#"[{"role":"user","content":"x"},{"role":"system","content":"y"},{"role":"user","content":"z"}]"#,
                "m.json: turn 2: a system turn must come before the first user turn",
            ),
            (
                r#"[{"role":"assistant","content":"x"},{"role":"user","content":"y"}]"#,
                "m.json: turn 1: the conversation must start with a user turn",
            ),
            (
                r#"[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]"#,
                "m.json: turn 2: the last turn must be a user turn",
            ),
            (
                r#"[{"role":"system","content":"x"}]"#,
                "m.json: the conversation has no user turn",
            ),
            (
                r#"[{"role":"user","content":"  "}]"#,
                "m.json: turn 1: the content is empty",
            ),
            (
                r#"[{"role":"user","content":7}]"#,
                "m.json: turn 1: content must be a string",
            ),
            (r#"[{"role":"user"}]"#, "m.json: turn 1: has no `content`"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{text}: {got}");
        }
    }
}
