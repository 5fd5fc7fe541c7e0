//! Validates a parsed policy and fills in the defaults.
//!
//! The defaults here are the single source of the built-in policy; `policies/default.yaml`
//! spells them out and a test checks the two agree.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::*;
use super::raw::*;
use super::values::{Argv, CodeSet, Dur, Pattern, Size};
use crate::scan::{PatternSet, Scanner};

/// A check that failed after parsing, with the key path it is about.
#[derive(Debug)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

pub(super) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The most attempts any link may make; a typo of `max_attempts: 10000` is refused.
pub const MAX_ATTEMPTS_CAP: u32 = 1000;

/// Model calls never wait forever: a server that accepts and then says nothing is
/// a timeout. Five minutes to the first byte leaves room for a long answer that is
/// not streamed (it arrives whole).
const CALL_CONNECT_MS: u64 = 10_000;
const CALL_FIRST_TOKEN_MS: u64 = 300_000;
const CALL_STALL_MS: u64 = 60_000;

/// The most links `fallback.chain` may hold; each with a `retry:` of its own
/// compiles its own set of output patterns when the policy loads.
pub const MAX_CHAIN_LINKS: usize = 100;

const MS: fn(u64) -> Dur = |ms| Dur(Duration::from_millis(ms));

pub fn resolve(raw: RawPolicy, source: String, digest: String) -> Result<Policy, Invalid> {
    check_version(raw.version)?;
    let f = raw.fallback.unwrap_or_default();
    let critical = f.critical.unwrap_or_default();
    let critical = Critical {
        exit_codes: critical.exit_codes.unwrap_or_default(),
        output: critical.output.unwrap_or_default(),
    };
    let base = raw.retry.unwrap_or_default();
    let mut sets = Sets::default();
    let critical_set = sets.compile(&critical.output, "fallback.critical.output")?;
    let retry = resolve_retry(&base, "retry", (&critical_set, &mut sets))?;
    let timeout = resolve_timeouts(raw.timeout.unwrap_or_default())?;
    let chain = resolve_chain(
        f.chain.unwrap_or_default(),
        (&base, &retry),
        (&critical_set, &mut sets),
    )?;
    let rollback = resolve_rollback(raw.rollback)?;
    let steps = resolve_steps(raw.steps.unwrap_or_default())?;
    if retry.command.is_some() && !steps.is_empty() {
        return Err(invalid(
            "retry.command",
            "a policy with `steps:` retries each step as written: give a step's own command instead",
        ));
    }
    let (providers, models, model, budget) =
        resolve_models(raw.providers, raw.models, raw.model, raw.budget)?;
    check_call_models(&chain, &models)?;

    Ok(Policy {
        source,
        path: None,
        digest,
        version: 1,
        retry,
        timeout,
        fallback: Fallback { critical, chain },
        rollback,
        steps,
        providers,
        models,
        model,
        budget,
        continue_on_error: raw.continue_on_error.unwrap_or(false),
        alerts: super::ops::resolve_alerts(raw.alerts)?,
        metrics: super::ops::resolve_metrics(raw.metrics)?,
        guarding: super::guard::resolve_guarding(raw.breaker, raw.retry_budget, raw.state)?,
    })
}

fn check_version(version: Option<u32>) -> Result<(), Invalid> {
    match version {
        Some(1) => Ok(()),
        Some(v) => Err(invalid(
            "version",
            format!("unsupported version {v}: expected 1"),
        )),
        None => Err(invalid("version", "missing `version: 1`")),
    }
}

fn resolve_timeouts(t: RawTimeout) -> Result<Timeouts, Invalid> {
    for (key, value, without) in [
        ("attempt", t.attempt, "no limit"),
        ("total", t.total, "no limit"),
        ("connect", t.connect, "the default"),
        ("first_token", t.first_token, "the default"),
        ("stall", t.stall, "the default"),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            return Err(invalid(
                format!("timeout.{key}"),
                format!(
                    "a timeout of zero would end every attempt at once; leave it out for {without}"
                ),
            ));
        }
    }
    Ok(Timeouts {
        attempt: t.attempt,
        total: t.total,
        kill_grace: t.kill_grace.unwrap_or(MS(5000)),
        connect: t.connect.unwrap_or(MS(CALL_CONNECT_MS)),
        first_token: t.first_token.unwrap_or(MS(CALL_FIRST_TOKEN_MS)),
        stall: t.stall.unwrap_or(MS(CALL_STALL_MS)),
    })
}

