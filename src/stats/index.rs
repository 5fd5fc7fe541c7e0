//! The figures of every record of a tree store, read through an index beside the
//! records (`trees/<key>/stats-index`): a record whose file has the size, modification
//! time and inode the index saw is not parsed again. The index is a cache: lost,
//! damaged or unwritable, it only costs time.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::facts::Facts;
use crate::record::{RunRecord, Status};
use crate::store::layout;
use crate::store::{Durability, write_atomic};

/// The index's first line; an index of another format is not read.
const HEADER: &str = "backstop stats-index 1";

/// A record's file as the index saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
struct Line {
    file: String,
    seen: Seen,
    facts: Facts,
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

/// Larger than any record backstop writes (a run's attempts are capped long before).
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// A record changed this recently is not indexed: a rewrite within the
/// filesystem's timestamp granularity could keep size and time (git's racy rule).
const SETTLED: Duration = Duration::from_secs(2);

/// The runs of the tree store `records` (a `trees/<key>` directory).
pub fn tree_facts(records: &Path) -> Result<TreeFacts> {
    let runs_dir = layout::runs_dir(records);
    let entries = match fs::read_dir(&runs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TreeFacts::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", runs_dir.display()));
        }
    };
    let index_file = layout::stats_index_file(records);
    let mut old = read_index(&index_file);
    let old_len = old.len();
    let mut out = TreeFacts::default();
    let mut kept: Vec<Line> = Vec::with_capacity(old_len);
    let mut to_parse: Vec<(String, PathBuf, Seen, SystemTime)> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", runs_dir.display()))?;
        let path = entry.path();
        if layout::record_id(&path).is_none() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue; // removed since the listing (gc)
        };
        // A FIFO would block the read, a device never end, a huge file fill memory:
        // none is a record backstop wrote.
        if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
            let why = if meta.is_file() {
                "too large to be a record"
            } else {
                "not a regular file"
            };
            out.unreadable.push(Unreadable {
                file: path,
                error: why.into(),
            });
            continue;
        }
        let seen = Seen::of(&meta);
        match old.remove(&name) {
            Some((s, facts)) if s == seen => kept.push(Line {
                file: name,
                seen,
                facts,
            }),
            _ => to_parse.push((
                name,
                path,
                seen,
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            )),
        }
    }
    let dropped = !old.is_empty();
    let parsed = parse_all(&to_parse);
    let now = SystemTime::now();
    let mut added = false;
    for ((name, path, seen, mtime), result) in to_parse.into_iter().zip(parsed) {
        match result {
            Ok((facts, finished)) => {
                let settled = now.duration_since(mtime).is_ok_and(|d| d >= SETTLED);
                if finished && settled {
                    added = true;
                    kept.push(Line {
                        file: name,
                        seen,
                        facts,
                    });
                } else {
                    out.runs.push(facts);
                }
            }
            Err(error) => out.unreadable.push(Unreadable { file: path, error }),
        }
    }
    if added || dropped {
        // A cache: a store that cannot be written to still gets its figures.
        let _ = write_index(&index_file, &kept);
    }
    out.runs.extend(kept.into_iter().map(|l| l.facts));
    out.runs
        .sort_by(|a, b| a.started_ms.cmp(&b.started_ms).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Parses records on up to two threads (a cold index of 100,000 records is mostly
/// JSON parsing). Each: its facts and whether the run is finished.
fn parse_all(files: &[(String, PathBuf, Seen, SystemTime)]) -> Vec<Result<(Facts, bool), String>> {
    let parse = |(_, path, _, _): &(String, PathBuf, Seen, SystemTime)| {
        let bytes = fs::read(path).map_err(|e| crate::error::io_message(&e))?;
        let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok((Facts::of(&record), record.status == Status::Finished))
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

fn read_index(path: &Path) -> HashMap<String, (Seen, Facts)> {
    let Ok(text) = fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return HashMap::new();
    }
    lines
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .map(|l| (l.file, (l.seen, l.facts)))
        .collect()
}

fn write_index(path: &Path, lines: &[Line]) -> Result<()> {
    let mut out = Vec::with_capacity(lines.len() * 400);
    writeln!(out, "{HEADER}")?;
    for l in lines {
        serde_json::to_writer(&mut out, l)?;
        out.push(b'\n');
    }
    write_atomic(path, &out, Durability::Atomic)
}
