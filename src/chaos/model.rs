//! The fault model of `backstop simulate`: what each attempt may suffer, as YAML
//! (`version: 1`). Parsed into the `Raw*` types of `raw.rs` (unknown keys rejected),
//! then validated here into [`Faults`]; every error names `file:line:column: key`.

use std::collections::BTreeMap;
use std::path::Path;

pub use super::raw::{FailsWith, schema_json};
use super::raw::{RawCallFaults, RawCommandFaults, RawFaults, RawOutage, RawSpread};
use crate::error::UserError;

/// At most this many targets (`calls`, `commands`), entries in one map (`status`,
/// `exit`, `signal`), and outages: a fault model is written by hand.
pub const MAX_ENTRIES: usize = 256;

/// The highest outage rate: one start a second.
pub const MAX_STARTS_PER_HOUR: f64 = 3600.0;

/// A validated fault model.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub calls: BTreeMap<String, CallFaults>,
    pub commands: BTreeMap<String, CommandFaults>,
    pub sticky: f64,
    pub outages: Vec<Outage>,
    /// Simulated milliseconds between run starts.
    pub interval_ms: f64,
}

#[derive(Clone, Debug, Default)]
pub struct CallFaults {
    pub network: f64,
    pub status: Vec<(u16, f64)>,
    pub retry_after: Option<Spread>,
    pub first_token_stall: f64,
    pub stall: f64,
    pub truncated: f64,
    pub context_length: f64,
    pub content_policy: f64,
    pub latency: Option<Spread>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Clone, Debug, Default)]
pub struct CommandFaults {
    pub exit: Vec<(i32, f64)>,
    pub timeout: f64,
    pub signal: Vec<(i32, f64)>,
    pub duration: Option<Spread>,
}

/// A log-normal distribution: `ln X ~ N(mu, sigma)`, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mu: f64,
    pub sigma: f64,
}

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

