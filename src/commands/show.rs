//! `backstop show RUN`: one run, every attempt and why; and, by name, an interrupted
//! put-back of it or the damaged file its record is.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::error::UserError;
use crate::events::Outcome;
use crate::exit_code::SUCCESS;
use crate::names::{printable, quote_path};
use crate::record::{PutBack, RunRecord, TreeState};
use crate::reporter::{format_elapsed, summary_line};
use crate::snapshot::region::is_live;
use crate::store::{RunRecords, Store, repo_root};

use crate::attempt::command_line;

pub fn show(store: Option<PathBuf>, prefix: Option<&str>, json: bool) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree = store.records(&repo_root(&cwd));
    let r = match prefix {
        Some(prefix) => tree.find(prefix)?,
        None => latest(&tree)?,
    };
    let pending = super::health::interrupted(store.dir(), &tree)
        .into_iter()
        .find(|p| p.run_id() == Some(r.id.as_str()));
    if let Some(p) = &pending {
        eprintln!("backstop: warning: {}", p.message());
    }
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::to_value(&r)?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert(
                "interrupted".into(),
                pending
                    .as_ref()
                    .map_or(serde_json::Value::Null, |p| p.json()),
            );
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(SUCCESS);
    }
    write_header(&mut out, &r, store.dir(), pending.as_ref())?;
    write_attempts(&mut out, &r)?;
    write_steps(&mut out, &r)?;
    if let Some(snap) = &r.snapshot {
        write_files(&mut out, snap)?;
    } else if let Some(why) = r.no_snapshot {
        writeln!(
            out,
            "\nfiles    no snapshot: {}; nothing to undo",
            why.why()
        )?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {}", printable(w))?;
    }
    Ok(SUCCESS)
}

/// Which run, where, under what policy, and how it ended.
fn write_header(
    out: &mut impl Write,
    r: &RunRecord,
    store: &std::path::Path,
    pending: Option<&super::health::Interrupted>,
) -> Result<()> {
    writeln!(out, "run      {}", r.id)?;
    writeln!(out, "state    {}", r.state(|| is_live(store, &r.id)))?;
    if let Some(p) = pending {
        writeln!(out, "         ! {}", p.message())?;
    }
    writeln!(out, "command  {}", command_line(&r.command))?;
    writeln!(out, "in       {}", quote_path(&r.cwd))?;
    writeln!(
        out,
        "policy   {} (blake3 {})",
        printable(&r.policy.source),
        &r.policy.digest[..r.policy.digest.len().min(16)]
    )?;
    writeln!(
        out,
        "started  {}",
        humantime::format_rfc3339_millis(r.started_at)
    )?;
    if let Some(chaos) = &r.chaos {
        writeln!(
            out,
            "chaos    faults injected from {}, seed {} (--chaos-seed {} draws them again)",
            quote_path(&chaos.faults),
            chaos.seed,
            chaos.seed
        )?;
    }
    if let Some(o) = &r.outcome {
        // Free text from the record is escaped: it may carry a name (a program not
        // found) or a server's words, and records written before names were quoted
        // at their origin hold them raw.
        writeln!(
            out,
            "outcome  {} (exit {})",
            printable(&summary_line(o)),
            o.exit_code
        )?;
        if o.input_tokens > 0 || o.output_tokens > 0 || o.model.is_some() {
            let cost = o
                .cost_usd
                .map_or("no price set".to_string(), |c| format!("${c:.6}"));
            let model = o.model.as_deref().unwrap_or("-");
            writeln!(
                out,
                "model    {model}: {} tokens in, {} out, {cost}",
                o.input_tokens, o.output_tokens
            )?;
        }
    }
    Ok(())
}

