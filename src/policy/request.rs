//! What a model request carries besides the prompt, checked once for the policy and
//! for the command line alike: a provider's extra headers, stop sequences and the
//! temperature.

use std::collections::BTreeMap;

use super::ProviderKind;
use super::values::HeaderValue;

/// Headers that carry the API key: `api_key_env` names its variable.
const KEY_HEADERS: [&str; 4] = [
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
];

/// Headers backstop (or its HTTP client) sets itself on every request.
const OWN_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "idempotency-key",
    "anthropic-version",
    "transfer-encoding",
    "connection",
];

/// The most stop sequences an OpenAI-compatible API takes.
pub const MAX_OPENAI_STOP: usize = 4;

/// Why a provider's `headers` cannot be used: the key (under `headers`) and the
/// message. Names are compared without case, as HTTP does.
pub fn check_headers(headers: &BTreeMap<String, HeaderValue>) -> Result<(), (String, String)> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (name, value) in headers {
        let fail = |m: String| Err((name.clone(), m));
        let lower = name.to_ascii_lowercase();
        if KEY_HEADERS.contains(&lower.as_str()) {
            return fail(
                "carries the API key: name the key's variable with `api_key_env` instead".into(),
            );
        }
        check_header_name(name).or_else(fail)?;
        if let Some(other) = seen.insert(lower, name) {
            return fail(format!("the same header as `{other}` (names ignore case)"));
        }
        match value {
            HeaderValue::Literal(v) => check_header_value(v).or_else(fail)?,
            HeaderValue::Env { env } => check_env_name(env).or_else(fail)?,
        }
    }
    Ok(())
}

/// Why `name` cannot be a header a policy adds to backstop's requests (model calls,
/// OTLP exports), if it cannot: not a header name, or one backstop sets itself (the
/// client would send it twice).
pub fn check_header_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("not a valid HTTP header name".into());
    }
    if OWN_HEADERS.contains(&lower.as_str()) {
        let hint = if lower == "anthropic-version" {
            ": set `anthropic_version` instead"
        } else {
            ""
        };
        return Err(format!("backstop sets this header itself{hint}"));
    }
    Ok(())
}

/// Why `env` cannot name the environment variable a header's value comes from.
pub fn check_env_name(env: &str) -> Result<(), String> {
    if env.is_empty() || env.contains(['=', '\0']) {
        return Err(format!(
            "`{env}` is not an environment variable's name (the value itself never goes in a policy)"
        ));
    }
    Ok(())
}

/// Why `value` cannot go in a header, if it cannot (the value itself is not repeated:
/// it may be a secret).
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n']) {
        return Err("the value holds a line break (CR or LF)".into());
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(
            "the value holds characters that cannot go in an HTTP header (control characters or non-ASCII)"
                .into(),
        );
    }
    Ok(())
}

/// Why `stop` cannot be sent to a provider of `kind`, if it cannot.
pub fn check_stop(kind: ProviderKind, stop: &[String]) -> Result<(), String> {
    if stop.iter().any(String::is_empty) {
        return Err("a stop sequence is empty".into());
    }
    if kind == ProviderKind::Openai && stop.len() > MAX_OPENAI_STOP {
        return Err(format!(
            "{} stop sequences: an OpenAI-compatible API takes at most {MAX_OPENAI_STOP}",
            stop.len()
        ));
    }
    Ok(())
}

/// The highest temperature any provider takes (OpenAI's).
pub const MAX_TEMPERATURE: f64 = 2.0;

/// Why `t` is not a temperature for a provider of `kind` (OpenAI-compatible: 0 to 2,
/// Anthropic: 0 to 1), if it is not.
pub fn check_temperature(kind: ProviderKind, t: f64) -> Result<(), String> {
    let (max, whose) = match kind {
        ProviderKind::Openai => (MAX_TEMPERATURE, "OpenAI-compatible"),
        ProviderKind::Anthropic => (1.0, "Anthropic"),
    };
    // serde_json writes a non-finite float as `null`: `.nan` would go out as
    // `"temperature": null`.
    if !(0.0..=max).contains(&t) {
        return Err(format!(
            "must be a number from 0 to {max} for {whose} models"
        ));
    }
    Ok(())
}

/// The models a run may call, by name: `primary`, then those of the chain's `call`
/// links.
pub fn called_models<'a>(policy: &'a super::Policy, primary: Option<&'a str>) -> Vec<&'a str> {
    let chain = policy
        .fallback
        .chain
        .iter()
        .filter_map(|l| match &l.action {
            super::Action::Call(c) => Some(c.model.as_str()),
            _ => None,
        });
    let mut out: Vec<&str> = Vec::new();
    for name in primary.into_iter().chain(chain) {
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: HeaderValue) -> Result<(), (String, String)> {
        check_headers(&BTreeMap::from([(name.to_string(), value)]))
    }

    #[test]
    fn headers_that_carry_the_key_or_that_backstop_sets_are_refused() {
        let lit = |v: &str| HeaderValue::Literal(v.into());
        for name in [
            "Authorization",
            "x-api-key",
            "API-Key",
            "Content-Type",
            "Host",
        ] {
            assert!(one(name, lit("x")).is_err(), "{name}");
        }
        let (_, m) = one("anthropic-version", lit("x")).unwrap_err();
        assert!(m.contains("anthropic_version"), "{m}");
        assert!(one("x-team", lit("a\r\nx-evil: 1")).is_err());
        assert!(one("bad name", lit("x")).is_err());
        let env = |e: &str| HeaderValue::Env { env: e.into() };
        assert!(one("x-org", env("")).is_err());
        assert!(one("x-org", env("ORG_ID")).is_ok());
        let twice = BTreeMap::from([
            ("X-Team".to_string(), lit("a")),
            ("x-team".to_string(), lit("b")),
        ]);
        assert!(check_headers(&twice).is_err());
    }

    #[test]
    fn stop_sequences_and_temperatures() {
        let five: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert!(check_stop(ProviderKind::Openai, &five).is_err());
        assert!(check_stop(ProviderKind::Anthropic, &five).is_ok());
        assert!(check_stop(ProviderKind::Anthropic, &[String::new()]).is_err());
        for bad in [f64::NAN, f64::INFINITY, -0.1, 2.5] {
            assert!(
                check_temperature(ProviderKind::Openai, bad).is_err(),
                "{bad}"
            );
        }
        assert!(check_temperature(ProviderKind::Openai, 0.0).is_ok());
        assert!(check_temperature(ProviderKind::Openai, 2.0).is_ok());
        assert!(check_temperature(ProviderKind::Anthropic, 1.0).is_ok());
        let m = check_temperature(ProviderKind::Anthropic, 1.5).unwrap_err();
        assert_eq!(m, "must be a number from 0 to 1 for Anthropic models");
    }
}