/// `base` is the policy's `retry:` as written and as resolved.
fn resolve_chain(
    links: Vec<RawLink>,
    base: (&RawRetry, &RetryPolicy),
    (critical_set, sets): (&PatternSet, &mut Sets),
) -> Result<Vec<Link>, Invalid> {
    if links.len() > MAX_CHAIN_LINKS {
        return Err(invalid(
            "fallback.chain",
            format!(
                "at most {MAX_CHAIN_LINKS} links, not {}: each is a whole plan B",
                links.len()
            ),
        ));
    }
    let mut chain = Vec::new();
    for (i, link) in links.into_iter().enumerate() {
        chain.push(resolve_link(
            link,
            base,
            &format!("fallback.chain[{i}]"),
            (critical_set, sets),
        )?);
    }
    Ok(chain)
}

fn resolve_rollback(raw: Option<RawRollback>) -> Result<Rollback, Invalid> {
    let explicit = raw.is_some();
    let r = raw.unwrap_or_default();
    let snapshot = r.snapshot.unwrap_or(true);
    if !snapshot {
        refuse_without_snapshot(&r)?;
    }
    let scope = r.scope.unwrap_or_default();
    let exclude = scope.exclude.unwrap_or_default();
    if let Some(i) = exclude.iter().position(|p| p.trim().is_empty()) {
        return Err(invalid(
            format!("rollback.scope.exclude[{i}]"),
            "an empty pattern",
        ));
    }
    Ok(Rollback {
        explicit,
        snapshot,
        on: r.on.unwrap_or(if snapshot {
            RollbackOn::Failure
        } else {
            RollbackOn::Never
        }),
        scope: Scope {
            root: scope.root,
            exclude,
            ignored: scope.ignored.unwrap_or(Ignored::Respect),
            max_file_size: scope.max_file_size.unwrap_or(Size(100 << 20)),
            max_total_size: scope.max_total_size.unwrap_or(Size(4 << 30)),
        },
        between_attempts: r.between_attempts.unwrap_or(BetweenAttempts::Keep),
        validate: r.validate,
        to: r.to.unwrap_or(RollbackTo::Step),
    })
}

/// `snapshot: false` with a key that only means something with a snapshot: refused,
/// naming that key, rather than silently running unprotected.
fn refuse_without_snapshot(r: &RawRollback) -> Result<(), Invalid> {
    let needs =
        |what: &str| format!("{what} needs a snapshot, and `rollback.snapshot: false` takes none");
    if r.on == Some(RollbackOn::Failure) {
        return Err(invalid("rollback.on", needs("rolling back on failure")));
    }
    if r.between_attempts == Some(BetweenAttempts::Restore) {
        return Err(invalid(
            "rollback.between_attempts",
            needs("restoring the tree between attempts"),
        ));
    }
    let keys = [
        (
            "validate",
            r.validate.is_some(),
            "a `validate` whose failure is rolled back",
        ),
        ("to", r.to.is_some(), "a step's rollback target"),
        ("scope", r.scope.is_some(), "a snapshot's scope"),
    ];
    match keys.iter().find(|(_, set, _)| *set) {
        Some((key, _, what)) => Err(invalid(format!("rollback.{key}"), needs(what))),
        None => Ok(()),
    }
}

fn resolve_steps(raw: Vec<RawStep>) -> Result<Vec<Step>, Invalid> {
    let mut steps = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, step) in raw.into_iter().enumerate() {
        if step.name.trim().is_empty() {
            return Err(invalid(format!("steps[{i}].name"), "a step needs a name"));
        }
        // A step's name is printed as each step starts, in prompts and in `show`; a policy
        // may come from a checked-out repository (`./backstop.yaml`), so a name must not
        // be able to forge a line or send escape sequences to the user's terminal.
        if step.name.chars().any(char::is_control) {
            return Err(invalid(
                format!("steps[{i}].name"),
                "a step's name must not hold a control character (a newline, an escape)",
            ));
        }
        // A set, not a scan of the steps so far: 40,000 steps took 12 s.
        if !names.insert(step.name.clone()) {
            return Err(invalid(
                format!("steps[{i}].name"),
                format!("two steps are named `{}`", step.name),
            ));
        }
        steps.push(Step {
            name: step.name,
            run: step.run,
            approve: step.approve.unwrap_or(false),
        });
    }
    Ok(steps)
}

