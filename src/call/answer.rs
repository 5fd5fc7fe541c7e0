//! Reading a response's body under the call's limits: an error body for its message,
//! or an answer, whole (one JSON document) or streamed (server-sent events), both
//! through [`Incoming`] and one loop.

use super::limits::CallLimits;
use super::print::AnswerOut;
use super::sse::SseParser;
use super::wire::{StreamState, parse_answer, parse_error};
use crate::attempt::{CallError, CallReport, End};
use crate::policy::ProviderKind;

/// Longest error body kept for its message.
const ERROR_BODY: usize = 64 * 1024;
/// Longest error message kept, in characters, once the key is out of it.
pub(super) const ERROR_MESSAGE: usize = 300;
/// Largest answer body, whole or streamed: far past any model's output, short of
/// what a runaway server could make backstop hold in memory.
const ANSWER_BODY: usize = 16 * 1024 * 1024;

/// An answer as its body arrives.
pub(super) trait Incoming {
    /// What the body is called in messages.
    const NOUN: &'static str;

    /// Takes one chunk; text to show as it comes goes into `live`, before any error.
    fn take(&mut self, chunk: &[u8], live: &mut Vec<u8>) -> Result<(), String>;

    /// What the answer came to once its body ended with `end` (`Answered` at a clean
    /// end): tokens and text into the report; a refusal or an unfinished stream fails.
    fn finish(self, end: End, status: u16, report: &mut CallReport) -> End;
}

/// An answer that is not streamed: the body, parsed at its end.
pub(super) struct Whole {
    body: Vec<u8>,
    kind: ProviderKind,
}

impl Whole {
    pub(super) fn new(kind: ProviderKind) -> Whole {
        Whole {
            body: Vec::new(),
            kind,
        }
    }
}

impl Incoming for Whole {
    const NOUN: &'static str = "answer";

    fn take(&mut self, chunk: &[u8], _live: &mut Vec<u8>) -> Result<(), String> {
        self.body.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self, end: End, status: u16, report: &mut CallReport) -> End {
        if end != End::Answered {
            return end;
        }
        match parse_answer(self.kind, &self.body) {
            Ok(answer) => {
                report.input_tokens = answer.input_tokens;
                report.output_tokens = answer.output_tokens;
                let refused = answer.refused();
                report.text = Some(answer.text);
                if refused {
                    refusal(status, report)
                } else {
                    End::Answered
                }
            }
            Err(message) => End::Stream { message },
        }
    }
}

/// A streamed answer, put together event by event.
pub(super) struct Streamed {
    parser: SseParser,
    state: StreamState,
}

impl Streamed {
    pub(super) fn new(kind: ProviderKind) -> Streamed {
        Streamed {
            parser: SseParser::default(),
            state: StreamState::new(kind),
        }
    }
}

impl Incoming for Streamed {
    const NOUN: &'static str = "stream";

    fn take(&mut self, chunk: &[u8], live: &mut Vec<u8>) -> Result<(), String> {
        for event in self.parser.feed(chunk)? {
            let delta = self.state.on_event(&event)?;
            live.extend_from_slice(delta.as_bytes());
        }
        Ok(())
    }

    fn finish(self, end: End, status: u16, report: &mut CallReport) -> End {
        report.input_tokens = self.state.answer.input_tokens;
        report.output_tokens = self.state.answer.output_tokens;
        let end = match end {
            End::Answered if !self.state.complete() => End::Stream {
                message: "the stream ended before its finish event".into(),
            },
            End::Answered if self.state.answer.refused() => refusal(status, report),
            other => other,
        };
        report.text = Some(self.state.answer.text);
        end
    }
}

/// A successful status whose answer the model refused: its own class, not retried.
fn refusal(status: u16, report: &mut CallReport) -> End {
    report.error = Some(CallError::ContentPolicy);
    report.message = Some("the model refused (content policy)".into());
    End::Status {
        status,
        message: None,
    }
}

/// Reads an answer's body, up to [`ANSWER_BODY`], showing its live text through `out`.
pub(super) async fn read_answer<A, S, B>(
    mut answer: A,
    limits: &mut CallLimits<'_>,
    chunks: &mut S,
    status: u16,
    out: &mut AnswerOut,
    report: &mut CallReport,
) -> End
where
    A: Incoming,
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let end = take_body(&mut answer, limits, chunks, out).await;
    answer.finish(end, status, report)
}

/// Feeds the body to `answer` chunk by chunk until it ends (`Answered`) or fails.
async fn take_body<A, S, B>(
    answer: &mut A,
    limits: &mut CallLimits<'_>,
    chunks: &mut S,
    out: &mut AnswerOut,
) -> End
where
    A: Incoming,
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut total = 0usize;
    let mut live = Vec::new();
    loop {
        let chunk = match limits.next(chunks).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return End::Answered,
            Err(end) => return end,
        };
        let chunk = chunk.as_ref();
        total += chunk.len();
        if total > ANSWER_BODY {
            return End::Stream {
                message: format!(
                    "the {} of {} is over {} MiB",
                    A::NOUN,
                    limits.target(),
                    ANSWER_BODY >> 20
                ),
            };
        }
        let taken = answer.take(chunk, &mut live);
        // The text before a malformed event is still shown; a signal that came while
        // showing it is what ended the attempt.
        if let Err(end) = out.live(std::mem::take(&mut live)).await {
            return end;
        }
        if let Err(message) = taken {
            return End::Stream { message };
        }
    }
}

/// The body of an error status, up to [`ERROR_BODY`], for its kind and message. The
/// status is what counts; a body that stalls or breaks only loses its message.
pub(super) async fn read_error<S, B>(
    limits: &mut CallLimits<'_>,
    chunks: &mut S,
    status: u16,
    secrets: &super::secret::Secrets,
    report: &mut CallReport,
) -> End
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut text = Vec::new();
    while let Ok(Some(chunk)) = limits.next(chunks).await {
        text.extend_from_slice(chunk.as_ref());
        if text.len() > ERROR_BODY {
            break;
        }
    }
    let cut = text.len() > ERROR_BODY;
    text.truncate(ERROR_BODY);
    let (error, message) = parse_error(&text, secrets, ERROR_MESSAGE, cut);
    report.error = error;
    report.message = message;
    End::Status {
        status,
        message: None,
    }
}
