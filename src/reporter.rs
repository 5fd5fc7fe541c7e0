//! Everything backstop itself prints while a run goes: the one owner of indicatif and
//! console.
//!
//! On a terminal: a spinner on stderr with the link, the attempt and a countdown of
//! the backoff, shown only between attempts so it never draws over the command's
//! own output. Elsewhere: one plain line per retry or fallback; under GitHub
//! Actions that line is a `::warning` annotation instead, and a final failure's
//! summary an `::error`. Always one summary line at the end, unless `-q`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::events::{AttemptReport, Event, EventSink, Outcome, RunSummary};
use crate::policy::values::format_duration;
use crate::reason::LinkFailure;

/// How many of a rollback's paths its message names; the count covers the rest.
pub const SHOWN_PATHS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    /// Plain lines, for logs and pipes.
    Plain,
    /// A spinner and colour, for a person at a terminal.
    Terminal,
}

pub struct Reporter {
    mode: Mode,
    github: bool,
    last_failure: Option<AttemptReport>,
    spinner: Option<ProgressBar>,
    /// The backoff being counted down, in milliseconds.
    countdown: Arc<AtomicU64>,
    /// Whether the summary line waits for [`Reporter::finish_summary`].
    hold: bool,
    held: Option<RunSummary>,
    err: Box<dyn Write + Send>,
}

/// The head of a rollback that could not put every path back. A path may fail more
/// than once (its read, then the check after): never "5 of 3 change(s)".
fn incomplete(problems: usize, paths: usize, before: &str) -> String {
    match problems {
        n if n <= paths => format!(
            "rollback incomplete: {n} of {paths} change(s) could not be put back to before {before}:"
        ),
        n => format!(
            "rollback incomplete: {n} problem(s) putting back {paths} change(s) to before {before}:"
        ),
    }
}

