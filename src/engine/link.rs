//! One `run` or `call` link's attempts: each prepared, made, judged and told once,
//! then the link ends or waits for the next. The decisions are `decide`'s; this is
//! what acts on them: the attempter, the tree, the budget, the clock, the events.

use std::time::Duration;

use tokio::time::Instant;

use super::chain::ChainLink;
use super::decide::{
    Attempted, Limit, LinkEnd, Next, Position, Work, attempt_limit, judge, next_step,
    output_went_away,
};
use super::{Engine, wait_for_interrupt};
use crate::attempt::{AttemptOutcome, AttemptSpec, Attempter, CallWork, End, Prompt, StdinFrom};
use crate::backoff::Schedule;
use crate::classify::{FailureClass, LinkPatterns, Verdict};
use crate::events::{AttemptReport, Event, Layer, SkippedLink};
use crate::policy::CallLink;
use crate::policy::values::millis;
use crate::reason::{LinkFailure, wall_time};
use crate::state::{Admission, Retry};

impl<'a, A: Attempter> Engine<'a, A> {
    /// Attempts a `run` or `call` link until it succeeds, and otherwise says why it
    /// ended. Each attempt is prepared, made, judged and told once; then the link
    /// ends, or waits for the next attempt.
    pub(super) async fn run_link(
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
            // Prepared first: a link that ends before its attempt (asked to stop, out
            // of time, over budget) takes no probe of its breaker and no place in the
            // retry budget.
            let limit = match self.prepare(pos, link, work, deadline) {
                Ok(limit) => limit,
                Err(end) => return end,
            };
            let admission = match self.admit(pos, link).await {
                Ok(admission) => admission,
                Err(end) => return end,
            };
            let attempted = match self.attempt(pos, link, work, &patterns, limit).await {
                Ok(attempted) => attempted,
                Err(signal) => return LinkEnd::Stop { signal },
            };
            let verdict = judge(work, &attempted, &patterns, link.retry, critical);
            self.tally(pos, &attempted.outcome.end, verdict.as_ref());
            // An attempt the run's own stop ended (Ctrl-C, SIGTERM, a reader of its
            // output gone) says nothing of the service: the breaker is not told.
            let said_nothing =
                verdict.as_ref().is_some_and(|v| v.stop) || output_went_away(&attempted.outcome);
            if let (Some(key), Some(guard), false) =
                (&link.key, self.guard.as_deref_mut(), said_nothing)
            {
                guard.record(key, admission, verdict.is_some()).await;
                self.guard_warnings();
            }
            let mut next = next_step(
                verdict.as_ref(),
                &attempted.outcome,
                pos,
                link.retry,
                &mut schedule,
                deadline,
            );
            if matches!(next, Next::Retry { .. })
                && let Retry::Off { first } = self.may_retry().await
            {
                self.guard_warnings();
                if first {
                    self.sink.event(&Event::RetriesOff {
                        link: pos.link,
                        link_name: link.name.clone(),
                    });
                }
                next = Next::End(LinkEnd::Failed(LinkFailure::RetriesOff));
            }
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

    /// Asks the link's breaker whether it may be attempted (a first attempt also
    /// counts in the retry budget); an open breaker ends the link at once, told once.
    async fn admit(&mut self, pos: Position, link: &ChainLink<'_>) -> Result<Admission, LinkEnd> {
        let first = pos.attempt == 1;
        let key = link.key.as_deref().unwrap_or("");
        let Some(guard) = self.guard.as_deref_mut() else {
            return Ok(Admission::Go);
        };
        let admission = guard.admit(key, first).await;
        self.guard_warnings();
        let Admission::Open {
            since_ms,
            next_probe_ms,
        } = admission
        else {
            return Ok(admission);
        };
        self.sink.event(&Event::BreakerSkipped(SkippedLink {
            link: pos.link,
            link_name: link.name.clone(),
            key: key.to_string(),
            open_since: wall_time(since_ms),
            next_probe: wall_time(next_probe_ms),
        }));
        Err(LinkEnd::Failed(LinkFailure::BreakerOpen {
            since_ms,
            next_probe_ms,
        }))
    }

    /// Tells what the guard found wrong with its state (once: it is off after).
    fn guard_warnings(&mut self) {
        let warnings = self
            .guard
            .as_deref_mut()
            .map(crate::state::Guard::take_warnings);
        for w in warnings.unwrap_or_default() {
            self.sink.event(&Event::Warning(w));
        }
    }

    /// Whether the retry budget allows one more retry (always, without a guard).
    async fn may_retry(&mut self) -> Retry {
        match self.guard.as_deref_mut() {
            Some(guard) => guard.may_retry().await,
            None => Retry::Allowed,
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
        // The run's first attempt finds the tree as the snapshot has it.
        if pos.layer() != Layer::Primary {
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
            hook: false,
        };
        let outcome = self.attempter.attempt(spec).await;
        self.account(&outcome);
        // An exit 0 that `retry.fail_on.output` makes a failure is not validated.
        let failed = patterns.fails_success(&outcome.matched);
        self.validated(pos, link, work, outcome, failed).await
    }

    /// Checks a command's success with `rollback.validate`, when the policy has one.
    async fn validated(
        &mut self,
        pos: Position,
        link: &ChainLink<'_>,
        work: &Work<'_>,
        mut outcome: AttemptOutcome,
        failed_by_output: bool,
    ) -> Result<Attempted, i32> {
        // `validate` checks what a command left on disk. A call link leaves nothing
        // there, and its answer is already printed: validating it could only fail
        // it for the tree's state and make it answer again.
        let policy = self.policy;
        let validate = match (work, &policy.rollback.validate) {
            (Work::Command(_), Some(validate)) if outcome.end.success() && !failed_by_output => {
                validate
            }
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
            injected: outcome.injected,
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
    pub(super) fn call_work(&self, link: &CallLink) -> Result<CallWork<'a>, LinkFailure> {
        let cannot = |why| LinkFailure::CannotCall { why };
        let policy = self.policy;
        let model = policy
            .models
            .get(&link.model)
            .ok_or_else(|| cannot(format!("no model named `{}`", link.model)))?;
        let provider = policy
            .providers
            .get(&model.provider)
            .ok_or_else(|| cannot(format!("no provider named `{}`", model.provider)))?;
        let prompt = match (&link.prompt, &self.prompt) {
            // A link with its own prompt asks a different question: the
            // conversation's earlier turns are not part of it.
            (Some(user), _) => Prompt::new(link.system.clone(), user.clone()),
            (None, Some(p)) => Prompt {
                system: link.system.clone().or_else(|| p.system.clone()),
                earlier: p.earlier.clone(),
                user: p.user.clone(),
            },
            (None, None) => {
                let why = format!("the `call` link to `{}` has no prompt", link.model);
                return Err(cannot(why));
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
            cut: None,
        })
    }

    /// Whether the next call could stay within `budget`, judged by its prompt and
    /// `max_tokens`.
    fn within_budget(&self, work: &CallWork) -> Result<(), LinkFailure> {
        let budget = &self.policy.budget;
        // Every turn of a conversation is sent, and read, again.
        let input = work.prompt.text_len() as u64 / 4 + 1;
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
}
