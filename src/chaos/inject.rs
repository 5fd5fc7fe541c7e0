//! `run --chaos FAULTS` and `call --chaos FAULTS`: the fault model's faults in real
//! attempts. [`ChaosAttempter`] wraps the real attempter and draws each attempt's
//! fault with the simulator's rule ([`Picker`]):
//!
//! - a command attempt runs, and is then failed as drawn (its exit code, a signal,
//!   a timeout), so retries, fallbacks and a rollback happen on the real tree;
//! - a model call that draws a stall or a truncated stream is made, and its answer is
//!   cut into ([`Cut`]): the client's own limits and parser meet the fault; one that
//!   draws a network error or an error status is answered in its place, with no
//!   request (a 429 carries a drawn Retry-After, as a provider's does).
//!
//! Hooks and `validate` are never touched. Each injected attempt says what was done
//! (`AttemptOutcome::injected`), and the run's record names the fault file and the
//! seed, so `--chaos-seed` replays the same faults.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;

use super::draw::{self, Fault};
use super::model::Faults;
use super::pick::{Picker, link_of};
use super::shape::CallDraws;
use crate::attempt::{AttemptOutcome, AttemptSpec, Attempter, CallReport, CallWork, Cut, End};
use crate::policy::DefaultAnswer;
use crate::record::ChaosRef;
use crate::settings::ChaosChoice;

/// The most bytes of an answer let through before a cut: few enough that every real
/// answer is longer (an SSE event alone is), so a drawn cut always lands.
const CUT_WITHIN: usize = 32;

/// Seeds drawn for a run without `--chaos-seed` stay below this (2^53).
const MAX_DRAWN_SEED: u64 = 1 << 53;

/// A fault model and the seed of a run's draws, as `--chaos` and `--chaos-seed` gave
/// them (a seed drawn when none was given, and recorded, so the run can be replayed).
#[derive(Clone, Debug)]
pub struct Chaos {
    pub file: PathBuf,
    pub faults: Faults,
    pub seed: u64,
    /// BLAKE3 of the file as it was read.
    pub digest: String,
}

impl Chaos {
    /// Loads the file `--chaos` names (errors name the file, line and key), with
    /// `--chaos-seed` or a fresh seed.
    pub fn from_choice(choice: &ChaosChoice) -> Result<Chaos, crate::error::UserError> {
        let (faults, digest) = super::model::load_file_digest(&choice.file)?;
        // Below 2^53: a seed read back from JSON by a tool that keeps numbers as
        // doubles (jq, JavaScript) is still the same seed.
        let seed = choice
            .seed
            .unwrap_or_else(|| rand::thread_rng().gen_range(0..MAX_DRAWN_SEED));
        // The record names the file as it can be found again from anywhere, and what it
        // held: an edited fault file draws differently under the same seed.
        let file = std::fs::canonicalize(&choice.file).unwrap_or_else(|_| choice.file.clone());
        Ok(Chaos {
            file,
            faults,
            seed,
            digest,
        })
    }

    /// What the record keeps.
    pub fn reference(&self) -> ChaosRef {
        ChaosRef {
            faults: self.file.clone(),
            seed: self.seed,
            digest: self.digest.clone(),
        }
    }

    /// The line said as the run starts.
    pub fn announce(&self) -> String {
        format!(
            "chaos: injecting the faults of {} (--chaos-seed {} draws them again)",
            crate::names::quote_path(&self.file),
            self.seed
        )
    }
}

/// The real attempter, with faults injected when a [`Chaos`] is given; without one,
/// every attempt passes straight through.
pub struct ChaosAttempter<'a, A> {
    inner: A,
    picker: Option<Picker<'a>>,
    /// This part's start (the run's, or a step's: each step is a part with its own
    /// draws): its outages are placed on a timeline from here.
    t0: Instant,
}

