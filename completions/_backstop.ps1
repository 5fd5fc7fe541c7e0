
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'backstop' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'backstop'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'backstop' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a command under the policy')
            [CompletionResult]::new('call', 'call', [CompletionResultType]::ParameterValue, 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`')
            [CompletionResult]::new('undo', 'undo', [CompletionResultType]::ParameterValue, 'Revert a run''s file changes (default: the latest run)')
            [CompletionResult]::new('redo', 'redo', [CompletionResultType]::ParameterValue, 'Re-apply what undo reverted (or what a failed run''s rollback put back)')
            [CompletionResult]::new('snapshot', 'snapshot', [CompletionResultType]::ParameterValue, 'Take a snapshot of the policy''s scope now, and say what it cost (primes the stat cache)')
            [CompletionResult]::new('gc', 'gc', [CompletionResultType]::ParameterValue, 'Drop old runs and the snapshot contents no run needs any more')
            [CompletionResult]::new('fsck', 'fsck', [CompletionResultType]::ParameterValue, 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)')
            [CompletionResult]::new('runs', 'runs', [CompletionResultType]::ParameterValue, 'List the runs recorded for this directory tree, newest first')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates')
            [CompletionResult]::new('simulate', 'simulate', [CompletionResultType]::ParameterValue, 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives')
            [CompletionResult]::new('chaos', 'chaos', [CompletionResultType]::ParameterValue, 'Fault injection for clients other than backstop')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one run: every attempt, layer, delay and why')
            [CompletionResult]::new('policy', 'policy', [CompletionResultType]::ParameterValue, 'Check, explain or describe policy files')
            [CompletionResult]::new('breaker', 'breaker', [CompletionResultType]::ParameterValue, 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;run' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'The policy file [default: ./backstop.yaml if present, else the built-in policy]')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'The policy file [default: ./backstop.yaml if present, else the built-in policy]')
            [CompletionResult]::new('--chaos', '--chaos', [CompletionResultType]::ParameterName, 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run''s attempts: a test of the policy on the real tree or the real API')
            [CompletionResult]::new('--chaos-seed', '--chaos-seed', [CompletionResultType]::ParameterName, 'The seed of the injected faults (default: a fresh one, kept in the record)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if another backstop holds the tree, instead of waiting')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Approve every step that asks (`approve: true`) without asking')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Approve every step that asks (`approve: true`) without asking')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;call' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'The policy file with `providers:` and `models:` [default: ./backstop.yaml]')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'The policy file with `providers:` and `models:` [default: ./backstop.yaml]')
            [CompletionResult]::new('-m', '-m', [CompletionResultType]::ParameterName, 'The model, by its name under `models` [default: the policy''s `model`]')
            [CompletionResult]::new('--model', '--model', [CompletionResultType]::ParameterName, 'The model, by its name under `models` [default: the policy''s `model`]')
            [CompletionResult]::new('--system', '--system', [CompletionResultType]::ParameterName, 'A system prompt')
            [CompletionResult]::new('--stream', '--stream', [CompletionResultType]::ParameterName, 'Stream the answer: on a terminal as it comes in; to a pipe or file only the finished answer, unless `--stream=always` (a cut-off attempt is then said on stderr)')
            [CompletionResult]::new('--chaos', '--chaos', [CompletionResultType]::ParameterName, 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run''s attempts: a test of the policy on the real tree or the real API')
            [CompletionResult]::new('--chaos-seed', '--chaos-seed', [CompletionResultType]::ParameterName, 'The seed of the injected faults (default: a fresh one, kept in the record)')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'A conversation instead of a prompt: a JSON array of {"role", "content"} turns (system, user, assistant), ending with the user turn to answer; `-` reads stdin')
            [CompletionResult]::new('--temperature', '--temperature', [CompletionResultType]::ParameterName, 'The sampling temperature, from 0 to 2 (Anthropic: 0 to 1), for every model the run calls')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'The most tokens each answer may take, for every model the run calls')
            [CompletionResult]::new('--stop', '--stop', [CompletionResultType]::ParameterName, 'A sequence that ends the answer (repeatable; replaces the models'' `stop`)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the text, the model that answered, attempts, tokens and cost as one JSON object (its schema: docs/call-json.schema.json)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'backstop;undo' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan; change nothing')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite paths that changed again since the run')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the plan as JSON')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if another backstop holds the tree, instead of waiting')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;redo' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan; change nothing')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite paths that changed again since the run')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the plan as JSON')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if another backstop holds the tree, instead of waiting')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;snapshot' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'The policy whose `rollback.scope` to use')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'The policy whose `rollback.scope` to use')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the figures as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;gc' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Keep this many of the newest runs of this tree')
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Drop runs older than this (`30d`, `12h`)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if another backstop holds the tree, instead of waiting')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;fsck' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--repair', '--repair', [CompletionResultType]::ParameterName, 'Quarantine damaged objects, re-create them from files that still hold their content, and remove leftover staging files')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the findings as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;runs' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Show at most this many')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most this many')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;stats' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only runs that started in the last AGE (`7d`, `12h`, `30m`)')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Only runs that started at or after TIME (RFC 3339 in UTC, e.g. `2026-11-30T12:00:00Z`, or a date)')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Only runs that started before TIME')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Only runs made under this policy file (and, with --check, its alert rules)')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'Only runs made under this policy file (and, with --check, its alert rules)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--all-trees', '--all-trees', [CompletionResultType]::ParameterName, 'Every tree in the store, not only this one')
            [CompletionResult]::new('--include-chaos', '--include-chaos', [CompletionResultType]::ParameterName, 'Count runs made under `--chaos` too (their failures were injected)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (its format is in the README)')
            [CompletionResult]::new('--prometheus', '--prometheus', [CompletionResultType]::ParameterName, 'Print Prometheus''s text exposition format')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Evaluate the policy''s alert rules: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line per firing rule (a Nagios/Icinga check as it is). Each rule''s window and the policy''s runs in every tree are what it reads, so the selection flags do not go with it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;simulate' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'A policy to simulate; repeat to compare several')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'A policy to simulate; repeat to compare several')
            [CompletionResult]::new('--faults', '--faults', [CompletionResultType]::ParameterName, 'The fault model (YAML, `version: 1`)')
            [CompletionResult]::new('--runs', '--runs', [CompletionResultType]::ParameterName, 'Simulated runs per policy')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'The random seed: the same seed gives the same figures')
            [CompletionResult]::new('--call', '--call', [CompletionResultType]::ParameterName, 'Simulate `backstop call` of this model [default: the policy''s `model`, if set]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (its format is in the README)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;chaos' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;chaos;serve' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('--upstream', '--upstream', [CompletionResultType]::ParameterName, 'The real API to pass requests to (e.g. `https://api.openai.com/v1`); without it, a canned answer stands in for the model')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'The address to listen on; port 0 picks a free one')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'The random seed: the same seed and the same requests meet the same faults')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the address as JSON: `{"url": ..., "address": ...}`')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;chaos;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;chaos;help;serve' {
            break
        }
        'backstop;chaos;help;help' {
            break
        }
        'backstop;show' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the run record as JSON')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;policy' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate a policy and print it resolved, with every default filled in')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Print the schedule a policy produces: attempts, delays, worst-case time')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the policy format, for editors')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;policy;check' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;policy;explain' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;policy;schema' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;policy;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate a policy and print it resolved, with every default filled in')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Print the schedule a policy produces: attempts, delays, worst-case time')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the policy format, for editors')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;policy;help;check' {
            break
        }
        'backstop;policy;help;explain' {
            break
        }
        'backstop;policy;help;schema' {
            break
        }
        'backstop;policy;help;help' {
            break
        }
        'backstop;breaker' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Every key''s breaker (state, failures in the window, times opened) and the budget')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Forget one key''s breaker: it is closed, with no failures counted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;breaker;status' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'The policy that names the state backend [default: ./backstop.yaml if present]')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'The policy that names the state backend [default: ./backstop.yaml if present]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON (its format is in the README)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;breaker;reset' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'The policy that names the state backend [default: ./backstop.yaml if present]')
            [CompletionResult]::new('--policy', '--policy', [CompletionResultType]::ParameterName, 'The policy that names the state backend [default: ./backstop.yaml if present]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;breaker;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Every key''s breaker (state, failures in the window, times opened) and the budget')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Forget one key''s breaker: it is closed, with no failures counted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;breaker;help;status' {
            break
        }
        'backstop;breaker;help;reset' {
            break
        }
        'backstop;breaker;help;help' {
            break
        }
        'backstop;completions' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of backstop''s own; the command''s output still passes through')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'backstop;help' {
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a command under the policy')
            [CompletionResult]::new('call', 'call', [CompletionResultType]::ParameterValue, 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`')
            [CompletionResult]::new('undo', 'undo', [CompletionResultType]::ParameterValue, 'Revert a run''s file changes (default: the latest run)')
            [CompletionResult]::new('redo', 'redo', [CompletionResultType]::ParameterValue, 'Re-apply what undo reverted (or what a failed run''s rollback put back)')
            [CompletionResult]::new('snapshot', 'snapshot', [CompletionResultType]::ParameterValue, 'Take a snapshot of the policy''s scope now, and say what it cost (primes the stat cache)')
            [CompletionResult]::new('gc', 'gc', [CompletionResultType]::ParameterValue, 'Drop old runs and the snapshot contents no run needs any more')
            [CompletionResult]::new('fsck', 'fsck', [CompletionResultType]::ParameterValue, 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)')
            [CompletionResult]::new('runs', 'runs', [CompletionResultType]::ParameterValue, 'List the runs recorded for this directory tree, newest first')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates')
            [CompletionResult]::new('simulate', 'simulate', [CompletionResultType]::ParameterValue, 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives')
            [CompletionResult]::new('chaos', 'chaos', [CompletionResultType]::ParameterValue, 'Fault injection for clients other than backstop')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one run: every attempt, layer, delay and why')
            [CompletionResult]::new('policy', 'policy', [CompletionResultType]::ParameterValue, 'Check, explain or describe policy files')
            [CompletionResult]::new('breaker', 'breaker', [CompletionResultType]::ParameterValue, 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'backstop;help;run' {
            break
        }
        'backstop;help;call' {
            break
        }
        'backstop;help;undo' {
            break
        }
        'backstop;help;redo' {
            break
        }
        'backstop;help;snapshot' {
            break
        }
        'backstop;help;gc' {
            break
        }
        'backstop;help;fsck' {
            break
        }
        'backstop;help;runs' {
            break
        }
        'backstop;help;stats' {
            break
        }
        'backstop;help;simulate' {
            break
        }
        'backstop;help;chaos' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model''s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM')
            break
        }
        'backstop;help;chaos;serve' {
            break
        }
        'backstop;help;show' {
            break
        }
        'backstop;help;policy' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate a policy and print it resolved, with every default filled in')
            [CompletionResult]::new('explain', 'explain', [CompletionResultType]::ParameterValue, 'Print the schedule a policy produces: attempts, delays, worst-case time')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print the JSON Schema of the policy format, for editors')
            break
        }
        'backstop;help;policy;check' {
            break
        }
        'backstop;help;policy;explain' {
            break
        }
        'backstop;help;policy;schema' {
            break
        }
        'backstop;help;breaker' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Every key''s breaker (state, failures in the window, times opened) and the budget')
            [CompletionResult]::new('reset', 'reset', [CompletionResultType]::ParameterValue, 'Forget one key''s breaker: it is closed, with no failures counted')
            break
        }
        'backstop;help;breaker;status' {
            break
        }
        'backstop;help;breaker;reset' {
            break
        }
        'backstop;help;completions' {
            break
        }
        'backstop;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
