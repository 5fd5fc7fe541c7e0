#!/usr/bin/env bash
# bench-stats.sh — how long `backstop stats` takes over many run records.
#
# Makes a store of N synthetic records (default 100,000) from four real ones (a first-try
# success, a success after retries, a failure rolled back, a model call with a cost)
# — each copied with its own id and a start spread over 30 days — then times, with
# hyperfine when it is there:
#   * `backstop stats` with no index (every record parsed: the first `stats` of a store),
#   * `backstop stats` with the index beside the records (every later one),
#   * `backstop stats --since 1d`, `--json` and `--prometheus` with the index,
#   * the yardstick: `cat` of every record file (reading them at all, parsing nothing).
# Aim (issue 11): 100,000 records summarised in under 2 s.
#
# Tunables: N (100000), RUNS (5), BENCH_DIR (/var/tmp/backstop-bench-stats).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-100000}
RUNS=${RUNS:-5}
DIR=${BENCH_DIR:-/var/tmp/backstop-bench-stats}
say() { printf '==> %s\n' "$*" >&2; }

say "building backstop (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/backstop

rm -rf "$DIR" && mkdir -p "$DIR/tree" "$DIR/store"
export BACKSTOP_HOME=$DIR/store
cd "$DIR/tree"
cat > backstop.yaml <<'EOF'
version: 1
retry: { max_attempts: 3, backoff: { initial: 1ms, max: 2ms, jitter: none } }
EOF
say "making four real records"
"$BIN" run -q -- true
"$BIN" run -q -- sh -c 'n=$(cat ../n 2>/dev/null || echo 0); echo $((n+1)) > ../n; [ "$n" -ge 2 ]'
"$BIN" run -q -- sh -c 'echo x > made; exit 1' || true
RUNS_DIR=$(echo "$DIR"/store/trees/*/runs)

say "copying them into $N records"
python3 - "$RUNS_DIR" "$N" <<'EOF'
import json, os, random, sys, datetime
runs, n = sys.argv[1], int(sys.argv[2])
seeds = [json.load(open(os.path.join(runs, f))) for f in sorted(os.listdir(runs)) if f.endswith('.json')]
# A call with a cost, built from the first record.
call = json.loads(json.dumps(seeds[0]))
call['command'] = ['call', 'small']
call.pop('snapshot', None); call.pop('no_snapshot', None)
for a in call['attempts']:
    a['call'] = {'model': 'small', 'provider': 'p', 'status': 200, 'retry_after_ms': None,
                 'retry_after_rule': None, 'should_retry': None, 'error': None, 'message': None,
                 'input_tokens': 1200, 'output_tokens': 300, 'cost_usd': 0.0042}
call['outcome']['cost_usd'] = 0.0042
seeds.append(call)
rng = random.Random(7)
now = datetime.datetime.now(datetime.timezone.utc)
for f in os.listdir(runs):
    os.remove(os.path.join(runs, f))
for i in range(n):
    r = json.loads(json.dumps(seeds[i % len(seeds)]))
    r['id'] = '%012x' % (0x100000000000 + i)
    t = now - datetime.timedelta(seconds=rng.uniform(0, 30 * 86400))
    r['started_at'] = t.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (t.microsecond // 1000)
    r['finished_at'] = r['started_at']
    r['outcome']['elapsed_ms'] = int(rng.lognormvariate(6, 1))
    with open(os.path.join(runs, r['id'] + '.json'), 'w') as out:
        json.dump(r, out, indent=2)
EOF
# Settled: the index takes only records older than a few seconds.
find "$RUNS_DIR" -name '*.json' -exec touch -d '1 hour ago' {} +
INDEX=$(dirname "$RUNS_DIR")/stats-index
say "$(ls "$RUNS_DIR" | wc -l) records, $(du -sh "$RUNS_DIR" | cut -f1)"

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --runs "$RUNS" --warmup 1 \
        --prepare "rm -f $INDEX" -n "stats, no index" "$BIN stats"
    "$BIN" stats >/dev/null
    hyperfine -N --runs "$RUNS" --warmup 1 \
        -n "stats, index" "$BIN stats" \
        -n "stats --since 1d" "$BIN stats --since 1d" \
        -n "stats --json" "$BIN stats --json" \
        -n "stats --prometheus" "$BIN stats --prometheus" \
        -n "yardstick: cat every record" "sh -c 'find $RUNS_DIR -name \"*.json\" -exec cat {} + >/dev/null'"
else
    for i in 1 2 3; do
        rm -f "$INDEX"
        /usr/bin/time -f "no index: %e s, %M KB" "$BIN" stats >/dev/null
    done
    for i in 1 2 3; do
        /usr/bin/time -f "index: %e s, %M KB" "$BIN" stats >/dev/null
    done
fi
/usr/bin/time -f "peak RSS, stats with the index: %M KB" "$BIN" stats >/dev/null
"$BIN" stats | head -20
