//! One request to `backstop chaos serve`: which API it is for, its body (capped), the
//! fault it is dealt, and the reply that fault makes of the canned answer or of the
//! upstream's; one line on stderr says what it got.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response};

use super::api::{self, Api, Asked};
use super::canned::{self, Finish};
use super::dealer::{Dealer, Dealt};
use super::draw::Fault;
use super::log_line::{describe, printable, shown};
use super::play::{self, Body, Ending, STALL_FOR};
use super::upstream::{self, Upstream};

/// The largest request body read; a larger one gets a 413.
pub const MAX_REQUEST: usize = 16 << 20;

/// What every connection shares.
pub struct Shared {
    pub dealer: Mutex<Dealer>,
    pub started: Instant,
    pub upstream: Option<Upstream>,
    pub quiet: bool,
}

/// A connection's socket, kept so that a network fault can reset it (`SO_LINGER` 0:
/// the close sends RST) rather than close it in order.
pub struct Socket(pub Mutex<Option<OwnedFd>>);

impl Socket {
    fn reset(&self) {
        let fd = self.0.lock().ok().and_then(|mut s| s.take());
        if let Some(fd) = fd {
            let _ = rustix::net::sockopt::set_socket_linger(&fd, Some(Duration::ZERO));
        }
    }
}

/// The connection is dropped without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chaos: connection dropped")
    }
}

impl std::error::Error for Dropped {}

type Reply = Result<Response<Body>, Dropped>;

/// Where a request goes.
enum Route {
    Chat(Api),
    Models,
    Other,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Route::Chat(Api::OpenAi),
        (&Method::POST, "/v1/messages") => Route::Chat(Api::Anthropic),
        (&Method::GET, "/v1/models") => Route::Models,
        _ => Route::Other,
    }
}

pub async fn exchange(req: Request<Incoming>, shared: Arc<Shared>, socket: Arc<Socket>) -> Reply {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let route = route(&method, req.uri().path());
    let api = match (&route, req.uri().path().starts_with("/v1/messages")) {
        (Route::Chat(api), _) => *api,
        (_, true) => Api::Anthropic,
        _ => Api::OpenAi,
    };
    let headers = req.headers().clone();
    let Some(body) = read_body(req).await? else {
        shared.log(&format!(
            "{method} {} → 413 (body over {MAX_REQUEST} bytes)",
            shown(&target)
        ));
        return Ok(json_reply(
            413,
            error(api, 413, "request body too large", 0),
        ));
    };
    let line = |what: &str| format!("{method} {} {what}", shown(&target));
    match (route, &shared.upstream) {
        (Route::Chat(api), _) => {
            chat(&shared, &socket, api, (&method, &target, &headers), body).await
        }
        (_, Some(up)) => {
            let reply = upstream::pass(&shared, up, (&method, &target, &headers), body).await;
            shared.log(&line("→ passed upstream"));
            Ok(reply)
        }
        (Route::Models, None) => {
            shared.log(&line("→ models"));
            let names = shared
                .dealer
                .lock()
                .map(|d| canned::models_list(d.faults().calls.keys()));
            Ok(json_reply(200, names.unwrap_or_default()))
        }
        (Route::Other, None) => {
            shared.log(&line("→ 404"));
            let body = api::unknown_url(api, method.as_str(), &shown(&target), 0);
            Ok(json_reply(404, body))
        }
    }
}

/// The request, as passed upstream.
pub(super) type Forward<'a> = (&'a Method, &'a str, &'a HeaderMap);

async fn chat(shared: &Shared, socket: &Socket, api: Api, fwd: Forward<'_>, body: Bytes) -> Reply {
    let asked = match Asked::of(api, &body) {
        Ok(a) => a,
        Err(message) => {
            shared.log(&format!("{} {} → 400 ({message})", fwd.0, shown(fwd.1)));
            return Ok(json_reply(400, error(api, 400, &message, 0)));
        }
    };
    let key = super::dealer::body_key(&body);
    let dealt = {
        let mut dealer = shared.dealer.lock().map_err(|_| Dropped)?;
        // Read under the lock: the timeline is asked in time order.
        let now_ms = shared.started.elapsed().as_secs_f64() * 1e3;
        dealer.deal(&asked.model, key, now_ms)
    };
    shared.log(&format!(
        "#{} {} {} {} → {}",
        dealt.number,
        fwd.0,
        shown(fwd.1),
        printable(&asked.model),
        describe(&dealt)
    ));
    play_fault(shared, socket, &asked, &dealt, fwd, body).await
}

