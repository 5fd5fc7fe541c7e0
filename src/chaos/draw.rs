//! Random draws for the simulator: which fault an attempt suffers, how long it takes,
//! and when outages start on the simulated timeline. Every draw comes from a seeded
//! generator, so a seed gives the same simulation every time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{CallFaults, CommandFaults, FailsWith, Faults, Outage, Spread};
use crate::policy::values::MAX_DURATION;

/// What an attempt suffers; its timing is drawn when it is played out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Ok,
    Exit(i32),
    Signal(i32),
    /// A command hangs until a time limit ends it.
    Hang,
    Network,
    Status(u16),
    FirstTokenStall,
    Stall,
    Truncated,
    ContextLength,
    ContentPolicy,
}

impl Fault {
    pub fn failed(self) -> bool {
        self != Fault::Ok
    }

    /// An outage's failure, for a model call.
    pub fn of_outage_call(with: FailsWith) -> Fault {
        match with {
            // Only an error status fails a call as a status; an exit code under 400
            // given for a target that is also a model fails its calls at the network.
            FailsWith::Code(c) if c >= 400 => Fault::Status(c),
            _ => Fault::Network,
        }
    }

    /// An outage's failure, for a command: its exit code, or 1 (a status, `network`).
    pub fn of_outage_command(with: FailsWith) -> Fault {
        match with {
            FailsWith::Code(c) if c <= 255 => Fault::Exit(i32::from(c)),
            _ => Fault::Exit(1),
        }
    }
}

/// A generator for one run: the same run number under the same seed draws the same,
/// whichever policy it runs under.
pub fn run_rng(seed: u64, run: u64) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(run.wrapping_add(1))))
}

/// splitmix64's finalizer: nearby inputs give unrelated outputs.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One of the faults, by their probabilities; `Ok` for what is left.
fn pick(rng: &mut StdRng, faults: impl IntoIterator<Item = (f64, Fault)>) -> Fault {
    let u: f64 = rng.r#gen();
    let mut acc = 0.0;
    for (p, fault) in faults {
        acc += p;
        if u < acc {
            return fault;
        }
    }
    Fault::Ok
}

pub fn command_fault(rng: &mut StdRng, f: &CommandFaults) -> Fault {
    let exits = f.exit.iter().map(|&(c, p)| (p, Fault::Exit(c)));
    let signals = f.signal.iter().map(|&(s, p)| (p, Fault::Signal(s)));
    pick(rng, exits.chain(signals).chain([(f.timeout, Fault::Hang)]))
}

pub fn call_fault(rng: &mut StdRng, f: &CallFaults) -> Fault {
    let statuses = f.status.iter().map(|&(s, p)| (p, Fault::Status(s)));
    let others = [
        (f.network, Fault::Network),
        (f.first_token_stall, Fault::FirstTokenStall),
        (f.stall, Fault::Stall),
        (f.truncated, Fault::Truncated),
        (f.context_length, Fault::ContextLength),
        (f.content_policy, Fault::ContentPolicy),
    ];
    pick(rng, others.into_iter().chain(statuses))
}

/// Where an attempt's fault came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Drawn,
    Outage,
    Sticky,
}

/// The one rule of `simulate`, `--chaos` and `chaos serve`: an outage of `target` at
/// `t_ms`, else (`correlation.sticky`) `last` again when it failed, else the target's
/// own rates. `last` is the same attempt's last fault, as each caller knows it: the
/// link's (`Picker`), or the same request body's (chaos serve's `Dealer`).
pub fn choose(
    faults: &Faults,
    timeline: &mut Timeline,
    rng: &mut StdRng,
    (t_ms, target): (f64, &str),
    last: Option<Fault>,
    call: bool,
) -> (Fault, Why) {
    if let Some(with) = timeline.active(&faults.outages, t_ms, target) {
        let fault = if call {
            Fault::of_outage_call(with)
        } else {
            Fault::of_outage_command(with)
        };
        return (fault, Why::Outage);
    }
    if let Some(last) = last
        && last.failed()
        && faults.sticky > 0.0
        && rng.r#gen::<f64>() < faults.sticky
    {
        return (last, Why::Sticky);
    }
    let fault = if call {
        faults
            .call(target)
            .map_or(Fault::Ok, |f| call_fault(rng, f))
    } else {
        faults
            .command(target)
            .map_or(Fault::Ok, |f| command_fault(rng, f))
    };
    (fault, Why::Drawn)
}

