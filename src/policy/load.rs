//! Reads a policy file, and turns every error into one that names file, line, column and key.

use std::path::{Path, PathBuf};

use crate::error::UserError;

use super::locate::locate;
use super::model::Policy;
use super::raw::RawPolicy;
use super::resolve::resolve;

/// The policy used when neither `-p` nor `./backstop.yaml` gives one.
pub const BUILTIN: &str = "version: 1\n";

/// The file looked for in the current directory when no `-p` is given.
pub const DEFAULT_FILE: &str = "backstop.yaml";

/// Where a run's policy comes from.
#[derive(Clone, Debug)]
pub enum PolicyChoice {
    File(PathBuf),
    /// `./backstop.yaml` if present, else the built-in default.
    Implicit,
}

pub fn choose(choice: &PolicyChoice) -> Result<Policy, UserError> {
    match choice {
        PolicyChoice::File(path) => load_file(path),
        PolicyChoice::Implicit => {
            let path = Path::new(DEFAULT_FILE);
            if path.exists() {
                load_file(path)
            } else {
                builtin()
            }
        }
    }
}

pub fn builtin() -> Result<Policy, UserError> {
    load_str(BUILTIN, "built-in")
}

pub fn load_file(path: &Path) -> Result<Policy, UserError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| UserError::PolicyFile {
        file: file.clone(),
        message: format!("cannot read the policy: {}", crate::error::io_message(&e)),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| UserError::PolicyFile {
        file: file.clone(),
        message: format!(
            "the policy is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    load_str(&text, &file)
}

pub fn load_str(text: &str, file: &str) -> Result<Policy, UserError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(UserError::PolicyFile {
            file: file.into(),
            message: "the policy is empty: it needs at least `version: 1`".into(),
        });
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawPolicy = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = match e.path().to_string() {
            p if p == "." => "(top level)".to_string(),
            p => p,
        };
        let inner = e.into_inner();
        let (line, column) = inner.location().map_or((1, 1), |l| (l.line(), l.column()));
        UserError::Policy {
            file: file.into(),
            line,
            column,
            key,
            message: clean_message(&inner.to_string()),
        }
    })?;
    let digest = blake3::hash(text.as_bytes()).to_hex().to_string();
    resolve(raw, file.into(), digest).map_err(|invalid| {
        let (line, column) = locate(text, &invalid.path);
        UserError::Policy {
            file: file.into(),
            line,
            column,
            key: invalid.path,
            message: invalid.message,
        }
    })
}

/// serde_yaml's message without the path prefix and position suffix we print ourselves.
fn clean_message(message: &str) -> String {
    let mut m = message;
    if let Some(at) = m.rfind(" at line ") {
        m = &m[..at];
    }
    if let Some((head, rest)) = m.split_once(": ")
        && !head.is_empty()
        && !head.contains(' ')
    {
        m = rest;
    }
    let m = m.replace("struct RawPolicy", "a mapping of policy keys");
    regex_lite_replace(&m)
}

/// Internal type names (`struct RawLink`) mean nothing to a user.
fn regex_lite_replace(m: &str) -> String {
    let re = regex::Regex::new(r"struct Raw\w+").expect("static regex");
    re.replace_all(m, "a mapping").into_owned()
}