impl Reporter {
    /// The reporter a command line asks for: quiet with `-q`, a spinner on a terminal,
    /// plain lines elsewhere, and annotations under GitHub Actions.
    pub fn for_stderr(quiet: bool) -> Reporter {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Mode::Terminal
        } else {
            Mode::Plain
        };
        let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        Reporter::new(mode, github)
    }

    pub fn new(mode: Mode, github: bool) -> Reporter {
        Reporter::with_writer(mode, github, Box::new(std::io::stderr()))
    }

    /// A reporter that writes to `err` (a buffer, in tests).
    pub fn with_writer(mode: Mode, github: bool, err: Box<dyn Write + Send>) -> Reporter {
        Reporter {
            mode,
            github,
            last_failure: None,
            spinner: None,
            countdown: Arc::new(AtomicU64::new(0)),
            hold: false,
            held: None,
            err,
        }
    }

    fn line(&mut self, text: &str) {
        if let Some(s) = &self.spinner {
            s.suspend(|| {});
        }
        let _ = writeln!(self.err, "{} {text}", style("backstop:").dim().for_stderr());
    }

    /// Keeps the summary line until [`Reporter::finish_summary`] adds backstop's own time.
    pub fn hold_summary(&mut self) {
        self.hold = true;
    }

    /// Prints the summary held back, with backstop's own time when it took a snapshot.
    pub fn finish_summary(&mut self, spent: Option<crate::record::BackstopTime>) {
        if let Some(summary) = self.held.take() {
            self.summary(&summary, &spent.map(backstop_time).unwrap_or_default());
        }
    }

    fn summary(&mut self, summary: &RunSummary, spent: &str) {
        self.clear_spinner();
        let text = format!("{}{spent}", summary_line(summary));
        match summary.outcome {
            Outcome::Succeeded | Outcome::OutputClosed => {
                let shown = match summary.outcome {
                    Outcome::Succeeded => style(&text).green(),
                    _ => style(&text).red(),
                };
                self.line(&shown.for_stderr().to_string());
            }
            Outcome::Degraded => {
                let shown = style(&text).yellow().for_stderr().to_string();
                self.say("warning", "backstop", &shown, &text);
            }
            // Failed, escalated, interrupted: the run did not do its job.
            _ => {
                let shown = style(&text).red().for_stderr().to_string();
                self.say("error", "backstop", &shown, &text);
            }
        }
    }

    /// A line said even with `-q`: what a put-back could not do (the tree is not
    /// what was asked for).
    pub fn always(&mut self, text: &str) {
        self.line(text);
    }

    /// A warning of backstop's own (an export that failed): said even with `-q`;
    /// under GitHub Actions as a `::warning` annotation.
    pub fn warn(&mut self, title: &str, text: &str) {
        let shown = format!("{} {text}", style("warning:").yellow().bold().for_stderr());
        self.say("warning", title, &shown, text);
    }

    /// A line of backstop's own, said once (never with `-q`).
    pub fn note(&mut self, text: &str) {
        if self.mode != Mode::Quiet {
            self.line(text);
        }
    }

    /// A line of backstop's own that is an annotation under GitHub Actions (`level`:
    /// `warning` or `error`, titled `title`, saying `text`), else `shown`; never with `-q`.
    pub fn annotate(&mut self, level: &str, title: &str, shown: &str, text: &str) {
        if self.mode != Mode::Quiet {
            self.say(level, title, shown, text);
        }
    }

    /// One line for an event: under GitHub Actions the annotation replaces the plain
    /// line (`shown`, which may be styled), so a log never says the same thing twice.
    fn say(&mut self, level: &str, title: &str, shown: &str, text: &str) {
        if self.github && self.mode != Mode::Quiet {
            if let Some(s) = &self.spinner {
                s.suspend(|| {});
            }
            let _ = writeln!(
                self.err,
                "::{level} title={}::{}",
                escape_property(title),
                escape_annotation(text)
            );
        } else {
            self.line(shown);
        }
    }

    /// What a rollback put back, the directories it kept, and what it could not put back.
    fn rolled_back(&mut self, event: &Event) {
        let Event::RolledBack {
            paths,
            names,
            before,
            kept,
            failed,
        } = event
        else {
            return;
        };
        if failed.is_empty() {
            let text = format!(
                "rolled back {paths} change(s) ({}): the tree is as it was before {before}",
                name_some(names, *paths)
            );
            self.line(&style(text).cyan().for_stderr().to_string());
        }
        for dir in kept {
            self.line(&format!(
                "kept {dir}: it holds files outside the snapshot's scope"
            ));
        }
        self.put_back_problems(event);
    }

    /// What a rollback could not put back, path by path.
    fn put_back_problems(&mut self, event: &Event) {
        match event {
            Event::RolledBack {
                paths,
                before,
                failed,
                ..
            } if !failed.is_empty() => {
                self.clear_spinner();
                let text = incomplete(failed.len(), *paths, before);
                let shown = style(&text).red().bold().for_stderr().to_string();
                self.say("error", "backstop rollback incomplete", &shown, &text);
                for (path, why) in failed {
                    self.line(&format!("  not restored: {path}: {why}"));
                }
            }
            Event::PutBackRefused { before, why } => {
                self.clear_spinner();
                let text =
                    format!("rollback incomplete: nothing was put back to before {before}: {why}");
                let shown = style(&text).red().bold().for_stderr().to_string();
                self.say("error", "backstop rollback refused", &shown, &text);
            }
            _ => {}
        }
    }

    fn clear_spinner(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }

    fn start_countdown(&mut self, message: String, delay: Duration) {
        self.clear_spinner();
        self.countdown
            .store(crate::policy::values::millis(delay), Ordering::Relaxed);
        let total = Arc::clone(&self.countdown);
        let style = ProgressStyle::with_template("{spinner:.cyan} {msg} {countdown:.bold}")
            .expect("static template")
            .with_key(
                "countdown",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let total = Duration::from_millis(total.load(Ordering::Relaxed));
                    let left = total.saturating_sub(state.elapsed());
                    let _ = write!(w, "{:.1}s", left.as_secs_f64());
                },
            );
        let bar =
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        self.spinner = Some(bar);
    }

    /// The last failure, and the wait before the next attempt: a countdown on a
    /// terminal, a line elsewhere.
    fn waiting(&mut self, link: usize, links: usize, (next, max): (u32, u32), delay: Duration) {
        let failed = self
            .last_failure
            .as_ref()
            .map(Self::failure_text)
            .unwrap_or_default();
        let wait = format_duration(crate::policy::values::round_ms(delay));
        let where_ = if link == 0 {
            String::new()
        } else {
            format!("fallback {link}: ")
        };
        let text = format!("{where_}{failed}; retrying in {wait}");
        if self.github {
            self.say("warning", "backstop retry", &text, &text);
        } else if self.mode == Mode::Terminal {
            self.line(&format!("{where_}{}", style(&failed).yellow().for_stderr()));
            let class = self
                .last_failure
                .as_ref()
                .and_then(|r| r.verdict.as_ref())
                .map_or("", |v| v.class.as_str());
            let msg = countdown_text(link, links, next, max, class);
            self.start_countdown(msg, delay);
        } else {
            self.line(&text);
        }
    }

    /// The last failure, why the link ended, and the link the chain goes on to.
    fn fallback(&mut self, to: usize, links: usize, to_name: &str, why: Option<&LinkFailure>) {
        self.clear_spinner();
        let failed = self
            .last_failure
            .take()
            .map(|r| Self::failure_text(&r) + "; ")
            .unwrap_or_default();
        // The failure line already names the rule: say only which way it went.
        let reason = match why {
            // The skip was just told, with its times.
            Some(LinkFailure::BreakerOpen { .. }) => "breaker open".to_string(),
            Some(why) => match why.without_rule() {
                Some(short) if !failed.is_empty() => short.to_string(),
                _ => why.to_string(),
            },
            None => String::new(),
        };
        let text = format!(
            "{failed}{reason}; falling back to {to}/{}: {to_name}",
            links - 1
        );
        let shown = if self.mode == Mode::Terminal {
            style(&text).yellow().for_stderr().to_string()
        } else {
            text.clone()
        };
        self.say("warning", "backstop fallback", &shown, &text);
    }

    fn failure_text(report: &AttemptReport) -> String {
        let rule = report
            .verdict
            .as_ref()
            .map(|v| v.rule.as_str())
            .unwrap_or("");
        let injected = if report.injected.is_some() {
            " [injected]"
        } else {
            ""
        };
        format!(
            "attempt {}/{} failed: {}{injected} ({rule})",
            report.attempt,
            report.max_attempts,
            report.end.describe()
        )
    }
}

