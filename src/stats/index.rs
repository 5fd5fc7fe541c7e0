//! The figures of every record of a tree store, read through an index beside the
//! records (`trees/<key>/stats-index`): a record whose file has the size, modification
//! time and inode the index saw is not parsed again. The index is a cache: lost,
//! damaged or unwritable, it only costs time.
//!
//! One line per record: its start, its file's stat, its name, then its facts as JSON.
//! A query over a window (`from_ms`: the end-of-run alert check) neither stats nor
//! parses a record the index says started before it: a run's start never changes
//! when its record is rewritten (undo, redo), so such a record stays outside.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::facts::Facts;
use crate::record::RunRecord;
use crate::store::MAX_RECORD_BYTES;
use crate::store::layout;
use crate::store::{Durability, write_atomic};

/// The index's first line; an index of another format is not read.
const HEADER: &str = "backstop stats-index 3";

/// A record's file as the index saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

impl Seen {
    fn of(m: &fs::Metadata) -> Seen {
        Seen {
            size: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ino: m.ino(),
        }
    }
}

/// A line of the index as read: its facts still JSON, parsed only when needed.
struct Old<'a> {
    started_ms: i64,
    seen: Seen,
    line: &'a str,
    facts: &'a str,
}

/// A line of the index to write: kept as it was read, or new.
enum Keep<'a> {
    Raw(&'a str),
    New(String),
}

/// A record file that could not be read, named for a warning.
#[derive(Debug)]
pub struct Unreadable {
    pub file: PathBuf,
    pub error: String,
}

/// Every run of one tree store.
#[derive(Debug, Default)]
pub struct TreeFacts {
    pub runs: Vec<Facts>,
    pub unreadable: Vec<Unreadable>,
}

/// Far past the index of a million records: a file that large is not one backstop wrote.
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// A record changed this recently is not indexed: a rewrite within the
/// filesystem's timestamp granularity could keep size and time (git's racy rule).
const SETTLED: Duration = Duration::from_secs(2);

/// A record to read from its file.
struct ToParse {
    name: String,
    path: PathBuf,
    seen: Seen,
    mtime: SystemTime,
}

/// The runs of the tree store `records` (a `trees/<key>` directory); with `from_ms`,
/// runs the index knows to have started before it may be left out.
pub fn tree_facts(records: &Path, from_ms: Option<i64>) -> Result<TreeFacts> {
    let runs_dir = layout::runs_dir(records);
    let entries = match fs::read_dir(&runs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TreeFacts::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", runs_dir.display()));
        }
    };
    let index_file = layout::stats_index_file(records);
    let text = crate::store::read_plain(&index_file, "stats index", MAX_INDEX_BYTES)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut old = read_index(&text);
    let old_len = old.len();
    let mut out = TreeFacts::default();
    let mut kept: Vec<Keep> = Vec::with_capacity(old.len());
    let mut to_parse = Vec::new();
    let mut changed = false;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", runs_dir.display()))?;
        let path = entry.path();
        if layout::record_id(&path).is_none() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(o) = old.get(name.as_str())
            && from_ms.is_some_and(|from| o.started_ms < from)
        {
            kept.push(Keep::Raw(o.line));
            old.remove(name.as_str());
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue; // removed since the listing (gc)
        };
        if let Some(why) = not_a_record(&meta) {
            out.unreadable.push(Unreadable {
                file: path,
                error: why.into(),
            });
            continue;
        }
        let seen = Seen::of(&meta);
        let known = old.remove(name.as_str()).filter(|o| o.seen == seen);
        match known.and_then(|o| Some((o.line, serde_json::from_str::<Facts>(o.facts).ok()?))) {
            Some((line, facts)) => {
                kept.push(Keep::Raw(line));
                out.runs.push(facts);
            }
            None => to_parse.push(ToParse {
                name,
                path,
                seen,
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            }),
        }
    }
    // Lines of records that are gone, or lines for a record that a newer line
    // replaces: the index is written anew. Otherwise new lines are only appended,
    // so a run's end does not rewrite the line of every record there is.
    let stale = !old.is_empty() || lines_in(&text) > old_len;
    changed |= add_parsed(parse_all(&to_parse), to_parse, &mut kept, &mut out);
    // A cache: a store that cannot be written to still gets its figures.
    if stale || (changed && old_len == 0) {
        let _ = write_index(&index_file, &kept);
    } else if changed {
        let _ = append_index(&index_file, &kept);
    }
    out.runs
        .sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Why a file among the records is not read as one: a FIFO would block the read, a
