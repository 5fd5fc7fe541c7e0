//! The functions that decide whether a failed attempt is worth another try: one for
//! a command's attempts, one for a model call's. The engine picks by the link's
//! kind, never by what the attempt returned.
//!
//! Their answer carries the rule that decided, in the policy's own words, so the run
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
    FailOn(usize),
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
        roles.extend((0..retry.fail_on.output.len()).map(Role::FailOn));
        LinkPatterns {
            scanner: retry.scanner.clone(),
            roles,
        }
    }

    /// Whether output that matched these patterns makes an exit 0 a failure
    /// (`retry.fail_on.output`).
    pub fn fails_success(&self, matched: &[usize]) -> bool {
        matched
            .iter()
            .any(|i| matches!(self.roles.get(*i), Some(Role::FailOn(_))))
    }
}

impl Verdict {
    fn new(class: FailureClass, retry: bool, rule: String) -> Verdict {
        Verdict {
            class,
            retry,
            critical: false,
            stop: false,
            rule,
        }
    }

    /// A critical failure: no retry, no fallback but escalation.
    fn critical(class: FailureClass, rule: String) -> Verdict {
        Verdict {
            critical: true,
            ..Verdict::new(class, false, rule)
        }
    }

    /// The verdict that ends the whole run: the user asked to stop.
    fn interrupted(rule: String) -> Verdict {
        Verdict {
            stop: true,
            ..Verdict::new(FailureClass::Interrupted, false, rule)
        }
    }

    /// A failure of the other kind of attempt (a command's exit from a model call, or
    /// the reverse; the engine picks the classifier by the link's kind, so only an
    /// attempter that breaks its contract gives one): no rule of the policy names it,
    /// so nothing retries it. Either kind's success is a success.
    fn foreign(end: &End) -> Verdict {
        Verdict::new(FailureClass::Exit, false, end.describe())
    }
}

/// Decides about a command's attempt that ended with `end` and whose output matched
/// `matched`. `None` means it succeeded.
pub fn classify_command(
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
    let class = match end {
        End::Exited { code: 0 } => {
            return failed_success(&roles, retry, critical);
        }
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
        | End::CallTimedOut { .. } => return (!end.success()).then(|| Verdict::foreign(end)),
    };
    if let Some(v) = stop_verdict(end) {
        return Some(v);
    }
    if let End::SpawnFailed { code, .. } = end {
        return Some(Verdict::new(
            class,
            false,
            format!("{code} is never retried"),
        ));
    }
    let code = match end {
        End::Exited { code } => Some(*code),
        _ => None,
    };
    if let Some(rule) = critical_rule(code, &roles, critical) {
        return Some(Verdict::critical(class, rule));
    }
    if class == FailureClass::Deadline {
        return Some(Verdict::new(class, false, "timeout.total reached".into()));
    }
    if class == FailureClass::Timeout {
        let on = retry.on.timeout;
        return Some(Verdict::new(class, on, format!("retry.on.timeout is {on}")));
    }
    let (retry, rule) = retry_rule(end, &roles, retry);
    Some(Verdict::new(class, retry, rule))
}

/// An exit 0 is a success unless its output matched `retry.fail_on.output`; such a
/// failure is retried only when `retry.on.output` also matched (and no
/// `never.output`): the exit code says nothing either way.
fn failed_success(roles: &[Role], retry: &RetryPolicy, critical: &Critical) -> Option<Verdict> {
    let i = roles.iter().find_map(|r| match r {
        Role::FailOn(i) => Some(*i),
        _ => None,
    })?;
    let class = FailureClass::Exit;
    let why = format!(
        "exit 0, but retry.fail_on.output matched `{}`",
        retry.fail_on.output[i].source
    );
    if let Some(rule) = critical_rule(None, roles, critical) {
        return Some(Verdict::critical(class, format!("{why}; {rule}")));
    }
    let judged = roles
        .iter()
        .any(|r| matches!(r, Role::On(_) | Role::Never(_)));
    let (retried, rule) = if judged {
        retry_rule(&End::Exited { code: 0 }, roles, retry)
    } else {
        (false, "no retry.on.output matched".to_string())
    };
    Some(Verdict::new(class, retried, format!("{why}; {rule}")))
}

/// A user's interrupt ends the run, whether it reached backstop or, on a terminal,
/// only the child.
fn stop_verdict(end: &End) -> Option<Verdict> {
    match end {
        End::Interrupted { signal }
        | End::Signaled {
            signal: signal @ libc::SIGINT,
        } => Some(Verdict::interrupted(format!(
            "interrupted by {}",
            signal_name(*signal)
        ))),
        // Exit 130 is how a command that traps Ctrl-C says it was interrupted; on a
        // terminal only the command sees the Ctrl-C, so this is how backstop learns of it.
        End::Exited { code: 130 } => Some(Verdict::interrupted(
            "exit 130: interrupted (Ctrl-C)".into(),
        )),
        _ => None,
    }
}

/// The `fallback.critical` rule a failure matched, if any.
fn critical_rule(code: Option<i32>, roles: &[Role], critical: &Critical) -> Option<String> {
    if let Some(c) = code.filter(|c| critical.exit_codes.contains(*c)) {
        return Some(format!("fallback.critical.exit_codes contains {c}"));
    }
    roles.iter().find_map(|r| match r {
        Role::Critical(i) => Some(format!(
            "fallback.critical.output matched `{}`",
            critical.output[*i].source
        )),
        _ => None,
    })
}