impl EventSink for Reporter {
    fn event(&mut self, event: &Event) {
        if self.mode == Mode::Quiet {
            // An incomplete put-back is never silent: the tree is not as backstop says.
            if let Event::RolledBack { .. } | Event::PutBackRefused { .. } = event {
                self.put_back_problems(event);
            }
            return;
        }
        match event {
            Event::AttemptStarted { .. } => self.clear_spinner(),
            Event::AttemptFinished(report) => {
                if report.verdict.is_some() {
                    self.last_failure = Some(report.clone());
                }
            }
            Event::Waiting {
                link,
                links,
                next_attempt,
                max_attempts,
                delay,
                ..
            } => self.waiting(*link, *links, (*next_attempt, *max_attempts), *delay),
            Event::Fallback {
                to,
                links,
                to_name,
                reason,
                ..
            } => self.fallback(*to, *links, to_name, reason.as_ref()),
            Event::Restored { paths } => {
                self.line(&format!("put the tree back to the run's snapshot ({paths} path(s)) before the next attempt"));
            }
            Event::RolledBack { .. } => self.rolled_back(event),
            Event::PutBackRefused { .. } => self.put_back_problems(event),
            Event::StepStarted { index, steps, name } => {
                // The step before this one is said before this one starts.
                if let Some(previous) = self.held.take() {
                    self.summary(&previous, "");
                }
                self.clear_spinner();
                let text = format!("step {}/{steps}: {name}", index + 1);
                self.line(&style(text).bold().for_stderr().to_string());
            }
            Event::BreakerSkipped(skip) => {
                self.clear_spinner();
                let text = format!(
                    "skipped link {} ({}): breaker open since {}, next probe at {}",
                    skip.link, skip.link_name, skip.open_since, skip.next_probe
                );
                self.say("warning", "backstop breaker", &text, &text);
            }
            Event::RetriesOff { link, link_name } => {
                self.clear_spinner();
                let text = format!(
                    "retries off: the retry budget is exhausted (link {link}, {link_name}); first attempts still run"
                );
                self.say("warning", "backstop retry budget", &text, &text);
            }
            Event::Warning(w) => {
                let text = format!("{} {w}", style("warning:").yellow().bold().for_stderr());
                self.line(&text);
            }
            Event::Finished(summary) => {
                // A task's earlier step that finished is said as it was.
                if let Some(previous) = self.held.take() {
                    self.summary(&previous, "");
                }
                if self.hold {
                    self.held = Some(summary.clone());
                } else {
                    self.summary(summary, "");
                }
            }
        }
    }
}

