//! The HTTP attempter: one model call per attempt, over one client per run so that
//! retries reuse connections.
//!
//! An attempt is one exchange (request, head, body) under the attempt's limit; the
//! call's own limits are in `limits.rs`, reading a body in `answer.rs`,
//! showing the answer in `print.rs`.

use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::answer::{ERROR_MESSAGE, Streamed, Whole, read_answer, read_error};
use super::limits::{CallLimits, millis};
use super::print::AnswerOut;
pub use super::print::{Notes, Print};
use super::redirect::{refused, same_origin_only};
use super::retry_after::{retry_after, should_retry};
use super::secret::{Secrets, read_headers, read_key};
use super::wire::{Extras, build};
use crate::attempt::{AttemptOutcome, AttemptSpec, CallError, CallReport, CallWork, Cut, End};
use crate::engine::{Interrupt, wait_for_interrupt};

pub struct ModelClient {
    /// Built at the first call, so runs without model calls never pay for it; dropped
    /// after an attempt that ended on a limit, so a connection gone bad is not reused.
    http: Option<Http>,
    print: Print,
    notes: Notes,
    /// Ask for streamed answers (`--stream`; stall timeouts need it).
    stream: bool,
    interrupt: Interrupt,
}

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

/// How an attempt's exchange with the server ended.
enum Ended {
    /// By itself: its answer's printing is finished after it.
    Exchange(End),
    /// Cut short by the attempt's limit or a signal: nothing more is printed.
    CutShort(End),
}

impl ModelClient {
    pub fn new(interrupt: Interrupt, print: Print, stream: bool) -> ModelClient {
        ModelClient {
            http: None,
            print,
            notes: Notes::Stderr,
            stream: stream || print == Print::Live,
            interrupt,
        }
    }

    /// Where the client's own lines go (stderr unless told otherwise).
    pub fn with_notes(mut self, notes: Notes) -> ModelClient {
        self.notes = notes;
        self
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
        let (key, headers, secrets) = match read_key(work.provider)
            .and_then(|key| read_headers(work.provider).map(|(h, s)| (key, h, s)))
        {
            Ok((key, headers, mut secrets)) => {
                secrets.extend(Secrets::of_key(key.as_deref()));
                (key, headers, secrets)
            }
            Err(why) => {
                report.error = Some(CallError::Auth);
                report.message = Some(why.clone());
                return outcome(End::Network { message: why }, report, started_at, t0);
            }
        };
        let (http, runtime) = match self.http(work.connect) {
            Ok(h) => h,
            Err(message) => return outcome(End::Network { message }, report, started_at, t0),
        };
        let mut out = AnswerOut::new(self.print, self.notes, self.interrupt.clone());
        let extras = Extras {
            stream: self.stream,
            key: key.as_deref(),
            headers: &headers,
            idempotency_key: &work.idempotency_key,
        };
        let exchange = exchange(
            &http,
            &runtime,
            work,
            &extras,
            &secrets,
            &mut out,
            &mut report,
        );
        let ended = self.within_attempt_limit(spec, exchange).await;
        let (Ended::Exchange(end) | Ended::CutShort(end)) = &ended;
        if leaves_connection_suspect(end) {
            self.http = None;
        }
        if let Some(price) = &work.model.price {
            report.cost_usd = Some(price.cost(report.input_tokens, report.output_tokens));
        }
        // Whatever a server or a library put in a message, no secret is in it.
        report.message = report
            .message
            .map(|m| secrets.redact_then_truncate(&m, ERROR_MESSAGE, false));
        let mut end = match ended {
            Ended::Exchange(end) => {
                out.finish(redact_end(end, &secrets), report.text.as_deref())
                    .await
            }
            Ended::CutShort(end) => end,
        };
        if let End::Status { message, .. } = &mut end {
            message.clone_from(&report.message.as_deref().map(printable_line));
        }
        outcome(end, report, started_at, t0)
    }

    /// Runs the exchange under `timeout.attempt` (or [`DEFAULT_CALL_ATTEMPT`]) and the
    /// run's signals.
    async fn within_attempt_limit(
        &self,
        spec: &AttemptSpec<'_>,
        exchange: impl Future<Output = End>,
    ) -> Ended {
        let limit = spec.timeout.unwrap_or(DEFAULT_CALL_ATTEMPT);
        let mut interrupt = self.interrupt.clone();
        tokio::select! {
            end = exchange => Ended::Exchange(end),
            () = tokio::time::sleep(limit) => Ended::CutShort(End::TimedOut {
                after_ms: millis(limit),
                deadline: spec.timeout_is_deadline,
            }),
            signal = wait_for_interrupt(&mut interrupt) => Ended::CutShort(End::Interrupted { signal }),
        }
    }
}

