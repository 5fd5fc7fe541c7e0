//! Reads a policy file, and turns every error into one that names file, line, column and key.

use std::path::{Path, PathBuf};

use crate::error::UserError;

use super::limits;
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
            match std::fs::metadata(path) {
                // Found in whatever tree backstop runs in, so never opened unless it is
                // a file: a FIFO there would hang every run until something wrote to it.
                // (`-p` may name a pipe: `-p <(make-policy)` is the user's own choice.)
                Ok(m) if !m.is_file() => Err(UserError::PolicyFile {
                    file: DEFAULT_FILE.into(),
                    message: "not a regular file, so it is not read as the policy; remove it or name a policy with -p".into(),
                }),
                Ok(_) => load_file(path),
                Err(_) if path.symlink_metadata().is_ok() => Err(UserError::PolicyFile {
                    file: DEFAULT_FILE.into(),
                    message: "a symlink to nothing; remove it or name a policy with -p".into(),
                }),
                Err(_) => builtin(),
            }
        }
    }
}

pub fn builtin() -> Result<Policy, UserError> {
    load_str(BUILTIN, "built-in")
}

pub fn load_file(path: &Path) -> Result<Policy, UserError> {
    // Quoted as git quotes paths: the name lands in error messages, `explain` and the
    // run record's `policy.source`, and a newline or an escape in it would forge a line
    // or drive the terminal (a plain name is unchanged).
    let file = crate::names::quote_path(path);
    let bytes = read_bounded(path).map_err(|e| UserError::PolicyFile {
        file: file.clone(),
        message: format!("cannot read the policy: {}", crate::error::io_message(&e)),
    })?;
    limits::check_size(bytes.len()).map_err(|message| UserError::PolicyFile {
        file: file.clone(),
        message,
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

/// Reads at most one byte over the limit, so `-p /dev/zero` ends too.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limits::MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub fn load_str(text: &str, file: &str) -> Result<Policy, UserError> {
    limits::check_size(text.len()).map_err(|message| UserError::PolicyFile {
        file: file.into(),
        message,
    })?;
    limits::check_depth(text).map_err(|too| UserError::PolicyFile {
        file: format!("{file}:{}:{}", too.line, too.column),
        message: too.message,
    })?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(UserError::PolicyFile {
            file: file.into(),
            message: "the policy is empty: it needs at least `version: 1`".into(),
        });
    }
    let _budget = super::values::PatternBudget::start();
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn policies_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
    }

    #[test]
    fn every_example_policy_is_valid() {
        let mut seen = 0;
        for entry in std::fs::read_dir(policies_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 3, "the examples are there");
    }

    #[test]
    fn default_yaml_spells_out_the_builtin() {
        let file = load_file(&policies_dir().join("default.yaml")).unwrap();
        let builtin = builtin().unwrap();
        assert_eq!(
            serde_yaml::to_string(&file).unwrap(),
            serde_yaml::to_string(&builtin).unwrap()
        );
    }

    /// `policies/backstop.schema.json` is what `backstop policy schema` prints.
    /// `BACKSTOP_BLESS=1 cargo test` rewrites it.
    #[test]
    fn committed_schema_is_up_to_date() {
        let path = policies_dir().join("backstop.schema.json");
        let want = crate::policy::schema::schema_json();
        if std::env::var_os("BACKSTOP_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            want,
            "run with BACKSTOP_BLESS=1"
        );
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let text = "version: 1\nretry:\n  max_attempts: 0\n";
        let err = load_str(text, "p.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "p.yaml:3:3: retry.max_attempts: must be from 1 (no retries) to 1000, not 0"
        );
        let err = load_str("version: 2\n", "p.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "p.yaml:1:1: version: unsupported version 2: expected 1"
        );
        let err = load_str("version: 1\nretry: {on: {exit_codes: [300]}}\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.yaml:2:"), "{err}");
        assert!(err.contains("retry.on.exit_codes"), "{err}");
        assert!(err.contains("invalid exit code `300`"), "{err}");
    }

    #[test]
    fn an_empty_policy_is_an_error() {
        let err = load_str("# nothing\n", "p.yaml").unwrap_err().to_string();
        assert!(err.contains("the policy is empty"), "{err}");
    }
}
