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

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::attempt::{AttemptOutcome, AttemptSpec, Attempter, CallWork, End, Prompt, StdinFrom};
use crate::backoff::{Delay, Schedule, jitter_bounds};
use crate::classify::{LinkPatterns, Verdict, classify, classify_call};
use crate::events::{AttemptReport, Event, EventSink, Layer, Outcome, RunSummary};
use crate::policy::values::{format_duration, millis, round_ms};
use crate::policy::{Action, CallLink, DefaultAnswer, Escalate, Jitter, Policy, RetryPolicy};
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

/// How a `run` link ended.
enum LinkEnd {
    Succeeded {
        attempt: u32,
        max: u32,
    },
    /// Go on to the next link, for this reason.
    Failed {
        reason: String,
        critical: bool,
    },
    /// Stop the whole run (interrupted).
    Stop {
        signal: i32,
    },
    /// Stop the whole run: the reader of backstop's output is gone and the command
    /// died of SIGPIPE, as the rest of the pipeline expects.
    OutputClosed,
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
        let policy = self.policy;
        // `-m cheap` with a chain holding `call: {model: cheap}`: that link would only
        // ask the same model the same thing again.
        let primary_model = match primary {
            Primary::Call(model) => Some(model),
            Primary::Command(_) => None,
        };
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
        let mut links = vec![ChainLink {
            name,
            kind,
            retry: &policy.retry,
            timeout: policy.timeout.attempt.map(|d| d.0),
        }];
        for link in &policy.fallback.chain {
            links.push(ChainLink {
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
        }
        // A deadline past the clock's range is no deadline.
        let deadline = policy
            .timeout
            .total()
            .and_then(|t| self.start.checked_add(t));

        let mut critical = false;
        let mut default_skipped = false;
        let mut reason = String::new();
        let mut from = 0;
        for (i, link) in links.iter().enumerate() {
            let skip = match link.kind {
                LinkKind::Escalate(_) => false,
                _ if critical => true,
                LinkKind::Run(_) | LinkKind::Call(_) => {
                    deadline.is_some_and(|d| Instant::now() >= d)
                }
                LinkKind::Default(_) => self.config_error.is_some(),
            };
            if skip {
                default_skipped |= matches!(link.kind, LinkKind::Default(_));
                continue;
            }
            if let LinkKind::Call(c) = &link.kind
                && i > 0
                && primary_model == Some(c.model.as_str())
                && c.prompt.is_none()
                && c.system.is_none()
            {
                self.sink.event(&Event::Warning(format!(
                    "skipping fallback {i}/{} ({}): model `{}` was already tried as link 0",
                    links.len() - 1,
                    link.name,
                    c.model
                )));
                continue;
            }
            if i > 0 {
                self.sink.event(&Event::Fallback {
                    from,
                    to: i,
                    links: links.len(),
                    to_name: link.name.clone(),
                    reason: reason.clone(),
                });
            }
            match &link.kind {
                LinkKind::Run(_) | LinkKind::Call(_) => {
                    match self.run_link(i, links.len(), link, deadline).await {
                        LinkEnd::Succeeded { attempt, max } => {
                            return self.finish(
                                Outcome::Succeeded,
                                0,
                                i,
                                link,
                                links.len(),
                                (attempt, max),
                                None,
                            );
                        }
                        LinkEnd::Stop { signal } => {
                            let code = crate::exit_code::for_signal(signal);
                            let reason = Some(format!(
                                "interrupted by {}",
                                crate::attempt::signal_name(signal)
                            ));
                            return self.finish(
                                Outcome::Interrupted,
                                code,
                                i,
                                link,
                                links.len(),
                                (0, 0),
                                reason,
                            );
                        }
                        LinkEnd::OutputClosed => {
                            let code = crate::exit_code::for_signal(libc::SIGPIPE);
                            let reason = Some("the reader of backstop's output went away".into());
                            return self.finish(
                                Outcome::OutputClosed,
                                code,
                                i,
                                link,
                                links.len(),
                                (0, 0),
                                reason,
                            );
                        }
                        LinkEnd::Failed {
                            reason: why,
                            critical: c,
                        } => {
                            reason = why;
                            critical = c;
                            from = i;
                        }
                    }
                }
                &LinkKind::Default(answer) => {
                    if let Some(signal) = self.attempter.answer(answer).await {
                        return self.finish(
                            Outcome::Interrupted,
                            crate::exit_code::for_signal(signal),
                            i,
                            link,
                            links.len(),
                            (0, 0),
                            Some(format!(
                                "interrupted by {}",
                                crate::attempt::signal_name(signal)
                            )),
                        );
                    }
                    let code = answer.exit_code;
                    // The answer of the run, for `call --json`, whichever link gave it.
                    self.answer = Some(answer.stdout.clone());
                    return self.finish(
                        Outcome::Degraded,
                        code,
                        i,
                        link,
                        links.len(),
                        (0, 0),
                        Some(reason),
                    );
                }
                &LinkKind::Escalate(esc) => {
                    let code = esc.exit_code.unwrap_or_else(|| self.final_code());
                    self.escalate(esc, &reason, critical).await;
                    return self.finish(
                        Outcome::Escalated,
                        code,
                        i,
                        link,
                        links.len(),
                        (0, 0),
                        Some(reason),
                    );
                }
            }
        }
        let code = self.final_code();
        if self.config_error.is_some() {
            // The failure itself (`HTTP 401: invalid x-api-key`) is the summary's last
            // failure: say only what kind of failure it is.
            reason = "a configuration error: the API key was refused or missing".into();
            if default_skipped {
                reason.push_str("; a `default` link does not answer for it");
            }
        }
        let last = links.len() - 1;
        self.finish(
            Outcome::Failed,
            code,
            from,
            &links[from.min(last)],
            links.len(),
            (0, 0),
            Some(reason),
        )
    }

    async fn run_link(
        &mut self,
        index: usize,
        links: usize,
        link: &ChainLink<'_>,
        deadline: Option<Instant>,
    ) -> LinkEnd {
        let retry = link.retry;
        let (argv, call): (&[String], Option<CallWork>) = match &link.kind {
            LinkKind::Run(argv) => (argv, None),
            LinkKind::Call(c) => match self.call_work(c) {
                Ok(work) => (&[], Some(work)),
                Err(reason) => {
                    return LinkEnd::Failed {
                        reason,
                        critical: false,
                    };
                }
            },
            _ => unreachable!("only run and call links are attempted"),
        };
        let critical = &self.policy.fallback.critical;
        let patterns = LinkPatterns::new(retry, critical);
        let mut schedule = Schedule::new(&retry.backoff, retry.max_attempts);
        let max = retry.max_attempts;
        let mut attempt = 1;
        loop {
            if let Some(signal) = *self.interrupt.borrow() {
                return LinkEnd::Stop { signal };
            }
            if (index, attempt) != (0, 1)
                && let Err(reason) = self.restore_between()
            {
                return LinkEnd::Failed {
                    reason,
                    critical: true,
                };
            }
            // A model call never goes without a limit of its own (see `call::client`).
            let own = link.timeout.or_else(|| {
                call.as_ref()
                    .map(|_| crate::call::client::DEFAULT_CALL_ATTEMPT)
            });
            let (timeout, timeout_is_deadline) = match (own, deadline) {
                (t, None) => (t, false),
                (t, Some(d)) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return LinkEnd::Failed {
                            reason: "timeout.total reached".into(),
                            critical: false,
                        };
                    }
                    match t {
                        Some(t) if t <= left => (Some(t), false),
                        _ => (Some(left), true),
                    }
                }
            };
            if let Some(work) = &call
                && let Err(reason) = self.within_budget(work)
            {
                return LinkEnd::Failed {
                    reason,
                    critical: false,
                };
            }
            self.sink.event(&Event::AttemptStarted {
                link: index,
                links,
                link_name: link.name.clone(),
                attempt,
                max_attempts: max,
            });
            // `retry.command` replaces the command for every attempt after the first.
            let argv = match &retry.command {
                Some(other) if attempt > 1 && call.is_none() => &other.0[..],
                _ => argv,
            };
            let spec = AttemptSpec {
                argv,
                env: self.child_env(index, &link.name, attempt, max),
                timeout,
                timeout_is_deadline,
                kill_grace: self.policy.timeout.kill_grace.0,
                scanner: &patterns.scanner,
                stdin: StdinFrom::Inherit,
                call: call.as_ref(),
            };
            let mut outcome = self.attempter.attempt(spec).await;
            self.account(&outcome);
            let mut validation_failed = false;
            // `validate` checks what a command left on disk. A call link leaves nothing
            // there, and its answer is already printed: validating it could only fail
            // it for the tree's state and make it answer again.
            if outcome.end.success()
                && call.is_none()
                && let Some(validate) = &self.policy.rollback.validate
            {
                if let Some(signal) = *self.interrupt.borrow() {
                    // Asked to stop before the success was validated: not a success.
                    return LinkEnd::Stop { signal };
                }
                outcome.end = self
                    .validate(&validate.0, index, &link.name, attempt, max)
                    .await;
                outcome.matched.clear();
                validation_failed = !outcome.end.success();
            }
            self.attempts += 1;
            if attempt > 1 {
                self.retries += 1;
            }
            let mut verdict = match &outcome.call {
                Some(report) => classify_call(&outcome.end, report, retry),
                None => classify(&outcome.end, &outcome.matched, &patterns, retry, critical),
            };
            if let (Some(v), true) = (verdict.as_mut(), validation_failed) {
                v.class = crate::classify::FailureClass::Validation;
                // The check's exit code says nothing of whether the command would do
                // better on another try (`cargo check` exits 101, `test -f` 1): its
                // own rule decides. A stop or a critical failure stays one.
                if !v.stop && !v.critical {
                    v.retry = retry.on.validate;
                    v.rule = format!(
                        "rollback.validate failed ({}); retry.on.validate is {}",
                        outcome.end.describe(),
                        retry.on.validate
                    );
                } else {
                    v.rule = format!(
                        "rollback.validate failed ({}); {}",
                        outcome.end.describe(),
                        v.rule
                    );
                }
            }
            if let (Some(v), Some(why)) = (verdict.as_mut(), &outcome.no_retry)
                && v.retry
            {
                v.retry = false;
                v.rule = why.clone();
            }
            if let Some(v) = &verdict
                && v.class == crate::classify::FailureClass::Auth
            {
                self.config_error = Some(outcome.end.describe());
            }
            let mut report = AttemptReport {
                layer: match (index, attempt) {
                    (0, 1) => Layer::Primary,
                    (0, _) => Layer::Retry,
                    _ => Layer::Fallback,
                },
                link: index,
                link_name: link.name.clone(),
                attempt,
                max_attempts: max,
                started_at: outcome.started_at,
                duration_ms: millis(outcome.duration),
                exit_code: outcome.end.exit_code(),
                end: outcome.end.clone(),
                verdict: verdict.clone(),
                delay_ms: None,
                delay_reason: None,
                call: outcome.call.clone(),
            };
            let Some(verdict) = verdict else {
                self.sink.event(&Event::AttemptFinished(report));
                return LinkEnd::Succeeded { attempt, max };
            };
            self.last = Some((outcome.end.clone(), verdict.clone()));
            if outcome.output_closed && died_of_sigpipe(&outcome.end) {
                // Killed only because its output had nowhere to go: as without
                // backstop, the pipeline's end is the command's end.
                if let Some(v) = report.verdict.as_mut() {
                    v.retry = false;
                    v.rule = "the reader of backstop's output went away".into();
                }
                self.sink.event(&Event::AttemptFinished(report));
                return LinkEnd::OutputClosed;
            }
            let end = if verdict.stop {
                let signal = match outcome.end {
                    End::Interrupted { signal } | End::Signaled { signal } => signal,
                    _ => libc::SIGINT,
                };
                Some(LinkEnd::Stop { signal })
            } else if verdict.critical {
                Some(LinkEnd::Failed {
                    reason: format!("critical failure: {}", verdict.rule),
                    critical: true,
                })
            } else if !verdict.retry {
                Some(LinkEnd::Failed {
                    reason: format!("not retryable: {}", verdict.rule),
                    critical: false,
                })
            } else {
                None
            };
            if let Some(end) = end {
                self.sink.event(&Event::AttemptFinished(report));
                return end;
            }
            let Some(delay) = schedule.next() else {
                self.sink.event(&Event::AttemptFinished(report));
                return LinkEnd::Failed {
                    reason: format!("out of retries ({attempt}/{max})"),
                    critical: false,
                };
            };
            let mut chosen = delay.chosen;
            let mut reason = delay_reason(retry, &delay);
            // The server's word on when to come back beats the backoff's guess.
            let asked = outcome
                .call
                .as_ref()
                .and_then(|c| Some((c.retry_after_ms?, c.retry_after_rule.clone()?)));
            if let Some((ms, rule)) = asked.filter(|_| retry.retry_after.honor) {
                let wait = Duration::from_millis(ms);
                if wait > retry.retry_after.max.0 {
                    let why = format!(
                        "not waiting: {rule} asks for {}, over retry.retry_after.max ({})",
                        format_duration(wait),
                        format_duration(retry.retry_after.max.0)
                    );
                    report.delay_reason = Some(why.clone());
                    self.sink.event(&Event::AttemptFinished(report));
                    return LinkEnd::Failed {
                        reason: why,
                        critical: false,
                    };
                }
                chosen = wait;
                reason = format!("{rule}: {}", format_duration(wait));
            }
            if let Some(d) = deadline
                && Instant::now().checked_add(chosen).is_none_or(|t| t >= d)
            {
                let why = format!(
                    "not waiting {}: it would cross timeout.total",
                    format_duration(round_ms(chosen))
                );
                report.delay_reason = Some(why.clone());
                self.sink.event(&Event::AttemptFinished(report));
                return LinkEnd::Failed {
                    reason: why,
                    critical: false,
                };
            }
            report.delay_ms = Some(millis(chosen));
            report.delay_reason = Some(reason.clone());
            self.sink.event(&Event::AttemptFinished(report));
            self.sink.event(&Event::Waiting {
                link: index,
                links,
                next_attempt: attempt + 1,
                max_attempts: max,
                delay: chosen,
                reason,
            });
            if let Some(hook) = &retry.on_retry {
                self.hook(
                    &hook.0,
                    "on_retry",
                    self.child_env(index, &link.name, attempt + 1, max),
                    StdinFrom::Null,
                )
                .await;
            }
            let mut interrupt = self.interrupt.clone();
            tokio::select! {
                () = tokio::time::sleep(chosen) => {}
                signal = wait_for_interrupt(&mut interrupt) => return LinkEnd::Stop { signal },
            }
            attempt += 1;
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
    fn within_budget(&self, work: &CallWork) -> Result<(), String> {
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
            return Err(format!(
                "budget.max_tokens ({max}) would be exceeded: {} spent, the next call may take {}",
                self.spent_tokens,
                input.saturating_add(output)
            ));
        }
        if let (Some(max), Some(price)) = (budget.max_cost_usd, &work.model.price) {
            let next = price.cost(input, output);
            if self.spent_usd + next > max {
                return Err(format!(
                    "budget.max_cost_usd (${max:.4}) would be exceeded: ${:.4} spent, the next call may cost ${next:.4}",
                    self.spent_usd
                ));
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
    fn restore_between(&mut self) -> Result<(), String> {
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
            Err(e) => Err(format!(
                "could not restore the tree between attempts: {e:#}"
            )),
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

    /// Runs `rollback.validate` after a success; its end is the attempt's.
    async fn validate(
        &mut self,
        argv: &[String],
        link: usize,
        name: &str,
        attempt: u32,
        max: u32,
    ) -> End {
        let env = self.child_env(link, name, attempt, max);
        self.side_command(argv, env, StdinFrom::Null).await
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

    async fn escalate(&mut self, esc: &Escalate, reason: &str, critical: bool) {
        let (end, verdict) = match &self.last {
            Some((e, v)) => (Some(e), Some(v)),
            None => (None, None),
        };
        let summary = serde_json::json!({
            "run_id": self.run_id,
            "reason": reason,
            "critical": critical,
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
        let env = vec![("BACKSTOP_RUN_ID".to_string(), self.run_id.clone())];
        self.hook(&esc.run.0, "escalate", env, StdinFrom::Bytes(stdin))
            .await;
    }

    fn child_env(&self, link: usize, name: &str, attempt: u32, max: u32) -> Vec<(String, String)> {
        vec![
            ("BACKSTOP_RUN_ID".into(), self.run_id.clone()),
            ("BACKSTOP_ATTEMPT".into(), attempt.to_string()),
            ("BACKSTOP_MAX_ATTEMPTS".into(), max.to_string()),
            ("BACKSTOP_LINK".into(), link.to_string()),
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

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        outcome: Outcome,
        exit_code: u8,
        index: usize,
        link: &ChainLink<'_>,
        links: usize,
        (link_attempts, link_max_attempts): (u32, u32),
        reason: Option<String>,
    ) -> RunSummary {
        let summary = RunSummary {
            outcome,
            exit_code,
            link: index,
            link_name: link.name.clone(),
            links,
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
            reason: reason.filter(|r| !r.is_empty()),
        };
        self.sink.event(&Event::Finished(summary.clone()));
        summary
    }
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
    let kind = format!("{:?}", b.kind).to_lowercase();
    let chosen = format_duration(round_ms(delay.chosen));
    let base = format_duration(round_ms(delay.base));
    match b.jitter {
        Jitter::None => format!("{kind} backoff: {base}"),
        j => {
            let (lo, hi) = jitter_bounds(j, delay.base);
            format!(
                "{kind} backoff {base}, {} jitter in {}..{}: {chosen}",
                format!("{j:?}").to_lowercase(),
                format_duration(round_ms(lo)),
                format_duration(round_ms(hi)),
            )
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