impl Spread {
    fn new(p50_ms: f64, p99_ms: f64) -> Spread {
        Spread {
            mu: p50_ms.ln(),
            sigma: (p99_ms.ln() - p50_ms.ln()) / Z99,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outage {
    pub target: String,
    pub start_per_hour: f64,
    pub duration: Spread,
    pub fails_with: FailsWith,
}

impl Faults {
    /// The faults of calls to `model`: its own, else `default`, else none.
    pub fn call(&self, model: &str) -> Option<&CallFaults> {
        self.calls.get(model).or_else(|| self.calls.get("default"))
    }

    /// The faults of the command link named `link`: its own, else `default`.
    pub fn command(&self, link: &str) -> Option<&CommandFaults> {
        self.commands
            .get(link)
            .or_else(|| self.commands.get("default"))
    }
}

/// A check that failed after parsing: the key path and why.
struct Invalid {
    path: String,
    message: String,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        message: message.into(),
    }
}

pub fn load_file(path: &Path) -> Result<Faults, UserError> {
    load_file_digest(path).map(|(faults, _)| faults)
}

/// The fault model at `path`, and the BLAKE3 digest of the bytes it was read from.
pub fn load_file_digest(path: &Path) -> Result<(Faults, String), UserError> {
    let file = crate::names::quote_path(path);
    let cannot = |message: String| UserError::PolicyFile {
        file: file.clone(),
        message,
    };
    let bytes = crate::policy::load::read_bounded(path).map_err(|e| {
        cannot(format!(
            "cannot read the fault model: {}",
            crate::error::io_message(&e)
        ))
    })?;
    check_size(bytes.len()).map_err(&cannot)?;
    let digest = blake3::hash(&bytes).to_hex().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        cannot(format!(
            "the fault model is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((load_str(&text, &file)?, digest))
}

/// A fault model is held to a policy's size limit, and says so in its own words.
fn check_size(len: usize) -> Result<(), String> {
    crate::policy::limits::check_size(len).map_err(|_| {
        format!(
            "the fault model is over 1 MiB ({} bytes), the largest one may be",
            crate::policy::limits::MAX_POLICY_BYTES
        )
    })
}

pub fn load_str(text: &str, file: &str) -> Result<Faults, UserError> {
    let whole = |message| UserError::PolicyFile {
        file: file.into(),
        message,
    };
    check_size(text.len()).map_err(whole)?;
    crate::policy::limits::check_depth(text).map_err(|too| UserError::PolicyFile {
        file: format!("{file}:{}:{}", too.line, too.column),
        message: too.message,
    })?;
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawFaults = serde_path_to_error::deserialize(de)
        .map_err(|e| crate::policy::load::yaml_error(e, text, file))?;
    validate(raw).map_err(|bad| {
        let (line, column) = crate::policy::locate::locate(text, &bad.path);
        UserError::Policy {
            file: file.into(),
            line,
            column,
            key: crate::policy::load::shortened(&bad.path, 120),
            message: bad.message,
        }
    })
}

fn validate(raw: RawFaults) -> Result<Faults, Invalid> {
    if raw.version != 1 {
        let message = format!("unsupported version {}: expected 1", raw.version);
        return Err(invalid("version", message));
    }
    bounded("calls", raw.calls.len())?;
    bounded("commands", raw.commands.len())?;
    let mut faults = Faults {
        interval_ms: 30_000.0,
        ..Faults::default()
    };
    for (name, c) in raw.calls {
        let checked = call_faults(&format!("calls.{name}"), c)?;
        faults.calls.insert(name, checked);
    }
    for (name, c) in raw.commands {
        let checked = command_faults(&format!("commands.{name}"), c)?;
        faults.commands.insert(name, checked);
    }
    let correlation = raw.correlation.unwrap_or_default();
    faults.sticky = probability("correlation.sticky", correlation.sticky)?;
    bounded("correlation.outages", correlation.outages.len())?;
    for (i, o) in correlation.outages.into_iter().enumerate() {
        faults
            .outages
            .push(outage(&format!("correlation.outages[{i}]"), o)?);
    }
    if let Some(interval) = raw.runs.and_then(|r| r.interval) {
        faults.interval_ms = interval.0.as_secs_f64() * 1000.0;
    }
    Ok(faults)
}

fn bounded(path: &str, n: usize) -> Result<(), Invalid> {
    if n > MAX_ENTRIES {
        return Err(invalid(
            path,
            format!("{n} entries: at most {MAX_ENTRIES} are allowed"),
        ));
    }
    Ok(())
}

/// A probability from 0 to 1 (absent: 0).
fn probability(path: &str, p: Option<f64>) -> Result<f64, Invalid> {
    let p = p.unwrap_or(0.0);
    if !p.is_finite() || !(0.0..=1.0).contains(&p) {
        return Err(invalid(
            path,
            format!("{p} is not a probability from 0 to 1"),
        ));
    }
    Ok(p)
}

/// The probabilities of one target's faults add up to at most 1.
fn at_most_one(path: &str, ps: impl IntoIterator<Item = f64>) -> Result<(), Invalid> {
    let sum: f64 = ps.into_iter().sum();
    if sum > 1.0 + 1e-9 {
        return Err(invalid(
            path,
            format!("its probabilities add up to {sum}, over 1"),
        ));
    }
    Ok(())
}

fn spread(path: &str, s: Option<RawSpread>) -> Result<Option<Spread>, Invalid> {
    let Some(s) = s else { return Ok(None) };
    let (p50, p99) = (s.p50.0.as_secs_f64() * 1e3, s.p99.0.as_secs_f64() * 1e3);
    if p50 <= 0.0 {
        return Err(invalid(format!("{path}.p50"), "must be over 0"));
    }
    if p99 < p50 {
        return Err(invalid(format!("{path}.p99"), "must be at least p50"));
    }
    Ok(Some(Spread::new(p50, p99)))
}

fn call_faults(path: &str, c: RawCallFaults) -> Result<CallFaults, Invalid> {
    bounded(&format!("{path}.status"), c.status.len())?;
    let mut status = Vec::new();
    for (code, p) in c.status {
        let key = format!("{path}.status.{code}");
        if !(400..=599).contains(&code) {
            return Err(invalid(
                key,
                format!("{code} is not an error status: a call fails with 400 to 599"),
            ));
        }
        status.push((code, probability(&key, Some(p))?));
    }
    let p = |key: &str, v| probability(&format!("{path}.{key}"), v);
    let faults = CallFaults {
        network: p("network", c.network)?,
        first_token_stall: p("first_token_stall", c.first_token_stall)?,
        stall: p("stall", c.stall)?,
        truncated: p("truncated", c.truncated)?,
        context_length: p("context_length", c.context_length)?,
        content_policy: p("content_policy", c.content_policy)?,
        retry_after: spread(&format!("{path}.retry_after"), c.retry_after)?,
        latency: spread(&format!("{path}.latency"), c.latency)?,
        input_tokens: c.tokens.as_ref().map_or(0, |t| t.input),
        output_tokens: c.tokens.as_ref().map_or(0, |t| t.output),
        status,
    };
    let each = [
        faults.network,
        faults.first_token_stall,
        faults.stall,
        faults.truncated,
        faults.context_length,
        faults.content_policy,
    ];
    at_most_one(
        path,
        each.into_iter().chain(faults.status.iter().map(|s| s.1)),
    )?;
    Ok(faults)
}

fn command_faults(path: &str, c: RawCommandFaults) -> Result<CommandFaults, Invalid> {
    bounded(&format!("{path}.exit"), c.exit.len())?;
    bounded(&format!("{path}.signal"), c.signal.len())?;
    let mut exit = Vec::new();
    for (code, p) in c.exit {
        let key = format!("{path}.exit.{code}");
        if !(1..=255).contains(&code) {
            return Err(invalid(
                key,
                format!("{code} is not a failing exit code (1 to 255)"),
            ));
        }
        exit.push((code, probability(&key, Some(p))?));
    }
    let mut signal = Vec::new();
    for (sig, p) in c.signal {
        let key = format!("{path}.signal.{sig}");
        if !(1..=64).contains(&sig) {
            return Err(invalid(key, format!("{sig} is not a signal (1 to 64)")));
        }
        signal.push((sig, probability(&key, Some(p))?));
    }
    let faults = CommandFaults {
        timeout: probability(&format!("{path}.timeout"), c.timeout)?,
        duration: spread(&format!("{path}.duration"), c.duration)?,
        exit,
        signal,
    };
    let each = faults.exit.iter().chain(&faults.signal).map(|e| e.1);
    at_most_one(path, each.chain([faults.timeout]))?;
    Ok(faults)
}

fn outage(path: &str, o: RawOutage) -> Result<Outage, Invalid> {
    let rate = o.start_per_hour;
    if !rate.is_finite() || !(0.0..=MAX_STARTS_PER_HOUR).contains(&rate) {
        return Err(invalid(
            format!("{path}.start_per_hour"),
            format!("{rate} is not a rate from 0 to {MAX_STARTS_PER_HOUR}"),
        ));
    }
    if o.target.is_empty() {
        return Err(invalid(format!("{path}.target"), "must not be empty"));
    }
    if let FailsWith::Code(code @ 256..=399) = o.fails_with {
        return Err(invalid(
            format!("{path}.fails_with"),
            format!("{code} is neither an exit code (1 to 255) nor an error status (400 to 599)"),
        ));
    }
    let duration = spread(&format!("{path}.duration"), Some(o.duration))?;
    Ok(Outage {
        target: o.target,
        start_per_hour: rate,
        duration: duration.unwrap_or(Spread {
            mu: 0.0,
            sigma: 0.0,
        }),
        fails_with: o.fails_with,
    })
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