/// Every `call` link names a model the policy defines.
fn check_call_models(chain: &[Link], models: &BTreeMap<String, Model>) -> Result<(), Invalid> {
    for (i, link) in chain.iter().enumerate() {
        if let Action::Call(CallLink { model: name, .. }) = &link.action
            && !models.contains_key(name)
        {
            return Err(invalid(
                format!("fallback.chain[{i}].call.model"),
                format!("no model named `{name}` under `models`"),
            ));
        }
    }
    Ok(())
}

type Models = (
    BTreeMap<String, Provider>,
    BTreeMap<String, Model>,
    Option<String>,
    Budget,
);

fn resolve_models(
    providers: Option<BTreeMap<String, RawProvider>>,
    models: Option<BTreeMap<String, RawModel>>,
    model: Option<String>,
    budget: Option<RawBudget>,
) -> Result<Models, Invalid> {
    let mut out_providers = BTreeMap::new();
    for (name, p) in providers.unwrap_or_default() {
        let provider = resolve_provider(&name, p)?;
        out_providers.insert(name, provider);
    }
    let mut out_models = BTreeMap::new();
    for (name, m) in models.unwrap_or_default() {
        if !out_providers.contains_key(&m.provider) {
            return Err(invalid(
                format!("models.{name}.provider"),
                format!("no provider named `{}` under `providers`", m.provider),
            ));
        }
        let kind = out_providers
            .get(&m.provider)
            .map_or(ProviderKind::Openai, |p: &Provider| p.kind);
        let resolved = resolve_model(name.clone(), kind, m)?;
        out_models.insert(name, resolved);
    }
    if let Some(m) = &model
        && !out_models.contains_key(m)
    {
        return Err(invalid(
            "model",
            format!("no model named `{m}` under `models`"),
        ));
    }
    Ok((out_providers, out_models, model, resolve_budget(budget)?))
}

fn resolve_provider(name: &str, p: RawProvider) -> Result<Provider, Invalid> {
    if p.api_key.is_some() {
        return Err(invalid(
            format!("providers.{name}.api_key"),
            "API keys do not belong in a policy file: put the key in an environment variable and name it with `api_key_env`",
        ));
    }
    let base_url = p.base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(invalid(
            format!("providers.{name}.base_url"),
            "must start with http:// or https://",
        ));
    }
    // Error messages name the endpoint, so it must hold nothing secret; and the
    // request path is appended to it, which a query or fragment would swallow.
    match reqwest::Url::parse(&base_url) {
        Ok(url)
            if url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none() => {}
        Ok(_) => {
            return Err(invalid(
                format!("providers.{name}.base_url"),
                "must not hold a user, password, query or fragment: credentials go in the variable named by `api_key_env`",
            ));
        }
        Err(e) => {
            return Err(invalid(
                format!("providers.{name}.base_url"),
                format!("not a URL: {e}"),
            ));
        }
    }
    let headers = p.headers.unwrap_or_default();
    super::request::check_headers(&headers)
        .map_err(|(header, m)| invalid(format!("providers.{name}.headers.{header}"), m))?;
    Ok(Provider {
        kind: p.kind,
        base_url,
        api_key_env: p.api_key_env,
        anthropic_version: p.anthropic_version.unwrap_or_else(|| "2023-06-01".into()),
        headers,
    })
}

/// A model whose provider is known to exist.
fn resolve_model(name: String, kind: ProviderKind, m: RawModel) -> Result<Model, Invalid> {
    // `.nan` and `.inf` are YAML floats: a NaN price slips past `< 0.0`, makes
    // every cost NaN (recorded as `null`) and every budget comparison false, so
    // `budget.max_cost_usd` would never stop a call; `.inf` makes `0 * inf` NaN.
    if let Some(p) = &m.price
        && !(p.input_per_mtok.is_finite()
            && p.output_per_mtok.is_finite()
            && p.input_per_mtok >= 0.0
            && p.output_per_mtok >= 0.0)
    {
        return Err(invalid(
            format!("models.{name}.price"),
            "prices must be finite numbers, zero or more",
        ));
    }
    // serde_json writes a non-finite float as `null`: `.nan` would be sent to the
    // provider as `"temperature": null`, not refused here where it was written.
    if let Some(Err(why)) = m
        .temperature
        .map(|t| super::request::check_temperature(kind, t))
    {
        return Err(invalid(format!("models.{name}.temperature"), why));
    }
    if let Some(stop) = &m.stop {
        super::request::check_stop(kind, stop)
            .map_err(|why| invalid(format!("models.{name}.stop"), why))?;
    }
    Ok(Model {
        name,
        provider: m.provider,
        model: m.model,
        max_tokens: m.max_tokens.unwrap_or(1024),
        temperature: m.temperature,
        stop: m.stop.unwrap_or_default(),
        price: m.price.map(|p| Price {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
        }),
    })
}

