//! The simulator's [`Attempter`]: each attempt's outcome is drawn from the fault
//! model and played out on tokio's paused clock, shaped as the real attempters shape
//! theirs (`process.rs`, `call/client.rs`), so the engine's classifier, Retry-After
//! handling, deadline and fallbacks all run for real.

use std::time::{Duration, SystemTime};

use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::draw::{self, Fault, Timeline};
use super::model::Faults;
use crate::attempt::{
    AttemptOutcome, AttemptSpec, Attempter, CallError, CallReport, CallWork, End,
};
use crate::call::client::DEFAULT_CALL_ATTEMPT;
use crate::policy::DefaultAnswer;

pub struct SimAttempter<'a> {
    faults: &'a Faults,
    /// Commands that are not attempts of the chain: `rollback.validate`, `on_retry`.
    hooks: Vec<Vec<String>>,
    pub timeline: Timeline,
    rng: StdRng,
    /// The run's start on the simulated timeline (ms), and on the paused clock.
    run_at: f64,
    t0: Instant,
    /// The last attempt's link and what it suffered, for `correlation.sticky`.
    last: Option<(String, Fault)>,
}

impl<'a> SimAttempter<'a> {
    pub fn new(faults: &'a Faults, hooks: Vec<Vec<String>>, seed: u64) -> SimAttempter<'a> {
        SimAttempter {
            faults,
            hooks,
            timeline: Timeline::new(&faults.outages, seed),
            rng: draw::run_rng(seed, 0),
            run_at: 0.0,
            t0: Instant::now(),
            last: None,
        }
    }

    /// Starts run number `run`: its own draws, its place on the timeline.
    pub fn start_run(&mut self, seed: u64, run: u64) {
        self.rng = draw::run_rng(seed, run);
        self.run_at = run as f64 * self.faults.interval_ms;
        self.t0 = Instant::now();
        self.last = None;
        self.timeline.forget_before(self.run_at);
    }

    fn now_ms(&self) -> f64 {
        self.run_at + self.t0.elapsed().as_secs_f64() * 1e3
    }

    /// What this attempt suffers: an outage, else the last failure again (sticky),
    /// else the target's own rates.
    fn fault(&mut self, link: &str, target: &str, call: bool) -> Fault {
        let t = self.now_ms();
        let faults = self.faults;
        if let Some(with) = self.timeline.active(&faults.outages, t, target) {
            return if call {
                Fault::of_outage_call(with)
            } else {
                Fault::of_outage_command(with)
            };
        }
        if let Some((last_link, last)) = &self.last
            && last_link == link
            && last.failed()
            && faults.sticky > 0.0
            && self.rng.r#gen::<f64>() < faults.sticky
        {
            return *last;
        }
        if call {
            faults
                .call(target)
                .map_or(Fault::Ok, |f| draw::call_fault(&mut self.rng, f))
        } else {
            faults
                .command(target)
                .map_or(Fault::Ok, |f| draw::command_fault(&mut self.rng, f))
        }
    }

    async fn command(&mut self, spec: &AttemptSpec<'_>, link: &str) -> End {
        let fault = self.fault(link, link, false);
        self.last = Some((link.to_string(), fault));
        let took = ms(draw::spread_ms(
            &mut self.rng,
            self.faults.command(link).and_then(|f| f.duration.as_ref()),
        ));
        let (end, took) = match fault {
            Fault::Exit(code) => (End::Exited { code }, took),
            Fault::Signal(signal) => (End::Signaled { signal }, took),
            // With no limit at all, a hang is a timeout after its drawn duration.
            Fault::Hang => (
                timed_out(took, false),
                spec.timeout.map_or(took, |t| t + Duration::from_millis(1)),
            ),
            _ => (End::Exited { code: 0 }, took),
        };
        within(spec.timeout, spec.timeout_is_deadline, end, took).await
    }

    async fn call(
        &mut self,
        spec: &AttemptSpec<'_>,
        work: &CallWork<'_>,
        link: &str,
    ) -> AttemptOutcome {
        let model = work.model.name.as_str();
        let fault = self.fault(link, model, true);
        self.last = Some((link.to_string(), fault));
        let faults = self.faults.call(model);
        let latency = ms(draw::spread_ms(
            &mut self.rng,
            faults.and_then(|f| f.latency.as_ref()),
        ));
        let mut report = CallReport {
            model: work.model.name.clone(),
            provider: work.model.provider.clone(),
            ..CallReport::default()
        };
        let (end, took) = self.call_end(fault, work, latency, &mut report);
        let limit = spec.timeout.unwrap_or(DEFAULT_CALL_ATTEMPT);
        let started = Instant::now();
        let end = within(Some(limit), spec.timeout_is_deadline, end, took).await;
        if matches!(end, End::TimedOut { .. }) {
            // Cut short: what the exchange would have learned never arrived.
            report = CallReport {
                model: report.model,
                provider: report.provider,
                ..CallReport::default()
            };
        }
        if let Some(price) = &work.model.price {
            report.cost_usd = Some(price.cost(report.input_tokens, report.output_tokens));
        }
        let mut outcome = outcome(end, started.elapsed());
        outcome.call = Some(report);
        outcome
    }

    /// The wait a 429 or 529 asks for, as the client reads `retry-after-ms`.
    fn retry_after(&mut self, status: u16, model: &str, report: &mut CallReport) {
        let spread = self.faults.call(model).and_then(|f| f.retry_after.as_ref());
        if let (429 | 529, Some(spread)) = (status, spread) {
            let wait = draw::spread_ms(&mut self.rng, Some(spread));
            report.retry_after_ms = Some(wait.round() as u64);
            report.retry_after_rule = Some("retry-after-ms header".into());
        }
    }

    /// How a call with `fault` ends, and how long it takes.
    fn call_end(
        &mut self,
        fault: Fault,
        work: &CallWork<'_>,
        latency: Duration,
        report: &mut CallReport,
    ) -> (End, Duration) {
        let faults = self.faults.call(&work.model.name);
        let (input, output) = faults.map_or((0, 0), |f| (f.input_tokens, f.output_tokens));
        let quick = latency / 10;
        // The client gives a status's end the provider's message.
        let status = |report: &mut CallReport, status: u16| {
            report.status = Some(status);
            End::Status {
                status,
                message: report.message.clone(),
            }
        };
        match fault {
            Fault::Network => (network(), quick),
            Fault::Status(s) => {
                self.retry_after(s, &work.model.name, report);
                report.message = Some("simulated".into());
                (status(report, s), quick)
            }
            Fault::FirstTokenStall => (
                call_timed_out("timeout.first_token", work.first_token),
                work.first_token,
            ),
            Fault::Stall => {
                report.status = Some(200);
                (
                    call_timed_out("timeout.stall", work.stall),
                    latency / 2 + work.stall,
                )
            }
            Fault::Truncated => {
                report.status = Some(200);
                let message = "the stream ended before its finish event".into();
                (End::Stream { message }, latency)
            }
            Fault::ContextLength => {
                report.error = Some(CallError::ContextLength);
                report.message = Some("simulated: the prompt is over the context length".into());
                (status(report, 400), quick)
            }
            Fault::ContentPolicy => {
                (report.input_tokens, report.output_tokens) = (input, output);
                report.error = Some(CallError::ContentPolicy);
                report.message = Some("the model refused (content policy)".into());
                (status(report, 200), latency)
            }
            _ => {
                report.status = Some(200);
                (report.input_tokens, report.output_tokens) = (input, output);
                report.text = Some(String::new());
                (End::Answered, latency)
            }
        }
    }
}

fn network() -> End {
    End::Network {
        message: "simulated: connection reset".into(),
    }
}

fn call_timed_out(limit: &str, after: Duration) -> End {
    End::CallTimedOut {
        limit: limit.into(),
        after_ms: after.as_millis() as u64,
        message: format!("simulated: {limit} reached"),
    }
}

fn timed_out(after: Duration, deadline: bool) -> End {
    End::TimedOut {
        after_ms: after.as_millis() as u64,
        deadline,
    }
}

/// Plays an attempt out: it ends as drawn after `took`, or is cut at `limit`.
async fn within(limit: Option<Duration>, deadline: bool, end: End, took: Duration) -> End {
    match limit {
        Some(limit) if took > limit => {
            tokio::time::sleep(limit).await;
            timed_out(limit, deadline)
        }
        _ => {
            tokio::time::sleep(took).await;
            end
        }
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_micros((v * 1e3) as u64)
}

fn outcome(end: End, duration: Duration) -> AttemptOutcome {
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at: SystemTime::now(),
        duration,
        no_retry: None,
        call: None,
        output_closed: false,
    }
}

/// The chain link an attempt is for, from the environment the engine gives it.
fn link_of(spec: &AttemptSpec<'_>) -> Option<String> {
    spec.env
        .iter()
        .find(|(k, _)| k == "BACKSTOP_LINK_NAME")
        .map(|(_, v)| v.clone())
}

impl Attempter for &mut SimAttempter<'_> {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let link = link_of(&spec);
        let hook = matches!(spec.stdin, crate::attempt::StdinFrom::Bytes(_))
            || (spec.call.is_none() && self.hooks.iter().any(|h| h.as_slice() == spec.argv));
        match (link, spec.call, hook) {
            (Some(link), Some(work), _) => self.call(&spec, work, &link).await,
            (Some(link), None, false) => {
                let started = Instant::now();
                let end = self.command(&spec, &link).await;
                outcome(end, started.elapsed())
            }
            // Hooks and `validate` succeed at once: the model has no faults for them.
            _ => outcome(End::Exited { code: 0 }, Duration::ZERO),
        }
    }

    async fn answer(&mut self, _answer: &DefaultAnswer) -> Option<i32> {
        None
    }
}
