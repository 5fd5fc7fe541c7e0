//! Output patterns, matched line by line as the output streams past.
//!
//! Memory and time stay bounded whatever the command prints: only the first
//! [`MAX_SCAN`] bytes of each line are kept and matched; the rest of a longer line
//! passes through unscanned. A pattern's cost per byte grows with its size
//! (`x{4000}y` thrashes the lazy DFA), so scanning a whole 50 MB line would
//! throttle the command to kilobytes a second; a bounded prefix bounds the work per
//! line. The set of patterns is compiled when the policy loads, never at a link.

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::policy::values::Pattern;

/// How much of each line is matched; the rest of a longer line is not.
pub const MAX_SCAN: usize = 64 * 1024;
/// The most one list of patterns (`on.output`, `never.output`, `fail_on.output`,
/// `critical.output`) may take compiled as a set (regex's own measure).
pub const SET_SIZE_LIMIT: usize = 8 << 20;
/// Memory the lazy DFA of one stream may cache; more than regex's 2 MiB default,
/// so a large counted repetition stays on the DFA instead of the much slower NFA.
pub const DFA_CACHE_LIMIT: usize = 16 << 20;

/// One list of patterns compiled as a set, when the policy loads. Cheap to clone:
/// the compiled program is shared.
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    set: Option<RegexSet>,
}

/// Two sets are equal when they hold the same patterns in the same order.
impl PartialEq for PatternSet {
    fn eq(&self, other: &Self) -> bool {
        let sources = |s: &PatternSet| s.set.as_ref().map(|s| s.patterns().to_vec());
        sources(self) == sources(other)
    }
}

impl PatternSet {
    /// Each pattern compiled alone when it was read; together they can still
    /// exceed [`SET_SIZE_LIMIT`], which is the error returned.
    pub fn new(patterns: &[Pattern]) -> Result<PatternSet, String> {
        if patterns.is_empty() {
            return Ok(PatternSet { set: None });
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|p| p.source.as_str()))
            .size_limit(SET_SIZE_LIMIT)
            .dfa_size_limit(DFA_CACHE_LIMIT)
            .build()
            .map_err(|e| {
                e.to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string()
            })?;
        Ok(PatternSet { set: Some(set) })
    }

    fn len(&self) -> usize {
        self.set.as_ref().map_or(0, RegexSet::len)
    }
}

/// The patterns one link's attempts are scanned for: its lists in order, a
/// pattern's index counted across them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scanner {
    sets: Vec<PatternSet>,
}

impl Scanner {
    pub fn new(sets: Vec<PatternSet>) -> Scanner {
        Scanner { sets }
    }

    /// Whether there is anything to look for (if not, output need not be piped).
    pub fn is_active(&self) -> bool {
        self.sets.iter().any(|s| s.set.is_some())
    }

    pub fn stream(&self) -> LineScan {
        LineScan {
            sets: self.sets.clone(),
            line: Vec::new(),
            scanned: false,
            matched: vec![false; self.sets.iter().map(PatternSet::len).sum()],
        }
    }
}

/// Scans one output stream, fed in chunks of any size.
#[derive(Debug)]
pub struct LineScan {
    sets: Vec<PatternSet>,
    /// The current line's first bytes, at most [`MAX_SCAN`].
    line: Vec<u8>,
    /// The current line's first [`MAX_SCAN`] bytes were matched already.
    scanned: bool,
    matched: Vec<bool>,
}

