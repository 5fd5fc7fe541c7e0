//! `backstop call`: a model call under the policy's retries, fallbacks and budget.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::attempt::Prompt;
use crate::call::client::{ModelClient, Notes, Print};
use crate::engine::{Engine, Primary};
use crate::error::UserError;
use crate::events::{Event, EventSink, Fanout, RunSummary};
use crate::policy::{self, Policy, PolicyChoice};
use crate::process::{ProcessRunner, RealAttempter};
use crate::record::{RecordWriter, RunRecord};
use crate::reporter::Reporter;
use crate::settings::StreamWhen;
use crate::store::{Store, new_run_id, repo_root};

pub struct CallArgs<'a> {
    pub policy: &'a PolicyChoice,
    pub model: Option<&'a str>,
    pub system: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub stream: Option<crate::settings::StreamWhen>,
    pub json: bool,
    pub quiet: bool,
    pub store: Option<PathBuf>,
}

pub fn call(args: &CallArgs) -> Result<u8> {
    let policy = policy::choose(args.policy)?;
    if policy.models.is_empty() {
        return Err(UserError::Usage(format!(
            "{} defines no `models`: a call needs `providers:` and `models:` (see policies/models.yaml)",
            policy.source
        ))
        .into());
    }
    let model = choose_model(args.model, &policy)?;
    crate::call::secret::check_keys(&policy, Some(&model))?;
    let mut prompt = read_prompt(args.prompt)?;
    prompt.system = args.system.map(String::from);

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = repo_root(&cwd);
    let store = Store::locate(args.store.clone())?;
    let tree_store = store.records(&root);
    let id = new_run_id();
    let record = RunRecord::new(&id, root, cwd, vec!["call".into(), model.clone()], &policy);
    let mut writer = RecordWriter::start(&tree_store, record)
        .context("cannot record the call, so it was not made")?;
    let mut reporter = Reporter::for_stderr(args.quiet);
    let print = print_mode(args);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut guard = crate::state::Guard::for_policy(&policy.guarding, store.dir());
    let (summary, mut interrupt) = runtime.block_on(async {
        let interrupt = super::run::forward_signals()?;
        let kept = interrupt.clone();
        let attempter = RealAttempter {
            process: ProcessRunner::new(interrupt.clone()),
            calls: ModelClient::new(interrupt.clone(), print, args.stream.is_some())
                .with_notes(Notes::for_stderr(args.quiet)),
        };
        let mut sinks = Fanout(vec![&mut reporter, &mut writer]);
        let engine = Engine::new(&policy, attempter, &mut sinks, interrupt, id.clone())
            .with_prompt(prompt)
            .with_guard(&mut guard);
        anyhow::Ok((engine.run_primary(Primary::Call(&model)).await, kept))
    })?;
    if let Some(err) = writer.finish().error {
        reporter.event(&Event::Warning(format!(
            "the run record is incomplete: {err:#}"
        )));
    }
    let mut code = summary.exit_code;
    if args.json {
        let doc = json_answer(&id, &summary, &policy);
        let mut bytes = serde_json::to_vec_pretty(&doc)?;
        bytes.push(b'\n');
        // Written under the runtime that forwards signals: with backstop's handlers
        // installed, a plain write blocked on a reader that stops reading could not
        // be ended by SIGTERM or Ctrl-C.
        if let Err(signal) = runtime.block_on(crate::process::write_stdout(bytes, &mut interrupt)) {
            code = u8::try_from(128 + signal).unwrap_or(u8::MAX);
        }
    }
    // After the answer: a slow collector or `notify` never holds up the output.
    let done = crate::export::Finished {
        policy: &policy,
        records: &tree_store,
        id: &id,
        exit_code: code,
        kind: crate::export::Kind::Call,
    };
    super::finish::after_run(store.dir(), &done, &mut reporter);
    Ok(code)
}

/// The model named with `-m`, else the policy's `model:`, else its only one.
fn choose_model(arg: Option<&str>, policy: &Policy) -> Result<String> {
    let known = || policy.models.keys().cloned().collect::<Vec<_>>().join(", ");
    let model = match (arg, &policy.model) {
        (Some(m), _) => m.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => match policy.models.keys().collect::<Vec<_>>()[..] {
            [only] => only.clone(),
            _ => {
                return Err(UserError::Usage(format!(
                    "which model? pass -m NAME or set `model:` in {} (it has {})",
                    policy.source,
                    known()
                ))
                .into());
            }
        },
    };
    if !policy.models.contains_key(&model) {
        return Err(UserError::Usage(format!(
            "no model named `{model}` in {} (it has {})",
            policy.source,
            known()
        ))
        .into());
    }
    Ok(model)
}

/// Where the answer goes: into the JSON document, live as it streams, or whole at the end.
fn print_mode(args: &CallArgs) -> Print {
    let live = match args.stream {
        Some(StreamWhen::Always) => true,
        Some(StreamWhen::Auto) => std::io::stdout().is_terminal(),
        Some(StreamWhen::Never) | None => false,
    };
    match (args.json, live) {
        (true, _) => Print::Never,
        (false, true) => Print::Live,
        (false, false) => Print::AtEnd,
    }
}

/// The document `call --json` prints.
fn json_answer(id: &str, summary: &RunSummary, policy: &Policy) -> serde_json::Value {
    serde_json::json!({
        "run_id": id,
        "outcome": summary.outcome,
        "exit_code": summary.exit_code,
        "text": summary.answer,
        "model": summary.model,
        // The id the provider knows it by: the alias alone does not say which
        // model version answered.
        "provider_model": summary
            .model
            .as_ref()
            .and_then(|m| policy.models.get(m))
            .map(|m| m.model.clone()),
        "attempts": summary.attempts,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "cost_usd": summary.cost_usd,
        "reason": summary.reason,
    })
}

/// The most a prompt may hold, read from stdin: far past any model's context window
/// (the largest take a few million tokens, some 10 MiB of text).
const MAX_PROMPT: usize = 32 << 20;

/// The argument, then stdin when it is not a terminal, joined by a blank line.
fn read_prompt(arg: Option<&str>) -> Result<Prompt> {
    let mut parts = Vec::new();
    if let Some(a) = arg.filter(|a| !a.is_empty()) {
        parts.push(a.to_string());
    }
    if !std::io::stdin().is_terminal() {
        // Bounded: `< /dev/zero` (or a runaway producer) read to the end would take
        // every byte of memory before anything was sent. One byte over says "too big".
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_PROMPT as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the prompt from stdin")?;
        if bytes.len() > MAX_PROMPT {
            return Err(UserError::Usage(format!(
                "the prompt on stdin is over {} MiB, the most a call sends",
                MAX_PROMPT >> 20
            ))
            .into());
        }
        let input = String::from_utf8(bytes).map_err(|e| {
            UserError::Usage(format!(
                "the prompt on stdin is not UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        if !input.trim().is_empty() {
            parts.push(input);
        }
    }
    if parts.is_empty() {
        return Err(UserError::Usage(
            "no prompt: give it as an argument or on stdin, as in `backstop call \"Summarise\" < notes.md`".into(),
        )
        .into());
    }
    Ok(Prompt {
        system: None,
        user: parts.join("\n\n"),
    })
}