fn resolve_budget(budget: Option<RawBudget>) -> Result<Budget, Invalid> {
    let b = budget.unwrap_or_default();
    if b.max_cost_usd.is_some_and(|c| c.is_nan() || c < 0.0) {
        return Err(invalid("budget.max_cost_usd", "must be zero or more"));
    }
    Ok(Budget {
        max_cost_usd: b.max_cost_usd,
        max_tokens: b.max_tokens,
    })
}

/// `base` is the policy's `retry:` as written and as resolved.
fn resolve_link(
    link: RawLink,
    base: (&RawRetry, &RetryPolicy),
    path: &str,
    critical: (&PatternSet, &mut Sets),
) -> Result<Link, Invalid> {
    let (action, default_name) = link_action(link.run, link.call, link.default, link.escalate)
        .ok_or_else(|| {
            invalid(
                path,
                "a link needs exactly one of `run`, `call`, `default` or `escalate`",
            )
        })?;
    if link.timeout.is_some_and(|d| d.0.is_zero()) {
        return Err(invalid(
            format!("{path}.timeout"),
            "a timeout of zero would end every attempt at once",
        ));
    }
    let retry = match (&action, link.retry) {
        // Without a `retry:` of its own a link shares the policy's, compiled patterns
        // and all: a long chain costs no compile per link.
        (Action::Run(_) | Action::Call(_), None) => Some(RetryPolicy {
            command: None,
            ..base.1.clone()
        }),
        (Action::Call(_), Some(over)) if over.command.is_some() => {
            return Err(invalid(
                format!("{path}.retry.command"),
                "a `call` link asks a model: it has no command to replace",
            ));
        }
        (Action::Run(_) | Action::Call(_), Some(over)) => {
            let merged = merge_retry(base.0, over);
            Some(resolve_retry(&merged, &format!("{path}.retry"), critical)?)
        }
        (_, Some(_)) => {
            return Err(invalid(
                format!("{path}.retry"),
                "only `run` and `call` links are retried",
            ));
        }
        (_, None) => None,
    };
    Ok(Link {
        name: link.name.unwrap_or(default_name),
        action,
        retry,
        timeout: link.timeout,
    })
}

/// The one thing a link does, and the name it goes by unless it is given one;
/// `None` unless exactly one is given.
fn link_action(
    run: Option<Argv>,
    call: Option<RawCall>,
    default: Option<RawDefault>,
    escalate: Option<RawEscalate>,
) -> Option<(Action, String)> {
    match (run, call, default, escalate) {
        (Some(argv), None, None, None) => {
            let name = format!("run {}", crate::attempt::command_line(&argv.0));
            Some((Action::Run(argv), name))
        }
        (None, Some(call), None, None) => {
            let name = format!("call {}", call.model);
            let call = CallLink {
                model: call.model,
                prompt: call.prompt,
                system: call.system,
            };
            Some((Action::Call(call), name))
        }
        (None, None, Some(d), None) => {
            let answer = DefaultAnswer {
                stdout: d.stdout.unwrap_or_default(),
                stderr: d.stderr.unwrap_or_default(),
                exit_code: d.exit_code.unwrap_or(0),
            };
            Some((Action::Default(answer), "default answer".to_string()))
        }
        (None, None, None, Some(e)) => {
            let escalate = Escalate {
                run: e.run,
                exit_code: e.exit_code,
            };
            Some((Action::Escalate(escalate), "escalate".to_string()))
        }
        _ => None,
    }
}

/// A link's `retry:` over the policy's: each key it sets wins, key by key.
fn merge_retry(base: &RawRetry, over: RawRetry) -> RawRetry {
    let b = base.backoff.clone().unwrap_or_default();
    let backoff = over.backoff.map(|o| RawBackoff {
        kind: o.kind.or(b.kind),
        initial: o.initial.or(b.initial),
        multiplier: o.multiplier.or(b.multiplier),
        step: o.step.or(b.step),
        max: o.max.or(b.max),
        jitter: o.jitter.or(b.jitter),
        seed: o.seed.or(b.seed),
    });
    RawRetry {
        max_attempts: over.max_attempts.or(base.max_attempts),
        backoff: backoff.or_else(|| base.backoff.clone()),
        on: over.on.or_else(|| base.on.clone()),
        never: over.never.or_else(|| base.never.clone()),
        fail_on: over.fail_on.or_else(|| base.fail_on.clone()),
        retry_after: over.retry_after.or_else(|| base.retry_after.clone()),
        on_retry: over.on_retry.or_else(|| base.on_retry.clone()),
        // The policy's `retry.command` stands for the command, not for a link's.
        command: over.command,
    }
}

