#!/usr/bin/env bash
# bench-overhead.sh — what backstop costs a command that needs no help.
#
# Measures, on this machine:
#   * the median wall time of `backstop run -- true` against bare `true` and against
#     Debian's `retry --times=1 -- true` (the yardstick), with hyperfine (warmup, many
#     runs, JSON export), and with BENCH_BEFORE the same for an earlier backstop, in the
#     same hyperfine invocation, so before, after and the yardstick share one machine
#     state; also the CPU time (user + system, children included) of each, which the
#     load of other jobs inflates less than the wall time;
#     backstop snapshots the directory and writes a run record on every run, which is part of the honest
#     overhead, so the store (BACKSTOP_HOME) is a throwaway directory, measured once on
#     disk and once on tmpfs (/dev/shm) when there is one; each store first keeps a
#     snapshot of another tree of 2,000 files (objects in all 256 fan-out directories),
#     as a store in use does (BENCH_FRESH_STORE=1: an empty store);
#   * backstop's peak memory (max RSS, /usr/bin/time -f %M) over repeated runs of
#     `backstop run -- true`, and for one run that pipes 100 MiB through a policy with an
#     output pattern, to show memory stays flat however much output passes.
#
# Aim (issue 10): at most 2 ms added per run over `true`, peak RSS no higher than
# before (and under 15 MB).
#
# Installs hyperfine, retry and time with apt-get when missing (needs root). Without
# hyperfine it falls back to a timing loop of its own, so it always prints figures.
# The closing summary is Markdown, ready to paste. Exits 0 once figures are printed,
# whether or not the aim is met.
#
# Tunables (environment): RUNS (300), WARMUP (20), RSS_RUNS (20),
#   BENCH_DISK_DIR (/var/tmp): where the on-disk store goes,
#   BENCH_TMPFS_DIR (/dev/shm): where the tmpfs store goes ("" to skip),
#   BENCH_OUT_DIR (target/bench-overhead): where the hyperfine JSON is kept,
#   BENCH_NO_INSTALL=1: never call apt-get,
#   BENCH_FRESH_STORE=1: measure with empty stores, not ones that hold another tree,
#   ROUNDS (5 with BENCH_BEFORE, else 1): hyperfine invocations per store, RUNS
#     shared among them and pooled,
#   BENCH_TIMER=loop: use the fallback timing loop even when hyperfine is there,
#   BENCH_BEFORE: the backstop to compare with, either a binary's path or a git
#     revision of this repository (built once with `cargo build --release` in a
#     temporary worktree, sharing this target directory, and kept as
#     $BENCH_OUT_DIR/backstop-<commit>); unset: no comparison.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-300}
ROUNDS=${ROUNDS:-}
WARMUP=${WARMUP:-20}
RSS_RUNS=${RSS_RUNS:-20}
BENCH_DISK_DIR=${BENCH_DISK_DIR:-/var/tmp}
BENCH_TMPFS_DIR=${BENCH_TMPFS_DIR-/dev/shm}
BENCH_OUT_DIR=${BENCH_OUT_DIR:-$ROOT/target/bench-overhead}
AIM_MS=2
AIM_MB=15
STARTED=$SECONDS

