//! How a reply of `backstop chaos serve` plays out on the wire: its pieces (a whole
//! JSON body, or a stream's events) sent with pauses between them, then the end the
//! fault asks for: all of it, silence (a stall), or the connection cut mid-body.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;

/// The body type every reply has.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How long a stalled reply stays silent before its connection is cut: longer than
/// any client's limit worth testing; a client that gives up first just closes.
pub const STALL_FOR: Duration = Duration::from_secs(600);

/// How long a cut waits after the last piece: the server writes out what it has sent
/// before the connection goes (a cut at once would drop the head with it).
pub const CUT_AFTER: Duration = Duration::from_millis(100);

/// How a reply's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every piece, then the body's proper end.
    Whole,
    /// Some pieces, then silence ([`STALL_FOR`]), then the cut.
    Stall,
    /// Some pieces, then the connection is cut: no terminating chunk.
    Cut,
}

/// A body of `pieces`, the first at once and each later one `gap` after the last.
pub fn body(pieces: Vec<Bytes>, gap: Duration, ending: Ending) -> Body {
    if ending == Ending::Whole && pieces.len() == 1 && gap.is_zero() {
        let one = pieces.into_iter().next().unwrap_or_default();
        return Full::new(one).map_err(|never| match never {}).boxed();
    }
    let state = (pieces.into_iter(), true, false);
    let stream = futures_util::stream::unfold(state, move |(mut rest, first, ended)| async move {
        if ended {
            return None;
        }
        if let Some(piece) = rest.next() {
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            return Some((Ok(Frame::data(piece)), (rest, false, false)));
        }
        match ending {
            Ending::Whole => None,
            Ending::Stall => {
                tokio::time::sleep(STALL_FOR).await;
                Some((Err(cut()), (rest, false, true)))
            }
            Ending::Cut => {
                tokio::time::sleep(CUT_AFTER).await;
                Some((Err(cut()), (rest, false, true)))
            }
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// The error that makes the server drop a connection mid-body.
fn cut() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "chaos: cut")
}

/// The first half of an answer, for a stall or a cut: half of a stream's events (so
/// its finish events are never among them), else the first half of the bytes.
pub fn first_half(pieces: Vec<Bytes>) -> Vec<Bytes> {
    match pieces.len() {
        0 => pieces,
        1 => {
            let whole = &pieces[0];
            vec![whole.slice(..whole.len() / 2)]
        }
        n => pieces.into_iter().take(n / 2).collect(),
    }
}

/// A server-sent-event stream split into its events (each with its blank line); what
/// is left after the last blank line is a piece of its own.
pub fn sse_events(body: &Bytes) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let bytes = body.as_ref();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let end = if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if bytes[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else {
            None
        };
        match end {
            Some(e) => {
                pieces.push(body.slice(start..e));
                start = e;
                i = e;
            }
            None => i += 1,
        }
    }
    if start < bytes.len() {
        pieces.push(body.slice(start..));
    }
    pieces
}

/// A body read from elsewhere (an upstream's), its chunks as they come.
pub fn relay<S, E>(chunks: S) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Send + Sync + 'static,
    E: std::fmt::Display,
{
    let frames = chunks.map(|c| {
        c.map(Frame::data)
            .map_err(|e| std::io::Error::other(format!("the upstream's body broke off: {e}")))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_stream_keeps_whole_events_and_no_finish() {
        let body = Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n");
        let events = sse_events(&body);
        assert_eq!(events.len(), 4);
        let half = first_half(events);
        assert_eq!(half.concat(), b"data: 1\n\ndata: 2\n\n");
    }

    #[test]
    fn half_a_whole_body_is_its_first_bytes() {
        let half = first_half(vec![Bytes::from_static(b"{\"a\":1234}")]);
        assert_eq!(half.concat(), b"{\"a\":");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_body_ends_in_an_error_after_its_pieces() {
        let mut b = body(
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            Duration::from_secs(1),
            Ending::Cut,
        );
        let started = tokio::time::Instant::now();
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(frame) = b.frame().await {
            match frame {
                Ok(f) => got.extend_from_slice(f.data_ref().unwrap()),
                Err(_) => failed = true,
            }
        }
        assert_eq!(got, b"ab");
        assert!(failed);
        assert_eq!(started.elapsed(), Duration::from_secs(1) + CUT_AFTER);
    }
}
