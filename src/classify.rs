//! The one function that decides whether a failed attempt is worth another try.
//!
//! Its answer carries the rule that decided, in the policy's own words, so the run
//! record and the reports can say why each attempt was or was not retried.

use serde::{Deserialize, Serialize};

use crate::attempt::{End, signal_name};
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
        let patterns = retry
            .on
            .output
            .iter()
            .chain(&retry.never.output)
            .chain(&critical.output);
        LinkPatterns {
            scanner: Scanner::new(patterns),
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
    };

    // A user's interrupt ends the run, whether it reached backstop or, on a
    // terminal, only the child.
    if let End::Interrupted { signal }
    | End::Signaled {
        signal: signal @ libc::SIGINT,
    } = end
    {
        return Some(Verdict {
            stop: true,
            ..verdict(
                FailureClass::Interrupted,
                false,
                format!("interrupted by {}", signal_name(*signal)),
            )
        });
    }
    // Exit 130 is how a command that traps Ctrl-C says it was interrupted; on a
    // terminal only the command sees the Ctrl-C, so this is how backstop learns of it.
    if let End::Exited { code: 130 } = end {
        return Some(Verdict {
            stop: true,
            ..verdict(
                FailureClass::Interrupted,
                false,
                "exit 130: interrupted (Ctrl-C)".into(),
            )
        });
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
