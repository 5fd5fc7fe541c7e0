#!/usr/bin/env bash
# bench-alerts.sh — what alert rules add to the end of a run.
#
# One store holding N synthetic records (copies of a real record, their starts spread
# over the last 2 hours, half of them inside the rules' 1h window, their files dated an
# hour back so the stats index keeps them), in TREES trees. Side by side, with hyperfine:
#   without  `backstop -q run -p plain.yaml -- true`    (a policy with no alerts:)
#   with     `backstop -q run -p alerts.yaml -- true`   (3 rules, none firing, no notify)
# run in a tree of its own (so only the records are read, never a big tree walked).
#
# Tunables: N (1000 10000), TREES (1), RUNS (30), WARMUP (3), BIN (target/release/backstop),
# BENCH_WORK_DIR (/var/tmp/backstop-bench-alerts; removed at the end unless KEEP=1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NS=${N:-"1000 10000"}
TREES=${TREES:-1}
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
BIN=${BIN:-$ROOT/target/release/backstop}
WORK=${BENCH_WORK_DIR:-/var/tmp/backstop-bench-alerts}

for n in $NS; do
  rm -rf "$WORK"
  mkdir -p "$WORK/run"
  export BACKSTOP_HOME="$WORK/store"
  cat > "$WORK/alerts.yaml" <<'EOF'
version: 1
alerts:
  critical: { success_rate: { below: 0.5, window: 1h } }
  warning:
    latency_p95: { above: 10s, window: 1h }
    retry_rate: { above: 0.9, window: 30m }
EOF
  printf 'version: 1\n' > "$WORK/plain.yaml"
  for t in $(seq 1 "$TREES"); do
    mkdir -p "$WORK/tree$t"
    (cd "$WORK/tree$t" && "$BIN" -q run -p "$WORK/alerts.yaml" -- true)
  done
  python3 - "$WORK/store/trees" "$n" <<'EOF'
import json, os, sys, time, glob
trees, n = sys.argv[1], int(sys.argv[2])
dirs = sorted(glob.glob(os.path.join(trees, "*", "runs")))
template = json.load(open(glob.glob(os.path.join(dirs[0], "*.json"))[0]))
now = time.time()
for i in range(n):
    d = dirs[i % len(dirs)]
    r = dict(template)
    r["id"] = "%012x" % (0x100000000 + i)
    started = now - 7200 * (i / n)
    r["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + ".000Z"
    p = os.path.join(d, r["id"] + ".json")
    with open(p, "w") as f:
        json.dump(r, f)
    os.utime(p, (now - 3600, now - 3600))
EOF
  echo "== $n records in $TREES tree(s)"
  (cd "$WORK/run" && hyperfine -N --warmup "$WARMUP" --runs "$RUNS" \
    -n without "$BIN -q run -p $WORK/plain.yaml -- true" \
    -n with "$BIN -q run -p $WORK/alerts.yaml -- true")
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