fn resolve_retry(
    raw: &RawRetry,
    path: &str,
    (critical, sets): (&PatternSet, &mut Sets),
) -> Result<RetryPolicy, Invalid> {
    let max_attempts = raw.max_attempts.unwrap_or(4);
    if !(1..=MAX_ATTEMPTS_CAP).contains(&max_attempts) {
        return Err(invalid(
            format!("{path}.max_attempts"),
            format!("must be from 1 (no retries) to {MAX_ATTEMPTS_CAP}, not {max_attempts}"),
        ));
    }
    let b = raw.backoff.clone().unwrap_or_default();
    let initial = b.initial.unwrap_or(MS(100));
    let multiplier = b.multiplier.unwrap_or(2.0);
    if !multiplier.is_finite() || multiplier < 1.0 {
        return Err(invalid(
            format!("{path}.backoff.multiplier"),
            format!("must be at least 1, not {multiplier}"),
        ));
    }
    let kind = b.kind.unwrap_or(BackoffKind::Exponential);
    let backoff = Backoff {
        kind,
        initial,
        multiplier,
        step: b.step.unwrap_or(initial),
        max: b.max.unwrap_or(MS(2000)),
        // A constant backoff is chosen to wait a known time: jittered only when asked.
        // The growing kinds spread out the retries of many clients by default.
        jitter: b.jitter.unwrap_or(match kind {
            BackoffKind::Constant => Jitter::None,
            _ => Jitter::Full,
        }),
        seed: b.seed,
    };
    let on = raw.on.clone().unwrap_or_default();
    let on = RetryOn {
        exit_codes: on.exit_codes.unwrap_or(CodeSet(vec![1..=255])),
        output: on.output.unwrap_or_default(),
        timeout: on.timeout.unwrap_or(true),
        signals: on.signals.unwrap_or(true),
        status: on
            .status
            .unwrap_or_else(|| vec![408, 409, 429, 500, 502, 503, 504, 529]),
        network: on.network.unwrap_or(true),
        validate: on.validate.unwrap_or(true),
    };
    let never = raw.never.clone().unwrap_or_default();
    let never = Never {
        exit_codes: never
            .exit_codes
            .unwrap_or(CodeSet(vec![2..=2, 126..=126, 127..=127])),
        output: never.output.unwrap_or_default(),
        status: never
            .status
            .unwrap_or_else(|| vec![400, 401, 403, 404, 422]),
    };
    let fail_on = FailOn {
        output: raw
            .fail_on
            .clone()
            .and_then(|f| f.output)
            .unwrap_or_default(),
    };
    let scanner = Scanner::new(vec![
        sets.compile(&on.output, &format!("{path}.on.output"))?,
        sets.compile(&never.output, &format!("{path}.never.output"))?,
        critical.clone(),
        sets.compile(&fail_on.output, &format!("{path}.fail_on.output"))?,
    ]);
    let ra = raw.retry_after.clone().unwrap_or_default();
    Ok(RetryPolicy {
        max_attempts,
        backoff,
        on,
        never,
        fail_on,
        retry_after: RetryAfter {
            honor: ra.honor.unwrap_or(true),
            max: ra.max.unwrap_or(MS(60_000)),
        },
        on_retry: raw.on_retry.clone(),
        command: raw.command.clone(),
        scanner,
    })
}

/// Each list of output patterns compiled once as a set, however many links
/// inherit it: a long chain costs no compile per link.
#[derive(Default)]
struct Sets {
    compiled: BTreeMap<Vec<String>, PatternSet>,
}

impl Sets {
    /// Patterns that each compiled but together exceed the set's limit are refused
    /// here, naming the list, not when a link starts.
    fn compile(&mut self, patterns: &[Pattern], key: &str) -> Result<PatternSet, Invalid> {
        let sources: Vec<String> = patterns.iter().map(|p| p.source.clone()).collect();
        if let Some(set) = self.compiled.get(&sources) {
            return Ok(set.clone());
        }
        let set = PatternSet::new(patterns).map_err(|e| {
            invalid(
                key,
                format!("these patterns together are too large to match: {e}"),
            )
        })?;
        self.compiled.insert(sources, set.clone());
        Ok(set)
    }
}