impl Drop for Reporter {
    /// A run that stopped on an error after its command still says how the command ended.
    fn drop(&mut self) {
        if let Some(summary) = self.held.take() {
            self.summary(&summary, "");
        }
    }
}

/// ` (+2.5 s backstop: snapshot 2.4 s, rollback 80 ms)`.
fn backstop_time(spent: crate::record::BackstopTime) -> String {
    let mut parts = vec![format!("snapshot {}", format_elapsed(spent.snapshot_ms))];
    if spent.rollback_ms > 0 {
        parts.push(format!("rollback {}", format_elapsed(spent.rollback_ms)));
    }
    format!(
        " (+{} backstop: {})",
        format_elapsed(spent.total_ms()),
        parts.join(", ")
    )
}

/// The spinner's words while it waits. Links are counted as everywhere else (log
/// lines, `show`, `BACKSTOP_LINK`): 0 is the command, fallback N is link N.
fn countdown_text(link: usize, links: usize, next: u32, max: u32, class: &str) -> String {
    let fallback = if link == 0 {
        String::new()
    } else {
        format!("fallback {link}/{} · ", links.saturating_sub(1))
    };
    format!("{fallback}attempt {next}/{max} · {class} · next in")
}

/// "succeeded on attempt 3/4 after 2 retries in 1.2 s", "failed: exit 1 after 4
/// attempts; fallback 2/3 gave the default answer".
pub fn summary_line(s: &RunSummary) -> String {
    let elapsed = format_elapsed(s.elapsed_ms);
    let retries = match s.retries {
        0 => String::new(),
        1 => " after 1 retry".to_string(),
        n => format!(" after {n} retries"),
    };
    let attempts = match s.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    let fallback = format!("fallback {}/{}", s.link, s.links - 1);
    let last = s.last_failure.as_deref().unwrap_or("no attempt");
    match s.outcome {
        Outcome::Succeeded if s.link == 0 => format!(
            "succeeded on attempt {}/{}{retries} in {elapsed}",
            s.link_attempts, s.link_max_attempts
        ),
        Outcome::Succeeded => format!(
            "succeeded via {fallback} ({}) on its attempt {}/{}, after {attempts} in all, in {elapsed}",
            s.link_name, s.link_attempts, s.link_max_attempts
        ),
        Outcome::Degraded => {
            format!("failed: {last} after {attempts}; {fallback} gave the default answer")
        }
        Outcome::Escalated => format!(
            "failed: {last} after {attempts}; escalated ({fallback}), exit {}",
            s.exit_code
        ),
        Outcome::Failed => {
            let why = s
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("failed: {last} after {attempts} in {elapsed}{why}")
        }
        Outcome::Declined => format!(
            "declined: {}; exit {}",
            s.reason.as_deref().unwrap_or("a step was not approved"),
            s.exit_code
        ),
        Outcome::Interrupted => format!(
            "interrupted after {attempts} in {elapsed}; exit {}",
            s.exit_code
        ),
        Outcome::OutputClosed => format!(
            "stopped: the reader of backstop's output went away ({last}); not retried, not rolled back; exit {}",
            s.exit_code
        ),
    }
}

