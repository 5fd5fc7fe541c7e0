//! The retry and fallback engine: runs a command down its chain of links.
//!
//! Link 0 is the command itself; the policy's `fallback.chain` follows. Each `run`
//! link is attempted until it succeeds, fails in a way its `retry` rules do not
//! retry, or runs out of attempts; then the engine moves to the next link. A
//! `default` link answers with fixed output; an `escalate` link hands the failure
//! summary to a hook. Critical failures skip every link but `escalate`. One deadline
//! (`timeout.total`) covers the whole chain: no attempt outlives it, and no delay
//! that would cross it is started.
//!
//! The engine never sleeps but through tokio's clock (tests pause it) and never
//! prints: it emits [`Event`]s.
//!
//! This file walks the chain; `chain` builds it from the policy, `link` runs one
//! link's attempts, and `decide` says, without side effects, what follows each.

use std::ops::ControlFlow;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::attempt::{AttemptSpec, Attempter, End, Prompt, StdinFrom};
use crate::classify::Verdict;
use crate::events::{Event, EventSink, Outcome, RunSummary};
use crate::policy::values::millis;
use crate::policy::{DefaultAnswer, Escalate, Policy};
use crate::reason::{LinkFailure, StopReason};
use crate::scan::Scanner;

mod chain;
mod decide;
mod link;

use chain::{ChainLink, LinkKind, chain, repeats_primary};
use decide::{LinkEnd, Position, Work};

/// A signal that asked backstop to stop, as seen by everything that waits.
pub type Interrupt = watch::Receiver<Option<i32>>;

pub struct Engine<'a, A: Attempter> {
    policy: &'a Policy,
    attempter: A,
    sink: &'a mut dyn EventSink,
    interrupt: Interrupt,
    run_id: String,
    start: Instant,
    attempts: u32,
    retries: u32,
    last: Option<(End, Verdict)>,
    checkpoint: Option<&'a mut dyn Checkpoint>,
    /// The prompt of a `backstop call`; `call` links without their own use it.
    prompt: Option<Prompt>,
    spent_usd: f64,
    spent_tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
    answer: Option<String>,
    model_used: Option<String>,
    /// A key refused or missing: the policy's or the environment's fault, which no
    /// `default` answer may cover up (the run ends 125).
    config_error: Option<String>,
    /// Breakers and the retry budget across runs (a no-op unless the policy asks).
    guard: Option<&'a mut crate::state::Guard>,
}

/// Puts the tree back to where the run started (`rollback.between_attempts: restore`).
pub trait Checkpoint {
    /// Returns how many paths were put back.
    fn restore(&mut self) -> anyhow::Result<usize>;
}