/// The wait a 429 or 529 asks for (ms), drawn from the model's `retry_after`; `None`
/// for another status, or without one.
pub fn retry_after_ms(rng: &mut StdRng, faults: Option<&CallFaults>, status: u16) -> Option<u64> {
    let spread = faults.and_then(|f| f.retry_after.as_ref());
    match (status, spread) {
        (429 | 529, Some(spread)) => Some(spread_ms(rng, Some(spread)).round() as u64),
        _ => None,
    }
}

/// Milliseconds drawn as a duration.
pub fn ms(v: f64) -> std::time::Duration {
    std::time::Duration::from_micros((v * 1e3) as u64)
}

/// A draw from the log-normal distribution, in milliseconds, within a policy's
/// longest duration; `None` draws nothing (0).
pub fn spread_ms(rng: &mut StdRng, s: Option<&Spread>) -> f64 {
    let Some(s) = s else { return 0.0 };
    let ms = (s.mu + s.sigma * normal(rng)).exp();
    ms.clamp(0.0, MAX_DURATION.as_secs_f64() * 1e3)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // in (0, 1]: ln is finite
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// At most this many outage windows are held at once; past it, no new one starts
/// until old ones end (a rate that high makes every attempt fail anyway).
const MAX_WINDOWS: usize = 1 << 16;

/// The outages on the simulated timeline (milliseconds), drawn as they are needed.
pub struct Timeline {
    /// One generator per outage: the windows drawn do not depend on when they are
    /// asked for, so every policy meets the same outages.
    rngs: Vec<StdRng>,
    /// Per outage: when its next window starts.
    next: Vec<f64>,
    /// Windows that may still hold an attempt: (outage, start, end).
    windows: Vec<(usize, f64, f64)>,
}

impl Timeline {
    pub fn new(outages: &[Outage], seed: u64) -> Timeline {
        let mut rngs: Vec<StdRng> = (0..outages.len() as u64)
            .map(|i| StdRng::seed_from_u64(mix(seed ^ mix(0x6f75_7461_6765 + i))))
            .collect();
        let next = outages
            .iter()
            .zip(&mut rngs)
            .map(|(o, rng)| gap_ms(rng, o))
            .collect();
        Timeline {
            rngs,
            next,
            windows: Vec::new(),
        }
    }

    /// Forgets windows that ended before `t`: no later query is earlier than a run's start.
    pub fn forget_before(&mut self, t: f64) {
        self.windows.retain(|w| w.2 >= t);
    }

    /// The failure of an outage of `target` (or of every target) at `t`, if any.
    pub fn active(&mut self, outages: &[Outage], t: f64, target: &str) -> Option<FailsWith> {
        self.draw_until(outages, t);
        self.windows
            .iter()
            .find(|&&(i, start, end)| {
                start <= t && t < end && (outages[i].target == "*" || outages[i].target == target)
            })
            .map(|&(i, ..)| outages[i].fails_with)
    }

    fn draw_until(&mut self, outages: &[Outage], t: f64) {
        for (i, o) in outages.iter().enumerate() {
            while self.next[i] <= t && self.windows.len() < MAX_WINDOWS {
                let start = self.next[i];
                let rng = &mut self.rngs[i];
                let length = spread_ms(rng, Some(&o.duration));
                self.windows.push((i, start, start + length));
                self.next[i] = start + gap_ms(rng, o);
            }
        }
    }
}

/// The time to an outage's next start: exponential, at its rate.
fn gap_ms(rng: &mut StdRng, o: &Outage) -> f64 {
    if o.start_per_hour <= 0.0 {
        return f64::INFINITY;
    }
    let u: f64 = 1.0 - rng.r#gen::<f64>();
    -u.ln() / (o.start_per_hour / 3_600_000.0)
}
