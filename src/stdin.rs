//! Replays backstop's stdin to every attempt, when stdin is a pipe or a file.
//!
//! What the first attempt reads is kept in an unlinked temporary file as it passes,
//! and each retry reads it again from the start, then goes on with the rest of the
//! live input. Input is read only as fast as an attempt consumes it, so
//! `producer | backstop run -- consumer` still streams. At most [`REPLAY_LIMIT`]
//! bytes are kept; past that, the attempt still gets all its input, but no further
//! attempt can be given the same input, so none is made.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// The most input kept for replay.
pub const REPLAY_LIMIT: u64 = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct StdinReplay {
    shared: Arc<Mutex<Shared>>,
    limit: u64,
}

struct Shared {
    source: Option<File>,
    spill: Option<File>,
    len: u64,
    eof: bool,
    overflowed: bool,
}

impl StdinReplay {
    /// Replays backstop's own stdin (fd 0).
    pub fn from_stdin() -> StdinReplay {
        use std::os::fd::AsFd;
        let source = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from);
        StdinReplay::new(source, REPLAY_LIMIT)
    }

    pub fn new(source: Option<File>, limit: u64) -> StdinReplay {
        StdinReplay {
            shared: Arc::new(Mutex::new(Shared {
                eof: source.is_none(),
                source,
                spill: None,
                len: 0,
                overflowed: false,
            })),
            limit,
        }
    }

    /// Whether a further attempt can be given the whole input again.
    pub fn replayable(&self) -> bool {
        !self.shared.lock().expect("stdin lock").overflowed
    }

    /// Feeds the input, from the start, into `pipe` on a thread of its own.
    pub fn feed(&self, mut pipe: impl Write + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        let limit = self.limit;
        std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = {
                    let mut s = shared.lock().expect("stdin lock");
                    next_chunk(&mut s, offset, &mut buf, limit)
                };
                match n {
                    Some(0) | None => break,
                    Some(n) => {
                        offset += n as u64;
                        // The attempt closed its stdin or ended: stop feeding it.
                        if pipe.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// The next chunk for a reader at `offset`: from the spill file if it is behind,
/// else fresh from the source (kept for later attempts). `None` at the end.
fn next_chunk(s: &mut Shared, offset: u64, buf: &mut [u8], limit: u64) -> Option<usize> {
    if offset < s.len && !s.overflowed {
        let spill = s.spill.as_ref()?;
        let want = usize::try_from(s.len - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        return spill
            .read_exact_at(&mut buf[..want], offset)
            .ok()
            .map(|()| want);
    }
    if s.eof || offset < s.len {
        return None;
    }
    let source = s.source.as_mut()?;
    let n = loop {
        match source.read(buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // An unreadable stdin (closed, a directory) reads as empty.
            Err(_) => break 0,
        }
    };
    if n == 0 {
        s.eof = true;
        return None;
    }
    if s.len + n as u64 > limit || !keep(s, &buf[..n]) {
        s.overflowed = true;
    }
    s.len += n as u64;
    Some(n)
}

fn keep(s: &mut Shared, data: &[u8]) -> bool {
    if s.overflowed {
        return false;
    }
    if s.spill.is_none() {
        s.spill = tempfile::tempfile().ok();
    }
    let Some(spill) = s.spill.as_ref() else {
        return false;
    };
    spill.write_all_at(data, s.len).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    fn source(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f.rewind().unwrap();
        f
    }

    fn feed_to_vec(r: &StdinReplay) -> Vec<u8> {
        let (mut rx, tx) = std::io::pipe().unwrap();
        r.feed(tx);
        let mut out = Vec::new();
        rx.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_attempt_reads_the_whole_input() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let r = StdinReplay::new(Some(source(&data)), REPLAY_LIMIT);
        assert_eq!(feed_to_vec(&r), data);
        assert_eq!(feed_to_vec(&r), data);
        assert!(r.replayable());
    }

    #[test]
    fn input_over_the_limit_is_passed_once_and_marked() {
        let data = vec![7u8; 200_000];
        let r = StdinReplay::new(Some(source(&data)), 100_000);
        assert_eq!(feed_to_vec(&r), data);
        assert!(!r.replayable());
    }
}
