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

/// The built-in default: what [`load_str`] makes of [`BUILTIN`], built without
/// the YAML reader, which would cost every run without a policy file about 50 µs
/// (`builtin_is_what_its_text_says` holds the two equal).
pub fn builtin() -> Result<Policy, UserError> {
    let raw = RawPolicy {
        version: Some(1),
        ..RawPolicy::default()
    };
    resolve(raw, "built-in".into(), BUILTIN_DIGEST.into()).map_err(|invalid| UserError::Policy {
        file: "built-in".into(),
        line: 1,
        column: 1,
        key: invalid.path,
        message: invalid.message,
    })
}

/// blake3 of [`BUILTIN`], the digest a run record names the built-in policy by.
const BUILTIN_DIGEST: &str = "37dabe0fad76c5e0eb09fd15a2a488096defa9390261a39b63ae102d04ae6395";

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
    let mut policy = load_str(&text, &file)?;
    policy.path = std::fs::canonicalize(path).ok();
    Ok(policy)
}

/// Reads at most one byte over the limit of a policy (or a fault model), so `-p
/// /dev/zero` ends too.
///
/// Opened without blocking: a named pipe that no one writes to would hold the open,
/// and backstop, forever; opened so, it reads as empty and is refused. Reads then
/// block again, so a pipe with a writer (`-p <(make-policy)`) is read to its end.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    fcntl_setfl(&file, fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
    let pipe = file.metadata()?.file_type().is_fifo();
    let mut bytes = Vec::new();
    file.take(limits::MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if pipe && bytes.is_empty() {
        return Err(std::io::Error::other(
            "a named pipe with nothing written to it",
        ));
    }
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
    let raw: RawPolicy =
        serde_path_to_error::deserialize(de).map_err(|e| yaml_error(e, text, file))?;
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

/// A YAML or serde error as `file:line:column: key: message`: the policy's and every
/// other YAML file backstop reads (the fault model of `simulate`).
pub(crate) fn yaml_error(
    e: serde_path_to_error::Error<serde_yaml::Error>,
    text: &str,
    file: &str,
) -> UserError {
    let key = match e.path().to_string() {
        p if p == "." => "(top level)".to_string(),
        p => p,
    };
    let inner = e.into_inner();
    let (line, column) = inner.location().map_or((1, 1), |l| (l.line(), l.column()));
    let raw = inner.to_string();
    match syntax_message(&raw, text, line, column) {
        // A mistake in the YAML itself is at no key: "?" said nothing.
        Some(message) => UserError::Policy {
            file: file.into(),
            line,
            column,
            key: match key.strip_suffix(".?") {
                _ if key == "?" => "YAML".into(),
                Some(parent) => parent.to_string(),
                None => key,
            },
            message,
        },
        None => UserError::Policy {
            file: file.into(),
            line,
            column,
            key: shortened(&key, 120),
            message: clean_message(&raw),
        },
    }
}

/// libyaml's words for a misplaced line ("did not find expected key") name neither
/// the line nor what it should have looked like: say both, from the problem's mark
/// and the mark of the block it broke (`while parsing a block mapping at line 2
/// column 1`; libyaml leaves out a mark at the very start of the file).
fn syntax_message(raw: &str, text: &str, line: usize, column: usize) -> Option<String> {
    let re = regex::Regex::new(
        r"^(?P<problem>.+?) at line \d+ column \d+(?:, while (?:parsing|scanning) (?P<what>[a-z ]+?)(?: at line (?P<l>\d+) column (?P<c>\d+))?)?$",
    )
    .expect("static regex");
    let caps = re.captures(raw)?;
    let problem = caps.name("problem")?.as_str();
    let what = caps.name("what").map(|m| m.as_str());
    let number = |name| {
        caps.name(name)
            .and_then(|m| m.as_str().parse::<usize>().ok())
    };
    let (from_line, from_column) = (number("l").unwrap_or(1), number("c").unwrap_or(1));
    let quoted = |n: usize| {
        let l = text.lines().nth(n.saturating_sub(1)).unwrap_or("").trim();
        let l: String = l.chars().take(60).collect();
        crate::names::quote(l.as_bytes())
    };
    let indented = format!("line {line} starts at column {column}: `{}`", quoted(line));
    let found = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.chars().nth(column.saturating_sub(1)));
    Some(match (problem, what) {
        (_, _) if found == Some('\t') => {
            format!("a tab at line {line} column {column}: YAML indents with spaces only")
        }
        ("did not find expected key", Some("a block mapping")) => format!(
            "the indentation is off: {indented}, but the keys of the mapping from line {from_line} \
             (`{}`) start at column {from_column}; indent it to column {from_column}, \
             or further to put it under the key above",
            quoted(from_line)
        ),
        ("did not find expected '-' indicator", Some("a block collection")) => format!(
            "the indentation is off: {indented}, but the items of the list from line {from_line} \
             (`{}`) start with `- ` at column {from_column}",
            quoted(from_line)
        ),
        ("mapping values are not allowed in this context", _) => format!(
            "a `key:` where a value was expected at line {line} column {column}: \
             the line is indented further than the keys beside it, or a value before it \
             lacks its quotes; check the indentation of line {line}"
        ),
        ("did not find expected ',' or '}'", Some("a flow mapping")) => format!(
            "the `{{` at line {from_line} column {from_column} is not closed: expected `,` or `}}` \
             at line {line} column {column}"
        ),
        ("did not find expected ',' or ']'", Some("a flow sequence")) => format!(
            "the `[` at line {from_line} column {from_column} is not closed: expected `,` or `]` \
             at line {line} column {column}"
        ),
        _ => return None,
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
    shortened(&regex_lite_replace(&m), 120)
}

/// `text` fit for a message: past `2 × keep` characters, its first and last `keep`
/// (a key or a value a megabyte long is named by its ends).
pub(crate) fn shortened(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    if count <= 2 * keep {
        return text.to_string();
    }
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}…{tail}")
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

    #[test]
    fn builtin_is_what_its_text_says() {
        let parsed = load_str(BUILTIN, "built-in").unwrap();
        let built = builtin().unwrap();
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            serde_json::to_value(&parsed).unwrap()
        );
        assert_eq!(
            BUILTIN_DIGEST,
            blake3::hash(BUILTIN.as_bytes()).to_hex().as_str()
        );
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }

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

    /// `policies/agents/`: one policy per coding agent, the cross-agent fallback and
    /// the interactive one (`tests/integration/agents.rs` runs them against stubs).
    #[test]
    fn every_agent_policy_is_valid() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(policies_dir().join("agents")).unwrap() {
            let path = entry.unwrap().path();
            let policy = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(policy.timeout.kill_grace.0 >= std::time::Duration::from_secs(10));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            [
                "aider.yaml",
                "claude.yaml",
                "codex.yaml",
                "fallback.yaml",
                "gemini.yaml",
                "interactive.yaml",
                "opencode.yaml"
            ]
        );
    }

    #[test]
    fn every_policy_of_the_evidence_page_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/evidence");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert_eq!(
            seen, 4,
            "docs/evidence.md simulates four policies of its own"
        );
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
        crate::policy::schema::assert_committed(&path, &crate::policy::schema::schema_json());
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
    fn an_indentation_mistake_names_the_line_and_what_was_expected() {
        let err = load_str(
            "version: 1\nretry:\n  max_attempts: 3\n backoff: { initial: 1s }\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("p.yaml:4:2: YAML: the indentation is off"),
            "{err}"
        );
        assert!(
            err.contains("line 4 starts at column 2: `backoff: { initial: 1s }`"),
            "{err}"
        );
        assert!(err.contains("start at column 1"), "{err}");

        let err = load_str(
            "version: 1\nretry:\n  backoff:\n    initial: 1s\n   max: 2s\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("p.yaml:5:4: retry: the indentation is off"),
            "{err}"
        );
        assert!(
            err.contains("the mapping from line 3 (`backoff:`) start at column 3"),
            "{err}"
        );

        let err = load_str(
            "version: 1\nfallback:\n  chain:\n    - run: [a]\n     - run: [b]\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("the items of the list from line 4"), "{err}");
        assert!(err.contains("at column 5"), "{err}");

        let err = load_str("version: 1\nretry:\n\tmax_attempts: 3\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("YAML indents with spaces only"), "{err}");

        let err = load_str("version: 1\nretry: { max_attempts: 3 ]\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the `{` at line 2 column 8 is not closed"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_policy_is_an_error() {
        let err = load_str("# nothing\n", "p.yaml").unwrap_err().to_string();
        assert!(err.contains("the policy is empty"), "{err}");
    }
}
