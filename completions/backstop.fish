# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_backstop_global_optspecs
    string join \n color= q/quiet store= h/help V/version
end

function __fish_backstop_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_backstop_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_backstop_using_subcommand
    set -l cmd (__fish_backstop_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c backstop -n "__fish_backstop_needs_command" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_needs_command" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_needs_command" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_needs_command" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_needs_command" -s V -l version -d 'Print version'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "run" -d 'Run a command under the policy'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "call" -d 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "undo" -d 'Revert a run\'s file changes (default: the latest run)'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "redo" -d 'Re-apply what undo reverted (or what a failed run\'s rollback put back)'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "snapshot" -d 'Take a snapshot of the policy\'s scope now, and say what it cost (primes the stat cache)'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "gc" -d 'Drop old runs and the snapshot contents no run needs any more'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "fsck" -d 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "runs" -d 'List the runs recorded for this directory tree, newest first'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "stats" -d 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "simulate" -d 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "chaos" -d 'Fault injection for clients other than backstop'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "show" -d 'Show one run: every attempt, layer, delay and why'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "policy" -d 'Check, explain or describe policy files'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "breaker" -d 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c backstop -n "__fish_backstop_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand run" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand run" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand run" -s p -l policy -d 'The policy file [default: ./backstop.yaml if present, else the built-in policy]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand run" -l chaos -d 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run\'s attempts: a test of the policy on the real tree or the real API' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand run" -l chaos-seed -d 'The seed of the injected faults (default: a fresh one, kept in the record)' -r
complete -c backstop -n "__fish_backstop_using_subcommand run" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand run" -l no-wait -d 'Fail at once if another backstop holds the tree, instead of waiting'
complete -c backstop -n "__fish_backstop_using_subcommand run" -s y -l yes -d 'Approve every step that asks (`approve: true`) without asking'
complete -c backstop -n "__fish_backstop_using_subcommand run" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand call" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand call" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand call" -s p -l policy -d 'The policy file with `providers:` and `models:` [default: ./backstop.yaml]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand call" -s m -l model -d 'The model, by its name under `models` [default: the policy\'s `model`]' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -l system -d 'A system prompt' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -l stream -d 'Stream the answer: on a terminal as it comes in; to a pipe or file only the finished answer, unless `--stream=always` (a cut-off attempt is then said on stderr)' -r -f -a "auto\t'Print as it streams in only when stdout is a terminal'
always\t'Print as it streams in, to whatever stdout is'
never\t'Ask the provider for a stream, print only the finished answer'"
complete -c backstop -n "__fish_backstop_using_subcommand call" -l chaos -d 'Inject the faults of this fault model (the YAML of `simulate --faults`) into the run\'s attempts: a test of the policy on the real tree or the real API' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand call" -l chaos-seed -d 'The seed of the injected faults (default: a fresh one, kept in the record)' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -l messages -d 'A conversation instead of a prompt: a JSON array of {"role", "content"} turns (system, user, assistant), ending with the user turn to answer; `-` reads stdin' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand call" -l temperature -d 'The sampling temperature, from 0 to 2 (Anthropic: 0 to 1), for every model the run calls' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -l max-tokens -d 'The most tokens each answer may take, for every model the run calls' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -l stop -d 'A sequence that ends the answer (repeatable; replaces the models\' `stop`)' -r
complete -c backstop -n "__fish_backstop_using_subcommand call" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand call" -l json -d 'Print the text, the model that answered, attempts, tokens and cost as one JSON object (its schema: docs/call-json.schema.json)'
complete -c backstop -n "__fish_backstop_using_subcommand call" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand undo" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l dry-run -d 'Print the plan; change nothing'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l force -d 'Overwrite paths that changed again since the run'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l json -d 'Print the plan as JSON'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -l no-wait -d 'Fail at once if another backstop holds the tree, instead of waiting'
complete -c backstop -n "__fish_backstop_using_subcommand undo" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand redo" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l dry-run -d 'Print the plan; change nothing'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l force -d 'Overwrite paths that changed again since the run'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l json -d 'Print the plan as JSON'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -l no-wait -d 'Fail at once if another backstop holds the tree, instead of waiting'
complete -c backstop -n "__fish_backstop_using_subcommand redo" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -s p -l policy -d 'The policy whose `rollback.scope` to use' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -l json -d 'Print the figures as JSON'
complete -c backstop -n "__fish_backstop_using_subcommand snapshot" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand gc" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand gc" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand gc" -l keep -d 'Keep this many of the newest runs of this tree' -r
complete -c backstop -n "__fish_backstop_using_subcommand gc" -l older-than -d 'Drop runs older than this (`30d`, `12h`)' -r
complete -c backstop -n "__fish_backstop_using_subcommand gc" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand gc" -l no-wait -d 'Fail at once if another backstop holds the tree, instead of waiting'
complete -c backstop -n "__fish_backstop_using_subcommand gc" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -l repair -d 'Quarantine damaged objects, re-create them from files that still hold their content, and remove leftover staging files'
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -l json -d 'Print the findings as JSON'
complete -c backstop -n "__fish_backstop_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand runs" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand runs" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand runs" -s n -l limit -d 'Show at most this many' -r
complete -c backstop -n "__fish_backstop_using_subcommand runs" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand runs" -l json -d 'Print JSON'
complete -c backstop -n "__fish_backstop_using_subcommand runs" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l since -d 'Only runs that started in the last AGE (`7d`, `12h`, `30m`)' -r
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l from -d 'Only runs that started at or after TIME (RFC 3339 in UTC, e.g. `2026-11-30T12:00:00Z`, or a date)' -r
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l to -d 'Only runs that started before TIME' -r
complete -c backstop -n "__fish_backstop_using_subcommand stats" -s p -l policy -d 'Only runs made under this policy file (and, with --check, its alert rules)' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand stats" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l all-trees -d 'Every tree in the store, not only this one'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l include-chaos -d 'Count runs made under `--chaos` too (their failures were injected)'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l json -d 'Print JSON (its format is in the README)'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l prometheus -d 'Print Prometheus\'s text exposition format'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -l check -d 'Evaluate the policy\'s alert rules: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line per firing rule (a Nagios/Icinga check as it is). Each rule\'s window and the policy\'s runs in every tree are what it reads, so the selection flags do not go with it'
complete -c backstop -n "__fish_backstop_using_subcommand stats" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -s p -l policy -d 'A policy to simulate; repeat to compare several' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l faults -d 'The fault model (YAML, `version: 1`)' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l runs -d 'Simulated runs per policy' -r
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l seed -d 'The random seed: the same seed gives the same figures' -r
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l call -d 'Simulate `backstop call` of this model [default: the policy\'s `model`, if set]' -r
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -l json -d 'Print JSON (its format is in the README)'
complete -c backstop -n "__fish_backstop_using_subcommand simulate" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -f -a "serve" -d 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model\'s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and not __fish_seen_subcommand_from serve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l upstream -d 'The real API to pass requests to (e.g. `https://api.openai.com/v1`); without it, a canned answer stands in for the model' -r
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l listen -d 'The address to listen on; port 0 picks a free one' -r
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l seed -d 'The random seed: the same seed and the same requests meet the same faults' -r
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -l json -d 'Print the address as JSON: `{"url": ..., "address": ...}`'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model\'s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
complete -c backstop -n "__fish_backstop_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand show" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand show" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand show" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand show" -l json -d 'Print the run record as JSON'
complete -c backstop -n "__fish_backstop_using_subcommand show" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "check" -d 'Validate a policy and print it resolved, with every default filled in'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "explain" -d 'Print the schedule a policy produces: attempts, delays, worst-case time'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "schema" -d 'Print the JSON Schema of the policy format, for editors'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and not __fish_seen_subcommand_from check explain schema help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from check" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from check" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from explain" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from explain" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from explain" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from schema" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from schema" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from schema" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from schema" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate a policy and print it resolved, with every default filled in'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Print the schedule a policy produces: attempts, delays, worst-case time'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "schema" -d 'Print the JSON Schema of the policy format, for editors'
complete -c backstop -n "__fish_backstop_using_subcommand policy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -f -a "status" -d 'Every key\'s breaker (state, failures in the window, times opened) and the budget'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -f -a "reset" -d 'Forget one key\'s breaker: it is closed, with no failures counted'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and not __fish_seen_subcommand_from status reset help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -s p -l policy -d 'The policy that names the state backend [default: ./backstop.yaml if present]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -l json -d 'Print JSON (its format is in the README)'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from reset" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from reset" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from reset" -s p -l policy -d 'The policy that names the state backend [default: ./backstop.yaml if present]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from reset" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from reset" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from help" -f -a "status" -d 'Every key\'s breaker (state, failures in the window, times opened) and the budget'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from help" -f -a "reset" -d 'Forget one key\'s breaker: it is closed, with no failures counted'
complete -c backstop -n "__fish_backstop_using_subcommand breaker; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand completions" -l color -d 'When to use colour on stderr (NO_COLOR and non-terminals turn it off under auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c backstop -n "__fish_backstop_using_subcommand completions" -l store -d 'Where run records are kept [default: $BACKSTOP_HOME, else $XDG_STATE_HOME/backstop]' -r -F
complete -c backstop -n "__fish_backstop_using_subcommand completions" -s q -l quiet -d 'Print nothing of backstop\'s own; the command\'s output still passes through'
complete -c backstop -n "__fish_backstop_using_subcommand completions" -s h -l help -d 'Print help'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "run" -d 'Run a command under the policy'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "call" -d 'Call a model over HTTP under the policy; the prompt from the argument and/or stdin, or a conversation from `--messages`'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "undo" -d 'Revert a run\'s file changes (default: the latest run)'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "redo" -d 'Re-apply what undo reverted (or what a failed run\'s rollback put back)'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "snapshot" -d 'Take a snapshot of the policy\'s scope now, and say what it cost (primes the stat cache)'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "gc" -d 'Drop old runs and the snapshot contents no run needs any more'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "fsck" -d 'Check every object, manifest, record and journal in the store; say what damage affects (exit 4 if any remains)'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "runs" -d 'List the runs recorded for this directory tree, newest first'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "stats" -d 'Figures over the recorded runs: outcome by layer, latency, cost, errors, rates'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "simulate" -d 'Run the engine many times against a fault model on a virtual clock, and compare policies side by side with the figures `stats` gives'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "chaos" -d 'Fault injection for clients other than backstop'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "show" -d 'Show one run: every attempt, layer, delay and why'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "policy" -d 'Check, explain or describe policy files'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "breaker" -d 'Circuit breakers and the retry budget kept across runs: state (the default), or reset a key'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c backstop -n "__fish_backstop_using_subcommand help; and not __fish_seen_subcommand_from run call undo redo snapshot gc fsck runs stats simulate chaos show policy breaker completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "serve" -d 'Serve an OpenAI- and Anthropic-compatible API on a local address that answers with the fault model\'s faults (or passes requests to --upstream and breaks its answers); prints `listening on URL`, runs until SIGINT or SIGTERM'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "check" -d 'Validate a policy and print it resolved, with every default filled in'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "explain" -d 'Print the schedule a policy produces: attempts, delays, worst-case time'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from policy" -f -a "schema" -d 'Print the JSON Schema of the policy format, for editors'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from breaker" -f -a "status" -d 'Every key\'s breaker (state, failures in the window, times opened) and the budget'
complete -c backstop -n "__fish_backstop_using_subcommand help; and __fish_seen_subcommand_from breaker" -f -a "reset" -d 'Forget one key\'s breaker: it is closed, with no failures counted'
