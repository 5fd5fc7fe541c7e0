//! `breaker:`, `retry_budget:` and `state:`: what a run remembers of the runs before
//! it (on this machine, or a fleet's through Redis), as written and as resolved.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::raw::schema;
use super::resolve::{Invalid, invalid};
use super::values::Dur;

/// A circuit breaker per link: after enough failures the link is skipped at once.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Opens after this many failed attempts within `within` (default 5).
    pub failures: Option<u32>,
    /// The window failures are counted in (default 1m).
    #[schemars(with = "Option<schema::Duration>")]
    pub within: Option<Dur>,
    /// Instead of `failures`: opens when this share of attempts (0 to 1) failed...
    pub ratio: Option<f64>,
    /// ... out of at least this many attempts within `within` (default 10).
    pub min_attempts: Option<u32>,
    /// How long an open breaker skips its link before a probe (default 30s).
    #[schemars(with = "Option<schema::Duration>")]
    pub cooldown: Option<Dur>,
    /// Trial attempts that decide, after the cooldown, to close or re-open (default 1).
    pub probes: Option<u32>,
    /// The breaker's name for link 0 (default: its command line, or
    /// `call PROVIDER/MODEL`): runs of different commands that reach one service
    /// can share a breaker.
    pub key: Option<String>,
}

/// Retries allowed only while they stay within a share of first attempts.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    /// Retries allowed per first attempt, from 0 to 1 (default 0.2).
    pub ratio: Option<f64>,
    /// Retries always allowed per second of the window, whatever the ratio (default 1).
    pub min_per_second: Option<f64>,
    /// The window first attempts and retries are counted in (default 60s).
    #[schemars(with = "Option<schema::Duration>")]
    pub window: Option<Dur>,
}

/// Where breakers and the retry budget are kept.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `local` (the default: a file in the store, shared by every run on this
    /// machine) or `redis` (shared by a fleet).
    pub backend: Option<Backend>,
    /// For `redis`: the environment variable that holds the URL
    /// (`redis://`, `rediss://` for TLS; a password in it is never printed).
    pub url_env: Option<String>,
    /// For `redis`: the prefix of every key (default `backstop:`).
    pub prefix: Option<String>,
    /// For `redis`: how long a connection or a command may take before the run goes
    /// on without breakers (default 250ms).
    #[schemars(with = "Option<schema::Duration>")]
    pub timeout: Option<Dur>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Local,
    Redis,
}

/// When a breaker opens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Trip {
    /// After this many failures within the window.
    Failures { failures: u32 },
    /// When this share of at least `min_attempts` attempts failed.
    Ratio { ratio: f64, min_attempts: u32 },
}

/// `breaker:`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Breaker {
    #[serde(flatten)]
    pub trip: Trip,
    pub within: Dur,
    pub cooldown: Dur,
    pub probes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `retry_budget:`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: f64,
    pub window: Dur,
}

/// `state:`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateConfig {
    pub backend: Backend,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    pub prefix: String,
    pub timeout: Dur,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: Backend::Local,
            url_env: None,
            prefix: "backstop:".into(),
            timeout: Dur(Duration::from_millis(250)),
        }
    }
}

/// The memory across runs a policy asks for: none unless it has a `breaker:` or a
/// `retry_budget:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Guarding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<Breaker>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    #[serde(skip_serializing_if = "StateConfig::is_default")]
    pub state: StateConfig,
}

impl StateConfig {
    fn is_default(&self) -> bool {
        *self == StateConfig::default()
    }
}

impl Guarding {
    /// Whether runs remember anything at all.
    pub fn is_on(&self) -> bool {
        self.breaker.is_some() || self.retry_budget.is_some()
    }

    /// The same backend with the default breaker and budget where the policy has
    /// none: what `backstop breaker status` reads the kept state with.
    pub fn or_defaults(&self) -> Guarding {
        let mut g = self.clone();
        if g.breaker.is_none() {
            g.breaker = resolve_breaker(RawBreaker::default()).ok();
        }
        if g.retry_budget.is_none() {
            g.retry_budget = resolve_budget(RawRetryBudget::default()).ok();
        }
        g
    }
}

impl Guarding {
    /// What `policy explain` says of breakers, the budget and where they are kept.
    pub fn describe(&self) -> Vec<String> {
        let show = |d: Dur| crate::policy::values::format_duration(d.0);
        let mut lines = Vec::new();
        if let Some(b) = &self.breaker {
            let trip = match b.trip {
                Trip::Failures { failures: n } => {
                    format!("{n} failed attempt(s) within {}", show(b.within))
                }
                Trip::Ratio {
                    ratio,
                    min_attempts,
                } => format!(
                    "{:.0}% of at least {min_attempts} attempts failed within {}",
                    ratio * 100.0,
                    show(b.within)
                ),
            };
            lines.push(format!(
                "breaker: per link ({}), opens after {trip}; open, the link is skipped at once for {}, then {} probe(s) close or re-open it",
                b.key.as_deref().map_or("its command, or call PROVIDER/MODEL".into(), |k| format!("link 0 as `{k}`")),
                show(b.cooldown),
                b.probes
            ));
        }
        if let Some(r) = &self.retry_budget {
            lines.push(format!(
                "retry budget: retries only while retries <= {} x first attempts + {}/s, over {} (then retries off; first attempts still run)",
                r.ratio,
                r.min_per_second,
                show(r.window)
            ));
        }
        if self.is_on() {
            lines.push(match self.state.backend {
                Backend::Local => "state: local, in the store, shared by every run on this machine".into(),
                Backend::Redis => format!(
                    "state: redis at ${} (prefix `{}`, timeout {}); unreachable or slow, runs go on without breakers",
                    self.state.url_env.as_deref().unwrap_or(""),
                    self.state.prefix,
                    show(self.state.timeout)
                ),
            });
        }
        lines
    }
}

