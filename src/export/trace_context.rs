//! W3C trace context: a `TRACEPARENT` a CI tool set makes the run's span its child;
//! otherwise the run starts a trace of its own. Span ids are random.

/// The span a run was started under, from `TRACEPARENT` (and `TRACESTATE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: String,
}

/// `version-traceid-parentid-flags`, lowercase hex; `None` for anything invalid (an
/// all-zero id, version `ff`, the wrong lengths), which the spec says to ignore.
pub fn parse_traceparent(value: &str, trace_state: Option<&str>) -> Option<Parent> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let (version, trace, span, flags) = match parts[..] {
        [v, t, s, f] => (v, t, s, f),
        // A later version may add fields after the flags.
        [v, t, s, f, ..] if v != "00" => (v, t, s, f),
        _ => return None,
    };
    if version.len() != 2 || version == "ff" || !is_hex(version) || flags.len() != 2 {
        return None;
    }
    if !is_hex(flags) {
        return None;
    }
    let trace_id: [u8; 16] = decode_hex(trace)?.try_into().ok()?;
    let span_id: [u8; 8] = decode_hex(span)?.try_into().ok()?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        trace_state: trace_state.unwrap_or("").trim().to_string(),
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !is_hex(s) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The ids of one run's trace.
pub struct Ids {
    pub trace_id: [u8; 16],
    parent: Option<Parent>,
}

impl Ids {
    pub fn new(parent: Option<Parent>) -> Ids {
        let trace_id = match &parent {
            Some(p) => p.trace_id,
            None => loop {
                let id: [u8; 16] = crate::store::random_bytes();
                if id != [0; 16] {
                    break id;
                }
            },
        };
        Ids { trace_id, parent }
    }

    /// A new span id (never all zeroes, which means none).
    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let id: [u8; 8] = crate::store::random_bytes();
            if id != [0; 8] {
                return id;
            }
        }
    }

    /// The root span's parent: the caller's span, or none.
    pub fn parent_span_id(&self) -> Vec<u8> {
        self.parent
            .as_ref()
            .map(|p| p.span_id.to_vec())
            .unwrap_or_default()
    }

    pub fn trace_state(&self) -> String {
        self.parent
            .as_ref()
            .map(|p| p.trace_state.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_traceparent;

    #[test]
    fn traceparent_valid_and_invalid() {
        let p = parse_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("a=b"),
        )
        .unwrap();
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.span_id[7], 0xb7);
        assert_eq!(p.trace_state, "a=b");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad, None), None, "{bad}");
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
                None
            )
            .is_some()
        );
    }
}
