//! The command line: clap's types live here and nowhere else.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::exit_code;
use crate::policy::PolicyChoice;
use crate::settings::{Color, Command, Settings, StreamWhen};

/// Run agent tasks under a policy of retry, fallback and rollback.
#[derive(Debug, Parser)]
#[command(name = "backstop", version = env!("BACKSTOP_VERSION"), about, max_term_width = 100)]
pub struct Cli {
    /// When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto).
    #[arg(long, value_enum, default_value_t = ColorArg::Auto, global = true)]
    color: ColorArg,
    /// Print nothing of backstop's own; the command's output still passes through.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop].
    // Not clap's `env`: a global argument filled from the environment is shown in
    // usage lines as if it were required (`backstop policy check --store <DIR> <FILE>`);
    // `Store::locate` reads BACKSTOP_HOME itself.
    #[arg(long, value_name = "DIR", global = true)]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

/// `--stream[=WHEN]`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StreamArg {
    /// Print as it streams in only when stdout is a terminal.
    Auto,
    /// Print as it streams in, to whatever stdout is.
    Always,
    /// Ask the provider for a stream, print only the finished answer.
    Never,
}

// `defer`: a subcommand's arguments are built only when it is the one run (or for
// help, completions and man pages), not for every start: `run -- true` builds one.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Sub {
    /// Run a command under the policy.
    Run(RunArgs),
    /// Call a model over HTTP under the policy; the prompt from the argument and/or stdin,
    /// or a conversation from `--messages`.
    Call(CallCli),
    /// Revert a run's file changes (default: the latest run).
    Undo(HistoryArgs),
    /// Re-apply what undo reverted (or what a failed run's rollback put back).
    Redo(HistoryArgs),
    /// Take a snapshot of the policy's scope now, and say what it cost (primes the stat cache).
    Snapshot {
        /// The policy whose `rollback.scope` to use.
        #[arg(short, long, value_name = "POLICY")]
        policy: Option<PathBuf>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop old runs and the snapshot contents no run needs any more.
    Gc {
        /// Keep this many of the newest runs of this tree.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Drop runs older than this (`30d`, `12h`).
        #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Fail at once if another backstop holds the tree, instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Check every object, manifest, record and journal in the store; say what damage
    /// affects (exit 4 if any remains).
    Fsck {
        /// Quarantine damaged objects, re-create them from files that still hold their
        /// content, and remove leftover staging files.
        #[arg(long)]
        repair: bool,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the runs recorded for this directory tree, newest first.
    Runs {
        /// Show at most this many.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Figures over the recorded runs: outcome by layer, latency, cost, errors, rates.
    Stats(StatsCli),
    /// Run the engine many times against a fault model on a virtual clock, and
    /// compare policies side by side with the figures `stats` gives.
    Simulate {
        /// A policy to simulate; repeat to compare several.
        #[arg(short, long = "policy", value_name = "POLICY", required = true)]
        policies: Vec<PathBuf>,
        /// The fault model (YAML, `version: 1`).
        #[arg(long, value_name = "FAULTS")]
        faults: PathBuf,
        /// Simulated runs per policy.
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        runs: u64,
        /// The random seed: the same seed gives the same figures.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Print JSON (its format is in the README).
        #[arg(long)]
        json: bool,
        /// Simulate `backstop call` of this model [default: the policy's `model`, if set].
        #[arg(long, value_name = "MODEL", conflicts_with = "command")]
        call: Option<String>,
        /// The command of link 0, after `--`, as `commands:` names it [default: `task`].
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Fault injection for clients other than backstop.
    #[command(subcommand)]
    Chaos(ChaosSub),
    /// Show one run: every attempt, layer, delay and why.
    Show {
        /// The run's id, or a unique prefix of it [default: the latest run].
        run: Option<String>,
        /// Print the run record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check, explain or describe policy files.
    #[command(subcommand)]
    Policy(PolicySub),
    #[command(flatten)]
    Eager(EagerSub),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

// `backstop call`'s arguments (its help is the variant's doc comment).
#[derive(Debug, Args)]
struct CallCli {
    /// The policy file with `providers:` and `models:` [default: ./backstop.yaml].
    #[arg(short, long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// The model, by its name under `models` [default: the policy's `model`].
    #[arg(short, long, value_name = "MODEL")]
    model: Option<String>,
    /// A system prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Stream the answer: on a terminal as it comes in; to a pipe or file only the
    /// finished answer, unless `--stream=always` (a cut-off attempt is then said on stderr).
    #[arg(long, value_enum, value_name = "WHEN", num_args = 0..=1, require_equals = true,
          default_missing_value = "auto")]
    stream: Option<StreamArg>,
    /// Print the text, the model that answered, attempts, tokens and cost as one JSON
    /// object (its schema: docs/call-json.schema.json).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    chaos: ChaosArgs,
    #[command(flatten)]
    conversation: ConversationArgs,
    /// The prompt; stdin, when it is not a terminal, is appended.
    prompt: Option<String>,
}

// `backstop stats`'s arguments (its help is the variant's doc comment).
#[derive(Debug, Args)]
struct StatsCli {
    /// Only runs that started in the last AGE (`7d`, `12h`, `30m`).
    #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with_all = ["from", "to"])]
    since: Option<std::time::Duration>,
    /// Only runs that started at or after TIME (RFC 3339 in UTC, e.g.
    /// `2026-11-30T12:00:00Z`, or a date).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<std::time::SystemTime>,
    /// Only runs that started before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<std::time::SystemTime>,
    /// Every tree in the store, not only this one.
    #[arg(long)]
    all_trees: bool,
    /// Only runs made under this policy file (and, with --check, its alert rules).
    #[arg(short, long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// Count runs made under `--chaos` too (their failures were injected).
    #[arg(long, conflicts_with = "check")]
    include_chaos: bool,
    /// Print JSON (its format is in the README).
    #[arg(long, conflicts_with_all = ["prometheus", "check"])]
    json: bool,
    /// Print Prometheus's text exposition format.
    #[arg(long, conflicts_with = "check")]
    prometheus: bool,
    /// Evaluate the policy's alert rules: exit 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN, one line per firing rule (a Nagios/Icinga check as it is). Each
    /// rule's window and the policy's runs in every tree are what it reads, so the
    /// selection flags do not go with it.
    #[arg(long, conflicts_with_all = ["since", "from", "to", "all_trees"])]
    check: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The policy file [default: ./backstop.yaml if present, else the built-in policy].
    #[arg(short, long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// Fail at once if another backstop holds the tree, instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Approve every step that asks (`approve: true`) without asking.
    #[arg(short, long)]
    yes: bool,
    #[command(flatten)]
    chaos: ChaosArgs,
    /// The command and its arguments; leave it out to run the policy's `steps`.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
}

// `--chaos FAULTS [--chaos-seed S]` of `run` and `call`. (Not a doc comment: clap
// would take it for the about of the subcommand it is flattened into, which a
// deferred subcommand applies last.)
#[derive(Debug, Args)]
struct ChaosArgs {
    /// Inject the faults of this fault model (the YAML of `simulate --faults`) into the
    /// run's attempts: a test of the policy on the real tree or the real API.
    #[arg(long, value_name = "FAULTS")]
    chaos: Option<PathBuf>,
    /// The seed of the injected faults (default: a fresh one, kept in the record).
    #[arg(long, value_name = "SEED", requires = "chaos")]
    chaos_seed: Option<u64>,
}

impl ChaosArgs {
    fn into_choice(self) -> Option<crate::settings::ChaosChoice> {
        self.chaos.map(|file| crate::settings::ChaosChoice {
            file,
            seed: self.chaos_seed,
        })
    }
}

// `call --messages FILE` and the request settings that override every model's (not
// a doc comment, as above).
#[derive(Debug, Args)]
struct ConversationArgs {
    /// A conversation instead of a prompt: a JSON array of {"role", "content"} turns
    /// (system, user, assistant), ending with the user turn to answer; `-` reads stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "system"])]
    messages: Option<PathBuf>,
    /// The sampling temperature, from 0 to 2 (Anthropic: 0 to 1), for every model the run calls.
    #[arg(long, value_name = "T", value_parser = parse_temperature)]
    temperature: Option<f64>,
    /// The most tokens each answer may take, for every model the run calls.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens: Option<u32>,
    /// A sequence that ends the answer (repeatable; replaces the models' `stop`).
    #[arg(long, value_name = "S")]
    stop: Vec<String>,
}

impl ConversationArgs {
    fn overrides(&self) -> crate::settings::CallOverrides {
        crate::settings::CallOverrides {
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            stop: (!self.stop.is_empty()).then(|| self.stop.clone()),
        }
    }
}

fn parse_temperature(s: &str) -> Result<f64, String> {
    let max = crate::policy::request::MAX_TEMPERATURE;
    match s.parse::<f64>() {
        Ok(t) if (0.0..=max).contains(&t) => Ok(t),
        _ => Err(format!("must be a number from 0 to {max}")),
    }
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// The run (its id or a unique prefix; default: the latest run), then the paths to
    /// limit it to (and what is below them). A first word that is both a run id and a
    /// path is refused as ambiguous: put `--` after a run id, or before paths.
    #[arg(value_name = "RUN] [PATH")]
    targets: Vec<PathBuf>,
    /// After `--`: paths only, never a run id (as in git: `backstop undo -- 5`).
    #[arg(last = true, value_name = "PATH")]
    paths: Option<Vec<PathBuf>>,
    /// Print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Overwrite paths that changed again since the run.
    #[arg(long)]
    force: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// Fail at once if another backstop holds the tree, instead of waiting.
    #[arg(long)]
    no_wait: bool,
}

/// The subcommands whose own subcommands are fields (not deferred: the tree of `help`
/// is copied before a deferred subcommand is built, and would lack them).
#[derive(Debug, Subcommand)]
enum EagerSub {
    /// Circuit breakers and the retry budget kept across runs: state (the default), or
    /// reset a key.
    Breaker {
        #[command(subcommand)]
        action: Option<BreakerSub>,
    },
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum ChaosSub {
    /// Serve an OpenAI- and Anthropic-compatible API on a local address that answers
    /// with the fault model's faults (or passes requests to --upstream and breaks its
    /// answers); prints `listening on URL`, runs until SIGINT or SIGTERM.
    Serve {
        /// The fault model (YAML, `version: 1`, as `simulate --faults` takes).
        #[arg(value_name = "FAULTS")]
        faults: PathBuf,
        /// The real API to pass requests to (e.g. `https://api.openai.com/v1`); without
        /// it, a canned answer stands in for the model.
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// The address to listen on; port 0 picks a free one.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: String,
        /// The random seed: the same seed and the same requests meet the same faults.
        #[arg(long, value_name = "S", default_value_t = 1)]
        seed: u64,
        /// Print the address as JSON: `{"url": ..., "address": ...}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum PolicySub {
    /// Validate a policy and print it resolved, with every default filled in.
    Check { file: PathBuf },
    /// Print the schedule a policy produces: attempts, delays, worst-case time.
    Explain { file: PathBuf },
    /// Print the JSON Schema of the policy format, for editors.
    Schema,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum BreakerSub {
    /// Every key's breaker (state, failures in the window, times opened) and the budget.
    Status {
        /// The policy that names the state backend [default: ./backstop.yaml if present].
        #[arg(short, long, value_name = "POLICY")]
        policy: Option<PathBuf>,
        /// Print JSON (its format is in the README).
        #[arg(long)]
        json: bool,
    },
    /// Forget one key's breaker: it is closed, with no failures counted.
    Reset {
        /// The breaker's key, as `breaker status` names it.
        key: String,
        /// The policy that names the state backend [default: ./backstop.yaml if present].
        #[arg(short, long, value_name = "POLICY")]
        policy: Option<PathBuf>,
    },
}

/// Parses the command line. On `--help` or `--version`, or a usage error, prints and
/// returns the exit code to end with (0, or 125 for bad usage).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Settings, u8> {
    let args: Vec<OsString> = args.into_iter().collect();
    // clap drops a `--` with nothing after it, but `undo RUN --` says RUN is a run.
    let dashes = args.iter().any(|a| a == "--");
    let cli = Cli::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            exit_code::BACKSTOP_FAILED
        } else {
            exit_code::SUCCESS
        }
    })?;
    Ok(cli.into_settings(dashes))
}

impl HistoryArgs {
    fn into_history(self, dashes: bool) -> crate::settings::History {
        crate::settings::History {
            targets: self.targets,
            paths: self.paths.or_else(|| dashes.then(Vec::new)),
            dry_run: self.dry_run,
            force: self.force,
            json: self.json,
            no_wait: self.no_wait,
        }
    }
}

/// `-p FILE`, or the policy found where backstop runs.
fn policy_choice(file: Option<PathBuf>) -> PolicyChoice {
    file.map_or(PolicyChoice::Implicit, PolicyChoice::File)
}

impl Cli {
    fn into_settings(self, dashes: bool) -> Settings {
        Settings {
            color: match self.color {
                ColorArg::Auto => Color::Auto,
                ColorArg::Always => Color::Always,
                ColorArg::Never => Color::Never,
            },
            quiet: self.quiet,
            store: self.store,
            command: self.command.into_command(dashes),
        }
    }
}

impl Sub {
    fn into_command(self, dashes: bool) -> Command {
        match self {
            Sub::Run(r) => Command::Run {
                policy: policy_choice(r.policy),
                command: r.command,
                no_wait: r.no_wait,
                yes: r.yes,
                chaos: r.chaos.into_choice(),
            },
            Sub::Undo(h) => Command::Undo(h.into_history(dashes)),
            Sub::Redo(h) => Command::Redo(h.into_history(dashes)),
            Sub::Gc {
                keep,
                older_than,
                no_wait,
            } => Command::Gc {
                keep,
                older_than,
                no_wait,
            },
            Sub::Snapshot { policy, json } => Command::Snapshot {
                policy: policy_choice(policy),
                json,
            },
            Sub::Call(c) => c.into_command(),
            Sub::Fsck { repair, json } => Command::Fsck { repair, json },
            Sub::Runs { limit, json } => Command::Runs { limit, json },
            Sub::Show { run, json } => Command::Show { run, json },
            Sub::Stats(st) => st.into_command(),
            Sub::Simulate {
                policies,
                faults,
                runs,
                seed,
                json,
                call,
                command,
            } => Command::Simulate(crate::commands::simulate::SimulateArgs {
                policies,
                faults,
                runs,
                seed,
                json,
                call,
                command,
            }),
            Sub::Chaos(ChaosSub::Serve {
                faults,
                upstream,
                listen,
                seed,
                json,
            }) => Command::ChaosServe(crate::commands::chaos::ServeArgs {
                faults,
                upstream,
                listen,
                seed,
                json,
            }),
            Sub::Policy(PolicySub::Check { file }) => Command::PolicyCheck { file },
            Sub::Policy(PolicySub::Explain { file }) => Command::PolicyExplain { file },
            Sub::Policy(PolicySub::Schema) => Command::PolicySchema,
            Sub::Eager(EagerSub::Breaker { action }) => breaker_command(action),
            Sub::Completions { shell } => Command::Completions {
                script: completion_script(shell),
            },
        }
    }
}

impl CallCli {
    fn into_command(self) -> Command {
        let CallCli {
            policy,
            model,
            system,
            stream,
            json,
            chaos,
            conversation,
            prompt,
        } = self;
        Command::Call {
            overrides: conversation.overrides(),
            messages: conversation.messages,
            policy: policy_choice(policy),
            model,
            system,
            stream: stream.map(|w| match w {
                StreamArg::Auto => StreamWhen::Auto,
                StreamArg::Always => StreamWhen::Always,
                StreamArg::Never => StreamWhen::Never,
            }),
            json,
            chaos: chaos.into_choice(),
            prompt,
        }
    }
}

impl StatsCli {
    fn into_command(self) -> Command {
        use crate::commands::stats::{Output, StatsArgs};
        let StatsCli {
            since,
            from,
            to,
            all_trees,
            policy,
            include_chaos,
            json,
            prometheus,
            check,
        } = self;
        Command::Stats(StatsArgs {
            since,
            from,
            to,
            all_trees,
            policy,
            include_chaos,
            output: match (json, prometheus, check) {
                (true, _, _) => Output::Json,
                (_, true, _) => Output::Prometheus,
                (_, _, true) => Output::Check,
                _ => Output::Table,
            },
        })
    }
}

/// `backstop breaker [status | reset KEY]`; bare `breaker` is `status`.
fn breaker_command(action: Option<BreakerSub>) -> Command {
    match action {
        None => Command::BreakerStatus {
            policy: PolicyChoice::Implicit,
            json: false,
        },
        Some(BreakerSub::Status { policy, json }) => Command::BreakerStatus {
            policy: policy_choice(policy),
            json,
        },
        Some(BreakerSub::Reset { key, policy }) => Command::BreakerReset {
            policy: policy_choice(policy),
            key,
        },
    }
}

/// The completion script for `shell`, as committed under `completions/`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "backstop", &mut out);
    out
}

/// Every shell with a committed completion script, and the file it lives in.
pub fn completion_files() -> [(Shell, &'static str); 5] {
    [
        (Shell::Bash, "backstop.bash"),
        (Shell::Zsh, "_backstop"),
        (Shell::Fish, "backstop.fish"),
        (Shell::Elvish, "backstop.elv"),
        (Shell::PowerShell, "_backstop.ps1"),
    ]
}

/// `--since`: a duration (`7d`, `12h`), at most 100 years.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("invalid age `{s}`: {e}"))?;
    if d > std::time::Duration::from_secs(100 * 365 * 24 * 3600) {
        return Err(format!("`{s}` is before any run could have been recorded"));
    }
    Ok(d)
}

/// `--from`/`--to`: an RFC 3339 time in UTC, or a date (its midnight, UTC).
fn parse_time(s: &str) -> Result<std::time::SystemTime, String> {
    let s = s.trim();
    let full = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&full).map_err(|e| {
        format!("invalid time `{s}`: {e} (write `2026-11-30T12:00:00Z` or `2026-11-30`)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_everything_after_the_command_verbatim() {
        let s = parse(["backstop", "run", "--", "ls", "-q", "--color", "x"].map(OsString::from))
            .unwrap();
        match s.command {
            Command::Run { command, .. } => assert_eq!(command, ["ls", "-q", "--color", "x"]),
            other => panic!("{other:?}"),
        }
        assert!(!s.quiet);
    }

    /// The committed scripts under `completions/` are what the CLI generates now.
    /// `BACKSTOP_BLESS=1 cargo test` rewrites them.
    #[test]
    fn completions_are_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
        let bless = std::env::var_os("BACKSTOP_BLESS").is_some();
        for (shell, file) in completion_files() {
            let path = dir.join(file);
            let want = completion_script(shell);
            if bless {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is out of date: run `BACKSTOP_BLESS=1 cargo test --lib completions`",
                path.display()
            );
        }
    }

    /// The man pages committed under `man/`: `backstop.1` and one per subcommand
    /// (`backstop-run.1`, `backstop-policy-check.1`, ...), as file name and text,
    /// as `clap_mangen::generate_to` makes them. They carry the package's version,
    /// not the commit's, so a commit does not stale them.
    fn man_pages() -> Vec<(String, Vec<u8>)> {
        fn add(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) {
            // The title's version; the command is built, so no `-V` is added.
            let man = clap_mangen::Man::new(cmd.clone().version(env!("CARGO_PKG_VERSION")));
            let mut text = Vec::new();
            man.render(&mut text).expect("render to memory");
            pages.push((man.get_filename(), text));
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                add(sub, pages);
            }
        }
        let mut cmd = Cli::command()
            .version(env!("CARGO_PKG_VERSION"))
            .disable_help_subcommand(true);
        cmd.build();
        let mut pages = Vec::new();
        add(&cmd, &mut pages);
        pages
    }

    /// The committed pages under `man/` are what the CLI generates now, and no
    /// other page is there. `BACKSTOP_BLESS=1 cargo test` rewrites them.
    #[test]
    fn man_pages_are_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
        let pages = man_pages();
        if std::env::var_os("BACKSTOP_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in &pages {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let stale = "run `BACKSTOP_BLESS=1 cargo test --lib man_pages`";
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}: {stale}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        committed.sort();
        let mut want: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        want.sort();
        assert_eq!(committed, want, "man/ holds other pages: {stale}");
        for (name, text) in &pages {
            let have = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(&have == text, "man/{name} is out of date: {stale}");
        }
        assert!(pages.iter().any(|(n, _)| n == "backstop-run.1"));
    }

    #[test]
    fn the_version_is_the_packages_and_the_commits() {
        let v = Cli::command().render_version();
        assert!(
            v.starts_with(&format!("backstop {}", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
    }

    fn undo_words(args: &[&str]) -> (Vec<PathBuf>, Option<Vec<PathBuf>>) {
        let mut all = vec!["backstop", "undo"];
        all.extend(args);
        match parse(all.into_iter().map(OsString::from)).unwrap().command {
            Command::Undo(h) => (h.targets, h.paths),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undo_tells_words_before_and_after_the_double_dash_apart() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(undo_words(&["5"]), (p(&["5"]), None));
        assert_eq!(undo_words(&["--", "5"]), (p(&[]), Some(p(&["5"]))));
        assert_eq!(
            undo_words(&["ab", "--", "5", "x"]),
            (p(&["ab"]), Some(p(&["5", "x"])))
        );
        let (run, paths) = undo_words(&["ab", "--"]);
        assert_eq!(run, p(&["ab"]));
        assert_eq!(paths, Some(vec![]), "`RUN --` says RUN is a run");
    }

    #[test]
    fn bad_flags_exit_125() {
        assert_eq!(
            parse(["backstop", "run", "--nope"].map(OsString::from)).unwrap_err(),
            125
        );
    }
}