/// Every attempt: its layer, link, number, time, how it ended and the verdict.
fn write_attempts(out: &mut impl Write, r: &RunRecord) -> Result<()> {
    writeln!(out, "\nattempts")?;
    for a in &r.attempts {
        let verdict = a.verdict.as_ref().map_or("succeeded".to_string(), |v| {
            format!(
                "{} · {} · {}",
                v.class.as_str(),
                if v.retry { "retryable" } else { "not retried" },
                v.rule
            )
        });
        writeln!(
            out,
            "  {:<8} link {} {:<24} {}/{}  {:>8}  {:<22} {}",
            a.layer.as_str(),
            a.link,
            truncate(&a.link_name, 24),
            a.attempt,
            a.max_attempts,
            format_elapsed(a.duration_ms),
            printable(&a.end.describe()),
            printable(&verdict),
        )?;
        if let Some(injected) = &a.injected {
            writeln!(out, "           injected: {}", printable(injected))?;
        }
        if let Some(reason) = &a.delay_reason {
            writeln!(out, "           then: {}", printable(reason))?;
        }
    }
    for skip in &r.skipped {
        writeln!(
            out,
            "  skipped  link {} {:<24} breaker open since {}, next probe at {}",
            skip.link,
            truncate(&skip.link_name, 24),
            printable(&skip.open_since),
            printable(&skip.next_probe),
        )?;
    }
    if r.retries_off {
        writeln!(out, "  retries off: the retry budget was exhausted")?;
    }
    Ok(())
}

/// The change set, marked path by path where the run's paths stand apart, and every
/// put-back of it.
fn write_files(out: &mut impl Write, snap: &crate::record::SnapshotInfo) -> Result<()> {
    let mut state = snap.state.as_str().to_string();
    // A partial undo leaves the run applied but for the paths it put back.
    if !snap.undone.is_empty() {
        state.push_str(&format!("; {} path(s) undone", snap.undone.len()));
    }
    if !snap.late.is_empty() {
        let what = match snap.state {
            TreeState::RolledBack => "kept",
            _ => "not the run's",
        };
        state.push_str(&format!(
            "; {} path(s) {what}, changed after the command had ended",
            snap.late.len()
        ));
    }
    writeln!(
        out,
        "\nfiles    {} change(s) under {} ({state})",
        snap.changes.len(),
        quote_path(&snap.root)
    )?;
    // What changed while the run was live, whoever changed it: say so where it
    // matters, before anyone takes the list for the command's own work.
    if !snap.changes.is_empty() {
        writeln!(
            out,
            "  (what changed in the scope while the run was live, by the command or anyone else)"
        )?;
    }
    let marks = Marks::of(snap);
    for c in &snap.changes {
        let mark =
            path_state(snap, &marks, &c.path.0).map_or(String::new(), |m| format!("  ({m})"));
        writeln!(out, "  {:?} {}  {}{mark}", c.letter, c.path, c.detail)?;
    }
    for p in &snap.skipped {
        writeln!(out, "  skipped {p}: over the size limit, not kept")?;
    }
    for rs in &snap.restores {
        let missed = if rs.not_restored > 0 {
            format!(", {} not restored", rs.not_restored)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {} {}: {} path(s){missed} ({})",
            humantime::format_rfc3339_seconds(rs.at),
            rs.action,
            rs.paths,
            printable(&rs.reason)
        )?;
    }
    if !snap.not_restored.is_empty() {
        writeln!(
            out,
            "  ! {} incomplete: {} path(s) not restored:",
            snap.restores
                .last()
                .map_or("put-back", |r| r.action.as_str()),
            snap.not_restored.len()
        )?;
        for n in &snap.not_restored {
            writeln!(out, "    {}: {}", n.path, printable(&n.why))?;
        }
    }
    if let Some(e) = &snap.after_error {
        writeln!(
            out,
            "  ! the state after the run was not stored ({}): redo cannot re-apply it",
            printable(e)
        )?;
    }
    Ok(())
}

