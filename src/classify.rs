//! The one function that decides whether a failed attempt is worth another try.
//!
//! Its answer carries the rule that decided, in the policy's own words, so the run
//! record and the reports can say why each attempt was or was not retried.

use serde::{Deserialize, Serialize};

use crate::attempt::{CallError, CallReport, End, signal_name};
use crate::policy::{Critical, RetryPolicy};
use crate::scan::Scanner;

/// What kind of failure an attempt had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    Exit,
    Signal,
    Timeout,
    Deadline,
    NotFound,
    NotExecutable,
    Interrupted,
    /// The command succeeded but `rollback.validate` failed.
    Validation,
    /// A model call got an HTTP error status.
    Status,
    /// A model call could not connect, or its connection broke.
    Network,
    /// A streamed answer stalled, broke off or was malformed.
    Stream,
    /// The prompt is too long for the model: the next link may have a larger one.
    ContextLength,
    /// The provider refused on content policy.
    ContentPolicy,
    /// The API key was missing or refused.
    Auth,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Exit => "exit",
            FailureClass::Signal => "signal",
            FailureClass::Timeout => "timeout",
            FailureClass::Deadline => "deadline",
            FailureClass::NotFound => "not-found",
            FailureClass::NotExecutable => "not-executable",
            FailureClass::Interrupted => "interrupted",
            FailureClass::Validation => "validation",
            FailureClass::Status => "status",
            FailureClass::Network => "network",
            FailureClass::Stream => "stream",
            FailureClass::ContextLength => "context-length",
            FailureClass::ContentPolicy => "content-policy",
            FailureClass::Auth => "auth",
        }
    }
}

/// The decision about one failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: FailureClass,
    /// Another attempt of the same link is allowed.
    pub retry: bool,
    /// A critical failure: no fallback but escalation.
    pub critical: bool,
    /// The interrupt stops the whole run.
    #[serde(skip)]
    pub stop: bool,
    /// The rule that decided, as the policy writes it.
    pub rule: String,
}

/// Which list an output pattern came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    On(usize),
    Never(usize),
    Critical(usize),
}

/// The patterns a link's attempts are scanned for, and which rule each belongs to.
#[derive(Debug)]
pub struct LinkPatterns {
    pub scanner: Scanner,
    roles: Vec<Role>,
}

impl LinkPatterns {
    pub fn new(retry: &RetryPolicy, critical: &Critical) -> LinkPatterns {
        let mut roles = Vec::new();
        roles.extend((0..retry.on.output.len()).map(Role::On));
        roles.extend((0..retry.never.output.len()).map(Role::Never));
        roles.extend((0..critical.output.len()).map(Role::Critical));
        LinkPatterns {
            scanner: retry.scanner.clone(),
            roles,
        }
    }
}

