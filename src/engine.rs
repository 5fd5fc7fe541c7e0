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

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::attempt::{
    AttemptOutcome, AttemptSpec, Attempter, CallReport, CallWork, End, Prompt, StdinFrom,
};
use crate::backoff::{Delay, Schedule, jitter_bounds};
use crate::classify::{FailureClass, LinkPatterns, Verdict, classify_call, classify_command};
use crate::events::{AttemptReport, Event, EventSink, Layer, Outcome, RunSummary};
use crate::policy::values::{format_duration, millis, round_ms};
use crate::policy::{
    Action, CallLink, Critical, DefaultAnswer, Escalate, Jitter, Policy, RetryPolicy,
};
use crate::reason::{LinkFailure, StopReason};
use crate::scan::Scanner;

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

enum LinkKind<'p> {
    Run(&'p [String]),
    Call(CallLink),
    Default(&'p DefaultAnswer),
    Escalate(&'p Escalate),
}

struct ChainLink<'p> {
    name: String,
    kind: LinkKind<'p>,
    retry: &'p RetryPolicy,
    timeout: Option<Duration>,
}

/// What every attempt of a `run` or `call` link runs: it also picks the classifier.
enum Work<'w> {
    Command(&'w [String]),
    Call(CallWork<'w>),
}

/// How a `run` or `call` link ended.
#[derive(Debug, PartialEq)]
enum LinkEnd {
    Succeeded {
        attempt: u32,
        max: u32,
    },
    /// Go on to the next link, for this reason.
    Failed(LinkFailure),
    /// Stop the whole run (interrupted).
    Stop {
        signal: i32,
    },
    /// Stop the whole run: the reader of backstop's output is gone and the command
    /// died of SIGPIPE, as the rest of the pipeline expects.
    OutputClosed,
}

/// Where an attempt stands: its link in the chain, and its number within the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    link: usize,
    links: usize,
    /// 1-based.
    attempt: u32,
    max: u32,
}

impl Position {
    fn layer(self) -> Layer {
        match (self.link, self.attempt) {
            (0, 1) => Layer::Primary,
            (0, _) => Layer::Retry,
            _ => Layer::Fallback,
        }
    }

    fn next(self) -> Position {
        Position {
            attempt: self.attempt + 1,
            ..self
        }
    }
}

/// How long an attempt may take, and whether that limit is the run's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limit {
    timeout: Option<Duration>,
    is_deadline: bool,
}

/// What one attempt did, its success checked by `rollback.validate`.
struct Attempted {
    outcome: AttemptOutcome,
    /// The attempt succeeded but `validate` did not: `outcome.end` is the check's.
    validation_failed: bool,
}

/// What follows an attempt: another after a delay, or the link's end.
#[derive(Debug, PartialEq)]
enum Next {
    Retry { delay: Duration, reason: String },
    End(LinkEnd),
}

impl Next {
    /// The attempt record's `delay_ms` and `delay_reason`.
    fn delay(&self) -> (Option<u64>, Option<String>) {
        match self {
            Next::Retry { delay, reason } => (Some(millis(*delay)), Some(reason.clone())),
            Next::End(LinkEnd::Failed(failure)) => (None, failure.delay_refused()),
            Next::End(_) => (None, None),
        }
    }
}