/// The steps of a task: each by name with its outcome, those never reached, and,
/// when a failed step left the tree applied (`rollback.to: step`, or `on: never`),
/// which steps' changes remain in it.
fn write_steps(out: &mut impl Write, r: &RunRecord) -> Result<()> {
    if r.steps.is_empty() {
        return Ok(());
    }
    // A task's record names every step in its command (`step:NAME`), the ones after
    // the last started too.
    let all: Vec<&str> = r
        .command
        .iter()
        .map(|w| w.strip_prefix("step:").unwrap_or(w))
        .collect();
    let total = all.len().max(r.steps.len());
    writeln!(out, "\nsteps")?;
    for i in 0..total {
        let (name, outcome) = match (r.steps.get(i), all.get(i)) {
            (Some(step), _) => (
                step.name.as_str(),
                step.outcome.as_ref().map_or("unfinished".to_string(), |o| {
                    format!("{} (exit {})", o.outcome.as_str(), o.exit_code)
                }),
            ),
            (None, Some(name)) => (*name, "not reached".to_string()),
            (None, None) => break,
        };
        writeln!(
            out,
            "  {}/{total}  {:<24} {outcome}",
            i + 1,
            truncate(&printable(name), 24)
        )?;
    }
    let failed = r
        .steps
        .last()
        .and_then(|s| s.outcome.as_ref())
        .is_some_and(|o| o.outcome != Outcome::Succeeded);
    let applied = r
        .snapshot
        .as_ref()
        .is_some_and(|s| s.state == TreeState::Applied && s.undone.is_empty());
    if failed && applied {
        let done: Vec<String> = r
            .steps
            .iter()
            .filter(|s| {
                s.outcome
                    .as_ref()
                    .is_some_and(|o| o.outcome == Outcome::Succeeded)
            })
            .map(|s| format!("`{}`", printable(&s.name)))
            .collect();
        let last = r
            .steps
            .last()
            .map_or(String::new(), |s| printable(&s.name).into_owned());
        let declined = r
            .outcome
            .as_ref()
            .is_some_and(|o| o.outcome == Outcome::Declined);
        let rolled_back = r
            .snapshot
            .as_ref()
            .is_some_and(|s| s.restores.iter().any(|x| x.action == PutBack::Rollback));
        let failed_step = if declined {
            format!("step `{last}` did not run")
        } else if rolled_back {
            format!("step `{last}`'s were put back")
        } else {
            format!("step `{last}`'s were not rolled back")
        };
        let remain = if done.is_empty() {
            "no earlier step's changes remain in the tree".to_string()
        } else {
            format!(
                "the changes of step(s) {} remain in the tree",
                done.join(", ")
            )
        };
        writeln!(out, "  {remain}; {failed_step}")?;
    }
    Ok(())
}

/// The latest run, as `runs` lists it first. A newer record that cannot be read is
/// named on stderr: the run shown may not be the last one started.
fn latest(tree: &RunRecords) -> Result<RunRecord> {
    let listing = tree.listing()?;
    for d in listing.damaged_since(listing.records.first()) {
        eprintln!(
            "backstop: warning: {}: a run record that cannot be read ({}); it may be a later run than the one shown",
            quote_path(&d.file),
            d.error
        );
    }
    listing
        .records
        .into_iter()
        .next()
        .ok_or_else(|| UserError::NoRuns(tree.root().to_path_buf()).into())
}

/// `s` cut to `n` characters, the last one `…` when it was cut.
pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Where one path of the change set stands, when the run's paths do not all stand
/// together (a partial undo, a rollback that kept later edits); `None` when the
/// state in the header says it of every path.
fn path_state(
    snap: &crate::record::SnapshotInfo,
    marks: &Marks,
    path: &[u8],
) -> Option<&'static str> {
    if marks.undone.is_empty() && marks.late.is_empty() {
        return None;
    }
    let hex = crate::snapshot::journal::to_hex(path);
    Some(match snap.state {
        // Kept by the rollback, never the run's: undo and redo leave it alone too.
        TreeState::RolledBack if marks.late.contains(hex.as_str()) => {
            "kept: changed after the command had ended"
        }
        _ if marks.late.contains(hex.as_str()) => {
            "not the run's: changed after the command had ended"
        }
        TreeState::Applied if marks.undone.contains(hex.as_str()) => "undone",
        TreeState::Applied => "applied",
        TreeState::RolledBack => "rolled back",
        TreeState::Undone => "undone",
    })
}

/// The record's per-path lists as sets, made once for a listing of every path.
struct Marks<'a> {
    undone: std::collections::HashSet<&'a str>,
    late: std::collections::HashSet<&'a str>,
}

impl<'a> Marks<'a> {
    fn of(snap: &'a crate::record::SnapshotInfo) -> Marks<'a> {
        Marks {
            undone: snap.undone.iter().map(String::as_str).collect(),
            late: snap.late.iter().map(String::as_str).collect(),
        }
    }
}