/// Decides about an attempt that ended with `end` and whose output matched `matched`.
/// `None` means it succeeded.
pub fn classify(
    end: &End,
    matched: &[usize],
    patterns: &LinkPatterns,
    retry: &RetryPolicy,
    critical: &Critical,
) -> Option<Verdict> {
    let roles: Vec<Role> = matched
        .iter()
        .filter_map(|i| patterns.roles.get(*i).copied())
        .collect();
    let verdict = |class, retry, rule: String| Verdict {
        class,
        retry,
        critical: false,
        stop: false,
        rule,
    };
    let class = match end {
        End::Exited { code: 0 } => return None,
        End::Exited { .. } => FailureClass::Exit,
        End::Signaled { .. } => FailureClass::Signal,
        End::TimedOut { deadline: true, .. } => FailureClass::Deadline,
        End::TimedOut { .. } => FailureClass::Timeout,
        End::Interrupted { .. } => FailureClass::Interrupted,
        End::SpawnFailed { code: 127, .. } => FailureClass::NotFound,
        End::SpawnFailed { .. } => FailureClass::NotExecutable,
        End::Answered
        | End::Status { .. }
        | End::Network { .. }
        | End::Stream { .. }
        | End::CallTimedOut { .. } => {
            unreachable!("model calls are classified by classify_call")
        }
    };

    // A user's interrupt ends the run, whether it reached backstop or, on a
    // terminal, only the child.
    if let End::Interrupted { signal }
    | End::Signaled {
        signal: signal @ libc::SIGINT,
    } = end
    {
        return Some(interrupted(format!(
            "interrupted by {}",
            signal_name(*signal)
        )));
    }
    // Exit 130 is how a command that traps Ctrl-C says it was interrupted; on a
    // terminal only the command sees the Ctrl-C, so this is how backstop learns of it.
    if let End::Exited { code: 130 } = end {
        return Some(interrupted("exit 130: interrupted (Ctrl-C)".into()));
    }
    if let End::SpawnFailed { code, .. } = end {
        return Some(verdict(class, false, format!("{code} is never retried")));
    }

    let code = match end {
        End::Exited { code } => Some(*code),
        _ => None,
    };
    if let Some(c) = code.filter(|c| critical.exit_codes.contains(*c)) {
        return Some(Verdict {
            critical: true,
            ..verdict(
                class,
                false,
                format!("fallback.critical.exit_codes contains {c}"),
            )
        });
    }
    if let Some(Role::Critical(i)) = roles.iter().find(|r| matches!(r, Role::Critical(_))) {
        return Some(Verdict {
            critical: true,
            ..verdict(
                class,
                false,
                format!(
                    "fallback.critical.output matched `{}`",
                    critical.output[*i].source
                ),
            )
        });
    }
    if class == FailureClass::Deadline {
        return Some(verdict(class, false, "timeout.total reached".into()));
    }
    if class == FailureClass::Timeout {
        let rule = if retry.on.timeout {
            "retry.on.timeout is true"
        } else {
            "retry.on.timeout is false"
        };
        return Some(verdict(class, retry.on.timeout, rule.into()));
    }
    if let Some(Role::Never(i)) = roles.iter().find(|r| matches!(r, Role::Never(_))) {
        let rule = format!(
            "retry.never.output matched `{}`",
            retry.never.output[*i].source
        );
        return Some(verdict(class, false, rule));
    }
    if let Some(c) = code.filter(|c| retry.never.exit_codes.contains(*c)) {
        return Some(verdict(
            class,
            false,
            format!("retry.never.exit_codes contains {c}"),
        ));
    }
    if let Some(Role::On(i)) = roles.iter().find(|r| matches!(r, Role::On(_))) {
        let rule = format!("retry.on.output matched `{}`", retry.on.output[*i].source);
        return Some(verdict(class, true, rule));
    }
    Some(match end {
        End::Exited { code } if retry.on.exit_codes.contains(*code) => {
            verdict(class, true, format!("retry.on.exit_codes contains {code}"))
        }
        End::Exited { code } => verdict(
            class,
            false,
            format!("exit {code} is not in retry.on.exit_codes"),
        ),
        End::Signaled {
            signal: libc::SIGPIPE,
        } => verdict(
            class,
            false,
            "killed by SIGPIPE: whatever read its output is gone, so another attempt cannot help"
                .into(),
        ),
        End::Signaled { .. } => {
            let rule = if retry.on.signals {
                "retry.on.signals is true"
            } else {
                "retry.on.signals is false"
            };
            verdict(class, retry.on.signals, rule.into())
        }
        _ => unreachable!("every other end returned above"),
    })
}

/// The verdict that ends the whole run: the user asked to stop.
fn interrupted(rule: String) -> Verdict {
    Verdict {
        class: FailureClass::Interrupted,
        retry: false,
        critical: false,
        stop: true,
        rule,
    }
}

