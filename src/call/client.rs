//! The HTTP attempter: one model call per attempt, over one client per run so that
//! retries reuse connections.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::redirect::{refused, same_origin_only};
use super::retry_after::{retry_after, should_retry};
use super::secret::{read_key, redact, redact_then_truncate};
use super::sse::SseParser;
use super::wire::{StreamState, build, parse_answer, parse_error};
use crate::attempt::{AttemptOutcome, AttemptSpec, CallError, CallReport, CallWork, End};
use crate::engine::{Interrupt, wait_for_interrupt};
use crate::policy::ProviderKind;
use crate::policy::values::format_duration;
use crate::process::{StdoutWriter, write_stdout};

/// Where a model's answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Print {
    /// To stdout once the attempt has succeeded.
    AtEnd,
    /// To stdout as it streams in.
    Live,
    /// Nowhere: the caller prints it (`--json`).
    Never,
}

pub struct ModelClient {
    /// Built at the first call, so runs without model calls never pay for it; dropped
    /// after an attempt that ended on a limit, so a connection gone bad is not reused.
    http: Option<Http>,
    print: Print,
    /// Ask for streamed answers (`--stream`; stall timeouts need it).
    stream: bool,
    interrupt: Interrupt,
}

/// Longest error body kept for its message.
const ERROR_BODY: usize = 64 * 1024;
/// Longest error message kept, in characters, once the key is out of it.
const ERROR_MESSAGE: usize = 300;
/// Largest answer body, whole or streamed: far past any model's output, short of
/// what a runaway server could make backstop hold in memory.
const ANSWER_BODY: usize = 16 * 1024 * 1024;
/// A call attempt with no `timeout.attempt` (nor a link's `timeout`) ends after
/// this, as the providers' own SDKs do: a stream that keeps sending keep-alives
/// forever is not an answer.
pub const DEFAULT_CALL_ATTEMPT: Duration = Duration::from_secs(10 * 60);

