#!/usr/bin/env bash
# bench-no-snapshot.sh — what `rollback: { snapshot: false }` saves a CI step.
#
# A CI job starts from a fresh checkout, so every wrapped step pays a first snapshot.
# On one deterministic tree (scripts/bench-snapshot-tree.py, seed 10; FILES files, MB
# MB), side by side in one run, warm cache, with hyperfine:
#   yardstick  bare `true` in the tree
#   before     `backstop run -p <ci-flaky-tests.yaml as it was: no rollback:> -- true`,
#              `CI` unset, a fresh store each run (the first snapshot of a checkout)
#   before-2   the same on a primed store (an unchanged re-run)
#   after      `backstop run -p policies/ci-flaky-tests.yaml -- true` (snapshot: false),
#              a fresh store each run
# and for each backstop case the peak RSS (/usr/bin/time -f %M) and the store's size
# after one run. The old template is read from git (BEFORE_REV, default the commit
# before `snapshot: false` reached the template).
#
# Tunables: FILES (20000), MB (120), RUNS (10), WARMUP (2), BENCH_WORK_DIR
# (/var/tmp/backstop-bench-nosnap; removed at the end unless KEEP=1).
# Exits 0 once the figures are printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILES=${FILES:-20000}
MB=${MB:-120}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}
WORK=${BENCH_WORK_DIR:-/var/tmp/backstop-bench-nosnap}
BEFORE_REV=${BEFORE_REV:-$(cd "$ROOT" && git log --format=%H -n1 -S'snapshot: false' -- policies/ci-flaky-tests.yaml)~1}

say() { printf '==> %s\n' "$*" >&2; }
command -v hyperfine >/dev/null || { echo "needs hyperfine" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time" >&2; exit 1; }

say "building backstop (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
BACKSTOP=$ROOT/target/release/backstop

mkdir -p "$WORK"
TREE=$WORK/tree
STORE=$WORK/store
if [[ ! -d $TREE ]]; then
    say "building a tree of $FILES files, $MB MB in $TREE"
    python3 "$ROOT/scripts/bench-snapshot-tree.py" --seed 10 --files "$FILES" --mb "$MB" build "$TREE"
fi
(cd "$ROOT" && git show "$BEFORE_REV:policies/ci-flaky-tests.yaml") > "$WORK/before.yaml"
cp "$ROOT/policies/ci-flaky-tests.yaml" "$WORK/after.yaml"
grep -q 'snapshot: false' "$WORK/before.yaml" && { echo "$BEFORE_REV already has snapshot: false" >&2; exit 1; }

cd "$TREE"
unset CI GITHUB_WORKSPACE CI_PROJECT_DIR
export BACKSTOP_HOME=$STORE
fresh="rm -rf $STORE"

say "timing (warm cache, $RUNS runs each)"
# `--prepare` goes with the commands in order: nothing for the yardstick, a fresh store
# for the others. Interleaving is not hyperfine's; the runs are short and warm.
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/times.json" \
    --prepare true --prepare "$fresh" --prepare "$fresh" \
    -n yardstick "true" \
    -n before "$BACKSTOP run -q -p $WORK/before.yaml -- true" \
    -n after "$BACKSTOP run -q -p $WORK/after.yaml -- true" \
    >&2
# The primed case: one run fills the store, then every run finds it unchanged.
rm -rf "$STORE"
"$BACKSTOP" run -q -p "$WORK/before.yaml" -- true
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/times2.json" \
    -n before-2 "$BACKSTOP run -q -p $WORK/before.yaml -- true" >&2

rss_and_store() { # policy → "peak-RSS-KB store-KB", from a fresh store
    rm -rf "$STORE"
    local rss
    rss=$( { /usr/bin/time -f %M "$BACKSTOP" run -q -p "$1" -- true; } 2>&1 | tail -1)
    echo "$rss $(du -sk "$STORE" | cut -f1)"
}
read -r RSS_BEFORE STORE_BEFORE < <(rss_and_store "$WORK/before.yaml")
read -r RSS_AFTER STORE_AFTER < <(rss_and_store "$WORK/after.yaml")

python3 - "$WORK/times.json" "$WORK/times2.json" "$RSS_BEFORE" "$STORE_BEFORE" "$RSS_AFTER" "$STORE_AFTER" "$FILES" "$MB" <<'EOF'
import json, sys
t = {r["command"]: r for f in sys.argv[1:3] for r in json.load(open(f))["results"]}
rss_b, store_b, rss_a, store_a, files, mb = sys.argv[3:9]
med = lambda n: t[n]["median"] * 1000
y = med("yardstick")
print(f"\n### `rollback: {{ snapshot: false }}` on {files} files, {mb} MB (warm cache, median ms)\n")
print("| case | median | added over bare `true` | peak RSS | store after one run |")
print("|---|---:|---:|---:|---:|")
print(f"| bare `true` (yardstick) | {y:.1f} | - | - | - |")
print(f"| before: CI template without `rollback:`, `CI` unset, fresh store | {med('before'):.1f} | {med('before')-y:.1f} | {int(rss_b)/1024:.1f} MB | {int(store_b)} KB |")
print(f"| before: the same, unchanged re-run | {med('before-2'):.1f} | {med('before-2')-y:.1f} | | |")
print(f"| after: `snapshot: false`, fresh store | {med('after'):.1f} | {med('after')-y:.1f} | {int(rss_a)/1024:.1f} MB | {int(store_a)} KB |")
print(f"\nafter / before (first run): {med('after')/med('before'):.3f}x")
EOF

if [[ ${KEEP:-} != 1 ]]; then
    rm -rf "$WORK"
fi