/// The reply the dealt fault makes: an error or a drop of its own, else the canned
/// answer or the upstream's, whole or broken.
async fn play_fault(
    shared: &Shared,
    socket: &Socket,
    asked: &Asked,
    dealt: &Dealt,
    fwd: Forward<'_>,
    body: Bytes,
) -> Reply {
    let quick = dealt.latency / 10;
    let (api, n) = (asked.api, dealt.number);
    match dealt.fault {
        Fault::Network => {
            pause(quick).await;
            socket.reset();
            Err(Dropped)
        }
        Fault::FirstTokenStall => {
            tokio::time::sleep(STALL_FOR).await;
            Err(Dropped)
        }
        Fault::Status(status) => {
            pause(quick).await;
            let message = api::status_message(api, status);
            let mut reply = json_reply(status, error(api, status, message, n));
            if let Some(wait) = dealt.retry_after {
                retry_after_headers(reply.headers_mut(), wait);
            }
            Ok(reply)
        }
        Fault::ContextLength => {
            pause(quick).await;
            Ok(json_reply(400, api::context_length_body(api, n)))
        }
        Fault::ContentPolicy => Ok(canned(asked, dealt, Finish::Refused, Ending::Whole).await),
        other => {
            let ending = match other {
                Fault::Stall => Ending::Stall,
                Fault::Truncated => Ending::Cut,
                _ => Ending::Whole,
            };
            Ok(match &shared.upstream {
                Some(up) => upstream::upstream_answer(shared, up, ending, fwd, body).await,
                None => canned(asked, dealt, Finish::Done, ending).await,
            })
        }
    }
}

/// Waits `d`; no wait at all for none (a timer's zero still waits for its next tick).
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// The canned answer, in the time `latency` gives it: a stream's head and first event
/// at half of it, its events spread over the rest; a whole answer at the end of it.
async fn canned(asked: &Asked, dealt: &Dealt, finish: Finish, ending: Ending) -> Response<Body> {
    let mut pieces = canned::canned(asked, dealt.tokens, finish, dealt.number);
    let (before, gap) = if asked.stream {
        let half = dealt.latency / 2;
        (half, half / (pieces.len().saturating_sub(1).max(1) as u32))
    } else {
        (dealt.latency, Duration::ZERO)
    };
    if ending != Ending::Whole {
        pieces = play::first_half(pieces);
    }
    pause(before).await;
    let content_type = if asked.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut reply = Response::new(play::body(pieces, gap, ending));
    let h = reply.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if asked.stream {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    request_id(h, dealt.number);
    reply
}

/// The body, or `None` when it is over [`MAX_REQUEST`]; `Err` when it broke off.
async fn read_body(req: Request<Incoming>) -> Result<Option<Bytes>, Dropped> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST as u64) {
        return Ok(None);
    }
    match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Ok(None)
        }
        Err(_) => Err(Dropped),
    }
}

pub(super) fn error(api: Api, status: u16, message: &str, n: u64) -> Bytes {
    api::error_body(api, status, message, n)
}

pub(super) fn json_reply(status: u16, body: Bytes) -> Response<Body> {
    let mut reply = Response::new(play::body(vec![body], Duration::ZERO, Ending::Whole));
    *reply.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

/// `retry-after` in whole seconds (rounded up) and `retry-after-ms` exactly.
fn retry_after_headers(h: &mut HeaderMap, wait: Duration) {
    let ms = wait.as_millis();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(ms.div_ceil(1000) as u64),
    );
    h.insert("retry-after-ms", HeaderValue::from(ms as u64));
}

fn request_id(h: &mut HeaderMap, n: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("chaos-{n}")) {
        h.insert("x-request-id", v.clone());
        h.insert("request-id", v);
    }
}

impl Shared {
    pub(super) fn log(&self, line: &str) {
        if !self.quiet {
            eprintln!("chaos: {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_exact_milliseconds() {
        let mut h = HeaderMap::new();
        retry_after_headers(&mut h, Duration::from_millis(2001));
        assert_eq!(h[header::RETRY_AFTER], "3");
        assert_eq!(h["retry-after-ms"], "2001");
    }
}
