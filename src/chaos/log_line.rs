//! The log line of a request to `backstop chaos serve`: what it was dealt, and the
//! client's text (path, model) made fit for one line: no query, which may hold a key,
//! no control characters, bounded.

use super::dealer::{Dealt, Why};
use super::draw::Fault;

/// What a request was dealt, for the log line.
pub fn describe(d: &Dealt) -> String {
    let what = match d.fault {
        Fault::Network => "network: connection reset".to_string(),
        Fault::Status(s) => match d.retry_after {
            Some(w) => format!("{s} (retry-after {} ms)", w.as_millis()),
            None => s.to_string(),
        },
        Fault::FirstTokenStall => "first-token stall".into(),
        Fault::Stall => "stall mid-answer".into(),
        Fault::Truncated => "truncated".into(),
        Fault::ContextLength => "400 context length".into(),
        Fault::ContentPolicy => "refusal (content policy)".into(),
        _ => "ok".into(),
    };
    match d.why {
        Why::Drawn => what,
        Why::Outage => format!("{what} [outage]"),
        Why::Sticky => format!("{what} [sticky]"),
    }
}

fn req_path(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

/// A request's path for the log: without its query, which may hold a key.
pub fn shown(target: &str) -> String {
    printable(req_path(target))
}

/// A client's text fit for one line of the log: control characters escaped as the
/// rest of backstop escapes them (`names::printable`), at most 120 characters.
pub fn printable(s: &str) -> String {
    crate::policy::load::shortened(&crate::names::printable(s), 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_gets_no_control_characters_no_query_and_no_more_than_120() {
        assert_eq!(shown("/v1/models?key=sk-secret"), "/v1/models");
        let forged = printable("m\nchaos: #9 forged");
        assert_eq!(forged, "m\\nchaos: #9 forged");
        assert!(!forged.chars().any(char::is_control));
        let long = "x".repeat(500);
        assert_eq!(printable(&long).chars().count(), 121);
    }
}
