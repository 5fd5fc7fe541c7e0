
use builtin;
use str;

set edit:completion:arg-completer[backstop] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'backstop'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'backstop'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Run a command under the policy'
            cand call 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`'
            cand undo 'Revert a run''s file changes (default: the latest run)'
            cand redo 'Re-apply what undo reverted (or what a failed run''s rollback put back)'
            cand snapshot 'Take a snapshot of the policy''s scope now, and say what it cost (primes the stat cache)'
            cand gc 'Drop old runs and the snapshot contents no run needs any more'
            cand fsck 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)'
            cand runs 'List the runs recorded for this directory tree, newest first'
            cand stats 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates'
            cand simulate 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives'
            cand chaos 'Fault injection for clients other than backstop'
            cand show 'Show one run: every attempt, layer, delay and why'
            cand policy 'Check, explain or describe policy files'
            cand breaker 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;run'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'The policy file [default: ./backstop.yaml if present, else the built-in policy]'
            cand --policy 'The policy file [default: ./backstop.yaml if present, else the built-in policy]'
            cand --chaos 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run''s attempts: a test of the policy on the real tree or the real API'
            cand --chaos-seed 'The seed of the injected faults (default: a fresh one, kept in the record)'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --no-wait 'Fail at once if another backstop holds the tree, instead of waiting'
            cand -y 'Approve every step that asks (`approve: true`) without asking'
            cand --yes 'Approve every step that asks (`approve: true`) without asking'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;call'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'The policy file with `providers:` and `models:` [default: ./backstop.yaml]'
            cand --policy 'The policy file with `providers:` and `models:` [default: ./backstop.yaml]'
            cand -m 'The model, by its name under `models` [default: the policy''s `model`]'
            cand --model 'The model, by its name under `models` [default: the policy''s `model`]'
            cand --system 'A system prompt'
            cand --stream 'Stream the answer: on a terminal as it comes in; to a pipe or file only the finished answer, unless `--stream=always` (a cut-off attempt is then said on stderr)'
            cand --chaos 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run''s attempts: a test of the policy on the real tree or the real API'
            cand --chaos-seed 'The seed of the injected faults (default: a fresh one, kept in the record)'
            cand --messages 'A conversation instead of a prompt: a JSON array of {"role", "content"} turns (system, user, assistant), ending with the user turn to answer; `-` reads stdin'
            cand --temperature 'The sampling temperature, from 0 to 2 (Anthropic: 0 to 1), for every model the run calls'
            cand --max-tokens 'The most tokens each answer may take, for every model the run calls'
            cand --stop 'A sequence that ends the answer (repeatable; replaces the models'' `stop`)'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print the text, the model that answered, attempts, tokens and cost as one JSON object (its schema: docs/call-json.schema.json)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'backstop;undo'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --dry-run 'Print the plan; change nothing'
            cand --force 'Overwrite paths that changed again since the run'
            cand --json 'Print the plan as JSON'
            cand --no-wait 'Fail at once if another backstop holds the tree, instead of waiting'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;redo'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --dry-run 'Print the plan; change nothing'
            cand --force 'Overwrite paths that changed again since the run'
            cand --json 'Print the plan as JSON'
            cand --no-wait 'Fail at once if another backstop holds the tree, instead of waiting'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;snapshot'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'The policy whose `rollback.scope` to use'
            cand --policy 'The policy whose `rollback.scope` to use'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print the figures as JSON'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;gc'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand --keep 'Keep this many of the newest runs of this tree'
            cand --older-than 'Drop runs older than this (`30d`, `12h`)'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --no-wait 'Fail at once if another backstop holds the tree, instead of waiting'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;fsck'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --repair 'Quarantine damaged objects, re-create them from files that still hold their content, and remove leftover staging files'
            cand --json 'Print the findings as JSON'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;runs'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -n 'Show at most this many'
            cand --limit 'Show at most this many'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print JSON'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;stats'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand --since 'Only runs that started in the last AGE (`7d`, `12h`, `30m`)'
            cand --from 'Only runs that started at or after TIME (RFC 3339 in UTC, e.g. `2026-11-30T12:00:00Z`, or a date)'
            cand --to 'Only runs that started before TIME'
            cand -p 'Only runs made under this policy file (and, with --check, its alert rules)'
            cand --policy 'Only runs made under this policy file (and, with --check, its alert rules)'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --all-trees 'Every tree in the store, not only this one'
            cand --include-chaos 'Count runs made under `--chaos` too (their failures were injected)'
            cand --json 'Print JSON (its format is in the README)'
            cand --prometheus 'Print Prometheus''s text exposition format'
            cand --check 'Evaluate the policy''s alert rules: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line per firing rule (a Nagios/Icinga check as it is). Each rule''s window and the policy''s runs in every tree are what it reads, so the selection flags do not go with it'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;simulate'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'A policy to simulate; repeat to compare several'
            cand --policy 'A policy to simulate; repeat to compare several'
            cand --faults 'The fault model (YAML, `version: 1`)'
            cand --runs 'Simulated runs per policy'
            cand --seed 'The random seed: the same seed gives the same figures'
            cand --call 'Simulate `backstop call` of this model [default: the policy''s `model`, if set]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print JSON (its format is in the README)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;chaos'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
            cand serve 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;chaos;serve'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand --upstream 'The real API to pass requests to (e.g. `https://api.openai.com/v1`); without it, a canned answer stands in for the model'
            cand --listen 'The address to listen on; port 0 picks a free one'
            cand --seed 'The random seed: the same seed and the same requests meet the same faults'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print the address as JSON: `{"url": ..., "address": ...}`'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;chaos;help'= {
            cand serve 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;chaos;help;serve'= {
        }
        &'backstop;chaos;help;help'= {
        }
        &'backstop;show'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print the run record as JSON'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;policy'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
            cand check 'Validate a policy and print it resolved, with every default filled in'
            cand explain 'Print the schedule a policy produces: attempts, delays, worst-case time'
            cand schema 'Print the JSON Schema of the policy format, for editors'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;policy;check'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;policy;explain'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;policy;schema'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;policy;help'= {
            cand check 'Validate a policy and print it resolved, with every default filled in'
            cand explain 'Print the schedule a policy produces: attempts, delays, worst-case time'
            cand schema 'Print the JSON Schema of the policy format, for editors'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;policy;help;check'= {
        }
        &'backstop;policy;help;explain'= {
        }
        &'backstop;policy;help;schema'= {
        }
        &'backstop;policy;help;help'= {
        }
        &'backstop;breaker'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
            cand status 'Every key''s breaker (state, failures in the window, times opened) and the budget'
            cand reset 'Forget one key''s breaker: it is closed, with no failures counted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;breaker;status'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'The policy that names the state backend [default: ./backstop.yaml if present]'
            cand --policy 'The policy that names the state backend [default: ./backstop.yaml if present]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --json 'Print JSON (its format is in the README)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;breaker;reset'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -p 'The policy that names the state backend [default: ./backstop.yaml if present]'
            cand --policy 'The policy that names the state backend [default: ./backstop.yaml if present]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;breaker;help'= {
            cand status 'Every key''s breaker (state, failures in the window, times opened) and the budget'
            cand reset 'Forget one key''s breaker: it is closed, with no failures counted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;breaker;help;status'= {
        }
        &'backstop;breaker;help;reset'= {
        }
        &'backstop;breaker;help;help'= {
        }
        &'backstop;completions'= {
            cand --color 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)'
            cand --store 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]'
            cand -q 'Print nothing of backstop''s own; the command''s output still passes through'
            cand --quiet 'Print nothing of backstop''s own; the command''s output still passes through'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'backstop;help'= {
            cand run 'Run a command under the policy'
            cand call 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`'
            cand undo 'Revert a run''s file changes (default: the latest run)'
            cand redo 'Re-apply what undo reverted (or what a failed run''s rollback put back)'
            cand snapshot 'Take a snapshot of the policy''s scope now, and say what it cost (primes the stat cache)'
            cand gc 'Drop old runs and the snapshot contents no run needs any more'
            cand fsck 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)'
            cand runs 'List the runs recorded for this directory tree, newest first'
            cand stats 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates'
            cand simulate 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives'
            cand chaos 'Fault injection for clients other than backstop'
            cand show 'Show one run: every attempt, layer, delay and why'
            cand policy 'Check, explain or describe policy files'
            cand breaker 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'backstop;help;run'= {
        }
        &'backstop;help;call'= {
        }
        &'backstop;help;undo'= {
        }
        &'backstop;help;redo'= {
        }
        &'backstop;help;snapshot'= {
        }
        &'backstop;help;gc'= {
        }
        &'backstop;help;fsck'= {
        }
        &'backstop;help;runs'= {
        }
        &'backstop;help;stats'= {
        }
        &'backstop;help;simulate'= {
        }
        &'backstop;help;chaos'= {
            cand serve 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
        }
        &'backstop;help;chaos;serve'= {
        }
        &'backstop;help;show'= {
        }
        &'backstop;help;policy'= {
            cand check 'Validate a policy and print it resolved, with every default filled in'
            cand explain 'Print the schedule a policy produces: attempts, delays, worst-case time'
            cand schema 'Print the JSON Schema of the policy format, for editors'
        }
        &'backstop;help;policy;check'= {
        }
        &'backstop;help;policy;explain'= {
        }
        &'backstop;help;policy;schema'= {
        }
        &'backstop;help;breaker'= {
            cand status 'Every key''s breaker (state, failures in the window, times opened) and the budget'
            cand reset 'Forget one key''s breaker: it is closed, with no failures counted'
        }
        &'backstop;help;breaker;status'= {
        }
        &'backstop;help;breaker;reset'= {
        }
        &'backstop;help;completions'= {
        }
        &'backstop;help;help'= {
        }
    ]
    $completions[$command]
}