say() { printf '==> %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
# Single-quote a word for hyperfine's shell-word splitting (-N) or for sh -c.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# --- tools -----------------------------------------------------------------------------
install_missing() {
    local pkgs=()
    have hyperfine || pkgs+=(hyperfine)
    have retry || pkgs+=(retry)
    [[ -x /usr/bin/time ]] || pkgs+=(time)
    ((${#pkgs[@]})) || return 0
    if [[ ${BENCH_NO_INSTALL:-} == 1 ]] || ! have apt-get; then
        say "missing: ${pkgs[*]} (no apt-get, or BENCH_NO_INSTALL=1); carrying on without"
        return 0
    fi
    local sudo=()
    if ((EUID != 0)); then
        if have sudo; then sudo=(sudo -n); else
            say "missing: ${pkgs[*]}; not root and no sudo, carrying on without"
            return 0
        fi
    fi
    say "installing ${pkgs[*]} with apt-get"
    if ! { "${sudo[@]}" apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${pkgs[@]}" >/dev/null; }; then
        say "apt-get failed; carrying on with what is there"
    fi
}

# --- build -----------------------------------------------------------------------------
mkdir -p "$BENCH_OUT_DIR"
BEFORE=
BEFORE_LABEL=
if [[ -n ${BENCH_BEFORE:-} ]]; then
    if [[ -f $BENCH_BEFORE && -x $BENCH_BEFORE ]]; then
        BEFORE=$(cd "$(dirname "$BENCH_BEFORE")" && pwd)/$(basename "$BENCH_BEFORE")
        BEFORE_LABEL=$(basename "$BENCH_BEFORE")
    else
        rev=$(git -C "$ROOT" rev-parse --verify "$BENCH_BEFORE^{commit}") ||
            { echo "BENCH_BEFORE=$BENCH_BEFORE is neither an executable nor a git revision" >&2; exit 1; }
        BEFORE=$BENCH_OUT_DIR/backstop-$rev
        BEFORE_LABEL=$(git -C "$ROOT" rev-parse --short "$rev")
        if [[ ! -x $BEFORE ]]; then
            # Built first, sharing target/ (the dependencies are built once). Cargo
            # names the two builds of the crate alike (its hash does not depend on
            # where the sources are), so the build of the working tree below must be
            # told its sources are newer, or it would take the before binary as its own.
            wt=$(mktemp -d "${TMPDIR:-/tmp}/backstop-before.XXXXXX")
            say "building the before binary ($BEFORE_LABEL) in $wt"
            git -C "$ROOT" worktree add --detach --quiet "$wt" "$rev"
            if ! (cd "$wt" && CARGO_TARGET_DIR=$ROOT/target cargo build --release --quiet); then
                git -C "$ROOT" worktree remove --force "$wt"
                echo "cannot build $BENCH_BEFORE" >&2
                exit 1
            fi
            cp "$ROOT/target/release/backstop" "$BEFORE"
            git -C "$ROOT" worktree remove --force "$wt"
            # ... and its build script (link arguments, version) run again.
            touch "$ROOT/src/lib.rs" "$ROOT/src/main.rs" "$ROOT/build.rs"
        fi
    fi
fi
say "building backstop (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
BACKSTOP=$ROOT/target/release/backstop
[[ -x $BACKSTOP ]] || { echo "no binary at $BACKSTOP" >&2; exit 1; }
# Measured from a copy: what is timed is the binary built above, whatever later
# builds do to target/.
cp "$BACKSTOP" "$BENCH_OUT_DIR/backstop-current"
BACKSTOP=$BENCH_OUT_DIR/backstop-current

install_missing
TRUE=$(command -v true)
[[ $TRUE == /* ]] || TRUE=/bin/true # `command -v true` is the builtin's name
RETRY=$(command -v retry || true)

# --- scratch space ---------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_DISK_DIR%/}/backstop-bench.XXXXXX")
TMPFS_WORK=
if [[ -n $BENCH_TMPFS_DIR && -d $BENCH_TMPFS_DIR && -w $BENCH_TMPFS_DIR ]]; then
    TMPFS_WORK=$(mktemp -d "${BENCH_TMPFS_DIR%/}/backstop-bench.XXXXXX")
fi
# shellcheck disable=SC2317 # invoked by the trap
cleanup() { rm -rf -- "$WORK" ${TMPFS_WORK:+"$TMPFS_WORK"}; }
trap cleanup EXIT
# Commands run from an empty directory, so no ./backstop.yaml is picked up and the
# working tree backstop records runs for is a small one.
mkdir -p "$WORK/cwd" "$WORK/home-disk"
cd "$WORK/cwd"
fstype() { # findmnt names ext4 as such (stat says ext2/ext3); a stacked mount prints twice
    local t
    t=$(findmnt -no FSTYPE -T "$1" 2>/dev/null | head -n1) || t=
    [[ -n $t ]] || t=$(stat -f -c %T "$1" 2>/dev/null) || t='?'
    printf '%s\n' "$t"
}
STORES=("disk:$WORK/home-disk")
if [[ -n $TMPFS_WORK ]]; then
    if [[ $(fstype "$TMPFS_WORK") == tmpfs ]]; then
        mkdir -p "$TMPFS_WORK/home"
        STORES+=("tmpfs:$TMPFS_WORK/home")
    fi
fi
POLICY=$WORK/output-policy.yaml
printf 'version: 1\nretry:\n  on: { output: ["ECONNRESET"] }\n' >"$POLICY"

# A store in use holds other trees' objects: one of 2,000 files, in every store.
if [[ ${BENCH_FRESH_STORE:-} != 1 ]]; then
    mkdir -p "$WORK/other"
    for i in $(seq 2000); do printf 'file %s\n' "$i" >"$WORK/other/f$i"; done
    for entry in "${STORES[@]}"; do
        (cd "$WORK/other" && BACKSTOP_HOME=${entry#*:} "$BACKSTOP" -q snapshot >/dev/null) ||
            { echo "backstop snapshot of $WORK/other failed" >&2; exit 1; }
    done
fi

# Sanity: everything measured must succeed, or the timings mean nothing.
BACKSTOP_HOME=$WORK/home-disk "$BACKSTOP" run -- true </dev/null >/dev/null 2>&1 ||
    { echo "backstop run -- true failed" >&2; exit 1; }
if [[ -n $BEFORE ]]; then
    BACKSTOP_HOME=$WORK/home-disk "$BEFORE" run -- true </dev/null >/dev/null 2>&1 ||
        { echo "$BEFORE run -- true failed" >&2; exit 1; }
fi
"$BACKSTOP" policy check "$POLICY" >/dev/null ||
    { echo "the output-pattern policy does not validate" >&2; exit 1; }
if [[ -n $RETRY ]] && ! "$RETRY" --times=1 -- true </dev/null >/dev/null 2>&1; then
    say "retry --times=1 -- true failed here; leaving retry out"
    RETRY=
fi

[[ -n $ROUNDS ]] || ROUNDS=$([[ -n $BEFORE ]] && echo 5 || echo 1)
((ROUNDS >= 1 && RUNS / ROUNDS >= 2)) || { echo "ROUNDS=$ROUNDS does not fit RUNS=$RUNS" >&2; exit 1; }

# --- timing ----------------------------------------------------------------------------
# Results: one line per measured command,
# "label<TAB>median<TAB>mean<TAB>stddev<TAB>group<TAB>cpu<TAB>min" in milliseconds; "group" ties a
# command to the `true` baseline measured alongside it; "cpu" is the mean user + system
# time ("?" from the fallback loop).
RESULTS=$WORK/results.tsv
: >"$RESULTS"
TIMER=

# hyperfine, ROUNDS invocations per store, their runs pooled; each invocation measures
# its own `true` baseline. Rounds take turns with the load of other jobs on a shared
# machine: hyperfine runs one command's runs, then the next's, so with one round a
# burst of load lands on one command only.
time_hyperfine() { # group store-dir
    local group=$1 home=$2 round jsons=()
    for ((round = 1; round <= ROUNDS; round++)); do
        jsons+=("$BENCH_OUT_DIR/hyperfine-$group-$round.json")
        time_hyperfine_round "$group" "$home" "$round" "${jsons[-1]}"
    done
    # Seconds in the JSON; `times` (every run) has been there since hyperfine 1.6.
    if have python3; then
        python3 - "$group" "${jsons[@]}" >>"$RESULTS" <<'EOF'
import json, statistics, sys
pooled = {}
for path in sys.argv[2:]:
    for r in json.load(open(path))["results"]:
        p = pooled.setdefault(r["command"], {"times": [], "cpu": 0.0})
        p["cpu"] += (r["user"] + r["system"]) * len(r["times"])
        p["times"] += r["times"]
for command, p in pooled.items():
    t = [1000 * x for x in p["times"]]
    sd = statistics.stdev(t) if len(t) > 1 else 0.0
    cpu = 1000 * p["cpu"] / len(t)
    print(f'{command}\t{statistics.median(t):.3f}\t{statistics.mean(t):.3f}\t{sd:.3f}\t{sys.argv[1]}\t{cpu:.3f}\t{min(t):.3f}')
EOF
    else
        jq -r --arg g "$group" '.results[] |
            [.command, (.median*1000), (.mean*1000), (.stddev*1000), $g, ((.user+.system)*1000), (.min*1000)] | @tsv' "${jsons[0]}" >>"$RESULTS"
    fi
}

time_hyperfine_round() { # group store-dir round json
    local group=$1 home=$2 round=$3 json=$4 warmup=$WARMUP
    if ((round > 1)); then warmup=$((WARMUP < 3 ? WARMUP : 3)); fi
    local args=(-N --warmup "$warmup" --runs "$((RUNS / ROUNDS))" --style basic --export-json "$json"
        --command-name true "$(q "$TRUE")")
    if [[ $group == disk && -n $RETRY ]]; then
        args+=(--command-name "retry --times=1 -- true" "$(q "$RETRY") --times=1 -- $(q "$TRUE")")
    fi
    if [[ -n $BEFORE ]]; then
        args+=(--command-name "backstop run -- true [before $BEFORE_LABEL, store: $group]" "$(q "$BEFORE") run -- true")
    fi
    args+=(--command-name "backstop run -- true [store: $group]" "$(q "$BACKSTOP") run -- true")
    say "hyperfine: $group store ($home, $(fstype "$home")), round $round of $ROUNDS"
    BACKSTOP_HOME=$home hyperfine "${args[@]}" >&2
}

# Fallback: a loop of our own. Bash 5's EPOCHREALTIME costs no fork; otherwise
# `date +%s%N`, whose fork lands on every command alike and cancels out of "added".
now_us() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        local t=${EPOCHREALTIME/[.,]/}
        printf '%s\n' "$t"
    else
        echo $(($(date +%s%N) / 1000))
    fi
}
time_loop() { # label group store-dir command...
    local label=$1 group=$2 home=$3 i t0 t1
    shift 3
    local samples=$WORK/samples-$group-$RANDOM
    for ((i = 0; i < WARMUP; i++)); do
        BACKSTOP_HOME=$home "$@" </dev/null >/dev/null 2>&1
    done
    : >"$samples"
    for ((i = 0; i < RUNS; i++)); do
        t0=$(now_us)
        BACKSTOP_HOME=$home "$@" </dev/null >/dev/null 2>&1
        t1=$(now_us)
        echo $((t1 - t0)) >>"$samples"
    done
    sort -n "$samples" | awk -v label="$label" -v group="$group" '
        { v[NR] = $1 / 1000; s += v[NR]; ss += v[NR] * v[NR] }
        END {
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            mean = s / NR; var = NR > 1 ? (ss - NR * mean * mean) / (NR - 1) : 0
            printf "%s\t%.3f\t%.3f\t%.3f\t%s\t?\t%.3f\n", label, med, mean, sqrt(var < 0 ? 0 : var), group, v[1]
        }' >>"$RESULTS"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
for entry in "${STORES[@]}"; do
    group=${entry%%:*} home=${entry#*:}
    if have hyperfine && [[ ${BENCH_TIMER:-} != loop ]]; then
        if ! have python3 && ! have jq; then
            echo "need python3 or jq to read hyperfine's JSON" >&2
            exit 1
        fi
        have python3 || ROUNDS=1 # pooling the rounds' runs needs python3
        TIMER="hyperfine $(hyperfine --version | awk '{print $2}'), -N, --warmup $WARMUP, $ROUNDS round(s) of --runs $((RUNS / ROUNDS)) pooled"
        time_hyperfine "$group" "$home"
    else
        TIMER="own bash loop ($([[ -n ${EPOCHREALTIME:-} ]] && echo EPOCHREALTIME || echo 'date +%s%N')), warmup $WARMUP, runs $RUNS"
        say "timing loop: $group store ($home)"
        time_loop true "$group" "$home" "$TRUE"
        if [[ $group == disk && -n $RETRY ]]; then
            time_loop "retry --times=1 -- true" "$group" "$home" "$RETRY" --times=1 -- "$TRUE"
        fi
        if [[ -n $BEFORE ]]; then
            time_loop "backstop run -- true [before $BEFORE_LABEL, store: $group]" "$group" "$home" "$BEFORE" run -- true
        fi
        time_loop "backstop run -- true [store: $group]" "$group" "$home" "$BACKSTOP" run -- true
    fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

# --- peak memory -----------------------------------------------------------------------
# Max RSS in KiB of one run. GNU time reports the child's peak, which the kernel takes as
# the larger of the child's own and that of the children it reaped (here `true`, `head`).
max_rss_kib() { # command...
    local out=$WORK/rss
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f %M -o "$out" "$@" </dev/null >/dev/null 2>"$WORK/rss-stderr" || true
        tail -n1 "$out"
    elif have python3; then
        python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
    else
        echo 0
    fi
}
RSS_TOOL=$([[ -x /usr/bin/time ]] && echo '/usr/bin/time -f %M' || { have python3 && echo 'python3 getrusage'; } || echo none)
export BACKSTOP_HOME=$WORK/home-disk
say "peak RSS: $RSS_RUNS runs of backstop run -- true${BEFORE:+ (and of the before binary)}, and one 100 MiB run with an output pattern"
rss_true=0 rss_backstop=0 rss_retry=0 rss_before=0
for ((i = 0; i < RSS_RUNS; i++)); do
    k=$(max_rss_kib "$BACKSTOP" run -- true)
    if ((k > rss_backstop)); then rss_backstop=$k; fi
    echo "$k" >>"$WORK/rss-after"
    if [[ -n $BEFORE ]]; then
        k=$(max_rss_kib "$BEFORE" run -- true)
        if ((k > rss_before)); then rss_before=$k; fi
        echo "$k" >>"$WORK/rss-before"
    fi
    k=$(max_rss_kib "$TRUE")
    if ((k > rss_true)); then rss_true=$k; fi
    if [[ -n $RETRY ]]; then
        k=$(max_rss_kib "$RETRY" --times=1 -- "$TRUE")
        if ((k > rss_retry)); then rss_retry=$k; fi
    fi
done
rss_bulk=$(max_rss_kib "$BACKSTOP" run -p "$POLICY" -- sh -c 'head -c 104857600 /dev/zero')
# The same run again, untimed, to check the 100 MiB really passed through and it succeeded.
bulk_rc=0
bulk_bytes=$("$BACKSTOP" run -p "$POLICY" -- sh -c 'head -c 104857600 /dev/zero' </dev/null 2>/dev/null | wc -c) ||
    bulk_rc=$?
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- report ----------------------------------------------------------------------------
baseline() { awk -F'\t' -v g="$1" '$1 == "true" && $5 == g { print $2; exit }' "$RESULTS"; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f", a - b }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | head -c1)
version=$("$BACKSTOP" --version 2>/dev/null || echo backstop)

echo
echo "### backstop wrapper overhead"
echo
echo "$version (git $rev${dirty:+, uncommitted changes}), release build; $(uname -sr), ${cpu:-unknown CPU}, $(nproc) cores"
echo "Timing: $TIMER. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER."
for entry in "${STORES[@]}"; do
    echo "Store ${entry%%:*}: BACKSTOP_HOME on $(fstype "${entry#*:}") (each run takes its lock, snapshots the (empty) directory before and after, and writes its run record; $([[ ${BENCH_FRESH_STORE:-} == 1 ]] && echo 'an empty store' || echo 'the store holds a snapshot of another tree of 2,000 files'))."
done
echo
echo "| command | median ms | min ms | mean ± σ ms | CPU ms (user+sys, mean) | added vs true (median) ms |"
echo "|---|---:|---:|---:|---:|---:|"
verdict_ms=
while IFS=$'\t' read -r label median mean sd group cpu_ms min_ms; do
    base=$(baseline "$group")
    if [[ $label == true ]]; then
        add='—'
        # Several baselines (one per store): label them so the rows are distinguishable.
        if ((${#STORES[@]} > 1)); then label="true [with $group]"; fi
    else
        add=$(added "$median" "$base")
        if [[ $label == "backstop run -- true [store:"* ]]; then
            verdict_ms+="${verdict_ms:+, }$group store $add ms"
        fi
    fi
    # shellcheck disable=SC2016 # the backticks are Markdown
    printf '| `%s` | %.2f | %.2f | %.2f ± %.2f | %s | %s |\n' "$label" "$median" "$min_ms" "$mean" "$sd" "$cpu_ms" "$add"
done <"$RESULTS"
# Before, after and the yardstick side by side: what each adds to `true` (median wall
# time, and mean CPU time), per store, from the same hyperfine invocation.
row() { # label-prefix group -> "median<TAB>cpu<TAB>min" of the first matching row
    awk -F'\t' -v p="$1" -v g="$2" 'index($1, p) == 1 && $5 == g { print $2 "\t" $6 "\t" $7; exit }' "$RESULTS"
}
echo
echo "Added over \`true\`, ms (wall: median, and min in brackets; CPU: mean user+sys):"
echo
echo "| store | before | after | yardstick \`retry --times=1\` |"
echo "|---|---:|---:|---:|"
for entry in "${STORES[@]}"; do
    group=${entry%%:*}
    IFS=$'\t' read -r t_med t_cpu t_min <<<"$(row true "$group")"
    cell() { # label-prefix
        local med cpu_ms min_ms
        IFS=$'\t' read -r med cpu_ms min_ms <<<"$(row "$1" "$group")"
        if [[ -z $med ]]; then printf '—'; return; fi
        printf '%s (%s) wall' "$(added "$med" "$t_med")" "$(added "$min_ms" "$t_min")"
        if [[ $cpu_ms != '?' && $t_cpu != '?' ]]; then printf ', %s CPU' "$(added "$cpu_ms" "$t_cpu")"; fi
    }
    printf '| %s | %s | %s | %s |\n' "$group" \
        "$(cell "backstop run -- true [before")" "$(cell "backstop run -- true [store:")" \
        "$(cell "retry --times=1 -- true")"
done
echo
echo "Peak RSS ($RSS_TOOL, max of $RSS_RUNS runs):"
echo
echo "| command | max RSS MB |"
echo "|---|---:|"
echo "| \`true\` | $(mb "$rss_true") |"
if [[ -n $RETRY ]]; then echo "| \`retry --times=1 -- true\` | $(mb "$rss_retry") |"; fi
if [[ -n $BEFORE ]]; then echo "| \`backstop run -- true\` [before $BEFORE_LABEL] | $(mb "$rss_before") |"; fi
echo "| \`backstop run -- true\` | $(mb "$rss_backstop") |"
echo "| \`backstop run -p output-pattern.yaml -- sh -c 'head -c 104857600 /dev/zero'\` (100 MiB through an output regex, 1 run; check run: $bulk_bytes bytes out, exit $bulk_rc) | $(mb "$rss_bulk") |"
echo
worst_ms=$(awk -F'\t' '$1 ~ /^backstop run -- true \[store:/ { print $2 - 0 }' "$RESULTS" | sort -n | tail -n1)
worst_add=0
while IFS=$'\t' read -r label median _ _ group _; do
    [[ $label == "backstop run -- true [store:"* ]] || continue
    a=$(added "$median" "$(baseline "$group")")
    if below "$worst_add" "$a"; then worst_add=$a; fi
done <"$RESULTS"
peak=$((rss_backstop > rss_bulk ? rss_backstop : rss_bulk))
ms_ok=$(at_most "$worst_add" "$AIM_MS" && echo met || echo 'NOT met')
mb_ok=$(below "$(mb "$peak")" "$AIM_MB" && echo met || echo 'NOT met')
echo "Aim: ≤ $AIM_MS ms added per run — $ms_ok (added: $verdict_ms; slowest backstop median $worst_ms ms)."
echo "Aim: peak RSS < $AIM_MB MB — $mb_ok (peak $(mb "$peak") MB; 100 MiB of output: $(mb "$rss_bulk") MB vs $(mb "$rss_backstop") MB for \`true\`)."
if [[ -n $BEFORE ]]; then
    # Medians: one run's peak moves by a few hundred KiB from one run to the next (how
    # many of the binary's pages happen to be mapped), the max of a few runs with it.
    median_kib() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
    med_before=$(median_kib "$WORK/rss-before") med_after=$(median_kib "$WORK/rss-after")
    rss_ok=$( ((med_after * 100 <= med_before * 101)) && echo met || echo 'NOT met')
    echo "Aim: peak RSS of \`backstop run -- true\` no higher than before (median of $RSS_RUNS runs, within 1%) — $rss_ok ($med_before KiB before, $med_after KiB after; max $rss_before and $rss_backstop KiB)."
fi
echo
echo "hyperfine JSON: $BENCH_OUT_DIR; script took $((SECONDS - STARTED)) s."
exit 0
