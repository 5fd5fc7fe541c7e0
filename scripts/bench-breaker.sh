#!/usr/bin/env bash
# bench-breaker.sh — what breakers and the retry budget add to a run.
#
# Side by side, `backstop -q run -p POLICY -- true` in an empty directory (no
# snapshot: `rollback.snapshot: false`), under three policies:
#   none    no `breaker:` or `retry_budget:` (the yardstick)
#   local   both, kept in the store (state/breakers.json under an flock)
#   redis   both, kept in a redis-server started here on a loopback port
# A run that succeeds asks twice: admit (breaker + budget's first attempt) and
# record. The runs are interleaved (one of each in turn, timed by Python), so a
# machine whose load drifts (CI, shared cores) weighs on all three alike; the added
# time per run is the median of the paired differences with `none`.
#
# Tunables: RUNS (300), WARMUP (20), BIN (target/release/backstop),
# BENCH_WORK_DIR (/var/tmp/backstop-bench-breaker; removed at the end unless KEEP=1).
# Needs python3 and redis-server (apt-get install redis-server).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-300}
WARMUP=${WARMUP:-20}
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
python3 - "$BIN" "$WORK" "$RUNS" "$WARMUP" <<'PY'
import statistics, subprocess, sys, time
bin, work, runs, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = ("none", "local", "redis")
times = {n: [] for n in names}
for i in range(warmup + runs):
    for n in names:
        t = time.perf_counter()
        subprocess.run([bin, "-q", "run", "-p", f"{work}/{n}.yaml", "--", "true"], check=True)
        if i >= warmup:
            times[n].append((time.perf_counter() - t) * 1e3)
none = times["none"]
print(f"{runs} runs of each, interleaved; per run: median, min")
print(f"  none : {statistics.median(none):.2f} ms, {min(none):.2f} ms  (the yardstick)")
for n in ("local", "redis"):
    added = statistics.median(a - b for a, b in zip(times[n], none))
    print(f"  {n:5}: {statistics.median(times[n]):.2f} ms, {min(times[n]):.2f} ms;"
          f" added {added:+.2f} ms per run (median of paired differences)")
PY
