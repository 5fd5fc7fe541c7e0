//! One attempt: what to run, and how it ended.
//!
//! The engine drives attempts through [`Attempter`]; the real one runs processes
//! ([`crate::process::ProcessRunner`]), tests may script one.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::exit_code;
use crate::policy::DefaultAnswer;
use crate::scan::Scanner;

/// What the engine asks an [`Attempter`] to run.
#[derive(Debug)]
pub struct AttemptSpec<'a> {
    pub argv: &'a [String],
    /// Extra environment for the child (`BACKSTOP_ATTEMPT` and friends).
    pub env: Vec<(String, String)>,
    /// End the attempt after this long; `None` for no limit.
    pub timeout: Option<Duration>,
    /// The timeout is the run's deadline rather than the attempt's own limit.
    pub timeout_is_deadline: bool,
    pub kill_grace: Duration,
    /// Patterns to look for in the attempt's output.
    pub scanner: &'a Scanner,
    pub stdin: StdinFrom,
    /// Set for a model call (then `argv` is empty).
    pub call: Option<&'a CallWork<'a>>,
    /// A hook or `validate`, not an attempt of the chain: no fault model touches it.
    pub hook: bool,
}

/// What a model call attempt needs.
#[derive(Clone, Debug)]
pub struct CallWork<'a> {
    pub model: &'a crate::policy::Model,
    pub provider: &'a crate::policy::Provider,
    pub prompt: Prompt,
    /// The same for every retry of one logical call.
    pub idempotency_key: String,
    /// `timeout.connect`, `timeout.first_token`, `timeout.stall`.
    pub connect: Duration,
    pub first_token: Duration,
    pub stall: Duration,
    /// A fault to cut into the answer (`--chaos`): its body ends, or stalls, after
    /// this many bytes, and the client's own limits and parser see what follows.
    pub cut: Option<Cut>,
}

/// Where and how `--chaos` breaks a real answer's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub after_bytes: usize,
    /// The body then goes quiet (a stall) instead of ending (a truncation).
    pub stall: bool,
}

/// The prompt of a model call: the final user message, the system prompt, and the
/// turns of the conversation before it (`call --messages`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    pub system: Option<String>,
    /// The turns before `user`, oldest first; empty for a one-message prompt.
    pub earlier: Vec<Turn>,
    /// The final user message: the one the model answers.
    pub user: String,
}

impl Prompt {
    /// A one-message prompt.
    pub fn new(system: Option<String>, user: String) -> Prompt {
        Prompt {
            system,
            earlier: Vec::new(),
            user,
        }
    }

    /// Bytes of text the model reads: every turn, the system prompt and the message.
    pub fn text_len(&self) -> usize {
        let earlier: usize = self.earlier.iter().map(|t| t.text.len()).sum();
        earlier + self.user.len() + self.system.as_ref().map_or(0, String::len)
    }
}

/// One earlier turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// Who said a turn (system turns become [`Prompt::system`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

impl Speaker {
    /// The role as both wire formats spell it.
    pub fn role(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        }
    }
}

/// What a model call attempt learned, for the classifier, the budget and the record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CallReport {
    /// The policy's name for the model.
    pub model: String,
    pub provider: String,
    pub status: Option<u16>,
    /// The wait the server asked for, and the header that said so.
    pub retry_after_ms: Option<u64>,
    pub retry_after_rule: Option<String>,
    /// `x-should-retry`, when the server sent it.
    pub should_retry: Option<bool>,
    pub error: Option<CallError>,
    pub message: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    /// The answer (never recorded).
    #[serde(skip)]
    pub text: Option<String>,
}

/// Failures of a call that are their own class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallError {
    /// The prompt is too long for the model: a larger one may take it.
    ContextLength,
    /// The provider refused on content policy.
    ContentPolicy,
    /// The key was missing or refused.
    Auth,
}

