//! Output patterns, matched line by line as the output streams past.
//!
//! Memory stays flat whatever the command prints: only the current line is kept,
//! and a line longer than [`MAX_LINE`] is scanned in windows that overlap by
//! [`OVERLAP`] bytes, so a match is found unless it is itself longer than that.

use regex::bytes::RegexSet;

use crate::policy::values::Pattern;

/// Longest line kept whole for matching.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of a cut line is kept for the next window.
pub const OVERLAP: usize = 4 * 1024;

/// The patterns one link's attempts are scanned for.
#[derive(Clone, Debug, Default)]
pub struct Scanner {
    set: Option<RegexSet>,
}

impl Scanner {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Scanner {
        let sources: Vec<&str> = patterns.into_iter().map(|p| p.source.as_str()).collect();
        if sources.is_empty() {
            return Scanner { set: None };
        }
        // Each pattern compiled alone when the policy loaded, so the set compiles too.
        let set = RegexSet::new(sources).expect("patterns were validated");
        Scanner { set: Some(set) }
    }

    /// Whether there is anything to look for (if not, output need not be piped).
    pub fn is_active(&self) -> bool {
        self.set.is_some()
    }

    pub fn stream(&self) -> LineScan {
        LineScan {
            set: self.set.clone(),
            line: Vec::new(),
            matched: vec![false; self.set.as_ref().map_or(0, RegexSet::len)],
        }
    }
}

/// Scans one output stream, fed in chunks of any size.
#[derive(Debug)]
pub struct LineScan {
    set: Option<RegexSet>,
    line: Vec<u8>,
    matched: Vec<bool>,
}

impl LineScan {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.set.is_none() {
            return;
        }
        while let Some(nl) = memchr(b'\n', chunk) {
            if self.line.is_empty() {
                self.check(&chunk[..nl]);
            } else {
                self.line.extend_from_slice(&chunk[..nl]);
                let line = std::mem::take(&mut self.line);
                self.check(&line);
                self.line = line;
                self.line.clear();
            }
            chunk = &chunk[nl + 1..];
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_LINE {
            let line = std::mem::take(&mut self.line);
            self.check(&line);
            self.line = line[line.len() - OVERLAP..].to_vec();
        }
    }

    /// Ends the stream and returns the indices of the patterns that matched.
    pub fn finish(mut self) -> Vec<usize> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.check(&line);
        }
        self.matched
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.then_some(i))
            .collect()
    }

    fn check(&mut self, line: &[u8]) {
        if let Some(set) = &self.set {
            for i in set.matches(line).iter() {
                self.matched[i] = true;
            }
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> Pattern {
        serde_yaml::from_str(&format!("'{s}'")).unwrap()
    }

    #[test]
    fn matches_across_chunk_boundaries() {
        let pats = [pattern("rate limit"), pattern("^FATAL")];
        let scanner = Scanner::new(&pats);
        let mut s = scanner.stream();
        for chunk in [&b"ok\nrate li"[..], b"mit hit\nnot FATAL\n"] {
            s.feed(chunk);
        }
        assert_eq!(s.finish(), vec![0]);
    }

    #[test]
    fn anchors_apply_per_line_and_the_last_line_counts() {
        let pats = [pattern("^FATAL$")];
        let scanner = Scanner::new(&pats);
        let mut s = scanner.stream();
        s.feed(b"first\nFATAL");
        assert_eq!(s.finish(), vec![0]);
    }

    #[test]
    fn long_lines_are_scanned_in_bounded_windows() {
        let pats = [pattern("needle")];
        let scanner = Scanner::new(&pats);
        let mut s = scanner.stream();
        let hay = vec![b'x'; 3 * MAX_LINE];
        s.feed(&hay);
        s.feed(b"needle");
        s.feed(&hay);
        assert!(s.line.len() <= MAX_LINE + OVERLAP);
        assert_eq!(s.finish(), vec![0]);
    }
}