impl LineScan {
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.matched.is_empty() {
            return;
        }
        while let Some(nl) = memchr(b'\n', chunk) {
            if self.line.is_empty() && !self.scanned {
                self.check(&chunk[..nl.min(MAX_SCAN)]);
            } else {
                self.take(&chunk[..nl]);
                self.end_line();
            }
            self.line.clear();
            self.scanned = false;
            chunk = &chunk[nl + 1..];
        }
        self.take(chunk);
    }

    /// Keeps what fits of a line's first [`MAX_SCAN`] bytes, and matches them once
    /// they are all there.
    fn take(&mut self, part: &[u8]) {
        if self.scanned {
            return;
        }
        let room = MAX_SCAN - self.line.len();
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        if self.line.len() == MAX_SCAN {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        if !self.scanned {
            let line = std::mem::take(&mut self.line);
            self.check(&line);
            self.line = line;
            self.line.clear();
            self.scanned = true;
        }
    }

    /// Ends the stream and returns the indices of the patterns that matched.
    pub fn finish(mut self) -> Vec<usize> {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.matched
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.then_some(i))
            .collect()
    }

    fn check(&mut self, line: &[u8]) {
        let mut offset = 0;
        for s in &self.sets {
            if let Some(set) = &s.set {
                for i in set.matches(line).iter() {
                    self.matched[offset + i] = true;
                }
                offset += set.len();
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
        let scanner = Scanner::new(vec![PatternSet::new(&pats).unwrap()]);
        let mut s = scanner.stream();
        for chunk in [&b"ok\nrate li"[..], b"mit hit\nnot FATAL\n"] {
            s.feed(chunk);
        }
        assert_eq!(s.finish(), vec![0]);
    }

    #[test]
    fn anchors_apply_per_line_and_the_last_line_counts() {
        let pats = [pattern("^FATAL$")];
        let scanner = Scanner::new(vec![PatternSet::new(&pats).unwrap()]);
        let mut s = scanner.stream();
        s.feed(b"first\nFATAL");
        assert_eq!(s.finish(), vec![0]);
    }

    #[test]
    fn only_the_first_max_scan_bytes_of_a_line_are_matched() {
        let pats = [pattern("needle")];
        let scanner = Scanner::new(vec![PatternSet::new(&pats).unwrap()]);
        let mut s = scanner.stream();
        let hay = vec![b'x'; MAX_SCAN - 6];
        s.feed(&hay);
        s.feed(b"needle");
        assert!(s.scanned && s.line.is_empty());
        s.feed(&hay);
        assert!(s.line.len() <= MAX_SCAN);
        assert_eq!(
            s.finish(),
            vec![0],
            "a needle that ends at MAX_SCAN is found"
        );

        let mut s = scanner.stream();
        s.feed(&vec![b'x'; MAX_SCAN - 5]);
        s.feed(b"needle\nnext line");
        assert_eq!(s.finish(), Vec::<usize>::new(), "one byte past is not");
    }

    #[test]
    fn a_new_line_is_scanned_after_an_unscanned_tail() {
        let pats = [pattern("^needle")];
        let scanner = Scanner::new(vec![PatternSet::new(&pats).unwrap()]);
        let mut s = scanner.stream();
        s.feed(&vec![b'x'; 3 * MAX_SCAN]);
        s.feed(b"needle\nneedle");
        assert_eq!(s.finish(), vec![0]);
        let mut s = scanner.stream();
        s.feed(&[vec![b'x'; 3 * MAX_SCAN], b"\nneedle\n".to_vec()].concat());
        assert_eq!(s.finish(), vec![0]);
    }

    /// A counted repetition over a long line made the lazy DFA give up and the
    /// NFA crawl at ~50 KB/s; a bounded prefix per line keeps a 50 MB line fast.
    #[test]
    fn a_costly_pattern_over_a_huge_line_is_bounded() {
        let pats = [pattern("x{4000}y")];
        let scanner = Scanner::new(vec![PatternSet::new(&pats).unwrap()]);
        let mut s = scanner.stream();
        let chunk = vec![b'x'; 64 * 1024];
        let started = std::time::Instant::now();
        for _ in 0..800 {
            s.feed(&chunk);
        }
        assert_eq!(s.finish(), Vec::<usize>::new());
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn patterns_that_compile_alone_can_fail_together() {
        let big = pattern(r"\w{8}");
        let many: Vec<Pattern> = (0..40).map(|_| big.clone()).collect();
        let err = PatternSet::new(&many).unwrap_err();
        assert!(err.contains("size limit"), "{err}");
    }
}
