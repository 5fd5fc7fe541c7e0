//! The HTTP attempter: one model call per attempt, over one client per run so that
//! retries reuse connections.

use std::io::Write;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::time::Instant;

use super::retry_after::{retry_after, should_retry};
use super::sse::SseParser;
use super::wire::{StreamState, build, parse_answer, parse_error};
use crate::attempt::{AttemptOutcome, AttemptSpec, CallError, CallReport, CallWork, End};
use crate::engine::{Interrupt, wait_for_interrupt};

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
    /// Built at the first call, so runs without model calls never pay for it.
    http: Option<reqwest::Client>,
    print: Print,
    /// Ask for streamed answers (`--stream`; stall timeouts need it).
    stream: bool,
    interrupt: Interrupt,
}

/// Longest error body kept for its message.
const ERROR_BODY: usize = 64 * 1024;

impl ModelClient {
    pub fn new(interrupt: Interrupt, print: Print, stream: bool) -> ModelClient {
        ModelClient {
            http: None,
            print,
            stream: stream || print == Print::Live,
            interrupt,
        }
    }

    fn http(&mut self) -> Result<reqwest::Client, String> {
        if self.http.is_none() {
            let client = reqwest::Client::builder()
                .user_agent(concat!("backstop/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot set up HTTP: {e}"))?;
            self.http = Some(client);
        }
        Ok(self.http.clone().expect("just built"))
    }

    pub async fn attempt(&mut self, spec: &AttemptSpec<'_>, work: &CallWork<'_>) -> AttemptOutcome {
        let started_at = SystemTime::now();
        let t0 = Instant::now();
        let mut report = CallReport {
            model: work.model.name.clone(),
            provider: work.model.provider.clone(),
            ..CallReport::default()
        };
        let key = match &work.provider.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => {
                    report.error = Some(CallError::Auth);
                    report.message = Some(format!("the environment variable {var} is not set"));
                    let end = End::Network {
                        message: format!("{var} is not set"),
                    };
                    return outcome(end, report, started_at, t0);
                }
            },
            None => None,
        };
        let secret = key.clone().unwrap_or_default();
        let http = match self.http() {
            Ok(h) => h,
            Err(message) => return outcome(End::Network { message }, report, started_at, t0),
        };
        let live = self.print == Print::Live;
        let call = Self::call(&http, work, key.as_deref(), self.stream, live, &mut report);
        let mut interrupt = self.interrupt.clone();
        let timer = async {
            match spec.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            end = call => end,
            () = timer => End::TimedOut {
                after_ms: spec.timeout.map_or(0, |t| t.as_millis() as u64),
                deadline: spec.timeout_is_deadline,
            },
            signal = wait_for_interrupt(&mut interrupt) => End::Interrupted { signal },
        };
        if let Some(price) = &work.model.price {
            report.cost_usd = Some(price.cost(report.input_tokens, report.output_tokens));
        }
        // Whatever a server or a library put in a message, the key is not in it.
        let end = redact_end(end, &secret);
        report.message = report.message.map(|m| redact(&m, &secret));
        if end.success()
            && self.print == Print::AtEnd
            && let Some(text) = &report.text
        {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
        }
        outcome(end, report, started_at, t0)
    }

    async fn call(
        http: &reqwest::Client,
        work: &CallWork<'_>,
        key: Option<&str>,
        stream: bool,
        live: bool,
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
        let mut builder = http.post(&req.url).json(&req.body);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let first_token = work.first_token;
        let send = builder.send();
        let response = match first_token {
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(r) => r,
                Err(_) => {
                    return End::Stream {
                        message: format!("no answer within timeout.first_token ({limit:?})"),
                    };
                }
            },
            None => send.await,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return network_end(&e),
        };
        let status = response.status().as_u16();
        report.status = Some(status);
        if let Some((wait, rule)) = retry_after(response.headers(), SystemTime::now()) {
            report.retry_after_ms = Some(wait.as_millis() as u64);
            report.retry_after_rule = Some(rule.to_string());
        }
        report.should_retry = should_retry(response.headers());
        let kind = work.provider.kind;

        if !response.status().is_success() {
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(Duration::from_secs(10), stream.next()).await
            {
                body.extend_from_slice(&chunk);
                if body.len() > ERROR_BODY {
                    break;
                }
            }
            let (error, message) = parse_error(&body);
            report.error = error;
            report.message = message;
            return End::Status { status };
        }

        if !stream {
            let body = match response.bytes().await {
                Ok(b) => b,
                Err(e) => return network_end(&e),
            };
            return match parse_answer(kind, &body) {
                Ok(answer) => {
                    report.input_tokens = answer.input_tokens;
                    report.output_tokens = answer.output_tokens;
                    let refused = answer.refused();
                    report.text = Some(answer.text);
                    if refused {
                        report.error = Some(CallError::ContentPolicy);
                        report.message = Some("the model refused (content policy)".into());
                        End::Status { status }
                    } else {
                        End::Answered
                    }
                }
                Err(message) => End::Stream { message },
            };
        }

        let mut state = StreamState::new(kind);
        let mut parser = SseParser::default();
        let mut stream = response.bytes_stream();
        let mut printed = false;
        let mut first = true;
        let end = loop {
            let limit = if first {
                first_token.or(work.stall)
            } else {
                work.stall
            };
            let next = match limit {
                Some(limit) => match tokio::time::timeout(limit, stream.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        let what = if first {
                            "timeout.first_token"
                        } else {
                            "timeout.stall"
                        };
                        break End::Stream {
                            message: format!("stalled: nothing for {limit:?} ({what})"),
                        };
                    }
                },
                None => stream.next().await,
            };
            first = false;
            let chunk = match next {
                None => break End::Answered,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    break End::Stream {
                        message: format!("the connection broke mid-answer: {}", error_chain(&e)),
                    };
                }
            };
            let mut failed = None;
            for ev in parser.feed(&chunk) {
                match state.on_event(&ev) {
                    Ok(delta) if !delta.is_empty() && live => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(delta.as_bytes());
                        let _ = out.flush();
                        printed = true;
                    }
                    Ok(_) => {}
                    Err(message) => {
                        failed = Some(message);
                        break;
                    }
                }
            }
            if let Some(message) = failed {
                break End::Stream { message };
            }
        };
        report.input_tokens = state.answer.input_tokens;
        report.output_tokens = state.answer.output_tokens;
        let end = match end {
            End::Answered if !state.complete() => End::Stream {
                message: "the stream ended before its finish event".into(),
            },
            End::Answered if state.answer.refused() => {
                report.error = Some(CallError::ContentPolicy);
                report.message = Some("the model refused (content policy)".into());
                End::Status { status }
            }
            other => other,
        };
        if live && printed {
            println!();
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

fn network_end(e: &reqwest::Error) -> End {
    End::Network {
        message: error_chain(e),
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

pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        text.to_string()
    } else {
        text.replace(secret, "[redacted]")
    }
}

fn redact_end(end: End, secret: &str) -> End {
    match end {
        End::Network { message } => End::Network {
            message: redact(&message, secret),
        },
        End::Stream { message } => End::Stream {
            message: redact(&message, secret),
        },
        other => other,
    }
}
