#!/usr/bin/env bash
# bench-breaker.sh — what breakers and the retry budget add to a run.
#
# Side by side, with hyperfine, `backstop -q run -p POLICY -- true` in an empty
# directory (no snapshot: `rollback.snapshot: false`), under three policies:
#   none    no `breaker:` or `retry_budget:` (the yardstick)
#   local   both, kept in the store (state/breakers.json under an flock)
#   redis   both, kept in a redis-server started here on a loopback port
# A run that succeeds asks twice: admit (breaker + budget's first attempt) and
# record. The added time per run is local − none and redis − none.
#
# Tunables: RUNS (200), WARMUP (10), BIN (target/release/backstop),
# BENCH_WORK_DIR (/var/tmp/backstop-bench-breaker; removed at the end unless KEEP=1).
# Needs hyperfine and redis-server (apt-get install hyperfine redis-server).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-10}
BIN=${BIN:-$ROOT/target/release/backstop}
WORK=${BENCH_WORK_DIR:-/var/tmp/backstop-bench-breaker}

rm -rf "$WORK"
mkdir -p "$WORK/run"
export BACKSTOP_HOME="$WORK/store"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$PORT" PING >/dev/null 2>&1 && break
  sleep 0.05
done
export BACKSTOP_REDIS_URL="redis://127.0.0.1:$PORT/"

base='version: 1
rollback: { snapshot: false }
'
guard='breaker: { failures: 5, within: 1m, cooldown: 30s }
retry_budget: { ratio: 0.2, min_per_second: 1, window: 60s }
'
printf '%s' "$base" > "$WORK/none.yaml"
printf '%s%s' "$base" "$guard" > "$WORK/local.yaml"
printf '%s%sstate: { backend: redis, url_env: BACKSTOP_REDIS_URL }\n' "$base" "$guard" > "$WORK/redis.yaml"

cd "$WORK/run"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/times.json" \
  -n none "$BIN -q run -p $WORK/none.yaml -- true" \
  -n local "$BIN -q run -p $WORK/local.yaml -- true" \
  -n redis "$BIN -q run -p $WORK/redis.yaml -- true"

python3 - "$WORK/times.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
none = r["none"]["median"]
print(f"\nper run, median: none {none*1e3:.2f} ms (the yardstick)")
for name in ("local", "redis"):
    added = (r[name]["median"] - none) * 1e3
    print(f"  {name:5}: {r[name]['median']*1e3:.2f} ms, added {added:+.2f} ms per run")
EOF
