//! A call's own time limits, each applied in one place: `timeout.connect` (by reqwest,
//! named here when it fires), `timeout.first_token` and `timeout.stall`.
//!
//! Every response body is read under them, an error body included: there is no fixed
//! wait of its own, so an error body that stalls ends at `timeout.stall` and only
//! loses its message (the status is what counts).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::time::Instant;

use super::client::DEFAULT_CALL_ATTEMPT;
use crate::attempt::{CallWork, End};
use crate::policy::values::format_duration;

/// The limits of one request, from sending it to the body's last chunk: the head and
/// the body's first chunk by `timeout.first_token` (both counted from the request),
/// each later chunk within `timeout.stall` of the one before.
pub(super) struct CallLimits<'t> {
    connect: Duration,
    first_deadline: Instant,
    first_token: Duration,
    stall: Duration,
    /// A chunk of the body has come: later ones are under `timeout.stall`.
    started: bool,
    /// `model `m` at POST url`, for messages.
    target: &'t str,
}

impl<'t> CallLimits<'t> {
    /// Starts the first-token clock: call it as the request is sent.
    pub(super) fn start(work: &CallWork<'_>, target: &'t str) -> CallLimits<'t> {
        let now = Instant::now();
        CallLimits {
            connect: work.connect,
            first_deadline: now
                .checked_add(work.first_token)
                .unwrap_or(now + DEFAULT_CALL_ATTEMPT),
            first_token: work.first_token,
            stall: work.stall,
            started: false,
            target,
        }
    }

    pub(super) fn target(&self) -> &'t str {
        self.target
    }

    /// Sends the request from the HTTP thread, so the connection's task lives there;
    /// the deadline is kept here.
    pub(super) async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        runtime: &Handle,
    ) -> Result<reqwest::Response, End> {
        let mut sent = runtime.spawn(builder.send());
        match self.by_first_token(&mut sent, "response headers").await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(e))) => Err(self.network_end(e)),
            Ok(Err(e)) => Err(End::Network {
                message: format!("{}: the HTTP task ended: {e}", self.target),
            }),
            Err(end) => {
                sent.abort();
                Err(end)
            }
        }
    }

    /// The body's next chunk, `None` at its end.
    pub(super) async fn next<S, B>(&mut self, chunks: &mut S) -> Result<Option<B>, End>
    where
        S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    {
        let next = if self.started {
            tokio::time::timeout(self.stall, chunks.next())
                .await
                .map_err(|_| self.stall_end())
        } else {
            self.by_first_token(chunks.next(), "first byte of the answer")
                .await
        };
        self.started = true;
        match next? {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => Err(End::Stream {
                message: format!(
                    "the connection to {} broke mid-answer: {}",
                    self.target,
                    error_chain(&e.without_url())
                ),
            }),
        }
    }

    /// The one place `timeout.first_token` is applied: a server that accepts and never
    /// answers, or sends its headers and then nothing, meets the same deadline.
    async fn by_first_token<F: Future>(&self, step: F, awaited: &str) -> Result<F::Output, End> {
        tokio::time::timeout_at(self.first_deadline, step)
            .await
            .map_err(|_| End::CallTimedOut {
                limit: "timeout.first_token".into(),
                after_ms: millis(self.first_token),
                message: format!(
                    "no {awaited} from {} within {} (timeout.first_token)",
                    self.target,
                    format_duration(self.first_token)
                ),
            })
    }

    fn stall_end(&self) -> End {
        End::CallTimedOut {
            limit: "timeout.stall".into(),
            after_ms: millis(self.stall),
            message: format!(
                "{} went silent mid-answer for {} (timeout.stall)",
                self.target,
                format_duration(self.stall)
            ),
        }
    }

    fn network_end(&self, e: reqwest::Error) -> End {
        if e.is_connect() && e.is_timeout() {
            return End::CallTimedOut {
                limit: "timeout.connect".into(),
                after_ms: millis(self.connect),
                message: format!(
                    "could not connect for {} within {} (timeout.connect)",
                    self.target,
                    format_duration(self.connect)
                ),
            };
        }
        // The URL is in `target` already; reqwest's copy would repeat it.
        End::Network {
            message: format!("{}: {}", self.target, error_chain(&e.without_url())),
        }
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A reqwest error of an exchange that is not a model call's (an export, a push, a
/// relayed request), in a line: what failed, then its causes, without the URL the
/// caller names itself. `cannot connect: tcp connect error: Connection refused`.
pub(crate) fn exchange_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the exchange failed"
    };
    match std::error::Error::source(e) {
        Some(cause) => format!("{what}: {}", error_chain(cause)),
        None => what.to_string(),
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