/// Whether a command's exit or signal is retried, and the `retry` rule that says so:
/// `never` beats `on`, output beats exit codes.
fn retry_rule(end: &End, roles: &[Role], retry: &RetryPolicy) -> (bool, String) {
    let never = roles.iter().find_map(|r| match r {
        Role::Never(i) => Some(*i),
        _ => None,
    });
    if let Some(i) = never {
        let source = &retry.never.output[i].source;
        return (false, format!("retry.never.output matched `{source}`"));
    }
    if let End::Exited { code } = end
        && retry.never.exit_codes.contains(*code)
    {
        return (false, format!("retry.never.exit_codes contains {code}"));
    }
    let on = roles.iter().find_map(|r| match r {
        Role::On(i) => Some(*i),
        _ => None,
    });
    if let Some(i) = on {
        let source = &retry.on.output[i].source;
        return (true, format!("retry.on.output matched `{source}`"));
    }
    match end {
        End::Exited { code } if retry.on.exit_codes.contains(*code) => {
            (true, format!("retry.on.exit_codes contains {code}"))
        }
        End::Exited { code } => (false, format!("exit {code} is not in retry.on.exit_codes")),
        End::Signaled {
            signal: libc::SIGPIPE,
        } => (
            false,
            "killed by SIGPIPE: whatever read its output is gone, so another attempt cannot help"
                .into(),
        ),
        End::Signaled { .. } => {
            let on = retry.on.signals;
            (on, format!("retry.on.signals is {on}"))
        }
        // Spawn failures, timeouts and interrupts were decided by the caller; an end
        // without a rule of its own is not retried.
        other => (false, other.describe()),
    }
}

/// Decides about a model call: the status table, `x-should-retry`, and the error
/// kinds that go straight to the next link. `None` means it was answered.
pub fn classify_call(end: &End, call: &CallReport, retry: &RetryPolicy) -> Option<Verdict> {
    let verdict = Verdict::new;
    match end {
        End::Answered => None,
        End::Interrupted { signal } => Some(Verdict::interrupted(format!(
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
        End::Status { status, .. } => Some(status_verdict(*status, call, retry)),
        End::Exited { .. } | End::Signaled { .. } | End::SpawnFailed { .. } => {
            (!end.success()).then(|| Verdict::foreign(end))
        }
    }
}

/// Decides about an HTTP error status: the error kinds the server named, redirects,
/// `x-should-retry`, then the policy's status lists and the server-error rule.
fn status_verdict(s: u16, call: &CallReport, retry: &RetryPolicy) -> Verdict {
    let verdict = Verdict::new;
    match call.error {
        Some(CallError::ContextLength) => {
            return verdict(
                FailureClass::ContextLength,
                false,
                format!("HTTP {s}: context length exceeded; the next link may take it"),
            );
        }
        Some(CallError::ContentPolicy) => {
            return verdict(
                FailureClass::ContentPolicy,
                false,
                format!("HTTP {s}: refused on content policy"),
            );
        }
        _ => {}
    }
    // A redirect that came back was not followed (it left the provider's origin):
    // asking again gets the same answer.
    if (300..400).contains(&s) {
        let why = call
            .message
            .clone()
            .unwrap_or_else(|| format!("HTTP {s}: a redirect that was not followed"));
        return verdict(FailureClass::Status, false, why);
    }
    let class = if matches!(s, 401 | 403) || call.error == Some(CallError::Auth) {
        FailureClass::Auth
    } else {
        FailureClass::Status
    };
    let (retry, rule) = if let Some(b) = call.should_retry {
        (b, format!("the server said x-should-retry: {b}"))
    } else if retry.never.status.contains(&s) {
        (false, format!("retry.never.status contains {s}"))
    } else if retry.on.status.contains(&s) {
        (true, format!("retry.on.status contains {s}"))
    } else if (500..600).contains(&s) && s != 501 {
        (true, format!("HTTP {s} is a server error"))
    } else {
        (false, format!("HTTP {s} is not in retry.on.status"))
    };
    verdict(class, retry, rule)
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
        classify_command(&end, matched, &pats, &p.retry, &p.fallback.critical)
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
    fn fail_on_output_makes_an_exit_0_a_failure_that_on_and_never_judge() {
        // Indices: on.output 0, never.output 1, fail_on.output 2 and 3.
        let p = policy(
            "version: 1\nretry:\n  on: { output: ['Overloaded'] }\n  never: { output: ['usage limit'] }\n  fail_on: { output: ['^API Error', 'usage limit'] }\n",
        );
        assert_eq!(decide(&p, End::Exited { code: 0 }, &[]), None);
        assert_eq!(decide(&p, End::Exited { code: 0 }, &[0]), None, "on alone");
        let v = decide(&p, End::Exited { code: 0 }, &[0, 2]).unwrap();
        assert_eq!((v.class, v.retry), (FailureClass::Exit, true));
        assert_eq!(
            v.rule,
            "exit 0, but retry.fail_on.output matched `^API Error`; retry.on.output matched `Overloaded`"
        );
        let v = decide(&p, End::Exited { code: 0 }, &[1, 3]).unwrap();
        assert!(!v.retry);
        assert_eq!(
            v.rule,
            "exit 0, but retry.fail_on.output matched `usage limit`; retry.never.output matched `usage limit`"
        );
        let v = decide(&p, End::Exited { code: 0 }, &[2]).unwrap();
        assert!(!v.retry);
        assert_eq!(
            v.rule,
            "exit 0, but retry.fail_on.output matched `^API Error`; no retry.on.output matched"
        );
        let pats = LinkPatterns::new(&p.retry, &p.fallback.critical);
        assert!(pats.fails_success(&[0, 3]));
        assert!(!pats.fails_success(&[0, 1]));
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
