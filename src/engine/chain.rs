//! The chain a policy gives: link 0 (the command, or a model call), then
//! `fallback.chain`, each with the retry rules and timeout it runs under.

use std::time::Duration;

use super::Primary;
use crate::policy::{Action, CallLink, DefaultAnswer, Escalate, Policy, RetryPolicy};

pub(super) enum LinkKind<'p> {
    Run(&'p [String]),
    Call(CallLink),
    Default(&'p DefaultAnswer),
    Escalate(&'p Escalate),
}

pub(super) struct ChainLink<'p> {
    pub(super) name: String,
    pub(super) kind: LinkKind<'p>,
    pub(super) retry: &'p RetryPolicy,
    pub(super) timeout: Option<Duration>,
    /// Its circuit breaker's name (`run` and `call` links).
    pub(super) key: Option<String>,
}

/// Link 0, then the policy's fallback chain.
pub(super) fn chain<'p>(policy: &'p Policy, primary: Primary<'p>) -> Vec<ChainLink<'p>> {
    let (name, kind) = match primary {
        Primary::Command(command) => (
            crate::attempt::command_line(command),
            LinkKind::Run(command),
        ),
        Primary::Call(model) => (
            format!("call {model}"),
            LinkKind::Call(CallLink {
                model: model.to_string(),
                prompt: None,
                system: None,
            }),
        ),
    };
    let own_key = policy.guarding.breaker.as_ref().and_then(|b| b.key.clone());
    let first = ChainLink {
        key: own_key.or_else(|| breaker_key(policy, &kind)),
        name,
        kind,
        retry: &policy.retry,
        timeout: policy.timeout.attempt.map(|d| d.0),
    };
    let fallbacks = policy.fallback.chain.iter().map(|link| {
        let kind = match &link.action {
            Action::Run(argv) => LinkKind::Run(&argv.0),
            Action::Call(call) => LinkKind::Call(call.clone()),
            Action::Default(answer) => LinkKind::Default(answer),
            Action::Escalate(e) => LinkKind::Escalate(e),
        };
        ChainLink {
            name: link.name.clone(),
            key: breaker_key(policy, &kind),
            kind,
            retry: link.retry.as_ref().unwrap_or(&policy.retry),
            timeout: link.timeout.or(policy.timeout.attempt).map(|d| d.0),
        }
    });
    std::iter::once(first).chain(fallbacks).collect()
}

/// A link's breaker, when the policy has breakers: a command's line, or a call's
/// provider and model (`call PROVIDER/MODEL`), so every policy that reaches the same
/// model shares its breaker.
fn breaker_key(policy: &Policy, kind: &LinkKind<'_>) -> Option<String> {
    policy.guarding.breaker.as_ref()?;
    match kind {
        LinkKind::Run(argv) => Some(crate::attempt::command_line(argv)),
        LinkKind::Call(call) => Some(match policy.models.get(&call.model) {
            Some(m) => format!("call {}/{}", m.provider, m.model),
            None => format!("call {}", call.model),
        }),
        LinkKind::Default(_) | LinkKind::Escalate(_) => None,
    }
}

/// The model of a fallback `call` link that would only ask link 0's model the same
/// thing again (`-m cheap` with a chain holding `call: {model: cheap}`).
pub(super) fn repeats_primary<'l>(
    primary: Primary<'_>,
    link: &'l ChainLink<'_>,
) -> Option<&'l str> {
    match (primary, &link.kind) {
        (Primary::Call(model), LinkKind::Call(c))
            if c.model == model && c.prompt.is_none() && c.system.is_none() =>
        {
            Some(&c.model)
        }
        _ => None,
    }
}
