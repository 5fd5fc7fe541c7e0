//! Leaf values of a policy file: durations, exit-code sets, regexes and commands.
//!
//! Each parses during deserialization, so a bad value is reported by serde_yaml at
//! its own line and column.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written `250ms`, `2s`, `1m 30s`, at most [`MAX_DURATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// The longest duration a policy may write: 365 days. Longer is a typo, not a
/// timeout; and with every duration bounded, sums of delays and deadlines added to
/// the clock cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as `250ms`, `2s` or `5m`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                let d = humantime::parse_duration(s.trim())
                    .map_err(|e| E::custom(format!("invalid duration `{s}`: {e}")))?;
                if d > MAX_DURATION {
                    return Err(E::custom(format!(
                        "duration `{s}` is over the longest a policy may write (365 days)"
                    )));
                }
                Ok(Dur(d))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write `{n}ms` or `{n}s`"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_u64(n.unsigned_abs())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!("a duration needs a unit: write `{n}s`")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An alert's threshold as written: a number, or a duration (for a latency),
/// checked against its metric when the policy is resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Number(f64),
    Duration(Duration),
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number such as `0.99`, or a duration such as `1.5s`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Threshold, E> {
                let Dur(d) = Dur::deserialize(de::value::StrDeserializer::<E>::new(s))?;
                Ok(Threshold::Duration(d))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Threshold, E> {
                Ok(Threshold::Number(n as f64))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Threshold, E> {
                Ok(Threshold::Number(n as f64))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Threshold, E> {
                Ok(Threshold::Number(n))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// Whole milliseconds, saturating: `as_millis() as u64` would wrap silently.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration rounded down to whole milliseconds, for people.
pub fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(millis(d))
}

/// A duration as a policy would write it: `100ms`, `2s`, `1m 30s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

/// A set of exit codes, written as a list of numbers and ranges: `[1, 75, "64..78"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodeSet(pub Vec<RangeInclusive<i32>>);

impl CodeSet {
    pub fn contains(&self, code: i32) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_code_item<E: de::Error>(s: &str) -> Result<RangeInclusive<i32>, E> {
    let bad = || {
        E::custom(format!(
            "invalid exit code `{s}`: expected a number from 0 to 255 or a range like `64..78`"
        ))
    };
    let number = |t: &str| -> Result<i32, E> {
        let n: i32 = t.trim().parse().map_err(|_| bad())?;
        if (0..=255).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    let range = match s.split_once("..=").or_else(|| s.split_once("..")) {
        Some((a, b)) => number(a)?..=number(b)?,
        None => {
            let n = number(s)?;
            n..=n
        }
    };
    if range.start() > range.end() {
        return Err(E::custom(format!("exit code range `{s}` is empty")));
    }
    Ok(range)
}

impl<'de> Deserialize<'de> for CodeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Item(RangeInclusive<i32>);
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = Item;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an exit code (0-255) or a range like `64..78`")
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Item, E> {
                        parse_code_item(&n.to_string()).map(Item)
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Item, E> {
                        parse_code_item(&n.to_string()).map(Item)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<Item, E> {
                        parse_code_item(s).map(Item)
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CodeSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of exit codes and ranges, like `[1, 75, 64..78]`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CodeSet, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(r)) = seq.next_element()? {
                    out.push(r);
                }
                Ok(CodeSet(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl Serialize for CodeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in &self.0 {
            if r.start() == r.end() {
                seq.serialize_element(r.start())?;
            } else {
                seq.serialize_element(&format!("{}..{}", r.start(), r.end()))?;
            }
        }
        seq.end()
    }
}

/// A regular expression over an attempt's output: checked when the policy loads, compiled
/// with the others of its list into one set (`scan::PatternSet`).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub source: String,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The most output patterns one policy may hold, counted where written: with
/// the size limit of each list's set this bounds what compiling them costs.
pub const MAX_PATTERNS: usize = 64;

thread_local! {
    /// Patterns the policy being loaded may still compile; unlimited outside a load.
    static PATTERNS_LEFT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Limits the patterns compiled on this thread to [`MAX_PATTERNS`] until dropped.
pub struct PatternBudget(());

impl PatternBudget {
    pub fn start() -> PatternBudget {
        PATTERNS_LEFT.with(|left| left.set(MAX_PATTERNS));
        PatternBudget(())
    }
}

impl Drop for PatternBudget {
    fn drop(&mut self) {
        PATTERNS_LEFT.with(|left| left.set(usize::MAX));
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let spent = PATTERNS_LEFT.with(|left| {
            let n = left.get();
            left.set(n.saturating_sub(1));
            n == 0
        });
        if spent {
            return Err(de::Error::custom(format!(
                "more than {MAX_PATTERNS} output patterns in one policy"
            )));
        }
        // Parsed here, to name the pattern that is wrong; compiled once, with the
        // others of its list, into the set that matches (`scan::PatternSet`), whose
        // size limit bounds what compiling a policy's patterns costs.
        regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(&source)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid regex `{source}`: {}",
                    e.to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                ))
            })?;
        Ok(Pattern { source })
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A command: an argv list, or a string that is run by `sh -c`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Argv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command as a list (`[\"./x.sh\", \"--flag\"]`) or a shell string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Argv, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(Argv(vec!["sh".into(), "-c".into(), s.into()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Argv, A::Error> {
                let mut out: Vec<String> = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    out.push(arg);
                }
                if out.first().is_none_or(|a| a.is_empty()) {
                    return Err(de::Error::custom("the command is empty"));
                }
                Ok(Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size written `100MiB`, `512KiB`, `2GB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `100MiB`, `512KiB` or `2GB`")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size `{s}`: write it like `100MiB`, `512KiB` or `2GB`"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_size(self.0))
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = num * mult as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// `4.8 MiB`, `512 KiB`, `17 B`: a size for people, rounded.
pub fn human_size(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{n} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at TiB")
}

/// `100MiB`, `512KiB`, `17B`.
pub fn format_size(n: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// A provider header's value as written: the text itself, or `{ env: VARIABLE }`,
/// read from the environment when the run starts (and then treated as a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Literal(String),
    Env { env: String },
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the header's value as a string, or `{ env: VARIABLE }`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Literal(s.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderValue, A::Error> {
                let mut env = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "env" {
                        return Err(de::Error::unknown_field(&key, &["env"]));
                    }
                    if env.is_some() {
                        return Err(de::Error::duplicate_field("env"));
                    }
                    env = Some(map.next_value::<String>()?);
                }
                env.map(|env| HeaderValue::Env { env })
                    .ok_or_else(|| de::Error::missing_field("env"))
            }
        }
        d.deserialize_any(V)
    }
}