impl<'a, A: Attempter> ChaosAttempter<'a, A> {
    /// Draws of part `part` of the run (a step), so that each step has its own.
    pub fn new(inner: A, chaos: Option<&'a Chaos>, part: u64) -> ChaosAttempter<'a, A> {
        ChaosAttempter {
            inner,
            picker: chaos.map(|c| {
                let mut picker = Picker::new(&c.faults, c.seed);
                picker.start_run(draw::run_rng(c.seed, part));
                picker
            }),
            t0: Instant::now(),
        }
    }

    /// Runs the attempt, then fails it as drawn if it succeeded. A real failure
    /// stands as it is: the engine must act on it (a Ctrl-C the command got from the
    /// terminal, a critical exit code, a timeout not to retry), and an injected one
    /// could only hide it.
    async fn command(&mut self, spec: AttemptSpec<'_>, fault: Fault) -> AttemptOutcome {
        let (limit, deadline) = (spec.timeout, spec.timeout_is_deadline);
        let mut outcome = self.inner.attempt(spec).await;
        let injected = match fault {
            Fault::Exit(code) => End::Exited { code },
            Fault::Signal(signal) => End::Signaled { signal },
            Fault::Hang => End::TimedOut {
                after_ms: millis(limit.unwrap_or(outcome.duration)),
                deadline,
            },
            _ => return outcome,
        };
        if outcome.end.success() {
            outcome.injected = Some(injected.describe());
            outcome.end = injected;
        }
        outcome
    }

    async fn call(
        &mut self,
        spec: AttemptSpec<'_>,
        work: &CallWork<'_>,
        fault: Fault,
    ) -> AttemptOutcome {
        let picker = self
            .picker
            .as_mut()
            .expect("faults are drawn only with a model");
        let cut = match fault {
            Fault::Ok => return self.inner.attempt(spec).await,
            Fault::FirstTokenStall => Cut {
                after_bytes: 0,
                stall: true,
            },
            Fault::Stall | Fault::Truncated => Cut {
                after_bytes: picker.rng.gen_range(1..=CUT_WITHIN),
                stall: fault == Fault::Stall,
            },
            _ => return in_place(picker, work, fault),
        };
        let work = CallWork {
            cut: Some(cut),
            ..work.clone()
        };
        let mut outcome = self
            .inner
            .attempt(AttemptSpec {
                call: Some(&work),
                ..spec
            })
            .await;
        // Only an answer's body is cut: a request that failed on its own (an error
        // status, a network error, a limit before the head) failed for real, and says so.
        let answered = outcome
            .call
            .as_ref()
            .and_then(|c| c.status)
            .is_some_and(|s| (200..300).contains(&s));
        if answered {
            let mut said = describe_cut(cut);
            if outcome.end == End::Answered {
                said.push_str(" (the answer was shorter: not cut)");
            }
            outcome.injected = Some(said);
        }
        outcome
    }
}

/// A call answered in the request's place: a network error, an error status (with
/// a drawn Retry-After), a context-length error or a refusal.
fn in_place(picker: &mut Picker<'_>, work: &CallWork<'_>, fault: Fault) -> AttemptOutcome {
    let mut report = CallReport {
        model: work.model.name.clone(),
        provider: work.model.provider.clone(),
        ..CallReport::default()
    };
    let mut draws = CallDraws {
        faults: picker.faults.call(&work.model.name),
        rng: &mut picker.rng,
        word: "injected by --chaos",
    };
    let (end, _) = draws.end(fault, work, Duration::ZERO, &mut report);
    let said = match &end {
        End::Status { status: 200, .. } => "a refusal (content policy)".to_string(),
        End::Status { status, .. } => match report.retry_after_ms {
            Some(ms) => format!("HTTP {status}, Retry-After {ms}ms"),
            None => format!("HTTP {status}"),
        },
        other => other.describe(),
    };
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at: std::time::SystemTime::now(),
        duration: Duration::ZERO,
        no_retry: None,
        call: Some(report),
        output_closed: false,
        injected: Some(format!("{said}, in place of the request")),
    }
}

fn describe_cut(cut: Cut) -> String {
    match cut {
        Cut {
            after_bytes: 0,
            stall: true,
        } => "no first token: the answer's body stalled".into(),
        Cut {
            after_bytes,
            stall: true,
        } => format!("the stream stalled after {after_bytes} bytes"),
        Cut { after_bytes, .. } => format!("the stream cut after {after_bytes} bytes"),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<A: Attempter> Attempter for ChaosAttempter<'_, A> {
    async fn attempt(&mut self, spec: AttemptSpec<'_>) -> AttemptOutcome {
        let t_ms = self.t0.elapsed().as_secs_f64() * 1e3;
        let (Some(picker), Some(link), false) = (self.picker.as_mut(), link_of(&spec), spec.hook)
        else {
            return self.inner.attempt(spec).await;
        };
        match spec.call {
            Some(work) => {
                let fault = picker.pick(t_ms, &link, &work.model.name, true);
                self.call(spec, work, fault).await
            }
            None => {
                let fault = picker.pick(t_ms, &link, &link, false);
                self.command(spec, fault).await
            }
        }
    }

    async fn answer(&mut self, answer: &DefaultAnswer) -> Option<i32> {
        self.inner.answer(answer).await
    }
}
