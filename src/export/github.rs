//! GitHub Actions: a run's Markdown summary appended to `$GITHUB_STEP_SUMMARY`, and
//! its figures to `$GITHUB_OUTPUT` for later steps (`steps.ID.outputs.class`).
//!
//! Everything a user controls (an executable's name, a link's name, a path) is
//! escaped, so a name cannot inject Markdown or HTML into the summary page.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::names::{Kind, executable, link_label};
use crate::events::AttemptReport;
use crate::policy::Policy;
use crate::record::RunRecord;
use crate::reporter::format_elapsed;
use crate::stats::class::{error_type, run_class};

/// Rows of the attempts table past which the rest are counted, not listed.
const MAX_ROWS: usize = 50;
/// Paths of a rollback named in the summary.
const MAX_PATHS: usize = 10;

/// The outputs, in the order they are written.
pub fn outputs(record: &RunRecord, exit_code: u8) -> Vec<(&'static str, String)> {
    let class = run_class(record);
    let summary = record.outcome.as_ref();
    vec![
        ("attempts", record.attempts.len().to_string()),
        ("exit_code", exit_code.to_string()),
        (
            "outcome",
            summary.map_or("unfinished", |s| s.outcome.as_str()).into(),
        ),
        ("layer", class.layer().into()),
        ("class", class.as_str().into()),
        ("run_id", record.id.clone()),
        (
            "cost_usd",
            summary
                .and_then(|s| s.cost_usd)
                .map(|c| format!("{c:.6}"))
                .unwrap_or_default(),
        ),
    ]
}

/// `name=value` lines; a value with a line break in the heredoc form, under a random
/// delimiter it does not hold.
pub fn output_lines(outputs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in outputs {
        if value.contains(['\n', '\r']) {
            let delimiter = loop {
                let d = format!("ghadelimiter_{:016x}", rand::random::<u64>());
                if !value.contains(&d) {
                    break d;
                }
            };
            let _ = writeln!(out, "{name}<<{delimiter}\n{value}\n{delimiter}");
        } else {
            let _ = writeln!(out, "{name}={value}");
        }
    }
    out
}

/// Appends `text` to the file at `path`; the error names the variable and the file.
pub fn append(var: &str, path: &Path, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write ${var} ({}): {e}", path.display()))
}

/// The run's summary in Markdown.
pub fn summary(record: &RunRecord, policy: &Policy, kind: Kind, exit_code: u8) -> String {
    let class = run_class(record);
    let what = match kind {
        Kind::Run => executable(record).map_or_else(|| "task".to_string(), md),
        Kind::Call => md(record.command.get(1).map_or("", String::as_str)),
    };
    let outcome = record
        .outcome
        .as_ref()
        .map_or("unfinished", |s| s.outcome.as_str());
    let mark = if class.succeeded() { "✅" } else { "❌" };
    let mut out = format!(
        "### {mark} {} {what}: {outcome} ({}, {}), exit {exit_code}\n\n",
        kind.span_name(),
        class.as_str(),
        class.layer()
    );
    attempts_table(&mut out, record, policy, kind);
    fallback_line(&mut out, record, policy, kind);
    rollback_lines(&mut out, record);
    call_line(&mut out, record);
    let _ = writeln!(
        out,
        "\nRun `{id}`: `backstop show {id}` for every attempt and file change.\n",
        id = md_code(&record.id)
    );
    out
}

fn attempts_table(out: &mut String, record: &RunRecord, policy: &Policy, kind: Kind) {
    if record.attempts.is_empty() {
        out.push_str("No attempt was made.\n");
        return;
    }
    out.push_str("| # | link | layer | duration | end | delay after |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for (n, a) in record.attempts.iter().enumerate().take(MAX_ROWS) {
        let label = link_label(record, policy, kind, a.link, &a.link_name);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            n + 1,
            md(&label),
            a.layer.as_str(),
            format_elapsed(a.duration_ms),
            end_text(a),
            a.delay_ms.map(format_elapsed).unwrap_or_default()
        );
    }
    let more = record.attempts.len().saturating_sub(MAX_ROWS);
    if more > 0 {
        let _ = writeln!(
            out,
            "\n… {more} more attempts (`backstop show` lists them all)"
        );
    }
}

