//! Which fault each request to `backstop chaos serve` suffers, drawn as the simulator
//! draws an attempt's: an outage on the timeline (real time since the server started),
//! else the last failure again for a retry of the same request (`correlation.sticky`),
//! else the model's own rates. Request N draws from generator N of the seed, so the
//! same seed and the same sequence of requests meet the same faults.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

pub use super::draw::Why;
use super::draw::{self, Fault, Timeline};
use super::model::Faults;

/// How many recent request bodies are remembered for `sticky`.
const REMEMBERED: usize = 4096;

/// What one request is dealt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dealt {
    /// The request's number, from 1, in arrival order.
    pub number: u64,
    pub fault: Fault,
    pub why: Why,
    /// How long the answer takes (`latency`), end to end.
    pub latency: Duration,
    /// The wait a 429 or 529 asks for (`retry_after`).
    pub retry_after: Option<Duration>,
    /// The answer's tokens (`tokens`): input, output.
    pub tokens: (u64, u64),
}

pub struct Dealer {
    faults: Faults,
    seed: u64,
    count: u64,
    timeline: Timeline,
    /// The last fault of each recent request body (by its hash), oldest first.
    last: HashMap<[u8; 16], Fault>,
    order: VecDeque<[u8; 16]>,
}

impl Dealer {
    pub fn new(faults: Faults, seed: u64) -> Dealer {
        Dealer {
            timeline: Timeline::new(&faults.outages, seed),
            faults,
            seed,
            count: 0,
            last: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// How many requests have been dealt a fault (or none).
    pub fn dealt(&self) -> u64 {
        self.count
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The fault of the next request, for `model`, with a body whose [`body_key`] is
    /// `key`, `now_ms` after the server started.
    pub fn deal(&mut self, model: &str, key: [u8; 16], now_ms: f64) -> Dealt {
        self.count += 1;
        let mut rng = draw::run_rng(self.seed, self.count);
        let own = self.faults.call(model);
        self.timeline.forget_before(now_ms);
        let last = self.last.get(&key).copied();
        let (fault, why) = draw::choose(
            &self.faults,
            &mut self.timeline,
            &mut rng,
            (now_ms, model),
            last,
            true,
        );
        let latency = draw::ms(draw::spread_ms(
            &mut rng,
            own.and_then(|f| f.latency.as_ref()),
        ));
        let retry_after = match fault {
            Fault::Status(status) => {
                draw::retry_after_ms(&mut rng, own, status).map(Duration::from_millis)
            }
            _ => None,
        };
        let tokens = own.map_or((0, 0), |f| (f.input_tokens, f.output_tokens));
        self.remember(key, fault);
        Dealt {
            number: self.count,
            fault,
            why,
            latency,
            retry_after,
            tokens,
        }
    }

    fn remember(&mut self, key: [u8; 16], fault: Fault) {
        if self.last.insert(key, fault).is_none() {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.last.remove(&old);
            }
        }
    }
}

/// A request body's identity: a client's retry sends the same bytes again.
/// What `sticky` knows a request by: a hash of its body (hashed before the dealer's
/// lock is taken: a body may be 16 MiB).
pub fn body_key(body: &[u8]) -> [u8; 16] {
    let hash = blake3::hash(body);
    let mut key = [0; 16];
    key.copy_from_slice(&hash.as_bytes()[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::model::load_str;

    fn dealer(yaml: &str, seed: u64) -> Dealer {
        Dealer::new(load_str(yaml, "f.yaml").unwrap(), seed)
    }

    #[test]
    fn the_same_seed_deals_the_same_faults() {
        let yaml = "version: 1\ncalls:\n  default: { status: { 500: 0.5 }, latency: { p50: 10ms, p99: 90ms } }\n";
        let deal = |seed| {
            let mut d = dealer(yaml, seed);
            (0..50u8)
                .map(|i| d.deal("m", body_key(&[i]), 0.0))
                .collect::<Vec<_>>()
        };
        assert_eq!(deal(7), deal(7));
        assert_ne!(deal(7), deal(8));
        let failed = deal(7).iter().filter(|d| d.fault.failed()).count();
        assert!((10..=40).contains(&failed), "{failed} of 50 at p = 0.5");
    }

    #[test]
    fn a_model_of_its_own_else_default() {
        let yaml = "version: 1\ncalls:\n  bad: { network: 1.0 }\n  default: { status: { 429: 1.0 }, retry_after: { p50: 2s, p99: 2s } }\n";
        let mut d = dealer(yaml, 1);
        assert_eq!(d.deal("bad", body_key(b"a"), 0.0).fault, Fault::Network);
        let other = d.deal("other", body_key(b"b"), 0.0);
        assert_eq!(other.fault, Fault::Status(429));
        let wait = other.retry_after.unwrap().as_millis();
        assert!((1999..=2001).contains(&wait), "{wait}");
    }

    #[test]
    fn a_retry_of_the_same_body_fails_again_when_sticky() {
        let yaml = "version: 1\ncalls:\n  default: { status: { 503: 0.5 } }\ncorrelation: { sticky: 1.0 }\n";
        let mut d = dealer(yaml, 3);
        let first_failure = (0..100u8)
            .map(|i| (i, d.deal("m", body_key(&[i]), 0.0)))
            .find(|(_, dealt)| dealt.fault.failed())
            .unwrap();
        let again = d.deal("m", body_key(&[first_failure.0]), 0.0);
        assert_eq!((again.fault, again.why), (Fault::Status(503), Why::Sticky));
    }

    #[test]
    fn an_outage_fails_its_target_while_it_lasts() {
        let yaml = "version: 1\ncorrelation:\n  outages:\n    - { target: m, start_per_hour: 3600, duration: { p50: 1h, p99: 1h }, fails_with: 529 }\n";
        let mut d = dealer(yaml, 1);
        // One start a second on average: ten minutes in, the hour-long window is open.
        let at = 600_000.0;
        let dealt = d.deal("m", body_key(b"x"), at);
        assert_eq!((dealt.fault, dealt.why), (Fault::Status(529), Why::Outage));
        assert_eq!(d.deal("n", body_key(b"x"), at).fault, Fault::Ok);
    }
}
