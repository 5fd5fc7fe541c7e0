//! The fault model as written: every key as the file spells it, unknown keys refused,
//! with its JSON Schema. [`super::model`] validates it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::policy::values::Dur;

/// Schema stand-ins for the leaf values, which parse from strings.
mod schema {
    use schemars::JsonSchema;

    pub(crate) use crate::policy::DurationSchema as Duration;

    /// What an outage fails attempts with: an HTTP status or a command's exit code
    /// (a number), or `network`.
    #[derive(JsonSchema)]
    #[serde(untagged)]
    #[schemars(rename = "FailsWith")]
    #[allow(dead_code)]
    pub enum FailsWith {
        Code(#[schemars(range(min = 1, max = 599))] u16),
        Network(#[schemars(regex(pattern = "^network$"))] String),
    }
}

/// A backstop fault model: the failures `backstop simulate` draws for each attempt.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backstop fault model")]
pub(super) struct RawFaults {
    /// The format version. Always 1.
    pub(super) version: u32,
    /// Model-call attempts, by the policy's model name; `default` for any other.
    #[serde(default, deserialize_with = "unique")]
    pub(super) calls: BTreeMap<String, RawCallFaults>,
    /// Command attempts, by link name (link 0: the command line); `default` for any other.
    #[serde(default, deserialize_with = "unique")]
    pub(super) commands: BTreeMap<String, RawCommandFaults>,
    #[serde(default)]
    pub(super) correlation: Option<RawCorrelation>,
    #[serde(default)]
    pub(super) runs: Option<RawRuns>,
}

/// Per-attempt probabilities of each fault of a model call.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallFaults {
    pub(super) network: Option<f64>,
    /// HTTP status → probability.
    #[serde(default, deserialize_with = "unique")]
    pub(super) status: BTreeMap<u16, f64>,
    /// The `retry-after-ms` a 429 or 529 carries (log-normal); absent: no header.
    pub(super) retry_after: Option<RawSpread>,
    pub(super) first_token_stall: Option<f64>,
    /// A stream that goes silent mid-answer.
    pub(super) stall: Option<f64>,
    /// A stream that ends without its finish event.
    pub(super) truncated: Option<f64>,
    pub(super) context_length: Option<f64>,
    pub(super) content_policy: Option<f64>,
    /// How long an answer takes (log-normal).
    pub(super) latency: Option<RawSpread>,
    /// Tokens of an answer, priced by the policy's `price`.
    pub(super) tokens: Option<RawTokens>,
}

/// Per-attempt probabilities of each fault of a command.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommandFaults {
    /// Exit code → probability.
    #[serde(default, deserialize_with = "unique")]
    pub(super) exit: BTreeMap<i32, f64>,
    /// The attempt hangs until `timeout.attempt` (or the deadline) ends it.
    pub(super) timeout: Option<f64>,
    /// Signal number → probability.
    #[serde(default, deserialize_with = "unique")]
    pub(super) signal: BTreeMap<i32, f64>,
    /// How long an attempt takes (log-normal).
    pub(super) duration: Option<RawSpread>,
}

/// A log-normal distribution given by its median and 99th percentile.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpread {
    #[schemars(with = "schema::Duration")]
    pub(super) p50: Dur,
    #[schemars(with = "schema::Duration")]
    pub(super) p99: Dur,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub(super) input: u64,
    pub(super) output: u64,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCorrelation {
    /// After a failed attempt, the same link's next attempt fails the same way with
    /// this probability.
    pub(super) sticky: Option<f64>,
    #[serde(default)]
    pub(super) outages: Vec<RawOutage>,
}

/// Windows on the simulated timeline in which every attempt at the target fails.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutage {
    /// `*`, a model name or a link name.
    pub(super) target: String,
    pub(super) start_per_hour: f64,
    pub(super) duration: RawSpread,
    #[schemars(with = "schema::FailsWith")]
    pub(super) fails_with: FailsWith,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuns {
    /// Simulated time between run starts.
    #[schemars(with = "schema::Duration")]
    pub(super) interval: Option<Dur>,
}

/// What an outage fails attempts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailsWith {
    Network,
    /// A status for calls; for commands, an exit code (a number over 255 exits 1).
    Code(u16),
}

impl<'de> Deserialize<'de> for FailsWith {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FailsWith;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an HTTP status or exit code from 1 to 599, or `network`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FailsWith, E> {
                match s {
                    "network" => Ok(FailsWith::Network),
                    _ => Err(E::custom(format!(
                        "`{s}`: expected a status, an exit code, or `network`"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FailsWith, E> {
                match u16::try_from(n) {
                    Ok(c @ 1..=599) => Ok(FailsWith::Code(c)),
                    _ => Err(E::custom(format!("{n} is not from 1 to 599"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FailsWith, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} is not from 1 to 599"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The fault model's JSON Schema, pretty-printed, ending in a newline.
pub fn schema_json() -> String {
    crate::policy::schema::schema_json_of::<RawFaults>()
}

/// A map whose keys are each written once: YAML lets a key repeat and serde keeps the
/// last, so `exit: {1: 0.1, 1: 0.2}` would quietly mean 0.2. Refused, as a policy's
/// repeated key is.
fn unique<'de, D, K, V>(de: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: serde::Deserialize<'de> + Ord + std::fmt::Display,
    V: serde::Deserialize<'de>,
{
    struct Unique<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K, V> serde::de::Visitor<'de> for Unique<K, V>
    where
        K: serde::Deserialize<'de> + Ord + std::fmt::Display,
        V: serde::Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<K, V>()? {
                let said = key.to_string();
                if out.insert(key, value).is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "`{said}` is written twice"
                    )));
                }
            }
            Ok(out)
        }
    }
    de.deserialize_map(Unique(std::marker::PhantomData))
}