/// `ok`, or the error type with the exit code or HTTP status.
fn end_text(a: &AttemptReport) -> String {
    let Some(error) = error_type(a) else {
        return "ok".into();
    };
    match a.call.as_ref().and_then(|c| c.status) {
        Some(status) => format!("{} (HTTP {status})", error.as_str()),
        None if a.call.is_none() => format!("{} (exit {})", error.as_str(), a.exit_code),
        None => error.as_str().into(),
    }
}

fn fallback_line(out: &mut String, record: &RunRecord, policy: &Policy, kind: Kind) {
    let Some(s) = record.outcome.as_ref().filter(|s| s.link > 0) else {
        return;
    };
    let label = link_label(record, policy, kind, s.link, &s.link_name);
    let _ = writeln!(
        out,
        "\n**Fallback taken:** link {} of {}, {}",
        s.link,
        s.links.saturating_sub(1),
        md(&label)
    );
}

fn rollback_lines(out: &mut String, record: &RunRecord) {
    let Some(snapshot) = &record.snapshot else {
        return;
    };
    for r in snapshot.rollbacks() {
        let done = if r.not_restored == 0 {
            "complete".to_string()
        } else {
            format!("**incomplete**: {} not put back", r.not_restored)
        };
        let _ = writeln!(out, "\n**Rollback:** {} paths put back, {done}", r.paths);
    }
    let rolled_back = snapshot.rollbacks().next().is_some();
    if rolled_back && !snapshot.changes.is_empty() {
        for c in snapshot.changes.iter().take(MAX_PATHS) {
            let _ = writeln!(out, "- `{}`", md_code(&c.path.lossy()));
        }
        let more = snapshot.changes.len().saturating_sub(MAX_PATHS);
        if more > 0 {
            let _ = writeln!(out, "- … {more} more");
        }
    }
}

fn call_line(out: &mut String, record: &RunRecord) {
    let Some(s) = &record.outcome else { return };
    let calls = record.attempts.iter().any(|a| a.call.is_some());
    if !calls {
        return;
    }
    let cost = s.cost_usd.map_or("unknown".into(), |c| format!("${c:.4}"));
    let _ = writeln!(
        out,
        "\n**Cost:** {cost} · **Tokens:** {} in, {} out",
        s.input_tokens, s.output_tokens
    );
}

/// Text safe in Markdown and HTML: entities for `&<>"'`, a backslash before every
/// other character Markdown acts on, line breaks as spaces, control characters out.
pub fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c if "\\`*_{}[]()#+-.!|~@:=".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside a code span: no backtick (it would end the span), no line break; a
/// `|` escaped (a table cell ends at it even in code).
fn md_code(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '`' => '\''.to_string(),
            '|' => "\\|".into(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{md, output_lines};

    #[test]
    fn markup_is_escaped() {
        assert_eq!(md("<script>|x"), "&lt;script&gt;\\|x");
        assert_eq!(md("a\nb*c"), "a b\\*c");
        assert_eq!(md("[x](http://e)"), "\\[x\\]\\(http\\://e\\)");
    }

    #[test]
    fn outputs_take_the_heredoc_form_for_line_breaks() {
        let text = output_lines(&[("a", "1".into()), ("b", "x\ny".into())]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("a=1"));
        let open = lines.next().unwrap();
        let delimiter = open.strip_prefix("b<<").unwrap();
        assert_eq!(lines.next(), Some("x"));
        assert_eq!(lines.next(), Some("y"));
        assert_eq!(lines.next(), Some(delimiter));
    }
}
