//! Server-sent events, parsed as bytes arrive: `event:` and `data:` lines, an event
//! ending at a blank line.

/// The most an event may hold before it ends: far past any chunk of an answer, and a
/// bound on what a server that never sends a newline can make backstop buffer.
pub const MAX_EVENT: usize = 1024 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete, or why the stream is refused:
    /// an event (or a line) that grows past [`MAX_EVENT`] without ending.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(SseEvent {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                    });
                    self.data.clear();
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
            } else if let Some(rest) = line.strip_prefix("event:") {
                self.event = Some(rest.trim().to_string());
            }
            // `id:`, `retry:` and `:` comments carry nothing we use.
        }
        let pending = self.buf.len() + self.data.iter().map(String::len).sum::<usize>();
        if pending > MAX_EVENT {
            return Err(format!(
                "a stream event over {} MiB without an end (no blank line)",
                MAX_EVENT >> 20
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b"event: message_start\r\ndata: {\"a\"")
                .unwrap()
                .is_empty()
        );
        let ev = p.feed(b":1}\r\n\r\n: comment\n\ndata: [DONE]\n\n").unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].data, "[DONE]");
    }

    #[test]
    fn a_line_without_end_is_refused_past_the_limit() {
        let mut p = SseParser::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut refused = false;
        for _ in 0..(MAX_EVENT / chunk.len() + 2) {
            if p.feed(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
        let mut p = SseParser::default();
        let line = format!("data: {}\n", "y".repeat(1000));
        let refused = (0..2000).any(|_| p.feed(line.as_bytes()).is_err());
        assert!(
            refused,
            "data lines that never end their event are bounded too"
        );
    }
}
