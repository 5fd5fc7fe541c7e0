//! The operations half of a policy: `alerts:` (thresholds over recent runs) and
//! `metrics:` (where each run's figures go), validated into the model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::raw::{OtlpProtocol, RawAlertRule, RawAlertRules, RawAlerts, RawMetrics, RawOtlp};
use super::resolve::{Invalid, invalid};
use super::values::{Argv, Dur, Threshold};

/// `alerts:`: every rule, critical ones first, in the order the metrics are listed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Alerts {
    pub rules: Vec<AlertRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Argv>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRule {
    pub severity: Severity,
    pub metric: AlertMetric,
    pub comparison: Comparison,
    /// A rate from 0 to 1, US dollars, or milliseconds for a latency.
    pub threshold: f64,
    pub window: Dur,
    pub min_runs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule watches, named as `backstop stats --json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    SuccessRate,
    LatencyP95,
    LatencyP99,
    CostUsd,
    RetryRate,
    FallbackRate,
    RollbackRate,
    EscalationRate,
}

impl AlertMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertMetric::SuccessRate => "success_rate",
            AlertMetric::LatencyP95 => "latency_p95",
            AlertMetric::LatencyP99 => "latency_p99",
            AlertMetric::CostUsd => "cost_usd",
            AlertMetric::RetryRate => "retry_rate",
            AlertMetric::FallbackRate => "fallback_rate",
            AlertMetric::RollbackRate => "rollback_rate",
            AlertMetric::EscalationRate => "escalation_rate",
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            AlertMetric::LatencyP95 | AlertMetric::LatencyP99 => MetricKind::Latency,
            AlertMetric::CostUsd => MetricKind::Dollars,
            _ => MetricKind::Rate,
        }
    }

    /// A value of this metric for people: `97.5%`, `1.50s`, `$0.42`.
    pub fn show(self, value: f64) -> String {
        match self.kind() {
            MetricKind::Rate => format!("{:.1}%", value * 100.0),
            MetricKind::Latency => {
                crate::policy::values::format_duration(Duration::from_millis(value as u64))
            }
            MetricKind::Dollars => format!("${value:.2}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Rate,
    Latency,
    Dollars,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    Below,
    Above,
}

impl Alerts {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl AlertRule {
    /// Whether `value` is past the threshold.
    pub fn breached(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Below => value < self.threshold,
            Comparison::Above => value > self.threshold,
        }
    }

    /// The rule as people read it: `success_rate below 99.0% over 5m (20 runs at least)`.
    pub fn describe(&self) -> String {
        let cmp = match self.comparison {
            Comparison::Below => "below",
            Comparison::Above => "above",
        };
        let mut s = format!(
            "{} {cmp} {} over {}",
            self.metric.as_str(),
            self.metric.show(self.threshold),
            super::values::format_duration(self.window.0)
        );
        if self.min_runs > 1 {
            s.push_str(&format!(" ({} runs at least)", self.min_runs));
        }
        s
    }

    /// Its key in the policy, for messages and the firing state.
    pub fn key(&self) -> String {
        format!("alerts.{}.{}", self.severity.as_str(), self.metric.as_str())
    }
}

/// `metrics:`, resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub textfile: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushgateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp: Option<Otlp>,
    pub github: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            textfile: None,
            pushgateway: None,
            otlp: None,
            github: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Otlp {
    /// The URL traces are posted to (ends in `/v1/traces`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Header name → the environment variable holding its value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_env: BTreeMap<String, String>,
    pub timeout: Dur,
}

pub(super) fn resolve_alerts(raw: Option<RawAlerts>) -> Result<Alerts, Invalid> {
    let raw = raw.unwrap_or_default();
    let mut rules = Vec::new();
    for (severity, set) in [
        (Severity::Critical, raw.critical),
        (Severity::Warning, raw.warning),
    ] {
        for (metric, rule) in by_metric(set.unwrap_or_default()) {
            rules.push(resolve_rule(severity, metric, rule)?);
        }
    }
    if raw.notify.as_ref().is_some_and(|n| n.0.is_empty()) {
        return Err(invalid("alerts.notify", "an empty command"));
    }
    if raw.notify.is_some() && rules.is_empty() {
        return Err(invalid(
            "alerts.notify",
            "no rule under `alerts.critical` or `alerts.warning` would ever call it",
        ));
    }
    Ok(Alerts {
        rules,
        notify: raw.notify,
    })
}

fn by_metric(r: RawAlertRules) -> Vec<(AlertMetric, RawAlertRule)> {
    [
        (AlertMetric::SuccessRate, r.success_rate),
        (AlertMetric::LatencyP95, r.latency_p95),
        (AlertMetric::LatencyP99, r.latency_p99),
        (AlertMetric::CostUsd, r.cost_usd),
        (AlertMetric::RetryRate, r.retry_rate),
        (AlertMetric::FallbackRate, r.fallback_rate),
        (AlertMetric::RollbackRate, r.rollback_rate),
        (AlertMetric::EscalationRate, r.escalation_rate),
    ]
    .into_iter()
    .filter_map(|(m, r)| Some((m, r?)))
    .collect()
}

fn resolve_rule(
    severity: Severity,
    metric: AlertMetric,
    raw: RawAlertRule,
) -> Result<AlertRule, Invalid> {
    let path = format!("alerts.{}.{}", severity.as_str(), metric.as_str());
    let (comparison, written) = match (raw.below, raw.above) {
        (Some(t), None) => (Comparison::Below, t),
        (None, Some(t)) => (Comparison::Above, t),
        _ => {
            return Err(invalid(path, "needs exactly one of `below` and `above`"));
        }
    };
    let key = match comparison {
        Comparison::Below => format!("{path}.below"),
        Comparison::Above => format!("{path}.above"),
    };
    let threshold = match (metric.kind(), written) {
        (MetricKind::Latency, Threshold::Duration(d)) => d.as_secs_f64() * 1000.0,
        (MetricKind::Latency, Threshold::Number(_)) => {
            return Err(invalid(
                key,
                "a latency needs a unit: write `2s` or `1500ms`",
            ));
        }
        (_, Threshold::Duration(_)) => {
            return Err(invalid(key, "a number is expected here, not a duration"));
        }
        (_, Threshold::Number(n)) if !n.is_finite() || n < 0.0 => {
            return Err(invalid(key, "must be a finite number, zero or more"));
        }
        (MetricKind::Rate, Threshold::Number(n)) if n > 1.0 => {
            return Err(invalid(
                key,
                format!("a rate is from 0 to 1 (write {} for {n}%)", n / 100.0),
            ));
        }
        (_, Threshold::Number(n)) => n,
    };
    if raw.window.0.is_zero() {
        return Err(invalid(
            format!("{path}.window"),
            "a window of zero holds no run",
        ));
    }
    if raw.min_runs == Some(0) {
        return Err(invalid(
            format!("{path}.min_runs"),
            "must be 1 or more: a rule over no runs has nothing to say",
        ));
    }
    Ok(AlertRule {
        severity,
        metric,
        comparison,
        threshold,
        window: raw.window,
        min_runs: raw.min_runs.unwrap_or(1),
    })
}

pub(super) fn resolve_metrics(raw: Option<RawMetrics>) -> Result<Metrics, Invalid> {
    let raw = raw.unwrap_or_default();
    if raw.textfile.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(invalid("metrics.textfile", "an empty directory name"));
    }
    let pushgateway = raw
        .pushgateway
        .map(|u| plain_url(&u, "metrics.pushgateway"))
        .transpose()?;
    let otlp = raw.otlp.map(resolve_otlp).transpose()?;
    Ok(Metrics {
        textfile: raw.textfile.map(PathBuf::from),
        pushgateway,
        otlp,
        github: raw.github.unwrap_or(true),
    })
}

/// The longest `metrics.otlp.timeout`.
const MAX_OTLP_TIMEOUT: Duration = Duration::from_secs(60);

fn resolve_otlp(raw: RawOtlp) -> Result<Otlp, Invalid> {
    let base = plain_url(&raw.endpoint, "metrics.otlp.endpoint")?;
    let endpoint = if base.ends_with("/v1/traces") {
        base
    } else {
        format!("{base}/v1/traces")
    };
    let headers_env = raw.headers_env.unwrap_or_default();
    for (name, var) in &headers_env {
        let checked = super::request::check_header_name(name)
            .and_then(|()| super::request::check_env_name(var));
        if let Err(message) = checked {
            return Err(invalid(format!("metrics.otlp.headers_env.{name}"), message));
        }
    }
    let timeout = raw.timeout.unwrap_or(Dur(Duration::from_secs(2)));
    if timeout.0.is_zero() {
        return Err(invalid(
            "metrics.otlp.timeout",
            "a timeout of zero would fail every send",
        ));
    }
    // Every run's end waits for the send: bounded like the other exports.
    if timeout.0 > MAX_OTLP_TIMEOUT {
        return Err(invalid(
            "metrics.otlp.timeout",
            "at most 1m: every run waits for the send at its end",
        ));
    }
    Ok(Otlp {
        endpoint,
        protocol: raw.protocol.unwrap_or_default(),
        headers_env,
        timeout,
    })
}

/// An http(s) URL with nothing secret in it (it is named in warnings), without a
/// trailing slash.
fn plain_url(url: &str, key: &str) -> Result<String, Invalid> {
    let trimmed = url.trim().trim_end_matches('/').to_string();
    match reqwest::Url::parse(&trimmed) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Err(invalid(key, "must start with http:// or https://"))
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(invalid(
            key,
            "must not hold a user or password: give credentials through an environment variable",
        )),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            Err(invalid(key, "must not hold a query or fragment"))
        }
        Ok(_) => Ok(trimmed),
        Err(e) => Err(invalid(key, format!("not a URL: {e}"))),
    }
}
