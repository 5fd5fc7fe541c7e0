//! API keys, and provider header values taken from the environment: read from the
//! variables a policy names, checked before any request, and kept out of every
//! message backstop prints or records.
//!
//! Redaction always comes before truncation: a key cut in two by a length limit can no
//! longer be found and would land in the record in pieces.

use crate::error::UserError;
use crate::policy::request::check_header_value;
use crate::policy::values::HeaderValue;
use crate::policy::{Policy, Provider};

/// Every secret of a call: the key, and header values read from the environment.
/// Whatever a server or a library puts in a message is redacted of each.
#[derive(Clone, Debug, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// The key alone, when there is one.
    pub fn of_key(key: Option<&str>) -> Secrets {
        let mut s = Secrets::default();
        if let Some(k) = key {
            s.push(k);
        }
        s
    }

    pub fn push(&mut self, secret: &str) {
        if !secret.is_empty() && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_string());
        }
    }

    pub fn extend(&mut self, other: Secrets) {
        for s in other.0 {
            self.push(&s);
        }
    }

    /// `text` with every secret replaced by `[redacted]` (see [`redact`]); the
    /// longest first, so one secret inside another is not left half shown.
    pub fn redact(&self, text: &str) -> String {
        let mut order: Vec<&String> = self.0.iter().collect();
        order.sort_by_key(|s| std::cmp::Reverse(s.len()));
        order
            .into_iter()
            .fold(text.to_string(), |out, s| redact(&out, s))
    }

    /// `text` redacted, then cut to `max` characters (on a character boundary). When
    /// the text is itself a piece cut from something longer (`cut`), a tail that could
    /// be the start of a secret is dropped too: its other half is gone, so it cannot be
    /// matched.
    pub fn redact_then_truncate(&self, text: &str, max: usize, cut: bool) -> String {
        let mut clean = self.redact(text);
        if cut {
            for s in &self.0 {
                clean = drop_partial_tail(clean, s);
            }
        }
        truncate(clean, max)
    }
}

/// A key shorter than this is not worth hiding (and hiding it would mangle messages).
const SHORTEST: usize = 4;

/// The key of `provider`, or why there is none usable. `Ok(None)`: the provider needs
/// no key (`api_key_env` unset).
pub fn read_key(provider: &Provider) -> Result<Option<String>, String> {
    let Some(var) = &provider.api_key_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(k) if k.is_empty() => Err(format!("the environment variable {var} is empty")),
        Ok(k) if !k.bytes().all(|b| b.is_ascii_graphic()) => Err(format!(
            "the environment variable {var} holds characters that cannot go in an HTTP header (spaces, control characters or non-ASCII)"
        )),
        Ok(k) => Ok(Some(k)),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("the environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("the environment variable {var} is not valid UTF-8"))
        }
    }
}

/// The extra headers of `provider`, values read (`{ env }` from the environment), and
/// the values that came from the environment: secrets, redacted like the key.
pub fn read_headers(provider: &Provider) -> Result<(Vec<(String, String)>, Secrets), String> {
    let mut out = Vec::new();
    let mut secrets = Secrets::default();
    for (name, value) in &provider.headers {
        let value = match value {
            HeaderValue::Literal(v) => v.clone(),
            HeaderValue::Env { env } => {
                let v = std::env::var(env).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        format!("header `{name}`: the environment variable {env} is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!(
                            "header `{name}`: the environment variable {env} is not valid UTF-8"
                        )
                    }
                })?;
                check_header_value(&v).map_err(|why| format!("header `{name}`: {env}: {why}"))?;
                secrets.push(&v);
                v
            }
        };
        out.push((name.clone(), value));
    }
    Ok((out, secrets))
}

/// Checks the key of every model a run may call (`primary`, then the `call` links of
/// the chain) before anything starts: a missing key is a configuration error, found
/// before the command runs or any request is made, not a network failure found when
/// the fallback is needed.
pub fn check_keys(policy: &Policy, primary: Option<&str>) -> Result<(), UserError> {
    for name in crate::policy::request::called_models(policy, primary) {
        let Some(model) = policy.models.get(name) else {
            continue;
        };
        let Some(provider) = policy.providers.get(&model.provider) else {
            continue;
        };
        if let Err(why) = read_key(provider) {
            return Err(UserError::PolicyFile {
                file: policy.source.clone(),
                message: format!(
                    "model `{name}` needs an API key: {why} (providers.{}.api_key_env); nothing was run",
                    model.provider
                ),
            });
        }
        if let Err(why) = read_headers(provider) {
            return Err(UserError::PolicyFile {
                file: policy.source.clone(),
                message: format!(
                    "model `{name}`: {why} (providers.{}.headers); nothing was run",
                    model.provider
                ),
            });
        }
    }
    Ok(())
}

