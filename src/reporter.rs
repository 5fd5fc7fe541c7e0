//! Everything backstop itself prints while a run goes: the one owner of indicatif and
//! console.
//!
//! On a terminal: a spinner on stderr with the link, the attempt and a countdown of
//! the backoff, shown only between attempts so it never draws over the command's
//! own output. Elsewhere: one plain line per retry or fallback, and under GitHub
//! Actions a `::warning` annotation as well. Always one summary line at the end,
//! unless `-q`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::events::{AttemptReport, Event, EventSink, Outcome, RunSummary};
use crate::policy::values::format_duration;

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
    err: Box<dyn Write + Send>,
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
            err,
        }
    }

    fn line(&mut self, text: &str) {
        if let Some(s) = &self.spinner {
            s.suspend(|| {});
        }
        let _ = writeln!(self.err, "{} {text}", style("backstop:").dim().for_stderr());
    }

    fn annotate(&mut self, title: &str, text: &str) {
        if self.github && self.mode != Mode::Quiet {
            let _ = writeln!(
                self.err,
                "::warning title={title}::{}",
                escape_annotation(text)
            );
        }
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
                let text = format!(
                    "rollback incomplete: {} of {paths} change(s) could not be put back to before {before}:",
                    failed.len()
                );
                self.line(&style(text).red().bold().for_stderr().to_string());
                for (path, why) in failed {
                    self.line(&format!("  not restored: {path}: {why}"));
                }
                self.annotate(
                    "backstop rollback incomplete",
                    &format!("{} path(s) not restored", failed.len()),
                );
            }
            Event::PutBackRefused { before, why } => {
                self.clear_spinner();
                let text =
                    format!("rollback incomplete: nothing was put back to before {before}: {why}");
                self.line(&style(text).red().bold().for_stderr().to_string());
                self.annotate("backstop rollback refused", why);
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

    fn failure_text(report: &AttemptReport) -> String {
        let rule = report
            .verdict
            .as_ref()
            .map(|v| v.rule.as_str())
            .unwrap_or("");
        format!(
            "attempt {}/{} failed: {} ({rule})",
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
            } => {
                let failed = self
                    .last_failure
                    .as_ref()
                    .map(Self::failure_text)
                    .unwrap_or_default();
                let wait = format_duration(crate::policy::values::round_ms(*delay));
                let where_ = if *link == 0 {
                    String::new()
                } else {
                    format!("fallback {link}: ")
                };
                if self.mode == Mode::Terminal {
                    self.line(&format!("{where_}{}", style(&failed).yellow().for_stderr()));
                    let class = self
                        .last_failure
                        .as_ref()
                        .and_then(|r| r.verdict.as_ref())
                        .map_or("", |v| v.class.as_str());
                    let msg = format!(
                        "link {}/{links} · attempt {next_attempt}/{max_attempts} · {class} · next in",
                        link + 1
                    );
                    self.start_countdown(msg, *delay);
                } else {
                    self.line(&format!("{where_}{failed}; retrying in {wait}"));
                }
                self.annotate(
                    "backstop retry",
                    &format!("{where_}{failed}; retrying in {wait}"),
                );
            }
            Event::Fallback {
                to,
                links,
                to_name,
                reason,
                ..
            } => {
                self.clear_spinner();
                let failed = self
                    .last_failure
                    .take()
                    .map(|r| Self::failure_text(&r) + "; ")
                    .unwrap_or_default();
                // The failure line already names the rule: say only which way it went.
                let reason = match reason.split_once(": ") {
                    Some((short @ ("not retryable" | "critical failure"), _))
                        if !failed.is_empty() =>
                    {
                        short
                    }
                    _ => reason.as_str(),
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
                self.line(&shown);
                self.annotate("backstop fallback", &text);
            }
            Event::Restored { paths } => {
                self.line(&format!("put the tree back to the run's snapshot ({paths} path(s)) before the next attempt"));
            }
            Event::RolledBack {
                paths,
                before,
                kept,
                failed,
            } => {
                if failed.is_empty() {
                    let text = format!(
                        "rolled back {paths} change(s): the tree is as it was before {before}"
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
            Event::PutBackRefused { .. } => self.put_back_problems(event),
            Event::StepStarted { index, steps, name } => {
                self.clear_spinner();
                let text = format!("step {}/{steps}: {name}", index + 1);
                self.line(&style(text).bold().for_stderr().to_string());
            }
            Event::Warning(w) => {
                let text = format!("{} {w}", style("warning:").yellow().bold().for_stderr());
                self.line(&text);
            }
            Event::Finished(summary) => {
                self.clear_spinner();
                let text = summary_line(summary);
                let shown = match summary.outcome {
                    Outcome::Succeeded => style(text).green().for_stderr().to_string(),
                    Outcome::Degraded => style(text).yellow().for_stderr().to_string(),
                    _ => style(text).red().for_stderr().to_string(),
                };
                self.line(&shown);
            }
        }
    }
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

/// GitHub's workflow-command escaping of a message.
fn escape_annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}