/// One request and its response: the head, then the body as an error, a whole
/// answer or a stream.
async fn exchange(
    http: &reqwest::Client,
    runtime: &Handle,
    work: &CallWork<'_>,
    extras: &Extras<'_>,
    secrets: &Secrets,
    out: &mut AnswerOut,
    report: &mut CallReport,
) -> End {
    let stream = extras.stream;
    let req = build(work.provider, work.model, &work.prompt, extras);
    let target = format!("model `{}` at POST {}", work.model.name, req.url);
    let mut builder = http.post(&req.url).json(&req.body);
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let mut limits = CallLimits::start(work, &target);
    let response = match limits.send(builder, runtime).await {
        Ok(r) => r,
        Err(end) => return end,
    };
    let status = response.status().as_u16();
    note_head(&response, report);
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
    let kind = work.provider.kind;
    if !(200..300).contains(&status) {
        let mut chunks = response.bytes_stream();
        return read_error(&mut limits, &mut chunks, status, secrets, report).await;
    }
    let mut chunks = cut_into(response.bytes_stream(), work.cut);
    if stream {
        let answer = Streamed::new(kind);
        read_answer(answer, &mut limits, &mut chunks, status, out, report).await
    } else {
        let answer = Whole::new(kind);
        read_answer(answer, &mut limits, &mut chunks, status, out, report).await
    }
}

/// An answer's body as the server sends it, or as `--chaos` breaks it ([`Cut`]):
/// ended, or gone quiet, after its first `after_bytes` bytes. What follows is the
/// client's own doing: its parser finds the stream unfinished, its limits the stall.
fn cut_into<S>(chunks: S, cut: Option<Cut>) -> Chunks
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    let Some(cut) = cut else {
        return Box::pin(chunks);
    };
    // The bytes left before the cut are counted before the next chunk is awaited: once
    // they are through, the body ends (or goes quiet) at once, not a chunk later.
    let head = futures_util::stream::unfold(
        (Box::pin(chunks), cut.after_bytes),
        |(mut chunks, left)| async move {
            if left == 0 {
                return None;
            }
            let next = match chunks.next().await? {
                Ok(chunk) => {
                    let n = chunk.len().min(left);
                    (Ok(chunk.slice(..n)), left - n)
                }
                Err(e) => (Err(e), left),
            };
            Some((next.0, (chunks, next.1)))
        },
    );
    if cut.stall {
        Box::pin(head.chain(futures_util::stream::pending()))
    } else {
        Box::pin(head)
    }
}

type Chunks =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// What the response's head says for the report: its status, Retry-After and
/// x-should-retry.
fn note_head(response: &reqwest::Response, report: &mut CallReport) {
    report.status = Some(response.status().as_u16());
    if let Some((wait, rule)) = retry_after(response.headers(), SystemTime::now()) {
        report.retry_after_ms = Some(millis(wait));
        report.retry_after_rule = Some(rule.to_string());
    }
    report.should_retry = should_retry(response.headers());
}

/// An attempt that ended on a limit, a signal or a broken exchange: its connection
/// is not reused.
fn leaves_connection_suspect(end: &End) -> bool {
    matches!(
        end,
        End::TimedOut { .. }
            | End::CallTimedOut { .. }
            | End::Interrupted { .. }
            | End::Stream { .. }
            | End::Network { .. }
    )
}

/// A server's message on one line, without the control characters that could forge
/// a line of backstop's own or drive the terminal.
fn printable_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn outcome(end: End, report: CallReport, started_at: SystemTime, t0: Instant) -> AttemptOutcome {
    AttemptOutcome {
        end,
        matched: Vec::new(),
        started_at,
        duration: t0.elapsed(),
        no_retry: None,
        output_closed: false,
        injected: None,
        call: Some(report),
    }
}

fn redact_end(end: End, secrets: &Secrets) -> End {
    match end {
        End::Network { message } => End::Network {
            message: secrets.redact(&message),
        },
        End::Stream { message } => End::Stream {
            message: secrets.redact_then_truncate(&message, ERROR_MESSAGE, false),
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
            headers: Default::default(),
        };
        let model = Model {
            name: "m".into(),
            provider: "p".into(),
            model: "m-1".into(),
            max_tokens: 10,
            temperature: None,
            stop: Vec::new(),
            price: None,
        };
        let hour = Duration::from_secs(3600);
        let work = CallWork {
            model: &model,
            provider: &provider,
            prompt: Prompt::new(None, "x".into()),
            idempotency_key: "k".into(),
            connect: hour,
            first_token: hour,
            stall: hour,
            cut: None,
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
            hook: false,
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