/// What link 0 is: the user's command, or a model call.
#[derive(Clone, Copy, Debug)]
pub enum Primary<'p> {
    Command(&'p [String]),
    /// The model's name under `models`.
    Call(&'p str),
}

/// The chain's failures so far.
#[derive(Default)]
struct Failures {
    /// The last link that failed, and why.
    last: Option<(usize, LinkFailure)>,
    /// A `default` link was passed by: once a key was refused, the summary says it
    /// did not answer for that.
    default_skipped: bool,
}

impl Failures {
    fn critical(&self) -> bool {
        self.last.as_ref().is_some_and(|(_, f)| f.is_critical())
    }

    fn reason(&self) -> Option<LinkFailure> {
        self.last.as_ref().map(|(_, f)| f.clone())
    }
}

/// How the chain ended, before it is summed up.
struct Ending {
    outcome: Outcome,
    exit_code: u8,
    /// The link that produced the outcome.
    link: usize,
    /// Attempts of that link, and its maximum; `(0, 0)` unless it succeeded.
    link_attempts: (u32, u32),
    reason: Option<StopReason>,
}

impl Ending {
    fn new(outcome: Outcome, exit_code: u8, link: usize, reason: Option<StopReason>) -> Ending {
        Ending {
            outcome,
            exit_code,
            link,
            link_attempts: (0, 0),
            reason,
        }
    }

    fn interrupted(link: usize, signal: i32) -> Ending {
        Ending::new(
            Outcome::Interrupted,
            crate::exit_code::for_signal(signal),
            link,
            Some(StopReason::Interrupted { signal }),
        )
    }
}

impl<'a, A: Attempter> Engine<'a, A> {
    pub fn new(
        policy: &'a Policy,
        attempter: A,
        sink: &'a mut dyn EventSink,
        interrupt: Interrupt,
        run_id: String,
    ) -> Self {
        Engine {
            policy,
            attempter,
            sink,
            interrupt,
            run_id,
            start: Instant::now(),
            attempts: 0,
            retries: 0,
            last: None,
            checkpoint: None,
            prompt: None,
            spent_usd: 0.0,
            spent_tokens: 0,
            input_tokens: 0,
            output_tokens: 0,
            answer: None,
            model_used: None,
            config_error: None,
            guard: None,
        }
    }

    /// Asks `guard` before each attempt (breakers) and each retry (the budget).
    pub fn with_guard(mut self, guard: &'a mut crate::state::Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The prompt for model calls that do not carry their own.
    pub fn with_prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Restores the tree through `checkpoint` before each retry and fallback link,
    /// when the policy asks for it.
    pub fn with_checkpoint(mut self, checkpoint: &'a mut dyn Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Runs `command` and its fallbacks to the end, and says how it went.
    pub async fn run(self, command: &[String]) -> RunSummary {
        self.run_primary(Primary::Command(command)).await
    }

    /// Runs link 0 — a command or a model call — and the fallback chain after it.
    pub async fn run_primary(mut self, primary: Primary<'_>) -> RunSummary {
        self.start = Instant::now();
        let links = chain(self.policy, primary);
        // A deadline past the clock's range is no deadline.
        let deadline = self
            .policy
            .timeout
            .total()
            .and_then(|t| self.start.checked_add(t));
        let ending = self.walk(&links, primary, deadline).await;
        self.finish(ending, &links)
    }

    /// Goes down the chain until a link ends the run, or past its end.
    async fn walk(
        &mut self,
        links: &[ChainLink<'_>],
        primary: Primary<'_>,
        deadline: Option<Instant>,
    ) -> Ending {
        let mut failures = Failures::default();
        for (i, link) in links.iter().enumerate() {
            if self.skips(link, failures.critical(), deadline) {
                failures.default_skipped |= matches!(link.kind, LinkKind::Default(_));
                continue;
            }
            if i > 0 {
                if let Some(model) = repeats_primary(primary, link) {
                    self.sink.event(&Event::Warning(format!(
                        "skipping fallback {i}/{} ({}): model `{model}` was already tried as link 0",
                        links.len() - 1,
                        link.name,
                    )));
                    continue;
                }
                self.sink.event(&Event::Fallback {
                    from: failures.last.as_ref().map_or(0, |(from, _)| *from),
                    to: i,
                    links: links.len(),
                    to_name: link.name.clone(),
                    reason: failures.reason(),
                });
            }
            let pos = Position {
                link: i,
                links: links.len(),
                attempt: 1,
                max: link.retry.max_attempts,
            };
            match self.run_one(pos, link, deadline, &failures).await {
                ControlFlow::Break(ending) => return ending,
                ControlFlow::Continue(failure) => failures.last = Some((i, failure)),
            }
        }
        self.chain_failed(failures, links.len())
    }

    /// Whether the chain passes `link` by: after a critical failure every link but
    /// `escalate`; an attempted link once the deadline has passed; a `default` once a
    /// key was refused.
    fn skips(&self, link: &ChainLink<'_>, critical: bool, deadline: Option<Instant>) -> bool {
        match link.kind {
            LinkKind::Escalate(_) => false,
            _ if critical => true,
            LinkKind::Run(_) | LinkKind::Call(_) => deadline.is_some_and(|d| Instant::now() >= d),
            LinkKind::Default(_) => self.config_error.is_some(),
        }
    }

    /// Runs one link: the run ends with it (`Break`), or the chain goes on because it
    /// failed (`Continue`).
    async fn run_one(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        deadline: Option<Instant>,
        failures: &Failures,
    ) -> ControlFlow<Ending, LinkFailure> {
        let i = pos.link;
        let work = match &link.kind {
            LinkKind::Run(argv) => Work::Command(argv),
            LinkKind::Call(call) => match self.call_work(call) {
                Ok(work) => Work::Call(work),
                Err(failure) => return ControlFlow::Continue(failure),
            },
            &LinkKind::Default(answer) => {
                return ControlFlow::Break(self.answer_by_default(answer, i, failures).await);
            }
            &LinkKind::Escalate(esc) => {
                return ControlFlow::Break(self.escalate(esc, i, failures).await);
            }
        };
        let ending = match self.run_link(pos, link, &work, deadline).await {
            LinkEnd::Failed(failure) => return ControlFlow::Continue(failure),
            LinkEnd::Succeeded { attempt, max } => Ending {
                link_attempts: (attempt, max),
                ..Ending::new(Outcome::Succeeded, 0, i, None)
            },
            LinkEnd::Stop { signal } => Ending::interrupted(i, signal),
            LinkEnd::OutputClosed => Ending::new(
                Outcome::OutputClosed,
                crate::exit_code::for_signal(libc::SIGPIPE),
                i,
                Some(StopReason::OutputClosed),
            ),
        };
        ControlFlow::Break(ending)
    }

    /// A `default` link: its fixed answer where the command's output would have gone.
    async fn answer_by_default(
        &mut self,
        answer: &DefaultAnswer,
        link: usize,
        failures: &Failures,
    ) -> Ending {
        if let Some(signal) = self.attempter.answer(answer).await {
            return Ending::interrupted(link, signal);
        }
        // The answer of the run, for `call --json`, whichever link gave it.
        self.answer = Some(answer.stdout.clone());
        let reason = failures.reason().map(StopReason::Link);
        Ending::new(Outcome::Degraded, answer.exit_code, link, reason)
    }

    /// An `escalate` link: its hook gets the failure summary, as JSON on its stdin.
    async fn escalate(&mut self, esc: &Escalate, link: usize, failures: &Failures) -> Ending {
        let code = esc.exit_code.unwrap_or_else(|| self.final_code());
        let failure = failures.reason();
        let stdin = self.failure_summary(failure.as_ref());
        let env = vec![("BACKSTOP_RUN_ID".to_string(), self.run_id.clone())];
        self.hook(&esc.run.0, "escalate", env, StdinFrom::Bytes(stdin))
            .await;
        Ending::new(
            Outcome::Escalated,
            code,
            link,
            failure.map(StopReason::Link),
        )
    }

    /// The end of a chain every link of which failed or was passed by.
    fn chain_failed(&self, failures: Failures, links: usize) -> Ending {
        let reason = if self.config_error.is_some() {
            Some(StopReason::ConfigError {
                default_skipped: failures.default_skipped,
            })
        } else {
            failures.reason().map(StopReason::Link)
        };
        let from = failures.last.as_ref().map_or(0, |(from, _)| *from);
        Ending::new(
            Outcome::Failed,
            self.final_code(),
            from.min(links - 1),
            reason,
        )
    }

    /// Runs a command that is not an attempt of the chain (a hook, `validate`): no
    /// patterns, the attempt timeout, stdin as given.
    async fn side_command(
        &mut self,
        argv: &[String],
        env: Vec<(String, String)>,
        stdin: StdinFrom,
    ) -> End {
        if let Some(signal) = *self.interrupt.borrow() {
            // Asked to stop: no new process starts.
            return End::Interrupted { signal };
        }
        let scanner = Scanner::default();
        let spec = AttemptSpec {
            argv,
            env,
            timeout: self.policy.timeout.attempt.map(|d| d.0),
            timeout_is_deadline: false,
            kill_grace: self.policy.timeout.kill_grace.0,
            scanner: &scanner,
            stdin,
            call: None,
            hook: true,
        };
        self.attempter.attempt(spec).await.end
    }

    /// Runs a hook command; its failure is a warning, never the run's failure.
    async fn hook(
        &mut self,
        argv: &[String],
        what: &str,
        env: Vec<(String, String)>,
        stdin: StdinFrom,
    ) {
        let end = self.side_command(argv, env, stdin).await;
        if !end.success() {
            let message = format!(
                "{what} hook `{}` failed: {}",
                argv.join(" "),
                end.describe()
            );
            self.sink.event(&Event::Warning(message));
        }
    }

    /// What an `escalate` hook reads: the run, why the chain failed, and its last
    /// failure, as pretty JSON.
    fn failure_summary(&self, failure: Option<&LinkFailure>) -> Vec<u8> {
        let (end, verdict) = match &self.last {
            Some((e, v)) => (Some(e), Some(v)),
            None => (None, None),
        };
        let summary = serde_json::json!({
            "run_id": self.run_id,
            "reason": failure.map(ToString::to_string).unwrap_or_default(),
            "critical": failure.is_some_and(LinkFailure::is_critical),
            "attempts": self.attempts,
            "final": end.map(|e| serde_json::json!({
                "end": e,
                "exit_code": e.exit_code(),
                "description": e.describe(),
                "class": verdict.map(|v| v.class.as_str()),
                "rule": verdict.map(|v| v.rule.clone()),
            })),
        });
        let mut stdin = serde_json::to_vec_pretty(&summary).expect("summary serializes");
        stdin.push(b'\n');
        stdin
    }

    fn child_env(&self, pos: Position, name: &str) -> Vec<(String, String)> {
        vec![
            ("BACKSTOP_RUN_ID".into(), self.run_id.clone()),
            ("BACKSTOP_ATTEMPT".into(), pos.attempt.to_string()),
            ("BACKSTOP_MAX_ATTEMPTS".into(), pos.max.to_string()),
            ("BACKSTOP_LINK".into(), pos.link.to_string()),
            ("BACKSTOP_LINK_NAME".into(), name.to_string()),
        ]
    }

    /// The exit code of the last failure (1 if, oddly, there was none, or if it
    /// exited 0 and `retry.fail_on` made it a failure); 125 once a key was missing
    /// or refused, whatever failed after it.
    fn final_code(&self) -> u8 {
        if self.config_error.is_some() {
            return crate::exit_code::BACKSTOP_FAILED;
        }
        match self.last.as_ref().map(|(e, _)| e.exit_code()) {
            Some(0) | None => 1,
            Some(code) => code,
        }
    }

    /// Sums the run up from how the chain ended, and tells it.
    fn finish(&mut self, ending: Ending, links: &[ChainLink<'_>]) -> RunSummary {
        let (link_attempts, link_max_attempts) = ending.link_attempts;
        let summary = RunSummary {
            outcome: ending.outcome,
            exit_code: ending.exit_code,
            link: ending.link,
            link_name: links
                .get(ending.link)
                .map(|l| l.name.clone())
                .unwrap_or_default(),
            links: links.len(),
            attempts: self.attempts,
            link_attempts,
            link_max_attempts,
            retries: self.retries,
            elapsed_ms: millis(self.start.elapsed()),
            last_failure: self.last.as_ref().map(|(e, _)| e.describe()),
            answer: self.answer.take(),
            model: self.model_used.take(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: (self.spent_usd > 0.0).then_some(self.spent_usd),
            reason: ending.reason.map(|r| r.to_string()),
        };
        self.sink.event(&Event::Finished(summary.clone()));
        summary
    }
}

/// Resolves with the signal once backstop has been asked to stop.
pub async fn wait_for_interrupt(rx: &mut Interrupt) -> i32 {
    loop {
        if let Some(signal) = *rx.borrow_and_update() {
            return signal;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
