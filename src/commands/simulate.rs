//! `backstop simulate`: policies side by side against a fault model — a table, or
//! `--json` (format 1, in the README).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use super::stats::{human_ms, pct};
use crate::chaos::simulate::{MAX_RUNS, Options, PolicyFigures, PrimaryChoice, simulate};
use crate::error::UserError;
use crate::exit_code::SUCCESS;

/// The `--json` document's format; a change that breaks readers bumps it.
pub const FORMAT: u32 = 1;

/// What `backstop simulate` was asked.
#[derive(Clone, Debug)]
pub struct SimulateArgs {
    pub policies: Vec<PathBuf>,
    pub faults: PathBuf,
    pub runs: u64,
    pub seed: u64,
    pub json: bool,
    pub call: Option<String>,
    pub command: Vec<String>,
}

pub fn run(args: &SimulateArgs) -> Result<u8> {
    if args.runs == 0 || args.runs > MAX_RUNS {
        let why = format!("--runs must be from 1 to {MAX_RUNS}, not {}", args.runs);
        return Err(UserError::Usage(why).into());
    }
    let faults = crate::chaos::model::load_file(&args.faults)?;
    let policies = args
        .policies
        .iter()
        .map(|p| crate::policy::load_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(model) = &args.call
        && let Some(p) = policies.iter().find(|p| !p.models.contains_key(model))
    {
        let why = format!(
            "--call {model}: {} has no model of that name under `models`",
            p.source
        );
        return Err(UserError::Usage(why).into());
    }
    let primary = match (&args.call, args.command.is_empty()) {
        (Some(model), _) => PrimaryChoice::Call(model.clone()),
        (None, false) => PrimaryChoice::Command(args.command.clone()),
        (None, true) => PrimaryChoice::Infer,
    };
    let opts = Options {
        runs: args.runs,
        seed: args.seed,
        primary,
    };
    let figures = simulate(&policies, &faults, &opts)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "format": FORMAT,
            "runs": args.runs,
            "seed": args.seed,
            "faults": crate::names::quote_path(&args.faults),
            "policies": figures,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        table(&mut out, args, &figures)?;
    }
    Ok(SUCCESS)
}

/// One row: its label and each policy's figure.
type Row = (&'static str, fn(&PolicyFigures) -> String);

const ROWS: [Row; 16] = [
    ("link 0", |f| f.primary.clone()),
    ("success", |f| pct(f.summary.success_rate)),
    ("  by L1 (first try, retried)", |f| {
        pct(f.summary.layers.l1.success_rate)
    }),
    ("  first try", |f| share(f.summary.layers.l1.first_try, f)),
    ("  rescued by L2", |f| {
        let l2 = &f.summary.layers.l2;
        share(l2.fallback + l2.degraded, f)
    }),
    ("  escalated", |f| share(f.summary.layers.l2.escalated, f)),
    ("latency p50", |f| {
        human_ms(f.summary.latency_ms.overall.p50)
    }),
    ("latency p95", |f| {
        human_ms(f.summary.latency_ms.overall.p95)
    }),
    ("latency p99", |f| {
        human_ms(f.summary.latency_ms.overall.p99)
    }),
    ("attempts per run", |f| {
        f.attempts_per_run.map_or("-".into(), |a| format!("{a:.2}"))
    }),
    ("retry rate", |f| pct(f.summary.rates.retry_rate)),
    ("fallback rate", |f| pct(f.summary.rates.fallback_rate)),
    ("rollback rate", |f| pct(f.summary.rates.rollback_rate)),
    ("deadline reached", |f| pct(f.deadline_share)),
    ("cost per run", |f| {
        let runs = f.summary.runs.total;
        if f.summary.cost.per_run_usd.count == 0 || runs == 0 {
            "-".into()
        } else {
            format!("${:.4}", f.summary.cost.total_usd / runs as f64)
        }
    }),
    ("retry cost", |f| {
        if f.summary.cost.per_run_usd.count == 0 {
            "-".into()
        } else {
            format!("${:.4}", f.summary.cost.retry_cost_usd)
        }
    }),
];

fn share(n: u64, f: &PolicyFigures) -> String {
    let of = f.summary.runs.decided;
    pct((of > 0).then(|| n as f64 / of as f64))
}

fn table(out: &mut impl Write, args: &SimulateArgs, figures: &[PolicyFigures]) -> Result<()> {
    writeln!(
        out,
        "{} simulated runs per policy, seed {}, faults {}",
        args.runs,
        args.seed,
        crate::names::quote_path(&args.faults)
    )?;
    let label = ROWS.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            std::iter::once(f.policy.clone())
                .chain(ROWS.iter().map(|r| (r.1)(f)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cells
        .iter()
        .map(|c| c.iter().map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for i in 0..=ROWS.len() {
        let name = if i == 0 { "" } else { ROWS[i - 1].0 };
        write!(out, "{name:<label$}")?;
        for (c, w) in cells.iter().zip(&widths) {
            write!(out, "  {:>w$}", c[i])?;
        }
        writeln!(out)?;
    }
    Ok(())
}