/// The HTTP client and the thread its connections run on. hyper drives each
/// connection in a task of its own; a server that floods it (endless `100 Continue`
/// heads, say) keeps that task busy for seconds per poll. On a thread of its own it
/// cannot hold up the run's clock, so the call's limits and Ctrl-C still act on time;
/// and shutting the thread down ends the connection.
struct Http {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Http {
    fn new(connect: Duration) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("backstop/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect)
            .redirect(same_origin_only())
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("backstop-http")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(Http {
            client,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        // Dropped inside the run's runtime, where waiting for a thread is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ModelClient {
    pub fn new(interrupt: Interrupt, print: Print, stream: bool) -> ModelClient {
        ModelClient {
            http: None,
            print,
            stream: stream || print == Print::Live,
            interrupt,
        }
    }

    /// Where answers go.
    pub fn print(&self) -> Print {
        self.print
    }

    fn http(&mut self, connect: Duration) -> Result<(reqwest::Client, Handle), String> {
        if self.http.is_none() {
            self.http = Some(Http::new(connect)?);
        }
        match &self.http {
            Some(Http {
                client,
                runtime: Some(runtime),
            }) => Ok((client.clone(), runtime.handle().clone())),
            _ => Err("cannot set up HTTP".into()),
        }
    }

    pub async fn attempt(&mut self, spec: &AttemptSpec<'_>, work: &CallWork<'_>) -> AttemptOutcome {
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let mut report = CallReport {
            model: work.model.name.clone(),
            provider: work.model.provider.clone(),
            ..CallReport::default()
        };
        // `call` and `run` check every key before they start (`secret::check_keys`);
        // this is for a variable that went away since.
        let key = match read_key(work.provider) {
            Ok(k) => k,
            Err(why) => {
                report.error = Some(CallError::Auth);
                report.message = Some(why.clone());
                return outcome(End::Network { message: why }, report, started_at, t0);
            }
        };
        let secret = key.clone().unwrap_or_default();
        let (http, runtime) = match self.http(work.connect) {
            Ok(h) => h,
            Err(message) => return outcome(End::Network { message }, report, started_at, t0),
        };
        let live = self.print == Print::Live;
        let mut interrupt = self.interrupt.clone();
        let call = Self::call(
            &http,
            &runtime,
            work,
            key.as_deref(),
            (self.stream, live),
            self.interrupt.clone(),
            &mut report,
        );
        let limit = spec.timeout.unwrap_or(DEFAULT_CALL_ATTEMPT);
        let end = tokio::select! {
            end = call => end,
            () = tokio::time::sleep(limit) => End::TimedOut {
                after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                deadline: spec.timeout_is_deadline,
            },
            signal = wait_for_interrupt(&mut interrupt) => End::Interrupted { signal },
        };
        if matches!(
            end,
            End::TimedOut { .. }
                | End::CallTimedOut { .. }
                | End::Interrupted { .. }
                | End::Stream { .. }
                | End::Network { .. }
        ) {
            self.http = None;
        }
        if let Some(price) = &work.model.price {
            report.cost_usd = Some(price.cost(report.input_tokens, report.output_tokens));
        }
        // Whatever a server or a library put in a message, the key is not in it.
        let end = redact_end(end, &secret);
        report.message = report
            .message
            .map(|m| redact_then_truncate(&m, &secret, ERROR_MESSAGE, false));
        let mut end = end;
        if let End::Status { message, .. } = &mut end {
            message.clone_from(&report.message.as_deref().map(printable_line));
        }
        if end.success()
            && self.print == Print::AtEnd
            && let Some(text) = &report.text
        {
            let mut bytes = text.clone().into_bytes();
            if !text.ends_with('\n') {
                bytes.push(b'\n');
            }
            // Not from this thread: a reader that stops reading would freeze the run.
            if let Err(signal) = write_stdout(bytes, &mut self.interrupt.clone()).await {
                end = End::Interrupted { signal };
            }
        }
        outcome(end, report, started_at, t0)
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        http: &reqwest::Client,
        runtime: &Handle,
        work: &CallWork<'_>,
        key: Option<&str>,
        (stream, live): (bool, bool),
        interrupt: crate::engine::Interrupt,
        report: &mut CallReport,
    ) -> End {
        let req = build(
            work.provider,
            work.model,
            &work.prompt,
            stream,
            key,
            &work.idempotency_key,
        );
        let target = format!("model `{}` at POST {}", work.model.name, req.url);
        let mut builder = http.post(&req.url).json(&req.body);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        // One deadline from sending to the first byte of the body: a server that
        // accepts and never answers, or sends its headers and then nothing, meets it.
        let mut body = Body::new(work, &target);
        let response = match send(builder, runtime, &body, work, &target).await {
            Ok(r) => r,
            Err(end) => return end,
        };
        let status = response.status().as_u16();
        note_head(&response, report);
        let kind = work.provider.kind;

        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            report.message = Some(refused(status, location, response.url()));
            return End::Status {
                status,
                message: None,
            };
        }
        let mut chunks = response.bytes_stream();
        if !(200..300).contains(&status) {
            return read_error(&mut body, &mut chunks, status, key, report).await;
        }
        if !stream {
            return read_whole(&mut body, &mut chunks, kind, status, report).await;
        }
        read_stream(
            &mut body,
            &mut chunks,
            kind,
            status,
            live,
            interrupt,
            report,
        )
        .await
    }
}

/// Sends the request from the HTTP thread, so the connection's task lives there; the
/// deadline (`timeout.first_token`, from the request) is kept here.
async fn send(
    builder: reqwest::RequestBuilder,
    runtime: &Handle,
    body: &Body<'_>,
    work: &CallWork<'_>,
    target: &str,
) -> Result<reqwest::Response, End> {
    let mut sent = runtime.spawn(builder.send());
    match tokio::time::timeout_at(body.first_deadline, &mut sent).await {
        Ok(Ok(Ok(r))) => Ok(r),
        Ok(Ok(Err(e))) => Err(network_end(e, work, target)),
        Ok(Err(e)) => Err(End::Network {
            message: format!("{target}: the HTTP task ended: {e}"),
        }),
        Err(_) => {
            sent.abort();
            Err(body.first_token_end("response headers"))
        }
    }
}

/// What the response's head says for the report: its status, Retry-After and
/// x-should-retry.
fn note_head(response: &reqwest::Response, report: &mut CallReport) {
    report.status = Some(response.status().as_u16());
    if let Some((wait, rule)) = retry_after(response.headers(), SystemTime::now()) {
        report.retry_after_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        report.retry_after_rule = Some(rule.to_string());
    }
    report.should_retry = should_retry(response.headers());
}

/// The body of an error status, up to [`ERROR_BODY`], for its kind and message. The
/// status is what counts; a body that stalls or breaks only loses its message.
async fn read_error<S, B>(
    body: &mut Body<'_>,
    chunks: &mut S,
    status: u16,
    key: Option<&str>,
    report: &mut CallReport,
) -> End
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut text = Vec::new();
    loop {
        match body.next(chunks).await {
            Ok(Some(chunk)) => text.extend_from_slice(chunk.as_ref()),
            Ok(None) | Err(_) => break,
        }
        if text.len() > ERROR_BODY {
            break;
        }
    }
    let cut = text.len() > ERROR_BODY;
    text.truncate(ERROR_BODY);
    let secret = key.unwrap_or_default();
    let (error, message) = parse_error(&text, secret, ERROR_MESSAGE, cut);
    report.error = error;
    report.message = message;
    End::Status {
        status,
        message: None,
    }
}

/// A whole (not streamed) answer, up to [`ANSWER_BODY`].
async fn read_whole<S, B>(
    body: &mut Body<'_>,
    chunks: &mut S,
    kind: ProviderKind,
    status: u16,
    report: &mut CallReport,
) -> End
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut whole = Vec::new();
    loop {
        match body.next(chunks).await {
            Ok(Some(chunk)) => whole.extend_from_slice(chunk.as_ref()),
            Ok(None) => break,
            Err(end) => return end,
        }
        if whole.len() > ANSWER_BODY {
            return End::Stream {
                message: format!(
                    "the answer of {} is over {} MiB",
                    body.target,
                    ANSWER_BODY >> 20
                ),
            };
        }
    }
    match parse_answer(kind, &whole) {
        Ok(answer) => {
            report.input_tokens = answer.input_tokens;
            report.output_tokens = answer.output_tokens;
            let refused = answer.refused();
            report.text = Some(answer.text);
            if refused {
                report.error = Some(CallError::ContentPolicy);
                report.message = Some("the model refused (content policy)".into());
                End::Status {
                    status,
                    message: None,
                }
            } else {
                End::Answered
            }
        }
        Err(message) => End::Stream { message },
    }
}

/// A streamed answer, up to [`ANSWER_BODY`], its text printed as it comes when `live`.
async fn read_stream<S, B>(
    body: &mut Body<'_>,
    chunks: &mut S,
    kind: ProviderKind,
    status: u16,
    live: bool,
    mut interrupt: Interrupt,
    report: &mut CallReport,
) -> End
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut state = StreamState::new(kind);
    let mut parser = SseParser::default();
    let mut printed = false;
    // One thread for the stream's writes, started at its first.
    let mut writer: Option<StdoutWriter> = None;
    let mut total = 0usize;
    let end = loop {
        let chunk = match body.next(chunks).await {
            Ok(Some(c)) => c,
            Ok(None) => break End::Answered,
            Err(end) => break end,
        };
        let chunk = chunk.as_ref();
        total += chunk.len();
        if total > ANSWER_BODY {
            break End::Stream {
                message: format!(
                    "the stream of {} is over {} MiB",
                    body.target,
                    ANSWER_BODY >> 20
                ),
            };
        }
        let events = match parser.feed(chunk) {
            Ok(events) => events,
            Err(message) => break End::Stream { message },
        };
        let mut failed = None;
        let mut live_text = Vec::new();
        for ev in events {
            match state.on_event(&ev) {
                Ok(delta) if live => live_text.extend_from_slice(delta.as_bytes()),
                Ok(_) => {}
                Err(message) => {
                    failed = Some(End::Stream { message });
                    break;
                }
            }
        }
        // Written off this thread, so a reader that stops reading cannot freeze
        // the run: the attempt's limit and signals still act.
        if !live_text.is_empty() {
            printed = true;
            let out = writer.get_or_insert_with(StdoutWriter::start);
            if let Err(signal) = out.write(live_text, &mut interrupt).await {
                failed = Some(End::Interrupted { signal });
            }
        }
        if let Some(end) = failed {
            break end;
        }
    };
    report.input_tokens = state.answer.input_tokens;
    report.output_tokens = state.answer.output_tokens;
    let mut end = match end {
        End::Answered if !state.complete() => End::Stream {
            message: "the stream ended before its finish event".into(),
        },
        End::Answered if state.answer.refused() => {
            report.error = Some(CallError::ContentPolicy);
            report.message = Some("the model refused (content policy)".into());
            End::Status {
                status,
                message: None,
            }
        }
        other => other,
    };
    if live && printed {
        // Not println!: a reader that went away (`| head -c 10`) must not panic us;
        // and not from this thread, where a reader that stops reading froze us.
        if !matches!(end, End::Interrupted { .. })
            && let Some(out) = &writer
            && let Err(signal) = out.write(b"\n".to_vec(), &mut interrupt).await
        {
            end = End::Interrupted { signal };
        }
        if !end.success() {
            eprintln!(
                "backstop: the answer above was cut off ({}); it does not count",
                end.describe()
            );
        }
    }
    report.text = Some(state.answer.text);
    end
}

