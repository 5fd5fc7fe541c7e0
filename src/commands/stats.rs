//! `backstop stats`: the run records in aggregate — outcome by layer, latency, cost,
//! errors, rates — as a table, `--json`, or Prometheus's text format; `--check`
//! evaluates the policy's alert rules.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use console::style;

use super::show::truncate;
use crate::exit_code::SUCCESS;
use crate::stats::facts::millis;
use crate::stats::summary::{FORMAT, Percentiles, Summary};
use crate::stats::{PolicyKey, Selection, Trees};
use crate::store::{Store, repo_root};

/// What `backstop stats` was asked.
#[derive(Clone, Debug, Default)]
pub struct StatsArgs {
    pub since: Option<Duration>,
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
    pub all_trees: bool,
    pub policy: Option<PathBuf>,
    /// Count runs under `--chaos` too.
    pub include_chaos: bool,
    pub output: Output,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    Prometheus,
    Check,
}

pub fn stats(store: Option<PathBuf>, args: &StatsArgs) -> Result<u8> {
    if args.output == Output::Check {
        // A monitoring check says UNKNOWN (3) for whatever stops it, never 125.
        return Ok(crate::stats::alerts::check(store, args.policy.as_deref()));
    }
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from >= to
    {
        return Err(crate::error::UserError::Usage(
            "--from must be before --to: no run starts in an empty window".into(),
        )
        .into());
    }
    let store = Store::locate(store)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = repo_root(&cwd);
    let policy = match &args.policy {
        Some(p) => Some(crate::policy::load_file(p)?),
        None => None,
    };
    let now = SystemTime::now();
    let sel = Selection {
        trees: if args.all_trees {
            Trees::All
        } else {
            Trees::Of(root.clone())
        },
        from_ms: args
            .since
            .map(|d| millis(now - d))
            .or(args.from.map(millis)),
        to_ms: args.to.map(millis),
        policy: policy.as_ref().map(PolicyKey::of),
        chaos: args.include_chaos,
    };
    let crate::stats::Selected {
        runs,
        unreadable,
        chaos_left_out,
    } = crate::stats::select(store.dir(), &sel)?;
    for u in &unreadable {
        eprintln!(
            "backstop: warning: record {} cannot be read, left out: {}",
            crate::names::quote_path(&u.file),
            u.error
        );
    }
    let summary = Summary::of(&runs);
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let doc = serde_json::json!({
                "format": FORMAT,
                "scope": scope_json(args, &root, &sel, chaos_left_out),
                "summary": summary,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Output::Prometheus => {
            let tally = crate::stats::prometheus::Tally::of(&runs);
            out.write_all(tally.render().as_bytes())?;
        }
        _ => table(
            &mut out,
            &summary,
            &describe_scope(args, &root, chaos_left_out),
        )?,
    }
    Ok(SUCCESS)
}

fn scope_json(
    args: &StatsArgs,
    root: &std::path::Path,
    sel: &Selection,
    chaos_left_out: usize,
) -> serde_json::Value {
    let at = |v: Option<i64>| {
        v.map(|m| {
            let t = UNIX_EPOCH + Duration::from_millis(m.max(0) as u64);
            humantime::format_rfc3339_millis(t).to_string()
        })
    };
    serde_json::json!({
        "trees": if args.all_trees { None } else { Some(crate::names::Name::from(root)) },
        "from": at(sel.from_ms),
        "to": at(sel.to_ms),
        "policy": sel.policy.as_ref().map(|p| p.source.clone()),
        "chaos": if sel.chaos { "included" } else { "left_out" },
        "chaos_left_out": chaos_left_out,
    })
}

fn describe_scope(args: &StatsArgs, root: &std::path::Path, chaos_left_out: usize) -> String {
    let mut s = if args.all_trees {
        "every tree".to_string()
    } else {
        crate::names::quote_path(root)
    };
    if let Some(d) = args.since {
        s.push_str(&format!(
            ", last {}",
            crate::policy::values::format_duration(d)
        ));
    }
    if let Some(f) = args.from {
        s.push_str(&format!(", from {}", humantime::format_rfc3339_seconds(f)));
    }
    if let Some(t) = args.to {
        s.push_str(&format!(", to {}", humantime::format_rfc3339_seconds(t)));
    }
    if let Some(p) = &args.policy {
        s.push_str(&format!(", policy {}", crate::names::quote_path(p)));
    }
    if args.include_chaos {
        s.push_str(", runs under --chaos included");
    } else if chaos_left_out > 0 {
        s.push_str(&format!(
            ", {chaos_left_out} run(s) under --chaos left out (--include-chaos)"
        ));
    }
    s
}

/// A rate as a percentage, never rounded to a whole that it is not: one failure in
/// 5,000 is `99.98%`, not `100.0%`; one in 50,000 is `>99.99%`.
pub(crate) fn pct(v: Option<f64>) -> String {
    let Some(r) = v else {
        return "-".into();
    };
    let p = r * 100.0;
    match format!("{p:.1}%") {
        s if s == "100.0%" && r < 1.0 => match format!("{p:.2}%") {
            s if s == "100.00%" => ">99.99%".into(),
            s => s,
        },
        s if s == "0.0%" && r > 0.0 => "<0.1%".into(),
        s => s,
    }
}

fn share(n: u64, of: u64) -> String {
    pct((of > 0).then(|| n as f64 / of as f64))
}

/// A latency for people: `850ms`, `1.25s`, `2m 5s`, `3h 20m`, `12d`.
pub(crate) fn human_ms(v: Option<u64>) -> String {
    let Some(ms) = v else {
        return "-".into();
    };
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.2}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86_400),
    }
}

