//! Which fault an attempt suffers, the one rule `simulate` and `--chaos` share: an
//! outage of its target first, else the link's last failure again (`sticky`), else the
//! target's own rates. Every draw from one seeded generator.

use rand::rngs::StdRng;

use super::draw::{self, Fault, Timeline};
use super::model::Faults;

pub struct Picker<'a> {
    pub faults: &'a Faults,
    pub timeline: Timeline,
    /// The run's draws: faults, and what the attempter draws beside them (durations,
    /// Retry-After, where a stream is cut).
    pub rng: StdRng,
    /// The last attempt's link and what it suffered, for `correlation.sticky`.
    last: Option<(String, Fault)>,
}

impl<'a> Picker<'a> {
    pub fn new(faults: &'a Faults, seed: u64) -> Picker<'a> {
        Picker {
            faults,
            timeline: Timeline::new(&faults.outages, seed),
            rng: draw::run_rng(seed, 0),
            last: None,
        }
    }

    /// A new run: its own draws, nothing sticky from the last one.
    pub fn start_run(&mut self, rng: StdRng) {
        self.rng = rng;
        self.last = None;
    }

    /// The fault of an attempt of `link` at `target` (a model's name for a call, the
    /// link's for a command), `t_ms` into the timeline.
    pub fn pick(&mut self, t_ms: f64, link: &str, target: &str, call: bool) -> Fault {
        let fault = self.choose(t_ms, link, target, call);
        self.last = Some((link.to_string(), fault));
        fault
    }

    fn choose(&mut self, t_ms: f64, link: &str, target: &str, call: bool) -> Fault {
        let last = self
            .last
            .as_ref()
            .filter(|(last_link, _)| last_link == link)
            .map(|&(_, fault)| fault);
        let (fault, _) = draw::choose(
            self.faults,
            &mut self.timeline,
            &mut self.rng,
            (t_ms, target),
            last,
            call,
        );
        fault
    }
}

/// The chain link an attempt is for, from the environment the engine gives it
/// (`None` for a hook: `on_retry`, `validate`, the escalation).
pub fn link_of(spec: &crate::attempt::AttemptSpec<'_>) -> Option<String> {
    spec.env
        .iter()
        .find(|(k, _)| k == "BACKSTOP_LINK_NAME")
        .map(|(_, v)| v.clone())
}
