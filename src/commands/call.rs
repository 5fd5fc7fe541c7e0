//! `backstop call`: a model call under the policy's retries, fallbacks and budget.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::call_json::CallJson;
use crate::attempt::Prompt;
use crate::call::client::{ModelClient, Notes, Print};
use crate::chaos::inject::{Chaos, ChaosAttempter};
use crate::engine::{Engine, Primary};
use crate::error::UserError;
use crate::events::{Event, EventSink, Fanout};
use crate::policy::{self, Policy, PolicyChoice};
use crate::process::{ProcessRunner, RealAttempter};
use crate::record::{RecordWriter, RunRecord};
use crate::reporter::Reporter;
use crate::settings::{CallOverrides, StreamWhen};
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
    pub chaos: Option<&'a crate::settings::ChaosChoice>,
    /// `--messages FILE`: the conversation instead of `prompt` and `system`.
    pub messages: Option<&'a Path>,
    pub overrides: &'a CallOverrides,
}

pub fn call(args: &CallArgs) -> Result<u8> {
    let (policy, model, prompt) = prepare(args)?;
    let chaos = args.chaos.map(Chaos::from_choice).transpose()?;

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = repo_root(&cwd);
    let store = Store::locate(args.store.clone())?;
    let tree_store = store.records(&root);
    let id = new_run_id();
    let record = RunRecord {
        chaos: chaos.as_ref().map(Chaos::reference),
        ..RunRecord::new(&id, root, cwd, vec!["call".into(), model.clone()], &policy)
    };
    let mut writer = RecordWriter::start(&tree_store, record)
        .context("cannot record the call, so it was not made")?;
    let mut reporter = Reporter::for_stderr(args.quiet);
    if let Some(chaos) = &chaos {
        reporter.note(&chaos.announce());
    }
    let print = print_mode(args);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut guard = super::run::guard_for(&policy, store.dir(), chaos.as_ref(), &mut reporter);
    let (summary, mut interrupt) = runtime.block_on(async {
        let interrupt = super::run::forward_signals()?;
        let kept = interrupt.clone();
        let real = RealAttempter {
            process: ProcessRunner::new(interrupt.clone()),
            calls: ModelClient::new(interrupt.clone(), print, args.stream.is_some())
                .with_notes(Notes::for_stderr(args.quiet)),
        };
        let attempter = ChaosAttempter::new(real, chaos.as_ref(), 0);
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
        let doc = CallJson::new(&id, &summary, &policy, chaos.as_ref().map(Chaos::reference));
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

/// The policy (with the command line's overrides), the model and the prompt: all
/// checked, keys and headers included, before anything is recorded or sent.
fn prepare(args: &CallArgs) -> Result<(Policy, String, Prompt)> {
    let mut policy = policy::choose(args.policy)?;
    if policy.models.is_empty() {
        return Err(UserError::Usage(format!(
            "{} defines no `models`: a call needs `providers:` and `models:` (see policies/models.yaml)",
            policy.source
        ))
        .into());
    }
    let model = choose_model(args.model, &policy)?;
    override_models(&mut policy, &model, args.overrides)?;
    crate::call::secret::check_keys(&policy, Some(&model))?;
    let prompt = match args.messages {
        Some(file) => read_messages(file)?,
        None => Prompt::new(args.system.map(String::from), read_prompt(args.prompt)?),
    };
    Ok((policy, model, prompt))
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

/// `--temperature`, `--max-tokens` and `--stop` set on every model the call may use
/// (`primary`, then the chain's `call` links); a value one of them cannot take is
/// refused, naming the flag and the model.
fn override_models(policy: &mut Policy, primary: &str, overrides: &CallOverrides) -> Result<()> {
    let called: Vec<String> = crate::policy::request::called_models(policy, Some(primary))
        .into_iter()
        .map(String::from)
        .collect();
    for name in called {
        let Some(model) = policy.models.get_mut(&name) else {
            continue;
        };
        let Some(kind) = policy.providers.get(&model.provider).map(|p| p.kind) else {
            continue;
        };
        let refuse =
            |flag: &str, why: String| UserError::Usage(format!("{flag}: {why} (model `{name}`)"));
        if let Some(t) = overrides.temperature {
            crate::policy::request::check_temperature(kind, t)
                .map_err(|why| refuse("--temperature", why))?;
            model.temperature = Some(t);
        }
        if let Some(n) = overrides.max_tokens {
            model.max_tokens = n;
        }
        if let Some(stop) = &overrides.stop {
            crate::policy::request::check_stop(kind, stop).map_err(|why| refuse("--stop", why))?;
            model.stop.clone_from(stop);
        }
    }
    Ok(())
}

/// The most a prompt may hold, read from stdin: far past any model's context window
/// (the largest take a few million tokens, some 10 MiB of text).
const MAX_PROMPT: usize = 32 << 20;

/// At most [`MAX_PROMPT`] bytes of UTF-8 text from `from`, which `what` names in errors.
fn read_bounded(from: impl Read, what: &str) -> Result<String> {
    // Bounded: `< /dev/zero` (or a runaway producer) read to the end would take
    // every byte of memory before anything was sent. One byte over says "too big".
    let mut bytes = Vec::new();
    from.take(MAX_PROMPT as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() > MAX_PROMPT {
        return Err(UserError::Usage(format!(
            "{what} is over {} MiB, the most a call sends",
            MAX_PROMPT >> 20
        ))
        .into());
    }
    String::from_utf8(bytes).map_err(|e| {
        UserError::Usage(format!(
            "{what} is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

/// The conversation of `--messages FILE` (`-`: stdin).
fn read_messages(file: &Path) -> Result<Prompt> {
    let (name, text) = if file == Path::new("-") {
        (
            "stdin".to_string(),
            read_bounded(std::io::stdin(), "the messages on stdin")?,
        )
    } else {
        let name = crate::names::quote_path(file);
        let f = std::fs::File::open(file)
            .map_err(|e| UserError::Usage(format!("--messages: cannot open {name}: {e}")))?;
        let text = read_bounded(f, &name)?;
        (name, text)
    };
    crate::call::conversation::parse(&name, &text).map_err(|m| UserError::Usage(m).into())
}

/// The argument, then stdin when it is not a terminal, joined by a blank line.
fn read_prompt(arg: Option<&str>) -> Result<String> {
    let mut parts = Vec::new();
    if let Some(a) = arg.filter(|a| !a.is_empty()) {
        parts.push(a.to_string());
    }
    if !std::io::stdin().is_terminal() {
        let input = read_bounded(std::io::stdin(), "the prompt on stdin")?;
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
    Ok(parts.join("\n\n"))
}
