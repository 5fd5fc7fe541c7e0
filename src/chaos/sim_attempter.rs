//! The simulator's [`Attempter`]: each attempt's outcome is drawn from the fault
//! model and played out on tokio's paused clock, shaped as the real attempters shape
//! theirs (`process.rs`, `call/client.rs`), so the engine's classifier, Retry-After
//! handling, deadline and fallbacks all run for real.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::draw::{self, Fault};
use super::model::Faults;
use super::pick::{Picker, link_of};
use super::shape::CallDraws;
use crate::attempt::{AttemptOutcome, AttemptSpec, Attempter, CallReport, CallWork, End};
use crate::call::client::DEFAULT_CALL_ATTEMPT;
use crate::policy::DefaultAnswer;

pub struct SimAttempter<'a> {
    pub picker: Picker<'a>,
    /// The run's start on the simulated timeline (ms), and on the paused clock.
    run_at: f64,
    t0: Instant,
}

impl<'a> SimAttempter<'a> {
    pub fn new(faults: &'a Faults, seed: u64) -> SimAttempter<'a> {
        SimAttempter {
            picker: Picker::new(faults, seed),
            run_at: 0.0,
            t0: Instant::now(),
        }
    }

    /// Starts run number `run`: its own draws, its place on the timeline.
    pub fn start_run(&mut self, seed: u64, run: u64) {
        self.picker.start_run(draw::run_rng(seed, run));
        self.run_at = run as f64 * self.picker.faults.interval_ms;
        self.t0 = Instant::now();
        self.picker.timeline.forget_before(self.run_at);
    }

    fn now_ms(&self) -> f64 {
        self.run_at + self.t0.elapsed().as_secs_f64() * 1e3
    }

    fn fault(&mut self, link: &str, target: &str, call: bool) -> Fault {
        let t = self.now_ms();
        self.picker.pick(t, link, target, call)
    }

    async fn command(&mut self, spec: &AttemptSpec<'_>, link: &str) -> End {
        let fault = self.fault(link, link, false);
        let took = draw::ms(draw::spread_ms(
            &mut self.picker.rng,
            self.picker
                .faults
                .command(link)
                .and_then(|f| f.duration.as_ref()),
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
        let faults = self.picker.faults.call(model);
        let latency = draw::ms(draw::spread_ms(
            &mut self.picker.rng,
            faults.and_then(|f| f.latency.as_ref()),
        ));
        let mut report = CallReport {
            model: work.model.name.clone(),
            provider: work.model.provider.clone(),
            ..CallReport::default()
        };
        let mut draws = CallDraws {
            faults,
            rng: &mut self.picker.rng,
            word: "simulated",
        };
        let (end, took) = draws.end(fault, work, latency, &mut report);
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

fn outcome(end: End, duration: Duration) -> AttemptOutcome {
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at: SystemTime::now(),
        duration,
        no_retry: None,
        call: None,
        output_closed: false,
        injected: None,
    }
}

impl Attempter for &mut SimAttempter<'_> {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let link = link_of(&spec);
        match (link, spec.call, spec.hook) {
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