/// The chain's failures so far.
#[derive(Default)]
struct Failures {
    /// The last link that failed, and why.
    last: Option<(usize, LinkFailure)>,
    /// A `default` link was passed by because a key was refused.
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
        }
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
                Err(why) => return ControlFlow::Continue(LinkFailure::CannotCall { why }),
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

    /// Attempts a `run` or `call` link until it succeeds, and otherwise says why it
    /// ended. Each attempt is prepared, made, judged and told once; then the link
    /// ends, or waits for the next attempt.
    async fn run_link(
        &mut self,
        mut pos: Position,
        link: &ChainLink<'_>,
        work: &Work<'_>,
        deadline: Option<Instant>,
    ) -> LinkEnd {
        let policy = self.policy;
        let critical = &policy.fallback.critical;
        let patterns = LinkPatterns::new(link.retry, critical);
        let mut schedule = Schedule::new(&link.retry.backoff, link.retry.max_attempts);
        loop {
            let limit = match self.prepare(pos, link, work, deadline) {
                Ok(limit) => limit,
                Err(end) => return end,
            };
            let attempted = match self.attempt(pos, link, work, &patterns, limit).await {
                Ok(attempted) => attempted,
                Err(signal) => return LinkEnd::Stop { signal },
            };
            let verdict = judge(work, &attempted, &patterns, link.retry, critical);
            self.tally(pos, &attempted.outcome.end, verdict.as_ref());
            let next = next_step(
                verdict.as_ref(),
                &attempted.outcome,
                pos,
                link.retry,
                &mut schedule,
                deadline,
            );
            self.finished(pos, link, attempted.outcome, verdict, &next);
            let (delay, reason) = match next {
                Next::End(end) => return end,
                Next::Retry { delay, reason } => (delay, reason),
            };
            if let Err(signal) = self.wait(pos, link, delay, reason).await {
                return LinkEnd::Stop { signal };
            }
            pos = pos.next();
        }
    }

    /// What must hold before an attempt starts: backstop not asked to stop, the tree
    /// put back (after the run's first attempt), time left before the deadline, and
    /// a call within the budget. Gives the attempt's limit.
    fn prepare(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        work: &Work<'_>,
        deadline: Option<Instant>,
    ) -> Result<Limit, LinkEnd> {
        if let Some(signal) = *self.interrupt.borrow() {
            return Err(LinkEnd::Stop { signal });
        }
        if (pos.link, pos.attempt) != (0, 1) {
            self.restore_between().map_err(LinkEnd::Failed)?;
        }
        let is_call = matches!(work, Work::Call(_));
        let limit = attempt_limit(link.timeout, is_call, deadline)
            .ok_or(LinkEnd::Failed(LinkFailure::DeadlineReached))?;
        if let Work::Call(work) = work {
            self.within_budget(work).map_err(LinkEnd::Failed)?;
        }
        Ok(limit)
    }

    /// Makes one attempt and, after a command's success, runs `rollback.validate`.
    /// `Err(signal)` when asked to stop before the success was validated.
    async fn attempt(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        work: &Work<'_>,
        patterns: &LinkPatterns,
        limit: Limit,
    ) -> Result<Attempted, i32> {
        self.sink.event(&Event::AttemptStarted {
            link: pos.link,
            links: pos.links,
            link_name: link.name.clone(),
            attempt: pos.attempt,
            max_attempts: pos.max,
        });
        let (argv, call): (&[String], _) = match work {
            // `retry.command` replaces the command for every attempt after the first.
            Work::Command(argv) => match &link.retry.command {
                Some(other) if pos.attempt > 1 => (&other.0, None),
                _ => (argv, None),
            },
            Work::Call(work) => (&[], Some(work)),
        };
        let spec = AttemptSpec {
            argv,
            env: self.child_env(pos, &link.name),
            timeout: limit.timeout,
            timeout_is_deadline: limit.is_deadline,
            kill_grace: self.policy.timeout.kill_grace.0,
            scanner: &patterns.scanner,
            stdin: StdinFrom::Inherit,
            call,
        };
        let outcome = self.attempter.attempt(spec).await;
        self.account(&outcome);
        self.validated(pos, link, work, outcome).await
    }

    /// Checks a command's success with `rollback.validate`, when the policy has one.
    async fn validated(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        work: &Work<'_>,
        mut outcome: AttemptOutcome,
    ) -> Result<Attempted, i32> {
        // `validate` checks what a command left on disk. A call link leaves nothing
        // there, and its answer is already printed: validating it could only fail
        // it for the tree's state and make it answer again.
        let policy = self.policy;
        let validate = match (work, &policy.rollback.validate) {
            (Work::Command(_), Some(validate)) if outcome.end.success() => validate,
            _ => {
                return Ok(Attempted {
                    outcome,
                    validation_failed: false,
                });
            }
        };
        if let Some(signal) = *self.interrupt.borrow() {
            // Asked to stop before the success was validated: not a success.
            return Err(signal);
        }
        let env = self.child_env(pos, &link.name);
        outcome.end = self.side_command(&validate.0, env, StdinFrom::Null).await;
        outcome.matched.clear();
        Ok(Attempted {
            validation_failed: !outcome.end.success(),
            outcome,
        })
    }

    /// Counts an attempt, keeps the last failure, and notes a key refused.
    fn tally(&mut self, pos: Position, end: &End, verdict: Option<&Verdict>) {
        self.attempts += 1;
        if pos.attempt > 1 {
            self.retries += 1;
        }
        if let Some(verdict) = verdict {
            if verdict.class == FailureClass::Auth {
                self.config_error = Some(end.describe());
            }
            self.last = Some((end.clone(), verdict.clone()));
        }
    }

    /// The one place an attempt's end is told: how it ended, the verdict, and the
    /// delay that follows or why there is none.
    fn finished(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        outcome: AttemptOutcome,
        verdict: Option<Verdict>,
        next: &Next,
    ) {
        let (delay_ms, delay_reason) = next.delay();
        self.sink.event(&Event::AttemptFinished(AttemptReport {
            layer: pos.layer(),
            link: pos.link,
            link_name: link.name.clone(),
            attempt: pos.attempt,
            max_attempts: pos.max,
            started_at: outcome.started_at,
            duration_ms: millis(outcome.duration),
            exit_code: outcome.end.exit_code(),
            end: outcome.end,
            verdict,
            delay_ms,
            delay_reason,
            call: outcome.call,
        }));
    }

    /// Says that the link waits, runs `on_retry`, and sleeps for `delay`; `Err(signal)`
    /// when asked to stop meanwhile.
    async fn wait(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        delay: Duration,
        reason: String,
    ) -> Result<(), i32> {
        self.sink.event(&Event::Waiting {
            link: pos.link,
            links: pos.links,
            next_attempt: pos.attempt + 1,
            max_attempts: pos.max,
            delay,
            reason,
        });
        if let Some(hook) = &link.retry.on_retry {
            let env = self.child_env(pos.next(), &link.name);
            self.hook(&hook.0, "on_retry", env, StdinFrom::Null).await;
        }
        let mut interrupt = self.interrupt.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            signal = wait_for_interrupt(&mut interrupt) => Err(signal),
        }
    }

    /// The model, provider and prompt of a call link.
    fn call_work(&self, link: &CallLink) -> Result<CallWork<'a>, String> {
        let policy = self.policy;
        let model = policy
            .models
            .get(&link.model)
            .ok_or_else(|| format!("no model named `{}`", link.model))?;
        let provider = policy
            .providers
            .get(&model.provider)
            .ok_or_else(|| format!("no provider named `{}`", model.provider))?;
        let prompt = match (&link.prompt, &self.prompt) {
            (Some(user), _) => Prompt {
                system: link.system.clone(),
                user: user.clone(),
            },
            (None, Some(p)) => Prompt {
                system: link.system.clone().or_else(|| p.system.clone()),
                user: p.user.clone(),
            },
            (None, None) => {
                return Err(format!("the `call` link to `{}` has no prompt", link.model));
            }
        };
        Ok(CallWork {
            model,
            provider,
            prompt,
            idempotency_key: format!("backstop-{}-{:016x}", self.run_id, rand::random::<u64>()),
            connect: policy.timeout.connect.0,
            first_token: policy.timeout.first_token.0,
            stall: policy.timeout.stall.0,
        })
    }

    /// Whether the next call could stay within `budget`, judged by its prompt and
    /// `max_tokens`.
    fn within_budget(&self, work: &CallWork) -> Result<(), LinkFailure> {
        let budget = &self.policy.budget;
        let input = (work.prompt.user.len() + work.prompt.system.as_ref().map_or(0, String::len))
            as u64
            / 4
            + 1;
        let output = u64::from(work.model.max_tokens);
        if let Some(max) = budget.max_tokens
            && self
                .spent_tokens
                .saturating_add(input)
                .saturating_add(output)
                > max
        {
            return Err(LinkFailure::OverTokenBudget {
                max,
                spent: self.spent_tokens,
                next: input.saturating_add(output),
            });
        }
        if let (Some(max), Some(price)) = (budget.max_cost_usd, &work.model.price) {
            let next = price.cost(input, output);
            if self.spent_usd + next > max {
                return Err(LinkFailure::OverCostBudget {
                    max,
                    spent: self.spent_usd,
                    next,
                });
            }
        }
        Ok(())
    }

    /// Adds what a call spent, and keeps its answer.
    fn account(&mut self, outcome: &AttemptOutcome) {
        if let Some(c) = &outcome.call {
            // The counts are the server's word: one that claims 2^64 tokens must not
            // overflow them.
            self.input_tokens = self.input_tokens.saturating_add(c.input_tokens);
            self.output_tokens = self.output_tokens.saturating_add(c.output_tokens);
            self.spent_tokens = self
                .spent_tokens
                .saturating_add(c.input_tokens)
                .saturating_add(c.output_tokens);
            // Saturating, as each cost is: a sum past f64::MAX would be recorded `null`.
            self.spent_usd = (self.spent_usd + c.cost_usd.unwrap_or(0.0)).min(f64::MAX);
            if outcome.end.success() {
                self.answer.clone_from(&c.text);
                self.model_used = Some(c.model.clone());
            }
        }
    }

    /// Puts the tree back before another attempt, if the policy says so.
    fn restore_between(&mut self) -> Result<(), LinkFailure> {
        if self.policy.rollback.between_attempts != crate::policy::BetweenAttempts::Restore {
            return Ok(());
        }
        let Some(checkpoint) = self.checkpoint.as_deref_mut() else {
            return Ok(());
        };
        match checkpoint.restore() {
            Ok(paths) => {
                self.sink.event(&Event::Restored { paths });
                Ok(())
            }
            Err(e) => Err(LinkFailure::RestoreFailed {
                error: format!("{e:#}"),
            }),
        }
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

    /// The exit code of the last failure (1 if, oddly, there was none); 125 once a
    /// key was missing or refused, whatever failed after it.
    fn final_code(&self) -> u8 {
        if self.config_error.is_some() {
            return crate::exit_code::BACKSTOP_FAILED;
        }
        self.last.as_ref().map_or(1, |(e, _)| e.exit_code())
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

/// Link 0, then the policy's fallback chain.
fn chain<'p>(policy: &'p Policy, primary: Primary<'p>) -> Vec<ChainLink<'p>> {
    let (name, kind) = match primary {
        Primary::Command(command) => (
            crate::attempt::command_line(command),
            LinkKind::Run(command),
        ),
        Primary::Call(model) => (
            format!("call {model}"),
            LinkKind::Call(CallLink {
                model: model.to_string(),
                prompt: None,
                system: None,
            }),
        ),
    };
    let first = ChainLink {
        name,
        kind,
        retry: &policy.retry,
        timeout: policy.timeout.attempt.map(|d| d.0),
    };
    let fallbacks = policy.fallback.chain.iter().map(|link| ChainLink {
        name: link.name.clone(),
        kind: match &link.action {
            Action::Run(argv) => LinkKind::Run(&argv.0),
            Action::Call(call) => LinkKind::Call(call.clone()),
            Action::Default(answer) => LinkKind::Default(answer),
            Action::Escalate(e) => LinkKind::Escalate(e),
        },
        retry: link.retry.as_ref().unwrap_or(&policy.retry),
        timeout: link.timeout.or(policy.timeout.attempt).map(|d| d.0),
    });
    std::iter::once(first).chain(fallbacks).collect()
}

/// The model of a fallback `call` link that would only ask link 0's model the same
/// thing again (`-m cheap` with a chain holding `call: {model: cheap}`).
fn repeats_primary<'l>(primary: Primary<'_>, link: &'l ChainLink<'_>) -> Option<&'l str> {
    match (primary, &link.kind) {
        (Primary::Call(model), LinkKind::Call(c))
            if c.model == model && c.prompt.is_none() && c.system.is_none() =>
        {
            Some(&c.model)
        }
        _ => None,
    }
}