/// device never end, a huge file fill memory; none is a record backstop wrote.
fn not_a_record(meta: &fs::Metadata) -> Option<&'static str> {
    if !meta.is_file() {
        Some("not a regular file")
    } else if meta.len() > MAX_RECORD_BYTES {
        Some("too large to be a record")
    } else {
        None
    }
}

/// Takes in what was parsed: each run's facts, indexed once the record is settled,
/// finished or not (a run killed with `kill -9` stays unfinished for good; a record
/// rewritten later is a new file, which its size, time or inode tells). Whether the
/// index gained a line.
fn add_parsed(
    parsed: Vec<Result<Facts, String>>,
    files: Vec<ToParse>,
    kept: &mut Vec<Keep>,
    out: &mut TreeFacts,
) -> bool {
    let now = SystemTime::now();
    let mut added = false;
    for (file, result) in files.into_iter().zip(parsed) {
        match result {
            Ok(facts) => {
                let settled = now.duration_since(file.mtime).is_ok_and(|d| d >= SETTLED);
                // A name with a tab or a newline is not one backstop gave: not indexed.
                let plain = !file.name.contains(['\t', '\n']);
                if settled
                    && plain
                    && let Ok(line) = line_of(&file.name, file.seen, &facts)
                {
                    kept.push(Keep::New(line));
                    added = true;
                }
                out.runs.push(facts);
            }
            Err(error) => out.unreadable.push(Unreadable {
                file: file.path,
                error,
            }),
        }
    }
    added
}

fn line_of(name: &str, seen: Seen, facts: &Facts) -> Result<String> {
    Ok(format!(
        "{}\t{}\t{}\t{}\t{name}\t{}",
        facts.started_ms,
        seen.size,
        seen.mtime_ns,
        seen.ino,
        serde_json::to_string(facts)?
    ))
}

/// Parses records on up to two threads (a cold index of 100,000 records is mostly
/// JSON parsing). Each: its facts.
fn parse_all(files: &[ToParse]) -> Vec<Result<Facts, String>> {
    let parse = |f: &ToParse| {
        let bytes = crate::store::read_plain(&f.path, "record", MAX_RECORD_BYTES)
            .map_err(|e| crate::error::io_message(&e))?;
        let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Facts::of(&record))
    };
    let threads = if files.len() < 256 {
        1
    } else {
        crate::snapshot::cores().clamp(1, 2)
    };
    if threads == 1 {
        return files.iter().map(parse).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![Err("a parser thread panicked".to_string())])
            })
            .collect()
    })
}

/// The index's lines by file name; a line that does not parse is left out (its
/// record is read again).
fn read_index(text: &str) -> HashMap<&str, Old<'_>> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return HashMap::new();
    }
    lines
        .filter_map(|line| {
            let mut f = line.splitn(6, '\t');
            let started_ms = f.next()?.parse().ok()?;
            let seen = Seen {
                size: f.next()?.parse().ok()?,
                mtime_ns: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
            };
            let name = f.next()?;
            let facts = f.next()?;
            Some((
                name,
                Old {
                    started_ms,
                    seen,
                    line,
                    facts,
                },
            ))
        })
        .collect()
}

/// The index's record lines, valid or not (a record named twice counts twice).
fn lines_in(text: &str) -> usize {
    text.lines().count().saturating_sub(1)
}

/// Appends the new lines to an index that holds every other line already.
fn append_index(path: &Path, lines: &[Keep]) -> Result<()> {
    let mut out = Vec::new();
    for l in lines {
        if let Keep::New(s) = l {
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
    }
    // One write: appends of runs ending at once do not interleave within a line. A
    // line cut short by a crash does not parse, and costs its record one read.
    // Never through a symlink, never blocked by a FIFO put in its place.
    let mut file = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot append to {}", path.display()))?;
    if !file.metadata()?.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    file.write_all(&out)
        .with_context(|| format!("cannot append to {}", path.display()))
}

fn write_index(path: &Path, lines: &[Keep]) -> Result<()> {
    let mut out = Vec::with_capacity(lines.len() * 400);
    writeln!(out, "{HEADER}")?;
    for l in lines {
        match l {
            Keep::Raw(s) => out.extend_from_slice(s.as_bytes()),
            Keep::New(s) => out.extend_from_slice(s.as_bytes()),
        }
        out.push(b'\n');
    }
    write_atomic(path, &out, Durability::Atomic)
}
