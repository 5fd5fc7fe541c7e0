#!/usr/bin/env bash
# bench-simulate.sh — how long `backstop simulate` takes for many simulated runs.
#
# Times, with hyperfine when it is there (else once with `time`), N simulated runs
# (default 100,000) of the built-in policy against policies/faults/design-mix.yaml, and
# of three policies side by side. Aim: 100,000 runs in under 10 s.
#
# Tunables: N (100000), RUNS (3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-100000}
RUNS=${RUNS:-3}
say() { printf '==> %s\n' "$*" >&2; }

say "building backstop (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/backstop
FAULTS=$ROOT/policies/faults/design-mix.yaml
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
printf 'version: 1\n' > "$DIR/builtin.yaml"

one="$BIN simulate -p $DIR/builtin.yaml --faults $FAULTS --runs $N"
three="$BIN simulate -p $DIR/builtin.yaml -p $ROOT/policies/ci-flaky-tests.yaml -p $ROOT/policies/models.yaml --faults $FAULTS --runs $N"
if command -v hyperfine >/dev/null; then
    hyperfine --runs "$RUNS" --warmup 1 -n "one policy, $N runs" "$one" -n "three policies, $N runs each" "$three"
else
    say "hyperfine not found: timing once each"
    time $one >/dev/null
    time $three >/dev/null
fi
