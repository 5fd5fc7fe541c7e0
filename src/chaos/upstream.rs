//! `chaos serve --upstream URL`: a request passed on to the real API, its headers
//! (the client's key among them) sent to that upstream only, never followed through a
//! redirect, and its answer relayed as it comes or read whole to be broken.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Method, Response, StatusCode};

use super::api::Api;
use super::exchange::{Forward, Shared, error, json_reply};
use super::log_line::shown;
use super::play::{self, Body, Ending};

/// The largest upstream answer read whole to be broken (a stall or a cut).
pub const MAX_BROKEN: usize = 16 << 20;

pub struct Upstream {
    /// Scheme, host and port, then the path without a trailing `/`.
    origin: String,
    path: String,
    client: reqwest::Client,
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and
/// those the server sets again for the upstream.
const NOT_PASSED: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

impl Upstream {
    /// The upstream at `url` (`http` or `https`, no query).
    pub fn new(url: &str) -> Result<Upstream, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("--upstream {url}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!("--upstream {url}: not an http or https URL"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty()
        {
            return Err(format!(
                "--upstream {url}: give the API's base URL, without a query, fragment or user"
            ));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Upstream {
            origin: parsed.origin().ascii_serialization(),
            path: parsed.path().trim_end_matches('/').to_string(),
            client,
        })
    }

    /// Where a request for `path_and_query` goes: after the upstream's path, with a
    /// `/v1` both spell given once (`--upstream https://api.openai.com/v1`).
    pub fn url_for(&self, path_and_query: &str) -> String {
        let rest = match path_and_query.strip_prefix("/v1") {
            Some(r)
                if self.path.ends_with("/v1") && (r.is_empty() || r.starts_with(['/', '?'])) =>
            {
                r
            }
            _ => path_and_query,
        };
        format!("{}{}{rest}", self.origin, self.path)
    }

    /// Sends the request on; `Err` says why it got no answer (never a header's value).
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, String> {
        let mut passed = headers.clone();
        for name in NOT_PASSED {
            passed.remove(name);
        }
        // Answered as sent: a body that is cut must be cut where the client sees it.
        passed.remove(header::ACCEPT_ENCODING);
        self.client
            .request(method, self.url_for(path_and_query))
            .headers(passed)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the upstream gave no answer: {}",
                    crate::call::exchange_error(&e)
                )
            })
    }
}

/// The head the client gets of an upstream's answer: its status and headers, less
/// those of the connection (and its length, when the body is to be broken).
pub fn head(answer: &reqwest::Response, broken: bool) -> hyper::http::response::Builder {
    let mut builder = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if NOT_PASSED.contains(name) && (broken || name != header::CONTENT_LENGTH) {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
}

/// The answer relayed as it comes.
pub fn relayed(answer: reqwest::Response) -> Result<Response<Body>, hyper::http::Error> {
    head(&answer, false).body(play::relay(answer.bytes_stream()))
}

/// The answer read whole (at most [`MAX_BROKEN`]), split into the pieces a fault cuts
/// between: a stream's events, else the one body.
pub async fn pieces(answer: reqwest::Response) -> Result<Vec<Bytes>, String> {
    let stream = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut body = Vec::new();
    let mut chunks = answer.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            format!(
                "the upstream's body broke off: {}",
                crate::call::exchange_error(&e)
            )
        })?;
        if body.len() + chunk.len() > MAX_BROKEN {
            return Err(format!("the upstream's answer is over {MAX_BROKEN} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let body = Bytes::from(body);
    Ok(if stream {
        play::sse_events(&body)
    } else {
        vec![body]
    })
}

/// Whether the answer is one a fault breaks: a success (an error is relayed as it is).
pub fn breakable(answer: &reqwest::Response) -> bool {
    answer.status() == StatusCode::OK
}

// ---------------------------------------------------------- a request passed upstream

/// The upstream's answer: relayed as it is, or (a stall, a cut) its first half.
pub(super) async fn upstream_answer(
    shared: &Shared,
    up: &Upstream,
    ending: Ending,
    fwd: Forward<'_>,
    body: Bytes,
) -> Response<Body> {
    let answer = match up.forward(fwd.0.clone(), fwd.1, fwd.2, body).await {
        Ok(a) => a,
        Err(why) => return upstream_failed(shared, fwd, &why),
    };
    if ending == Ending::Whole || !breakable(&answer) {
        return relayed(answer).unwrap_or_else(|_| upstream_failed(shared, fwd, UNPASSABLE));
    }
    let head = head(&answer, true);
    match pieces(answer).await {
        Ok(pieces) => head
            .body(play::body(play::first_half(pieces), Duration::ZERO, ending))
            .unwrap_or_else(|_| upstream_failed(shared, fwd, UNPASSABLE)),
        Err(why) => upstream_failed(shared, fwd, &why),
    }
}

/// A request that is not a chat, passed upstream as it is.
pub(super) async fn pass(
    shared: &Shared,
    up: &Upstream,
    fwd: Forward<'_>,
    body: Bytes,
) -> Response<Body> {
    match up.forward(fwd.0.clone(), fwd.1, fwd.2, body).await {
        Ok(answer) => relayed(answer).unwrap_or_else(|_| upstream_failed(shared, fwd, UNPASSABLE)),
        Err(why) => upstream_failed(shared, fwd, &why),
    }
}

/// Why an answer whose head hyper refuses is not relayed.
const UNPASSABLE: &str = "the upstream's answer has a head that cannot be passed on";

fn upstream_failed(shared: &Shared, fwd: Forward<'_>, why: &str) -> Response<Body> {
    shared.log(&format!("{} {} → 502: {why}", fwd.0, shown(fwd.1)));
    let api = if fwd.1.starts_with("/v1/messages") {
        Api::Anthropic
    } else {
        Api::OpenAi
    };
    json_reply(502, error(api, 502, &format!("chaos serve: {why}"), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_given_twice_is_given_once() {
        let u = Upstream::new("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            u.url_for("/v1/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        let u = Upstream::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            u.url_for("/v1/messages?beta=true"),
            "http://127.0.0.1:8080/v1/messages?beta=true"
        );
        let u = Upstream::new("http://h/proxy").unwrap();
        assert_eq!(u.url_for("/v1/models"), "http://h/proxy/v1/models");
    }

    #[test]
    fn a_url_that_is_no_base_url_is_refused() {
        for bad in ["ftp://h", "not a url", "http://h/v1?x=1", "http://u:p@h/"] {
            assert!(Upstream::new(bad).is_err(), "{bad}");
        }
    }
}