/// Decides about a model call: the status table, `x-should-retry`, and the error
/// kinds that go straight to the next link. `None` means it was answered.
pub fn classify_call(end: &End, call: &CallReport, retry: &RetryPolicy) -> Option<Verdict> {
    let verdict = |class, retry, rule: String| Verdict {
        class,
        retry,
        critical: false,
        stop: false,
        rule,
    };
    match end {
        End::Answered => None,
        End::Interrupted { signal } => Some(interrupted(format!(
            "interrupted by {}",
            signal_name(*signal)
        ))),
        End::TimedOut { deadline: true, .. } => Some(verdict(
            FailureClass::Deadline,
            false,
            "timeout.total reached".into(),
        )),
        End::TimedOut { .. } | End::CallTimedOut { .. } => Some(verdict(
            FailureClass::Timeout,
            retry.on.timeout,
            format!("retry.on.timeout is {}", retry.on.timeout),
        )),
        End::Network { message } if call.error == Some(CallError::Auth) => Some(verdict(
            FailureClass::Auth,
            false,
            format!("no API key: {message}"),
        )),
        End::Network { .. } => Some(verdict(
            FailureClass::Network,
            retry.on.network,
            format!("retry.on.network is {}", retry.on.network),
        )),
        End::Stream { .. } => Some(verdict(
            FailureClass::Stream,
            retry.on.network,
            format!(
                "a broken stream is a network failure; retry.on.network is {}",
                retry.on.network
            ),
        )),
        End::Status { status, .. } => {
            let s = *status;
            match call.error {
                Some(CallError::ContextLength) => {
                    return Some(verdict(
                        FailureClass::ContextLength,
                        false,
                        format!("HTTP {s}: context length exceeded; the next link may take it"),
                    ));
                }
                Some(CallError::ContentPolicy) => {
                    return Some(verdict(
                        FailureClass::ContentPolicy,
                        false,
                        format!("HTTP {s}: refused on content policy"),
                    ));
                }
                _ => {}
            }
            // A redirect that came back was not followed (it left the provider's
            // origin): asking again gets the same answer.
            if (300..400).contains(&s) {
                let why = call
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {s}: a redirect that was not followed"));
                return Some(verdict(FailureClass::Status, false, why));
            }
            let class = if matches!(s, 401 | 403) || call.error == Some(CallError::Auth) {
                FailureClass::Auth
            } else {
                FailureClass::Status
            };
            if let Some(b) = call.should_retry {
                return Some(verdict(
                    class,
                    b,
                    format!("the server said x-should-retry: {b}"),
                ));
            }
            if retry.never.status.contains(&s) {
                return Some(verdict(
                    class,
                    false,
                    format!("retry.never.status contains {s}"),
                ));
            }
            if retry.on.status.contains(&s) {
                return Some(verdict(
                    class,
                    true,
                    format!("retry.on.status contains {s}"),
                ));
            }
            if (500..600).contains(&s) && s != 501 {
                return Some(verdict(class, true, format!("HTTP {s} is a server error")));
            }
            Some(verdict(
                class,
                false,
                format!("HTTP {s} is not in retry.on.status"),
            ))
        }
        // A content refusal inside a 200 comes back as an answered call with an error.
        other => Some(verdict(FailureClass::Exit, false, other.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;

    fn policy(yaml: &str) -> policy::Policy {
        policy::load_str(yaml, "test.yaml").unwrap()
    }

    fn decide(p: &policy::Policy, end: End, matched: &[usize]) -> Option<Verdict> {
        let pats = LinkPatterns::new(&p.retry, &p.fallback.critical);
        classify(&end, matched, &pats, &p.retry, &p.fallback.critical)
    }

    #[test]
    fn the_default_table() {
        let p = policy("version: 1\n");
        let cases = [
            (End::Exited { code: 0 }, None),
            (End::Exited { code: 1 }, Some((FailureClass::Exit, true))),
            (End::Exited { code: 2 }, Some((FailureClass::Exit, false))),
            (End::Exited { code: 75 }, Some((FailureClass::Exit, true))),
            (End::Exited { code: 126 }, Some((FailureClass::Exit, false))),
            (
                End::Signaled { signal: 9 },
                Some((FailureClass::Signal, true)),
            ),
            (
                End::Signaled { signal: 2 },
                Some((FailureClass::Interrupted, false)),
            ),
            (
                End::TimedOut {
                    after_ms: 5,
                    deadline: false,
                },
                Some((FailureClass::Timeout, true)),
            ),
            (
                End::TimedOut {
                    after_ms: 5,
                    deadline: true,
                },
                Some((FailureClass::Deadline, false)),
            ),
            (
                End::SpawnFailed {
                    code: 127,
                    message: "not found".into(),
                },
                Some((FailureClass::NotFound, false)),
            ),
            (
                End::SpawnFailed {
                    code: 126,
                    message: "denied".into(),
                },
                Some((FailureClass::NotExecutable, false)),
            ),
        ];
        for (end, want) in cases {
            let got = decide(&p, end.clone(), &[]).map(|v| (v.class, v.retry));
            assert_eq!(got, want, "{end:?}");
        }
    }

    #[test]
    fn an_allowlist_retries_only_its_codes() {
        let p = policy("version: 1\nretry: { on: { exit_codes: [75, 64..66] } }\n");
        assert!(decide(&p, End::Exited { code: 75 }, &[]).unwrap().retry);
        assert!(decide(&p, End::Exited { code: 65 }, &[]).unwrap().retry);
        let v = decide(&p, End::Exited { code: 1 }, &[]).unwrap();
        assert!(!v.retry);
        assert_eq!(v.rule, "exit 1 is not in retry.on.exit_codes");
    }

    #[test]
    fn an_output_match_makes_a_failure_retryable_but_never_wins() {
        let p = policy(
            "version: 1\nretry:\n  on: { exit_codes: [75], output: ['rate limit'] }\n  never: { output: ['fatal'] }\n",
        );
        let v = decide(&p, End::Exited { code: 1 }, &[0]).unwrap();
        assert!(v.retry);
        assert_eq!(v.rule, "retry.on.output matched `rate limit`");
        assert!(!decide(&p, End::Exited { code: 1 }, &[0, 1]).unwrap().retry);
    }

    #[test]
    fn critical_beats_everything_but_success() {
        let p = policy(
            "version: 1\nfallback: { critical: { exit_codes: [3], output: ['SECURITY'] } }\n",
        );
        let v = decide(&p, End::Exited { code: 3 }, &[]).unwrap();
        assert!(v.critical && !v.retry);
        assert!(decide(&p, End::Exited { code: 1 }, &[0]).unwrap().critical);
        assert!(decide(&p, End::Exited { code: 0 }, &[0]).is_none());
    }
}