/// Dollars for people, a wild figure (a hand-edited record) kept short.
fn usd(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1e9 {
        format!("${v:.3e}")
    } else {
        format!("${v:.4}")
    }
}

fn table(out: &mut impl Write, s: &Summary, scope: &str) -> Result<()> {
    writeln!(
        out,
        "{} runs ({} decided) of {scope}",
        s.runs.total, s.runs.decided
    )?;
    if s.runs.total == 0 {
        return Ok(());
    }
    outcomes(out, s)?;
    latency(out, s)?;
    cost(out, s)?;
    errors(out, s)?;
    let r = &s.rates;
    writeln!(
        out,
        "\n{}  retry {}  fallback {}  rollback {}  escalation {}",
        style("RATES").bold(),
        pct(r.retry_rate),
        pct(r.fallback_rate),
        pct(r.rollback_rate),
        pct(r.escalation_rate)
    )?;
    Ok(())
}

fn outcomes(out: &mut impl Write, s: &Summary) -> Result<()> {
    let d = s.runs.decided;
    let count = |k: &str| s.runs.by_class.get(k).copied().unwrap_or(0);
    writeln!(
        out,
        "\n{:<28}{:>10}{:>10}",
        style("OUTCOME").bold(),
        "RUNS",
        "SHARE"
    )?;
    let rows = [
        ("L1 first try", "first_try"),
        ("L1 after retries", "retried"),
        ("L2 fallback link", "fallback"),
        ("L2 default answer", "degraded"),
        ("escalated", "escalated"),
        ("failed", "failed"),
    ];
    for (label, key) in rows {
        writeln!(
            out,
            "  {label:<26}{:>10}{:>10}",
            count(key),
            share(count(key), d)
        )?;
        if key == "fallback" {
            for (link, n) in &s.layers.l2.by_link {
                let link = crate::names::quote(link.as_bytes());
                writeln!(out, "    {:<24}{n:>10}", truncate(&link, 24))?;
            }
        }
    }
    for (label, key) in [("interrupted", "interrupted"), ("unfinished", "unfinished")] {
        if count(key) > 0 {
            writeln!(out, "  {label:<26}{:>10}{:>10}", count(key), "-")?;
        }
    }
    let success = pct(s.success_rate);
    let success = match s.success_rate {
        Some(r) if r < 0.97 => style(success).red().to_string(),
        Some(_) => style(success).green().to_string(),
        None => success,
    };
    writeln!(out, "  {:<26}{:>10}{:>10}", "success rate", "", success)?;
    let l2 = &s.layers.l2;
    writeln!(
        out,
        "  {:<26}{:>10}{:>10}  of {} that reached L2",
        "L2 rescued",
        l2.fallback + l2.degraded,
        pct(l2.rescue_rate),
        l2.reached
    )?;
    let l3 = &s.layers.l3;
    writeln!(
        out,
        "  {:<26}{:>10}{:>10}  incomplete {}, steps {}",
        "L3 rolled back",
        l3.rolled_back,
        share(l3.rolled_back, d),
        l3.incomplete,
        l3.steps_rolled_back
    )?;
    Ok(())
}