/// A server's message on one line, without the control characters that could forge
/// a line of backstop's own or drive the terminal.
fn printable_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The body of a response, read chunk by chunk under the call's limits: the first
/// chunk by `timeout.first_token` (counted from the request), each later one within
/// `timeout.stall` of the one before.
struct Body<'t> {
    first_deadline: Instant,
    first_token: Duration,
    stall: Duration,
    started: bool,
    target: &'t str,
}

impl<'t> Body<'t> {
    fn new(work: &CallWork<'_>, target: &'t str) -> Body<'t> {
        let now = Instant::now();
        Body {
            first_deadline: now
                .checked_add(work.first_token)
                .unwrap_or(now + DEFAULT_CALL_ATTEMPT),
            first_token: work.first_token,
            stall: work.stall,
            started: false,
            target,
        }
    }

    async fn next<S, B>(&mut self, chunks: &mut S) -> Result<Option<B>, End>
    where
        S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    {
        let next = if self.started {
            tokio::time::timeout(self.stall, chunks.next()).await
        } else {
            tokio::time::timeout_at(self.first_deadline, chunks.next()).await
        };
        let first = !self.started;
        self.started = true;
        match next {
            Ok(None) => Ok(None),
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => Err(End::Stream {
                message: format!(
                    "the connection to {} broke mid-answer: {}",
                    self.target,
                    error_chain(&e.without_url())
                ),
            }),
            Err(_) if first => Err(self.first_token_end("first byte of the answer")),
            Err(_) => Err(End::CallTimedOut {
                limit: "timeout.stall".into(),
                after_ms: millis(self.stall),
                message: format!(
                    "{} went silent mid-answer for {} (timeout.stall)",
                    self.target,
                    format_duration(self.stall)
                ),
            }),
        }
    }

    fn first_token_end(&self, awaited: &str) -> End {
        End::CallTimedOut {
            limit: "timeout.first_token".into(),
            after_ms: millis(self.first_token),
            message: format!(
                "no {awaited} from {} within {} (timeout.first_token)",
                self.target,
                format_duration(self.first_token)
            ),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn outcome(end: End, report: CallReport, started_at: SystemTime, t0: Instant) -> AttemptOutcome {
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at,
        duration: t0.elapsed(),
        no_retry: None,
        output_closed: false,
        call: Some(report),
    }
}

fn network_end(e: reqwest::Error, work: &CallWork<'_>, target: &str) -> End {
    if e.is_connect() && e.is_timeout() {
        return End::CallTimedOut {
            limit: "timeout.connect".into(),
            after_ms: millis(work.connect),
            message: format!(
                "could not connect for {target} within {} (timeout.connect)",
                format_duration(work.connect)
            ),
        };
    }
    // The URL is in `target` already; reqwest's copy would repeat it.
    End::Network {
        message: format!("{target}: {}", error_chain(&e.without_url())),
    }
}

/// An error with its causes: `error sending request: connection refused`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn redact_end(end: End, secret: &str) -> End {
    match end {
        End::Network { message } => End::Network {
            message: redact(&message, secret),
        },
        End::Stream { message } => End::Stream {
            message: redact_then_truncate(&message, secret, ERROR_MESSAGE, false),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::{Prompt, StdinFrom};
    use crate::policy::{Model, Provider, ProviderKind};
    use crate::scan::Scanner;

    /// With no `timeout.attempt` and every limit of its own an hour away, a call to a
    /// server that accepts and says nothing still ends, after the default.
    #[tokio::test(start_paused = true)]
    async fn a_call_without_an_attempt_limit_ends_after_the_default() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(3600));
            drop(held);
        });
        let provider = Provider {
            kind: ProviderKind::Openai,
            base_url: format!("http://127.0.0.1:{port}"),
            api_key_env: None,
            anthropic_version: String::new(),
        };
        let model = Model {
            name: "m".into(),
            provider: "p".into(),
            model: "m-1".into(),
            max_tokens: 10,
            temperature: None,
            price: None,
        };
        let hour = Duration::from_secs(3600);
        let work = CallWork {
            model: &model,
            provider: &provider,
            prompt: Prompt {
                system: None,
                user: "x".into(),
            },
            idempotency_key: "k".into(),
            connect: hour,
            first_token: hour,
            stall: hour,
        };
        let scanner = Scanner::default();
        let spec = AttemptSpec {
            argv: &[],
            env: Vec::new(),
            timeout: None,
            timeout_is_deadline: false,
            kill_grace: Duration::ZERO,
            scanner: &scanner,
            stdin: StdinFrom::Null,
            call: Some(&work),
        };
        let (_tx, rx) = tokio::sync::watch::channel(None);
        let mut client = ModelClient::new(rx, Print::Never, false);
        let outcome = client.attempt(&spec, &work).await;
        assert_eq!(
            outcome.end,
            End::TimedOut {
                after_ms: 600_000,
                deadline: false
            }
        );
    }
}