/// `text` with `secret` replaced by `[redacted]`, also where it was percent-encoded
/// (an echoed URL or form body, in any mix of encoded and plain characters): such a
/// text is decoded before it is redacted. JSON escapes are undone by parsing, so
/// parsed strings are redacted again after parsing.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < SHORTEST {
        return text.to_string();
    }
    let mut out = text.replace(secret, "[redacted]");
    // A JSON text that could not be parsed (cut at the error-body limit, or JSON
    // inside an HTML page) still spells the key with its escapes: `"` and `\` always,
    // and `/` as `\/` where a server's encoder escapes it (PHP's does), which a
    // base64 key holds.
    for escaped in json_spellings(secret) {
        out = out.replace(&escaped, "[redacted]");
    }
    if out.contains('%') {
        let decoded = percent_encoding::percent_decode_str(&out).decode_utf8_lossy();
        if decoded.contains(secret) {
            out = decoded.replace(secret, "[redacted]");
        }
    }
    out
}

/// How JSON may spell `secret`, where that differs from the key itself.
fn json_spellings(secret: &str) -> Vec<String> {
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let plain = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(secret)
        .to_string();
    let slashed = plain.replace('/', "\\/");
    let mut out = Vec::new();
    for s in [plain, slashed] {
        if s != secret && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// `text` without a tail that could be the start of `secret`.
fn drop_partial_tail(mut clean: String, secret: &str) -> String {
    if secret.len() >= SHORTEST {
        for n in (1..secret.len()).rev() {
            if secret.is_char_boundary(n) && clean.ends_with(&secret[..n]) {
                clean.truncate(clean.len() - n);
                break;
            }
        }
    }
    clean
}

/// `clean` cut to `max` characters, with `…` when it was longer.
fn truncate(mut clean: String, max: usize) -> String {
    match clean.char_indices().nth(max) {
        Some((at, _)) => {
            clean.truncate(at);
            clean.push('…');
            clean
        }
        None => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test-7f3a9c1e5b2d4f60-secret";

    #[test]
    fn a_key_across_the_cut_is_redacted_before_the_cut() {
        let text = format!("{}{KEY} trailing", "x".repeat(290));
        let out = Secrets::of_key(Some(KEY)).redact_then_truncate(&text, 300, false);
        assert!(!out.contains("sk-test"), "{out}");
        assert!(out.starts_with(&"x".repeat(290)));
    }

    #[test]
    fn a_key_cut_off_by_an_earlier_limit_loses_its_start_too() {
        let text = format!("error: {}", &KEY[..12]);
        let out = Secrets::of_key(Some(KEY)).redact_then_truncate(&text, 300, true);
        assert_eq!(out, "error: ");
    }

    #[test]
    fn percent_encoded_and_short_keys() {
        let key = "a/b+c=d";
        assert_eq!(redact("u?k=a%2Fb%2Bc%3Dd", key), "u?k=[redacted]");
        assert_eq!(redact("u?k=a%2fb%2bc%3dd&x=%20", key), "u?k=[redacted]&x= ");
        assert_eq!(redact("u?k=%61%2F%62+c=d", key), "u?k=[redacted]");
        assert_eq!(redact("100% sure", key), "100% sure");
        assert_eq!(redact("abc", "ab"), "abc");
    }

    #[test]
    fn a_key_spelled_with_json_escapes_in_unparsed_text_is_redacted() {
        let key = "ab/c\\d\"e+f=";
        assert_eq!(
            redact(r#"k "ab\/c\\d\"e+f=" x"#, key),
            r#"k "[redacted]" x"#
        );
        assert_eq!(redact(r#"k "ab/c\\d\"e+f=" x"#, key), r#"k "[redacted]" x"#);
    }

    #[test]
    fn every_secret_is_redacted_and_a_cut_one_loses_its_start() {
        let mut s = Secrets::of_key(Some(KEY));
        s.push("org-9f8e7d6c5b4a");
        let out =
            s.redact_then_truncate(&format!("{KEY} and org-9f8e7d6c5b4a, org-9f8e"), 300, true);
        assert_eq!(out, "[redacted] and [redacted], ");
    }

    #[test]
    fn truncation_is_on_a_character_boundary() {
        let out = Secrets::of_key(Some(KEY)).redact_then_truncate(&"é".repeat(400), 300, false);
        assert_eq!(out.chars().count(), 301);
    }
}