fn latency(out: &mut impl Write, s: &Summary) -> Result<()> {
    writeln!(
        out,
        "\n{:<16}{:>8} {:>9} {:>9} {:>9} {:>9}",
        style("LATENCY").bold(),
        "RUNS",
        "P50",
        "P95",
        "P99",
        "MEAN"
    )?;
    let row = |out: &mut dyn Write, label: &str, p: &Percentiles| -> std::io::Result<()> {
        writeln!(
            out,
            "  {label:<14}{:>8} {:>9} {:>9} {:>9} {:>9}",
            p.count,
            human_ms(p.p50),
            human_ms(p.p95),
            human_ms(p.p99),
            human_ms(p.mean.map(|m| m.round() as u64))
        )
    };
    let l = &s.latency_ms;
    row(out, "overall", &l.overall)?;
    row(out, "L1", &l.l1)?;
    row(out, "L2", &l.l2)?;
    row(out, "failed", &l.failed)?;
    row(out, "rollback", &l.rollback)?;
    writeln!(
        out,
        "  waited in backoff: {}",
        human_ms(Some(l.backoff_total))
    )?;
    Ok(())
}

fn cost(out: &mut impl Write, s: &Summary) -> Result<()> {
    let c = &s.cost;
    if c.per_run_usd.count == 0 && c.by_model.is_empty() {
        return Ok(());
    }
    let maybe = |v: Option<f64>| v.map_or("-".into(), usd);
    writeln!(
        out,
        "\n{}  total {}, per run {} (p95 {}), failed attempts {}",
        style("COST").bold(),
        usd(c.total_usd),
        maybe(c.per_run_usd.mean),
        maybe(c.per_run_usd.p95),
        usd(c.retry_cost_usd)
    )?;
    writeln!(
        out,
        "  {:<20}{:>8}{:>8}{:>12}{:>13}{:>13}",
        "MODEL", "CALLS", "FAILED", "COST", "TOKENS IN", "TOKENS OUT"
    )?;
    for (name, m) in &c.by_model {
        let name = crate::names::quote(name.as_bytes());
        writeln!(
            out,
            "  {:<20}{:>8}{:>8}{:>12}{:>13}{:>13}",
            truncate(&name, 20),
            m.calls,
            m.failed,
            usd(m.cost_usd),
            m.input_tokens,
            m.output_tokens
        )?;
    }
    Ok(())
}

fn errors(out: &mut impl Write, s: &Summary) -> Result<()> {
    let e = &s.errors;
    writeln!(
        out,
        "\n{} {} in {} attempts",
        style("ERRORS").bold(),
        e.total,
        s.attempts.total
    )?;
    let mut by: Vec<_> = e.by_type.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (t, n) in by {
        let mut line = format!("  {t:<26}{n:>10}");
        if *t == "exit_code" && !e.top_exit_codes.is_empty() {
            let codes: Vec<String> = e
                .top_exit_codes
                .iter()
                .map(|c| format!("{}: {}", c.code, c.count))
                .collect();
            line.push_str(&format!("  (exit {})", codes.join(", ")));
        }
        writeln!(out, "{}", truncate(&line, 80))?;
    }
    Ok(())
}