/// Where an attempt's standard input comes from.
#[derive(Debug, Clone)]
pub enum StdinFrom {
    /// backstop's own stdin: inherited on a terminal, replayed to retries otherwise.
    Inherit,
    /// These bytes, then end of file (the escalation hook's failure summary).
    Bytes(Vec<u8>),
    /// Nothing (`/dev/null`): hooks.
    Null,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum End {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    TimedOut {
        after_ms: u64,
        deadline: bool,
    },
    /// backstop was asked to stop (SIGINT, SIGTERM) and passed the signal on.
    Interrupted {
        signal: i32,
    },
    /// The command could not be started: `code` is 126 or 127.
    SpawnFailed {
        code: u8,
        message: String,
    },
    /// A model call was answered.
    Answered,
    /// A model call got an HTTP error status.
    Status {
        status: u16,
        /// The provider's own words, key redacted, control characters out: "HTTP 401"
        /// alone does not say whether the key or the URL is wrong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A model call could not connect, or the connection broke.
    Network {
        message: String,
    },
    /// A streamed answer stalled, broke off or carried a malformed chunk.
    Stream {
        message: String,
    },
    /// A model call hit one of its own limits (`timeout.connect`, `timeout.first_token`,
    /// `timeout.stall`): a timeout like any other, so exit 124 and `retry.on.timeout`.
    CallTimedOut {
        /// The policy key of the limit that was hit.
        limit: String,
        after_ms: u64,
        /// Which model and endpoint, and what was awaited.
        message: String,
    },
}

impl End {
    pub fn success(&self) -> bool {
        matches!(self, End::Exited { code: 0 } | End::Answered)
    }

    /// The exit code backstop ends with when this is the final failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            End::Exited { code } => u8::try_from(*code).unwrap_or(1),
            End::Signaled { signal } | End::Interrupted { signal } => {
                exit_code::for_signal(*signal)
            }
            End::TimedOut { .. } | End::CallTimedOut { .. } => exit_code::TIMEOUT,
            End::SpawnFailed { code, .. } => *code,
            End::Answered => 0,
            End::Status { .. } | End::Network { .. } | End::Stream { .. } => 1,
        }
    }

    /// A short description: `exit 1`, `killed by SIGKILL`, `timed out after 2s`.
    pub fn describe(&self) -> String {
        match self {
            End::Exited { code } => format!("exit {code}"),
            End::Signaled { signal } => format!("killed by {}", signal_name(*signal)),
            End::TimedOut { after_ms, deadline } => format!(
                "{} after {}",
                if *deadline {
                    "deadline reached"
                } else {
                    "timed out"
                },
                crate::policy::values::format_duration(Duration::from_millis(*after_ms))
            ),
            End::Interrupted { signal } => format!("interrupted by {}", signal_name(*signal)),
            End::SpawnFailed { message, .. } => message.clone(),
            End::Answered => "answered".into(),
            End::Status {
                status,
                message: Some(m),
            } => format!("HTTP {status}: {m}"),
            End::Status { status, .. } => format!("HTTP {status}"),
            End::Network { message } => format!("network error: {message}"),
            End::Stream { message } => format!("stream: {message}"),
            End::CallTimedOut { message, .. } => format!("timed out: {message}"),
        }
    }
}

/// `SIGTERM` for 15, `signal 42` for numbers without a common name.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// What an attempt produced.
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    pub end: End,
    /// Indices into the spec's scanner of the patterns the output matched.
    pub matched: Vec<usize>,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// Set when no further attempt may be made whatever the policy says, and why
    /// (stdin too large to replay).
    pub no_retry: Option<String>,
    /// For a model call: what it learned.
    pub call: Option<CallReport>,
    /// The reader of backstop's own stdout or stderr was gone when the attempt ended
    /// (`backstop run -- cmd | head -1`).
    pub output_closed: bool,
    /// The fault `--chaos` injected into this attempt, described.
    pub injected: Option<String>,
}

/// Runs attempts. The real one spawns processes; a test can script outcomes.
pub trait Attempter {
    fn attempt(&mut self, spec: AttemptSpec<'_>) -> impl Future<Output = AttemptOutcome>;

    /// Writes a `default` link's answer where the command's output would have gone;
    /// `Some(signal)` if a signal to backstop came while a reader held the write up.
    fn answer(&mut self, answer: &DefaultAnswer) -> impl Future<Output = Option<i32>>;
}

/// A command line as a shell would need it typed: `sh -c 'exit 1'`.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a.clone()
            } else if a.chars().any(char::is_control) {
                // A newline or an escape sequence must not reach the terminal as is:
                // the ANSI-C quoting bash reads back (`\` and `'` escaped first, then
                // the control characters as `printable` writes them).
                let inner = a.replace('\\', "\\\\").replace('\'', "\\'");
                format!("$'{}'", crate::names::printable(&inner))
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::command_line;

    /// What `command_line` prints, read back by bash, is the argv it was given: a
    /// name with a newline, an escape sequence, a C1 control, quotes and backslashes.
    #[test]
    fn command_lines_read_back_by_bash_give_the_same_arguments() {
        let argv: Vec<String> = [
            "plain",
            "two words",
            "it's",
            "a\nb",
            "esc\x1b[31m",
            "c1\u{85}x",
            "back\\slash'and\tquote",
            "",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let line = command_line(&argv);
        assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                &format!(r#"for a in {line}; do printf '%s\0' "$a"; done"#),
            ])
            .output()
            .unwrap();
        let back: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(ToString::to_string)
            .collect();
        assert_eq!(back, argv, "{line}");
    }
}
