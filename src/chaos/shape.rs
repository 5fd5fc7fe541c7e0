//! How a drawn fault ends a model call, shaped as `call/client.rs` shapes a real
//! one's end (status and message, Retry-After, the limit that was hit), for the
//! simulator and for `--chaos` alike. `word` says which made it up (`simulated`,
//! `injected`), in every message.

use std::time::Duration;

use rand::rngs::StdRng;

use super::draw::{self, Fault};
use super::model::CallFaults;
use crate::attempt::{CallError, CallReport, CallWork, End};

/// Draws for a call's end: the model's faults and the run's generator.
pub struct CallDraws<'a, 'r> {
    pub faults: Option<&'a CallFaults>,
    pub rng: &'r mut StdRng,
    pub word: &'static str,
}

impl CallDraws<'_, '_> {
    /// The wait a 429 or 529 asks for, as the client reads `retry-after-ms`.
    fn retry_after(&mut self, status: u16, report: &mut CallReport) {
        if let Some(wait) = draw::retry_after_ms(self.rng, self.faults, status) {
            report.retry_after_ms = Some(wait);
            report.retry_after_rule = Some("retry-after-ms header".into());
        }
    }

    /// How a call with `fault` ends, and how long it takes when it answers after
    /// `latency`. Stalls and truncations end as the client's limits and parser
    /// would end them.
    pub fn end(
        &mut self,
        fault: Fault,
        work: &CallWork<'_>,
        latency: Duration,
        report: &mut CallReport,
    ) -> (End, Duration) {
        let word = self.word;
        let (input, output) = self
            .faults
            .map_or((0, 0), |f| (f.input_tokens, f.output_tokens));
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
            Fault::Network => (network(word), quick),
            Fault::Status(s) => {
                self.retry_after(s, report);
                report.message = Some(word.into());
                (status(report, s), quick)
            }
            Fault::FirstTokenStall => (
                call_timed_out(word, "timeout.first_token", work.first_token),
                work.first_token,
            ),
            Fault::Stall => {
                report.status = Some(200);
                (
                    call_timed_out(word, "timeout.stall", work.stall),
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
                report.message = Some(format!("{word}: the prompt is over the context length"));
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

fn network(word: &str) -> End {
    End::Network {
        message: format!("{word}: connection reset"),
    }
}

fn call_timed_out(word: &str, limit: &str, after: Duration) -> End {
    End::CallTimedOut {
        limit: limit.into(),
        after_ms: after.as_millis() as u64,
        message: format!("{word}: {limit} reached"),
    }
}