/// An attempt's limit: its own timeout, cut to the time left before the deadline.
/// `None` once the deadline has passed.
fn attempt_limit(own: Option<Duration>, is_call: bool, deadline: Option<Instant>) -> Option<Limit> {
    // A model call never goes without a limit of its own (see `call::client`).
    let own = own.or(is_call.then_some(crate::call::client::DEFAULT_CALL_ATTEMPT));
    let Some(deadline) = deadline else {
        return Some(Limit {
            timeout: own,
            is_deadline: false,
        });
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(match own {
        Some(t) if t <= left => Limit {
            timeout: Some(t),
            is_deadline: false,
        },
        _ => Limit {
            timeout: Some(left),
            is_deadline: true,
        },
    })
}

/// The verdict on an attempt: `None` for a success. The link's kind picks the
/// classifier; then what overrides its rule: a failed `validate`, stdin that cannot
/// be replayed, a reader of backstop's output that went away.
fn judge(
    work: &Work<'_>,
    attempted: &Attempted,
    patterns: &LinkPatterns,
    retry: &RetryPolicy,
    critical: &Critical,
) -> Option<Verdict> {
    let outcome = &attempted.outcome;
    let mut verdict = match work {
        Work::Command(_) => {
            classify_command(&outcome.end, &outcome.matched, patterns, retry, critical)
        }
        Work::Call(_) => {
            let unknown = CallReport::default();
            let report = outcome.call.as_ref().unwrap_or(&unknown);
            classify_call(&outcome.end, report, retry)
        }
    }?;
    if attempted.validation_failed {
        validation_failed(&mut verdict, &outcome.end, retry);
    }
    if let Some(why) = &outcome.no_retry
        && verdict.retry
    {
        verdict.retry = false;
        verdict.rule = why.clone();
    }
    if output_went_away(outcome) {
        // Killed only because its output had nowhere to go: as without backstop, the
        // pipeline's end is the command's end.
        verdict.retry = false;
        verdict.rule = "the reader of backstop's output went away".into();
    }
    Some(verdict)
}

/// A success that `rollback.validate` (which ended with `end`) failed.
fn validation_failed(verdict: &mut Verdict, end: &End, retry: &RetryPolicy) {
    verdict.class = FailureClass::Validation;
    // The check's exit code says nothing of whether the command would do better on
    // another try (`cargo check` exits 101, `test -f` 1): its own rule decides. A
    // stop or a critical failure stays one.
    verdict.rule = if !verdict.stop && !verdict.critical {
        verdict.retry = retry.on.validate;
        format!(
            "rollback.validate failed ({}); retry.on.validate is {}",
            end.describe(),
            retry.on.validate
        )
    } else {
        format!(
            "rollback.validate failed ({}); {}",
            end.describe(),
            verdict.rule
        )
    };
}

/// What follows an attempt judged `verdict`: the link's end, or the delay before
/// its next attempt. The one place that decides both.
fn next_step(
    verdict: Option<&Verdict>,
    outcome: &AttemptOutcome,
    pos: Position,
    retry: &RetryPolicy,
    schedule: &mut Schedule,
    deadline: Option<Instant>,
) -> Next {
    let failed = |failure| Next::End(LinkEnd::Failed(failure));
    let Some(verdict) = verdict else {
        return Next::End(LinkEnd::Succeeded {
            attempt: pos.attempt,
            max: pos.max,
        });
    };
    if output_went_away(outcome) {
        return Next::End(LinkEnd::OutputClosed);
    }
    if verdict.stop {
        let signal = match outcome.end {
            End::Interrupted { signal } | End::Signaled { signal } => signal,
            _ => libc::SIGINT,
        };
        return Next::End(LinkEnd::Stop { signal });
    }
    let rule = verdict.rule.clone();
    if verdict.critical {
        return failed(LinkFailure::Critical { rule });
    }
    if !verdict.retry {
        return failed(LinkFailure::NotRetryable { rule });
    }
    let Some(delay) = schedule.next() else {
        return failed(LinkFailure::OutOfRetries {
            attempt: pos.attempt,
            max: pos.max,
        });
    };
    match choose_delay(retry, &delay, outcome.call.as_ref(), deadline) {
        Ok((delay, reason)) => Next::Retry { delay, reason },
        Err(failure) => failed(failure),
    }
}

/// The wait before the next attempt, and why: the backoff's, or the server's
/// (Retry-After). An error when the link ends instead of waiting.
fn choose_delay(
    retry: &RetryPolicy,
    delay: &Delay,
    call: Option<&CallReport>,
    deadline: Option<Instant>,
) -> Result<(Duration, String), LinkFailure> {
    let mut chosen = (delay.chosen, delay_reason(retry, delay));
    // The server's word on when to come back beats the backoff's guess.
    let asked = call.and_then(|c| Some((c.retry_after_ms?, c.retry_after_rule.clone()?)));
    if let Some((ms, rule)) = asked.filter(|_| retry.retry_after.honor) {
        let wait = Duration::from_millis(ms);
        let max = retry.retry_after.max.0;
        if wait > max {
            return Err(LinkFailure::RetryAfterOverMax { rule, wait, max });
        }
        chosen = (wait, format!("{rule}: {}", format_duration(wait)));
    }
    if let Some(d) = deadline
        && Instant::now().checked_add(chosen.0).is_none_or(|t| t >= d)
    {
        return Err(LinkFailure::WouldCrossDeadline { wait: chosen.0 });
    }
    Ok(chosen)
}

/// The command died only because the reader of backstop's output went away.
fn output_went_away(outcome: &AttemptOutcome) -> bool {
    outcome.output_closed && died_of_sigpipe(&outcome.end)
}

/// Killed by SIGPIPE, or a shell's report of a child that was (`sh -c 'yes'`: 141).
fn died_of_sigpipe(end: &End) -> bool {
    let shell_code = 128 + libc::SIGPIPE;
    matches!(end, End::Signaled { signal } if *signal == libc::SIGPIPE)
        || matches!(end, End::Exited { code } if *code == shell_code)
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

/// Why a delay is what it is, for the record: `exponential backoff 400ms, full jitter: 123ms`.
fn delay_reason(retry: &RetryPolicy, delay: &Delay) -> String {
    let b = &retry.backoff;
    let kind = b.kind.as_str();
    let chosen = format_duration(round_ms(delay.chosen));
    let base = format_duration(round_ms(delay.base));
    match b.jitter {
        Jitter::None => format!("{kind} backoff: {base}"),
        j => {
            let (lo, hi) = jitter_bounds(j, delay.base);
            format!(
                "{kind} backoff {base}, {} jitter in {}..{}: {chosen}",
                j.as_str(),
                format_duration(round_ms(lo)),
                format_duration(round_ms(hi)),
            )
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
