//! File names as the user's filesystem has them: bytes, not text.
//!
//! A name may hold a newline (which would forge a line of `show`'s output), an
//! escape sequence, or bytes that are not UTF-8. Two rules, one per audience:
//!
//! - **For people** ([`quote`]): a name is printed as it is unless it holds a control
//!   character, `"`, `\` or a byte that is not UTF-8; then it is put in double quotes
//!   with C escapes (`\n`, `\t`, `\"`, `\\`, `\ooo` for any other byte), as git prints
//!   paths (`core.quotePath`; like `core.quotePath=false`, readable non-ASCII letters
//!   are left as they are).
//! - **For programs** ([`Name`] in JSON): a name is a JSON string when it is UTF-8, and
//!   otherwise an object `{"hex": "<the exact bytes>", "lossy": "<with U+FFFD>"}`, so a
//!   record names every file exactly and old readers still see a string almost always.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `name` for a terminal or a log: as it is when harmless, else quoted as git does.
pub fn quote(name: &[u8]) -> String {
    let plain = std::str::from_utf8(name)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_control() || c == '"' || c == '\\'));
    if let Some(s) = plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\x0b' => out.push_str("\\v"),
                '\x0c' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\{b:03o}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out.push('"');
    out
}

/// Free text (a failure's message, a reason, a warning) for a terminal: as it is, but
/// with each control character escaped (`\n`, `\x1b`), so a message that carries a
/// name or a server's words cannot forge a line or drive the terminal. Not quoted: it
/// is a sentence, not a name.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Byte by byte (C1 controls are two bytes in UTF-8), as bash's `$'…'`
            // reads them back.
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A path for a terminal or a log, quoted as [`quote`] does.
pub fn quote_path(path: &Path) -> String {
    quote(path.as_os_str().as_bytes())
}

/// A file name kept exactly, written to JSON as the module says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Name(pub Vec<u8>);

impl Name {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }

    /// The name with U+FFFD for each byte that is not UTF-8: for matching by eye.
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl From<&[u8]> for Name {
    fn from(b: &[u8]) -> Self {
        Name(b.to_vec())
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name(s.as_bytes().to_vec())
    }
}

impl From<&Path> for Name {
    fn from(p: &Path) -> Self {
        Name(p.as_os_str().as_bytes().to_vec())
    }
}

/// For people: quoted as [`quote`] does.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.0))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Bytes {
        hex: String,
        #[serde(default)]
        lossy: String,
    },
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Repr::Bytes {
                hex: crate::snapshot::journal::to_hex(&self.0),
                lossy: self.lossy(),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(s) => Ok(Name(s.into_bytes())),
            Repr::Bytes { hex, .. } => crate::snapshot::journal::from_hex(&hex)
                .map(Name)
                .map_err(|e| serde::de::Error::custom(format!("{e:#}"))),
        }
    }
}

/// `#[serde(with = "crate::names::path")]`: a `PathBuf` written as a [`Name`], so a
/// directory whose name is not UTF-8 is recorded exactly instead of failing.
pub mod path {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        Name::from(p).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Name::deserialize(d).map(|n| PathBuf::from(std::ffi::OsString::from_vec(n.0)))
    }
}

/// `#[serde(with = "crate::names::opt_path")]`: an `Option<PathBuf>` as [`path`].
pub mod opt_path {
    use super::*;

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        p.as_deref().map(Name::from).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Name>::deserialize(d)?
            .map(|n| PathBuf::from(std::ffi::OsString::from_vec(n.0))))
    }
}

/// `#[serde(with = "crate::names::path_pairs")]`: `(PathBuf, T)` pairs, the paths as [`path`].
pub mod path_pairs {
    use super::*;

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &[(PathBuf, T)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(p, t)| (Name::from(p.as_path()), t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<(PathBuf, T)>, D::Error> {
        Ok(Vec::<(Name, T)>::deserialize(d)?
            .into_iter()
            .map(|(n, t)| (PathBuf::from(std::ffi::OsString::from_vec(n.0)), t))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_left_alone() {
        assert_eq!(quote(b"src/lib.rs"), "src/lib.rs");
        assert_eq!(quote("café/naïve file".as_bytes()), "café/naïve file");
    }

    #[test]
    fn names_that_could_forge_output_are_quoted_as_git_does() {
        assert_eq!(quote(b"a\nb"), r#""a\nb""#);
        assert_eq!(quote(b"tab\there"), r#""tab\there""#);
        assert_eq!(quote(b"say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(quote(b"back\\slash"), r#""back\\slash""#);
        assert_eq!(quote(b"esc\x1b[31m"), r#""esc\033[31m""#);
        assert_eq!(quote(b"bad\xffbyte"), r#""bad\377byte""#);
        assert_eq!(quote("c1\u{85}".as_bytes()), r#""c1\302\205""#);
    }

    #[test]
    fn json_is_a_string_for_utf8_and_exact_bytes_otherwise() {
        let plain = serde_json::to_string(&Name::from("a\nb")).unwrap();
        assert_eq!(plain, r#""a\nb""#);
        let odd = Name(b"c\xffd".to_vec());
        let json = serde_json::to_string(&odd).unwrap();
        assert_eq!(
            json,
            r#"{"hex":"63ff64","lossy":"c\ufffdd"}"#.replace("\\ufffd", "\u{fffd}")
        );
        assert_eq!(serde_json::from_str::<Name>(&json).unwrap(), odd);
        assert_eq!(
            serde_json::from_str::<Name>(&plain).unwrap(),
            Name::from("a\nb")
        );
    }
}