/// `3 ms`, `1.2 s`, `2 m 5 s`.
pub fn format_elapsed(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} m {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// `a.txt, b.txt and 3 more`: the first paths of a rollback, then how many are not named.
fn name_some(names: &[String], count: usize) -> String {
    let more = count.saturating_sub(names.len());
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

/// GitHub's workflow-command escaping of a property (`title=`).
fn escape_property(text: &str) -> String {
    escape_annotation(text)
        .replace(':', "%3A")
        .replace(',', "%2C")
}

/// GitHub's workflow-command escaping of a message.
fn escape_annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod countdown_tests {
    use super::countdown_text;

    /// One numbering everywhere: the spinner on fallback 2 of 3 says "fallback 2/3",
    /// as the log line "falling back to 2/3" and `BACKSTOP_LINK=2` do.
    #[test]
    fn the_spinner_counts_links_as_the_log_lines_do() {
        assert_eq!(
            countdown_text(2, 4, 3, 5, "network"),
            "fallback 2/3 · attempt 3/5 · network · next in"
        );
        assert_eq!(
            countdown_text(0, 4, 2, 3, "exit"),
            "attempt 2/3 · exit · next in"
        );
    }
}

#[cfg(test)]
mod incomplete_tests {
    use super::incomplete;

    #[test]
    fn a_rollback_never_says_more_changes_failed_than_it_had() {
        assert_eq!(
            incomplete(2, 3, "the run"),
            "rollback incomplete: 2 of 3 change(s) could not be put back to before the run:"
        );
        assert_eq!(
            incomplete(5, 3, "the run"),
            "rollback incomplete: 5 problem(s) putting back 3 change(s) to before the run:"
        );
    }
}

#[cfg(test)]
mod output_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use super::{Mode, Reporter};
    use crate::attempt::End;
    use crate::classify::{FailureClass, Verdict};
    use crate::events::{AttemptReport, Event, EventSink, Layer};
    use crate::reason::LinkFailure;

    /// A writer the test reads back after the reporter has written to it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a plain (or, with `github`, an annotating) reporter prints for `events`.
    fn printed(github: bool, events: &[Event]) -> String {
        let out = Captured::default();
        let mut reporter = Reporter::with_writer(Mode::Plain, github, Box::new(out.clone()));
        for event in events {
            reporter.event(event);
        }
        drop(reporter);
        let bytes = out.0.lock().unwrap().clone();
        console::strip_ansi_codes(&String::from_utf8(bytes).unwrap()).into_owned()
    }

    fn failed_attempt(rule: &str) -> Event {
        Event::AttemptFinished(AttemptReport {
            layer: Layer::Primary,
            link: 0,
            link_name: "cmd".into(),
            attempt: 1,
            max_attempts: 1,
            started_at: SystemTime::now(),
            duration_ms: 3,
            end: End::Exited { code: 2 },
            exit_code: 2,
            verdict: Some(Verdict {
                class: FailureClass::Exit,
                retry: false,
                critical: false,
                stop: false,
                rule: rule.into(),
            }),
            delay_ms: None,
            delay_reason: None,
            call: None,
            injected: None,
        })
    }

    fn fallback(reason: Option<LinkFailure>) -> Event {
        Event::Fallback {
            from: 0,
            to: 1,
            links: 2,
            to_name: "other".into(),
            reason,
        }
    }

    /// After the attempt's line names the rule, the fallback says only which way the
    /// verdict went; any other reason is said in full.
    #[test]
    fn a_fallback_line_names_the_rule_once() {
        let rule = "exit 2 is not in retry.on.exit_codes";
        let not_retryable = LinkFailure::NotRetryable { rule: rule.into() };
        assert_eq!(
            printed(
                false,
                &[failed_attempt(rule), fallback(Some(not_retryable.clone()))]
            ),
            format!(
                "backstop: attempt 1/1 failed: exit 2 ({rule}); not retryable; falling back to 1/1: other\n"
            )
        );
        // No failure line before it (the link could not be attempted): the whole reason.
        assert_eq!(
            printed(false, &[fallback(Some(not_retryable))]),
            format!("backstop: not retryable: {rule}; falling back to 1/1: other\n")
        );
        let out_of_retries = LinkFailure::OutOfRetries { attempt: 1, max: 1 };
        assert_eq!(
            printed(
                true,
                &[failed_attempt(rule), fallback(Some(out_of_retries))]
            ),
            format!(
                "::warning title=backstop fallback::attempt 1/1 failed: exit 2 ({rule}); out of retries (1/1); falling back to 1/1: other\n"
            )
        );
    }
}