fn positive(d: Option<Dur>, default_ms: u64, key: &str) -> Result<Dur, Invalid> {
    let d = d.unwrap_or(Dur(Duration::from_millis(default_ms)));
    if d.0.is_zero() {
        return Err(invalid(key, "must be longer than zero"));
    }
    Ok(d)
}

fn share(value: Option<f64>, default: f64, key: &str) -> Result<f64, Invalid> {
    let v = value.unwrap_or(default);
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(key, format!("{v} is not a share from 0 to 1")));
    }
    Ok(v)
}

fn resolve_breaker(raw: RawBreaker) -> Result<Breaker, Invalid> {
    let trip = match (raw.failures, raw.ratio) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "breaker.ratio",
                "give `failures` or `ratio` (with `min_attempts`), not both",
            ));
        }
        (_, Some(_)) => {
            let ratio = share(raw.ratio, 0.5, "breaker.ratio")?;
            if ratio == 0.0 {
                return Err(invalid(
                    "breaker.ratio",
                    "a ratio of 0 would open on a success",
                ));
            }
            let min_attempts = raw.min_attempts.unwrap_or(10);
            if min_attempts == 0 {
                return Err(invalid("breaker.min_attempts", "must be at least 1"));
            }
            Trip::Ratio {
                ratio,
                min_attempts,
            }
        }
        (failures, None) => {
            if raw.min_attempts.is_some() {
                return Err(invalid(
                    "breaker.min_attempts",
                    "only counts with `ratio`; `failures` opens on a count alone",
                ));
            }
            match failures.unwrap_or(5) {
                0 => return Err(invalid("breaker.failures", "must be at least 1")),
                n => Trip::Failures { failures: n },
            }
        }
    };
    let probes = raw.probes.unwrap_or(1);
    if probes == 0 {
        return Err(invalid("breaker.probes", "must be at least 1"));
    }
    if raw.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(invalid("breaker.key", "an empty name"));
    }
    Ok(Breaker {
        trip,
        within: positive(raw.within, 60_000, "breaker.within")?,
        cooldown: positive(raw.cooldown, 30_000, "breaker.cooldown")?,
        probes,
        key: raw.key,
    })
}

fn resolve_budget(raw: RawRetryBudget) -> Result<RetryBudget, Invalid> {
    let min_per_second = raw.min_per_second.unwrap_or(1.0);
    if !(min_per_second.is_finite() && min_per_second >= 0.0) {
        return Err(invalid(
            "retry_budget.min_per_second",
            "must be a number of retries per second, 0 or more",
        ));
    }
    Ok(RetryBudget {
        ratio: share(raw.ratio, 0.2, "retry_budget.ratio")?,
        min_per_second,
        window: positive(raw.window, 60_000, "retry_budget.window")?,
    })
}

fn resolve_state(raw: RawState) -> Result<StateConfig, Invalid> {
    let backend = raw.backend.unwrap_or_default();
    let url_env = raw.url_env;
    match (&url_env, backend) {
        (None, Backend::Redis) => {
            return Err(invalid(
                "state.url_env",
                "`backend: redis` needs the environment variable that holds its URL",
            ));
        }
        (Some(_), Backend::Local) => {
            return Err(invalid("state.url_env", "only `backend: redis` has a URL"));
        }
        (Some(var), _) if var.is_empty() || var.contains(['=', '\0', ':', '/']) => {
            return Err(invalid(
                "state.url_env",
                "must name an environment variable (the URL itself, with its password, never goes in a policy)",
            ));
        }
        _ => {}
    }
    let timeout = positive(raw.timeout, 250, "state.timeout")?;
    Ok(StateConfig {
        backend,
        url_env,
        prefix: raw.prefix.unwrap_or_else(|| "backstop:".into()),
        timeout,
    })
}

/// Validates the three sections together.
pub(super) fn resolve_guarding(
    breaker: Option<RawBreaker>,
    budget: Option<RawRetryBudget>,
    state: Option<RawState>,
) -> Result<Guarding, Invalid> {
    Ok(Guarding {
        breaker: breaker.map(resolve_breaker).transpose()?,
        retry_budget: budget.map(resolve_budget).transpose()?,
        state: resolve_state(state.unwrap_or_default())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_s() {
        let g =
            resolve_guarding(Some(RawBreaker::default()), Some(Default::default()), None).unwrap();
        let b = g.breaker.unwrap();
        assert_eq!(b.trip, Trip::Failures { failures: 5 });
        assert_eq!(b.within.0, Duration::from_secs(60));
        assert_eq!(b.cooldown.0, Duration::from_secs(30));
        assert_eq!(b.probes, 1);
        let r = g.retry_budget.unwrap();
        assert_eq!((r.ratio, r.min_per_second), (0.2, 1.0));
        assert_eq!(g.state.backend, Backend::Local);
    }

    #[test]
    fn nonsense_is_refused_by_key() {
        let bad_ratio = RawRetryBudget {
            ratio: Some(1.5),
            ..Default::default()
        };
        let e = resolve_guarding(None, Some(bad_ratio), None).unwrap_err();
        assert_eq!(e.path, "retry_budget.ratio");
        let zero = RawBreaker {
            failures: Some(0),
            ..Default::default()
        };
        assert_eq!(
            resolve_guarding(Some(zero), None, None).unwrap_err().path,
            "breaker.failures"
        );
        let url = RawState {
            backend: Some(Backend::Redis),
            url_env: Some("redis://:pw@host".into()),
            ..Default::default()
        };
        let e = resolve_guarding(None, None, Some(url)).unwrap_err();
        assert_eq!(e.path, "state.url_env");
        assert!(!e.message.contains("pw"));
    }
}
