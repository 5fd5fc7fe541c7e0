#!/usr/bin/env bash
# bench-snapshot.sh — what backstop's snapshots cost on a big tree, against a shadow git repo.
#
# Builds (once, then reuses) a deterministic tree of 100,000 files, ~600 MB, under
# $BENCH_WORK_DIR/tree (scripts/bench-snapshot-tree.py does that, from a fixed seed), then
# measures, side by side, wall time and peak memory of:
#   a. backstop's first snapshot into a fresh store       `backstop snapshot --json`
#   b. backstop's no-change snapshot (stat cache primed)   the same, again (median of RUNS)
#   c. a shadow git repo's first commit (fresh git dir)    `git add -A && git commit -q -m snap`
#   d. the shadow repo's no-change commit                  the same, again; "nothing to
#      commit" (exit 1) counts as success (median of RUNS)
#   e. a bare walk                                         `find . -printf '%s %T@\n'`
#   u. a protected run whose command changes nothing        `backstop run -- true` (stat
#      cache primed; median of RUNS), against the walk and the shadow repo's re-add
#      `git add -A` alone (issue 10: at most 1.5x the walk and 1.0x the re-add); with
#      BACKSTOP_BIN_BEFORE, the same run by that binary too, in the same rounds
#   f. after rewriting 1,000 files (chosen from the seed; fresh content each round, the
#      same content for backstop and git): `backstop snapshot` (a walk plus reading the
#      1,000 files, the same work as a run's after-diff) against git `add -A && commit`;
#      and `backstop run -- <rewrite the 1,000 files>` in total, split into the
#      before-snapshot, the command and the after-diff by the run record's timestamps
#      (median of CHANGE_RUNS rounds)
#   k. the same tree as a git checkout (a clone: one pack), against `git status` on it:
#      first snapshot and first protected run (fresh store), unchanged run, snapshot after
#      1,000 changed files, and undo after a run that rewrote them and ran `rm -rf .git`
#      (checked byte for byte); issue 10: the first run within 2x `git status`
#   g. putting those 1,000 files back: `backstop undo` (of the run in f) against
#      `git reset -q --hard HEAD~1` (of the commit in f); both are checked to give back the
#      original content.
# The no-change snapshots of backstop and git and the walk are interleaved (walk, backstop,
# git, walk, ...), and so are backstop's and git's change rounds, so that a change in the
# machine's load (another build) falls on both alike.
# The first snapshot, the no-change snapshot and the walk are also measured cold (after
# `echo 3 > /proc/sys/vm/drop_caches`) when this process may drop the page cache (root,
# writable /proc/sys); every other figure is warm-cache.
#
# Timing: wall time from a nanosecond clock around `/usr/bin/time -f '%e %M'`, which gives
# the peak RSS (KB, of the largest process in the command's tree). Before every measured
# command the script runs `sync`, so no earlier write is flushed inside a measurement
# (backstop `syncfs`es the store's filesystem after a big snapshot; git does not fsync
# loose objects by default: the git figures are git's default, not durable, behaviour).
# The shadow repo runs with gc.auto=0 and maintenance.auto=false, so no background gc
# lands in a later measurement; git never packs here. The store, the shadow repo and the
# tree share one filesystem ($BENCH_WORK_DIR).
#
# Aims (from the issue): first snapshot at most half of git's time; a no-change snapshot
# within 1.5x of the bare walk and no slower than git; peak memory under 100 MB.
# Exits 0 once the figures are printed, whether or not the aims are met.
#
# Tunables (environment):
#   BENCH_WORK_DIR (/var/tmp/backstop-bench)   tree, store, shadow repo, results
#   SEED (42), FILES (100000), TOTAL_MB (600), CHANGES (1000)   the tree
#   RUNS (5)          repeats of each no-change measurement and of the walk (median)
#   CHANGE_RUNS (3)   rounds of the 1,000-file change measurements (median)
#   DROP_CACHES (auto)  auto: measure cold too when dropping the page cache works; 0: never
#   BACKSTOP_BIN      use this binary instead of building (default: cargo build --release)
#   BENCH_NO_BUILD=1  use target/release/backstop as it is
#   BACKSTOP_BIN_BEFORE  an earlier build, measured beside this one on the unchanged run
#                     and the no-change snapshot (the store's format must be the same)
#   SKIP_CHANGES=1    leave out the 1,000-changed-file rounds (f., g.)
#   SKIP_CHECKOUT=1   leave out the git checkout (k.)
#   BENCH_NO_INSTALL=1  never call apt-get (for the `time` package)
#   KEEP_STORES=1     keep the last store and shadow repo (the tree is always kept)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK_DIR:-/var/tmp/backstop-bench}
SEED=${SEED:-42}
FILES=${FILES:-100000}
TOTAL_MB=${TOTAL_MB:-600}
CHANGES=${CHANGES:-1000}
RUNS=${RUNS:-5}
CHANGE_RUNS=${CHANGE_RUNS:-3}
DROP_CACHES=${DROP_CACHES:-auto}
RACY_WAIT=2.2 # backstop and git distrust mtimes within ~2 s of a snapshot/index write
STARTED=$SECONDS

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-snapshot: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

((RUNS >= 1 && CHANGE_RUNS >= 1)) || die "RUNS and CHANGE_RUNS must be at least 1"
have python3 || die "python3 is needed"
# The interpreter itself, not a pyenv-style shim (which costs ~150 ms a start, inside
# the timed change command).
PY=$(python3 -c 'import sys; print(sys.executable)')
have git || die "git is needed"

# --- tools -----------------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
    if [[ ${BENCH_NO_INSTALL:-} != 1 ]] && have apt-get && ((EUID == 0)); then
        say "installing the time package"
        apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
    fi
    [[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
TREE=$WORK/tree
STORE=$WORK/store
SHADOW=$WORK/shadow.git
PACKS=$WORK/packs
OUT=$WORK/results-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT" "$PACKS" "$WORK/bin"
RESULTS=$OUT/results.tsv
: >"$RESULTS"
GEN_PY=$ROOT/scripts/bench-snapshot-tree.py
GEN=("$PY" "$GEN_PY" --seed "$SEED" --files "$FILES" --mb "$TOTAL_MB" --changes "$CHANGES")

LOAD_BEFORE=$(loadavg)
say "load average before: $LOAD_BEFORE ($(nproc) cores); results in $OUT"

# --- the backstop binary (copied, so a concurrent cargo build cannot swap it mid-run) ---
if [[ -n ${BACKSTOP_BIN:-} ]]; then
    SRC_BIN=$BACKSTOP_BIN
else
    if [[ ${BENCH_NO_BUILD:-} != 1 ]]; then
        say "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet)
    fi
    SRC_BIN=$ROOT/target/release/backstop
fi
[[ -x $SRC_BIN ]] || die "no backstop binary at $SRC_BIN"
BS_BEFORE=
if [[ -n ${BACKSTOP_BIN_BEFORE:-} ]]; then
    [[ -x $BACKSTOP_BIN_BEFORE ]] || die "no backstop binary at $BACKSTOP_BIN_BEFORE"
    cp "$BACKSTOP_BIN_BEFORE" "$WORK/bin/backstop-before"
    BS_BEFORE=$WORK/bin/backstop-before
fi
[[ $SRC_BIN -ef $WORK/bin/backstop ]] || cp "$SRC_BIN" "$WORK/bin/backstop"
BS=$WORK/bin/backstop
BS_VERSION="$("$BS" --version), sha256 $(sha256sum "$BS" | cut -c1-12)"
if [[ -n ${BACKSTOP_BIN:-} ]]; then
    BS_SOURCE="a given binary ($BACKSTOP_BIN)"
    BS_DIRTY="?"
else
    BS_SOURCE="built from $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    BS_DIRTY=$(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)
fi

# --- git shadow repo -------------------------------------------------------------------
GIT=(git -c user.name=bench -c user.email=bench@example.invalid -c gc.auto=0
    -c maintenance.auto=false -c core.autocrlf=false --git-dir="$SHADOW" --work-tree=.)
# $WORK/git-snap.sh [--allow-nothing]: one shadow-git snapshot of the current directory.
cat >"$WORK/git-snap.sh" <<EOF
#!/bin/sh
$(printf '%q ' "${GIT[@]}") add -A || exit \$?
$(printf '%q ' "${GIT[@]}") commit -q -m snap >/dev/null 2>&1
rc=\$?
# "nothing to commit" exits 1: a no-change snapshot is a success.
if [ "\$1" = --allow-nothing ] && [ \$rc -eq 1 ]; then exit 0; fi
exit \$rc
EOF
chmod +x "$WORK/git-snap.sh"
fresh_shadow() {
    rm -rf "$SHADOW"
    git init -q --bare "$SHADOW"
}
git_commits() { (cd "$TREE" && "${GIT[@]}" rev-list --count HEAD 2>/dev/null) || echo 0; }

fresh_store() { rm -rf "$STORE"; mkdir -p "$STORE"; }
export BACKSTOP_HOME=$STORE

cleanup() {
    if [[ ${KEEP_STORES:-} != 1 ]]; then rm -rf "$STORE" "$SHADOW"; fi
}
trap cleanup EXIT

# --- page cache ------------------------------------------------------------------------
CAN_DROP=0
if [[ $DROP_CACHES != 0 ]]; then
    sync
    if (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then CAN_DROP=1; fi
fi
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
if ((CAN_DROP)); then
    say "dropping the page cache works: first snapshots, no-change snapshots and the walk are measured cold too"
elif [[ $DROP_CACHES == 0 ]]; then
    say "DROP_CACHES=0: all figures are warm-cache"
else
    say "cannot drop the page cache: all figures are warm-cache"
fi

# --- measuring -------------------------------------------------------------------------
# measure NAME CMD...: runs CMD in the tree under /usr/bin/time; appends a row to
# results.tsv (name, wall ms, peak RSS KB, time's %e, exit code, start ns, end ns); CMD's
# stdout and stderr go to $OUT/NAME.out and $OUT/NAME.err. Fails if CMD fails.
# Runs `sync` first (untimed) unless PRESYNC=0.
measure() {
    local name=$1
    shift
    [[ ${PRESYNC:-1} == 0 ]] || sync
    (
        cd "${MDIR:-$TREE}"
        rc=0
        t0=$(date +%s%N)
        /usr/bin/time -f '%e %M %U %S' -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || rc=$?
        t1=$(date +%s%N)
        read -r e m u s <"$OUT/$name.time" || { e='?'; m=0; u=0; s=0; }
        # time writes "Command exited with non-zero status N" first on failure.
        [[ $e =~ ^[0-9.]+$ ]] || read -r e m u s < <(tail -n1 "$OUT/$name.time")
        # The last column: CPU time (user + system, ms), what the command cost whether
        # or not a second core was free.
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$(((t1 - t0) / 1000))" "$m" "$e" "$rc" "$t0" "$t1" \
            "$(awk -v u="${u:-0}" -v s="${s:-0}" 'BEGIN { printf "%.0f", (u + s) * 1000 }')" \
            | awk -F'\t' -v OFS='\t' '{ $2 = sprintf("%.3f", $2 / 1000); print }' >>"$RESULTS"
        if ((rc != 0)); then
            printf 'bench-snapshot: %s failed (exit %s): %s\n' "$name" "$rc" "$*" >&2
            sed 's/^/    /' "$OUT/$name.err" >&2
            exit "$rc"
        fi
    )
    local row
    row=$(tail -n1 "$RESULTS")
    printf '    %-28s %10s ms  %8s KB peak RSS\n' "$name" "$(cut -f2 <<<"$row")" "$(cut -f3 <<<"$row")" >&2
}
settle() { sleep "$RACY_WAIT"; }

# --- the tree --------------------------------------------------------------------------
PARAMS=$("${GEN[@]}" params)
if [[ -d $TREE && -f $WORK/tree.params && $(cat "$WORK/tree.params") == "$PARAMS" ]]; then
    say "reusing the tree at $TREE ($PARAMS)"
    "${GEN[@]}" restore "$TREE"
    if ! "${GEN[@]}" verify "$TREE"; then
        say "the tree is not as planned: building it again"
        rm -rf "$TREE" "$WORK/tree.params"
    fi
fi
if [[ ! -d $TREE ]]; then
    rm -f "$WORK/tree.params"
    rm -rf "$TREE.tmp"
    say "building the tree ($PARAMS) at $TREE"
    t=$SECONDS
    "${GEN[@]}" build "$TREE.tmp"
    mv "$TREE.tmp" "$TREE"
    printf '%s\n' "$PARAMS" >"$WORK/tree.params"
    say "built in $((SECONDS - t)) s"
fi
"${GEN[@]}" stats >"$OUT/tree-stats.json"
# The change packs: the 1,000 files' content for each version, prepared outside the timing.
NVERSIONS=$((2 * CHANGE_RUNS))
PACK=()
for ((v = 1; v <= NVERSIONS; v++)); do
    pack=$PACKS/$(printf '%s' "$PARAMS" | md5sum | cut -c1-12)-v$v.pack
    [[ -f $pack ]] || { "${GEN[@]}" --version "$v" pack "$pack.tmp" && mv "$pack.tmp" "$pack"; }
    PACK[v]=$pack
done
APPLY=("$PY" "$GEN_PY" apply) # apply PACK DIR: writes a pack's files in place
TREE_DU=$(du -sb --exclude=target "$TREE" | cut -f1)
settle

# The three kinds of step below are interleaved (walk, backstop, git, walk, backstop, ...)
# so that a change in the machine's load (another build) falls on all of them alike.
WALK=(sh -c "find . -printf '%s %T@\\n' >/dev/null")
GIT_SNAP=("$WORK/git-snap.sh")

# --- a./c. first snapshots: backstop into a fresh store, git into a fresh git dir -------
if ((CAN_DROP)); then
    say "e. bare walk, cold   [load $(loadavg)]"
    drop
    measure walk_cold "${WALK[@]}"
    say "a./c. first snapshots, cold   [load $(loadavg)]"
    fresh_store
    drop
    measure bs_first_cold "$BS" snapshot --json
    fresh_shadow
    drop
    measure git_first_cold "${GIT_SNAP[@]}"
    [[ $(git_commits) == 1 ]] || die "the shadow repo's first commit did not happen"
fi
say "a./c. first snapshots, warm   [load $(loadavg)]"
fresh_store
measure bs_first_warm "$BS" snapshot --json
du -sb "$STORE" | cut -f1 >"$OUT/store-bytes"
fresh_shadow
measure git_first_warm "${GIT_SNAP[@]}"
say "   durability, for context: sync right after git's first commit (what its dirty pages cost)"
PRESYNC=0 measure git_first_sync sync
[[ $(git_commits) == 1 ]] || die "the shadow repo's first commit did not happen"
du -sb "$SHADOW" | cut -f1 >"$OUT/shadow-bytes"

# --- b./d./e. no-change snapshots and the bare walk, interleaved -------------------------
say "b./d./e. no-change snapshots and the walk, warm, x$RUNS (+1 warm-up)   [load $(loadavg)]"
for ((i = 0; i <= RUNS; i++)); do
    tag=$i
    ((i > 0)) || tag=up # round 0 is a warm-up, left out of the medians
    measure "walk_warm_$tag" "${WALK[@]}"
    measure "bs_nochange_warm_$tag" "$BS" snapshot --json
    measure "git_nochange_warm_$tag" "${GIT_SNAP[@]}" --allow-nothing
done
# u. a protected run that changes nothing, interleaved with the walk and git's re-add.
say "u. unchanged protected runs, warm, x$RUNS (+1 warm-up)   [load $(loadavg)]"
for ((i = 0; i <= RUNS; i++)); do
    tag=$i
    ((i > 0)) || tag=up
    measure "walk_u_$tag" "${WALK[@]}"
    measure "bs_run_unchanged_$tag" "$BS" -q run -- true
    [[ -z $BS_BEFORE ]] || measure "bs_before_run_unchanged_$tag" "$BS_BEFORE" -q run -- true
    [[ -z $BS_BEFORE ]] || measure "bs_before_nochange_$tag" "$BS_BEFORE" snapshot --json
    measure "git_readd_$tag" "${GIT[@]}" add -A
done
if ((CAN_DROP)); then
    say "b./d. no-change snapshots, cold   [load $(loadavg)]"
    drop
    measure bs_nochange_cold "$BS" snapshot --json
    drop
    measure git_nochange_cold "${GIT_SNAP[@]}" --allow-nothing
fi
[[ $(git_commits) == 1 ]] || die "a no-change git snapshot made a commit"

# --- f./g. 1,000 changed files, backstop then git in each round ---------------------------
((${SKIP_CHANGES:-0} == 1)) && CHANGE_RUNS_DONE=0 || CHANGE_RUNS_DONE=$CHANGE_RUNS
for ((r = 1; r <= CHANGE_RUNS_DONE; r++)); do
    say "f./g. round $r/$CHANGE_RUNS of $CHANGES changed files   [load $(loadavg)]"
    # backstop: a plain snapshot after the change ...
    settle
    (cd "$TREE" && "$BS" snapshot --json >"$OUT/bs_prime_a_$r.json")
    # ^ primes the stat cache (untimed), so the timed snapshots below read only what changed
    measure "apply_$r" "${APPLY[@]}" "${PACK[2 * r - 1]}" .
    measure "bs_after_change_$r" "$BS" snapshot --json
    "${GEN[@]}" restore "$TREE" 2>/dev/null
    # ... then a run that makes a change (another version), and its undo.
    settle
    (cd "$TREE" && "$BS" snapshot --json >"$OUT/bs_prime_b_$r.json")
    measure "bs_run_$r" "$BS" run -- "${APPLY[@]}" "${PACK[2 * r]}" .
    (cd "$TREE" && "$BS" show --json "$("$BS" runs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')") \
        >"$OUT/bs_run_$r.record.json"
    measure "bs_undo_$r" "$BS" undo
    "${GEN[@]}" verify "$TREE" || die "backstop undo did not give back the original tree (round $r)"
    # ... and the same by the earlier build, when there is one.
    if [[ -n $BS_BEFORE ]]; then
        settle
        (cd "$TREE" && "$BS_BEFORE" snapshot --json >/dev/null)
        measure "bs_before_run_$r" "$BS_BEFORE" run -- "${APPLY[@]}" "${PACK[2 * r]}" .
        measure "bs_before_undo_$r" "$BS_BEFORE" undo
        "${GEN[@]}" verify "$TREE" || die "the earlier build's undo did not give back the original tree (round $r)"
    fi
    # git: the same content as backstop's plain snapshot, committed, then reset away.
    settle
    (cd "$TREE" && "${GIT[@]}" add -A && "${GIT[@]}" status --porcelain >"$OUT/git_prime_$r.status")
    [[ ! -s $OUT/git_prime_$r.status ]] || die "the shadow repo sees changes before round $r"
    "${APPLY[@]}" "${PACK[2 * r - 1]}" "$TREE"
    before=$(git_commits)
    measure "git_after_change_$r" "${GIT_SNAP[@]}"
    [[ $(git_commits) == $((before + 1)) ]] || die "git did not commit the changes (round $r)"
    measure "git_restore_$r" "${GIT[@]}" reset -q --hard HEAD~1
    "${GEN[@]}" verify "$TREE" || die "git reset did not give back the original tree (round $r)"
done

# --- k. the same tree as a fresh git checkout (issue 10, part 1) --------------------------
# A clone of the tree (one pack, as a CI runner's checkout), against `git status` on it:
# backstop's first snapshot and first protected run (fresh store each round), the
# unchanged run, the snapshot after 1,000 changed files, and `undo` after a run that
# changed those files and ran `rm -rf .git` (checked byte for byte, then the checkout is
# cloned again). The store is on the checkout's filesystem ($WORK), so git's packs are
# linked, not copied.
CO=$WORK/checkout
ORIGIN=$WORK/origin.git
CO_ROUNDS=0
if [[ ${SKIP_CHECKOUT:-0} != 1 ]]; then
    CO_ROUNDS=$RUNS
    clone_checkout() {
        rm -rf "$CO"
        git clone -q "file://$ORIGIN" "$CO"
        # Past the racy window of the index the clone wrote, and refreshed as any later
        # git command would leave it.
        settle
        git -C "$CO" status --porcelain >/dev/null
    }
    if [[ ! -d $ORIGIN || $(cat "$WORK/origin.params" 2>/dev/null) != "$PARAMS" ]]; then
        say "k. building the origin repository of the tree (once)"
        rm -rf "$ORIGIN"
        git init -q --bare "$ORIGIN"
        (cd "$TREE" && git -c core.autocrlf=false --git-dir="$ORIGIN" --work-tree=. add -A &&
            git -c user.name=bench -c user.email=bench@example.invalid --git-dir="$ORIGIN" \
                --work-tree=. commit -qm tree)
        git --git-dir="$ORIGIN" repack -adq
        printf '%s\n' "$PARAMS" >"$WORK/origin.params"
    fi
    clone_checkout
    say "k. git checkout: first snapshots and runs, x$CO_ROUNDS   [load $(loadavg)]"
    for ((i = 1; i <= CO_ROUNDS; i++)); do
        MDIR=$CO measure "co_git_status_$i" git status --porcelain
        fresh_store
        MDIR=$CO measure "co_first_snapshot_$i" "$BS" snapshot --json
        fresh_store
        MDIR=$CO measure "co_first_run_$i" "$BS" -q run -- true
        if [[ -n $BS_BEFORE ]]; then
            fresh_store
            MDIR=$CO measure "co_before_first_snapshot_$i" "$BS_BEFORE" snapshot --json
            fresh_store
            MDIR=$CO measure "co_before_first_run_$i" "$BS_BEFORE" -q run -- true
        fi
    done
    say "k. git checkout: unchanged runs, x$CO_ROUNDS   [load $(loadavg)]"
    for ((i = 1; i <= CO_ROUNDS; i++)); do
        MDIR=$CO measure "co_git_status_u_$i" git status --porcelain
        MDIR=$CO measure "co_run_unchanged_$i" "$BS" -q run -- true
        [[ -z $BS_BEFORE ]] || MDIR=$CO measure "co_before_run_unchanged_$i" "$BS_BEFORE" -q run -- true
    done
    say "k. git checkout: $CHANGES changed files, then undo after rm -rf .git   [load $(loadavg)]"
    settle
    (cd "$CO" && "$BS" snapshot --json >/dev/null)
    "${APPLY[@]}" "${PACK[1]}" "$CO"
    MDIR=$CO measure "co_git_status_changed" git status --porcelain
    MDIR=$CO measure "co_after_change" "$BS" snapshot --json
    git -C "$CO" checkout -q -- .
    settle
    git -C "$CO" status --porcelain >/dev/null
    (cd "$CO" && "$BS" snapshot --json >/dev/null)
    MDIR=$CO measure "co_run_change_rm_git" "$BS" -q run -- sh -c "$(printf '%q ' "${APPLY[@]}" "${PACK[2]}" .) && rm -rf .git"
    [[ ! -e $CO/.git ]] || die "the run did not remove .git"
    MDIR=$CO measure "co_undo" "$BS" undo
    "${GEN[@]}" --files-only verify "$CO" || die "undo after rm -rf .git did not give back the checkout"
    clone_checkout
fi

LOAD_AFTER=$(loadavg)
ELAPSED=$((SECONDS - STARTED))

# --- report ----------------------------------------------------------------------------
export OUT RUNS CHANGE_RUNS CHANGE_RUNS_DONE CHANGES CAN_DROP LOAD_BEFORE LOAD_AFTER ELAPSED BS_VERSION \
    BS_SOURCE BS_DIRTY TREE TREE_DU PARAMS CO_ROUNDS
python3 - <<'PY'
import json, os, statistics, glob, datetime

out = os.environ["OUT"]
rows = {}
with open(f"{out}/results.tsv") as f:
    for line in f:
        name, ms, rss, e, rc, t0, t1, cpu = line.rstrip("\n").split("\t")
        rows[name] = {"ms": float(ms), "rss": int(rss or 0), "t0": int(t0), "t1": int(t1), "cpu": float(cpu)}

def series(prefix):
    return [v for k, v in rows.items() if k.startswith(prefix) and k[len(prefix):].isdigit()]

def med(prefix):
    s = series(prefix)
    return (statistics.median(x["ms"] for x in s), max(x["rss"] for x in s), len(s)) if s else None

def one(name):
    r = rows.get(name)
    return (r["ms"], r["rss"], 1) if r else None

def js(name):
    try:
        with open(f"{out}/{name}.out") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def fmt_t(m):
    if m is None:
        return "—"
    ms = m[0]
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"

def fmt_m(m):
    return "—" if m is None else f"{m[1] / 1024:.1f} MB"

def ratio(a, b):
    return "—" if a is None or b is None or b[0] == 0 else f"{a[0] / b[0]:.2f}x"

stats = json.load(open(f"{out}/tree-stats.json"))
runs, cruns = int(os.environ["RUNS"]), int(os.environ["CHANGE_RUNS_DONE"])
cold = os.environ["CAN_DROP"] == "1"

walk_w, walk_c = med("walk_warm_"), one("walk_cold")
bs_first_w, bs_first_c = one("bs_first_warm"), one("bs_first_cold")
git_first_w, git_first_c = one("git_first_warm"), one("git_first_cold")
bs_nc_w, bs_nc_c = med("bs_nochange_warm_"), one("bs_nochange_cold")
git_nc_w, git_nc_c = med("git_nochange_warm_"), one("git_nochange_cold")
bs_chg, git_chg = med("bs_after_change_"), med("git_after_change_")
bs_undo, git_restore = med("bs_undo_"), med("git_restore_")
bs_run, apply_ = med("bs_run_"), med("apply_")

print()
print(f"## backstop snapshot benchmark ({datetime.datetime.now():%Y-%m-%d %H:%M})")
print()
print(f"- tree: {os.environ['TREE']} — {stats['files']:,} files in scope, {stats['bytes']/1e6:.0f} MB "
      f"(du: {int(os.environ['TREE_DU'])/1e6:.0f} MB), {stats['dirs']:,} dirs ({stats['empty_dirs']} empty), "
      f"depth ≤ {stats['max_depth']}; file size median {stats['median']} B, p90 {stats['p90']} B, "
      f"p99 {stats['p99']} B, max {stats['max']/1e6:.1f} MB; kinds {stats['kinds']}; plus 300 ignored files "
      f"under target/; params {os.environ['PARAMS']}")
print(f"- change set: {stats['changed_files']} files, {stats['changed_bytes']/1e6:.1f} MB originally, rewritten "
      f"with fresh content (same content for backstop and git)")
print(f"- backstop: {os.environ['BS_VERSION']}, {os.environ['BS_SOURCE']}"
      + (f" ({os.environ['BS_DIRTY']} uncommitted change(s) under src/ and Cargo.*)" if os.environ['BS_DIRTY'] != "?" else "")
      + f"; store size after the first "
      f"snapshot {int(open(out + '/store-bytes').read())/1e6:.0f} MB; shadow git size after its first commit "
      f"{int(open(out + '/shadow-bytes').read())/1e6:.0f} MB")
print(f"- machine: {os.cpu_count()} cores; load average before {os.environ['LOAD_BEFORE']}, after "
      f"{os.environ['LOAD_AFTER']}; page cache: {'warm and cold (dropped) rows' if cold else 'warm only — could not drop it'}")
print(f"- wall time from a ns clock around /usr/bin/time; peak RSS from its %M; 'median of N' rows also "
      f"give the largest RSS of the N")
print()
print("| measurement | backstop | backstop RSS | git shadow | git RSS | backstop / git |")
print("|---|---:|---:|---:|---:|---:|")
def row(label, a, b):
    print(f"| {label} | {fmt_t(a)} | {fmt_m(a)} | {fmt_t(b)} | {fmt_m(b)} | {ratio(a, b)} |")
if cold:
    row("first snapshot, cold cache", bs_first_c, git_first_c)
row("first snapshot, warm cache", bs_first_w, git_first_w)
row(f"no-change snapshot, warm (median of {runs})", bs_nc_w, git_nc_w)
if cold:
    row("no-change snapshot, cold cache", bs_nc_c, git_nc_c)
row(f"snapshot after {os.environ['CHANGES']} changed files (median of {cruns})", bs_chg, git_chg)
row(f"undo / `git reset --hard HEAD~1` of them (median of {cruns})", bs_undo, git_restore)
print()
print("| other measurement | wall | peak RSS |")
print("|---|---:|---:|")
print(f"| bare walk `find . -printf '%s %T@\\n'`, warm (median of {runs}) | {fmt_t(walk_w)} | {fmt_m(walk_w)} |")
if cold:
    print(f"| bare walk, cold cache | {fmt_t(walk_c)} | {fmt_m(walk_c)} |")
print(f"| `sync` right after git's warm first commit (git does not fsync loose objects; backstop's figure includes its syncfs) | {fmt_t(one('git_first_sync'))} | — |")
print(f"| the change command alone (write {os.environ['CHANGES']} files, python) (median of {cruns}) | {fmt_t(apply_)} | {fmt_m(apply_)} |")
print(f"| `backstop run -- <that command>` in total (median of {cruns}) | {fmt_t(bs_run)} | {fmt_m(bs_run)} (max of backstop and the command) |")
if med("bs_before_run_"):
    print(f"| … the same run by the earlier build (BACKSTOP_BIN_BEFORE) | {fmt_t(med('bs_before_run_'))} | {fmt_m(med('bs_before_run_'))} |")
    print(f"| `backstop undo` of it by the earlier build (this build: {fmt_t(bs_undo)}) | {fmt_t(med('bs_before_undo_'))} | {fmt_m(med('bs_before_undo_'))} |")

# Split of each run by its record's timestamps: record.started_at is set after the
# before-snapshot, record.finished_at before the after-diff.
def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e9
pre, cmd, post = [], [], []
for r in range(1, cruns + 1):
    try:
        rec = json.load(open(f"{out}/bs_run_{r}.record.json"))
    except (OSError, ValueError):
        continue
    m = rows[f"bs_run_{r}"]
    s, f = parse(rec["started_at"]), parse(rec["finished_at"])
    pre.append((s - m["t0"]) / 1e6)
    post.append((m["t1"] - f) / 1e6)
    cmd.append(sum(a["duration_ms"] for a in rec["attempts"]))
    nchg = len(rec["snapshot"]["changes"])
if pre:
    print(f"| … of which: process start + before-snapshot (to record.started_at) | {statistics.median(pre):.0f} ms | |")
    print(f"| … the command (attempt duration_ms) | {statistics.median(cmd):.0f} ms | |")
    print(f"| … after-diff + record update + exit (from record.finished_at) | {statistics.median(post):.0f} ms | |")
    print(f"| … estimate of the after-diff alone: run total − no-change snapshot − command | "
          f"{bs_run[0] - bs_nc_w[0] - statistics.median(cmd):.0f} ms | |")
    print(f"| (changes the last run recorded) | {nchg} | |")

print()
print("backstop's own figures (`snapshot --json`):")
names = ["bs_first_cold", "bs_first_warm"] + [f"bs_nochange_warm_{i}" for i in range(1, runs + 1)] \
    + ["bs_nochange_cold"] + [f"bs_after_change_{r}" for r in range(1, cruns + 1)]
for n in names:
    j = js(n)
    if j is None:
        continue
    print(f"  {n:<22} entries {j['entries']:>7}  files {j['files']:>7}  bytes {j['bytes']:>10}  read {j['read']:>6}  "
          f"from_cache {j['from_cache']:>6}  skipped {j['skipped']}  elapsed_ms {j['elapsed_ms']:>9.1f}  "
          f"(wall {rows[n]['ms']:.0f} ms)")
print()
print("samples (ms): " + "; ".join(
    f"{p.rstrip('_')}: " + ", ".join(f"{x['ms']:.0f}" for x in series(p))
    for p in ["walk_warm_", "bs_nochange_warm_", "git_nochange_warm_", "bs_after_change_",
              "git_after_change_", "bs_run_", "bs_undo_", "git_restore_", "apply_"]))

# Aims.
# A run's %M is the largest of backstop and the command it ran (measured alone as apply_N):
# it counts as backstop's when it is above the command's own peak.
apply_rss = max((x["rss"] for x in series("apply_")), default=0)
bs_rss_rows = {k: v["rss"] for k, v in rows.items() if k.startswith("bs_")
               and not k.startswith("bs_before_")
               and (not k.startswith("bs_run_") or v["rss"] > apply_rss)}
bs_rss_max = max(bs_rss_rows, key=bs_rss_rows.get)
bs_rss = bs_rss_rows[bs_rss_max]
def verdict(ok):
    return "met" if ok else "NOT met"
print()
print("Aims (from the issue):")
firsts = [("warm", bs_first_w, git_first_w)] + ([("cold", bs_first_c, git_first_c)] if cold else [])
for label, a, b in firsts:
    print(f"- first snapshot at most half of git's time ({label}): {fmt_t(a)} vs {fmt_t(b)} "
          f"= {a[0] / b[0]:.2f}x of git → {verdict(a[0] <= 0.5 * b[0])}")
print(f"- no-change snapshot within 1.5x of the bare walk (warm medians): {fmt_t(bs_nc_w)} vs {fmt_t(walk_w)} "
      f"= {bs_nc_w[0] / walk_w[0]:.2f}x → {verdict(bs_nc_w[0] <= 1.5 * walk_w[0])}")
if cold:
    print(f"  (cold, for context: {fmt_t(bs_nc_c)} vs {fmt_t(walk_c)} = {bs_nc_c[0] / walk_c[0]:.2f}x → "
          f"{verdict(bs_nc_c[0] <= 1.5 * walk_c[0])})")
print(f"- no-change snapshot no slower than git (warm medians): {fmt_t(bs_nc_w)} vs {fmt_t(git_nc_w)} "
      f"→ {verdict(bs_nc_w[0] <= git_nc_w[0])}")
if cold:
    print(f"  (cold, for context: {fmt_t(bs_nc_c)} vs {fmt_t(git_nc_c)} → {verdict(bs_nc_c[0] <= git_nc_c[0])})")
print(f"- peak memory under 100 MB (largest max RSS of any backstop command, {bs_rss_max}): "
      f"{bs_rss / 1024:.1f} MB → {verdict(bs_rss < 100 * 1024)}")
print("  per command (largest of its samples): " + ", ".join(
    f"{p.rstrip('_')} {max(x['rss'] for x in series(p)) / 1024:.1f} MB"
    for p in ["bs_nochange_warm_", "bs_after_change_", "bs_run_", "bs_undo_"] if series(p))
    + "".join(f", {n} {rows[n]['rss'] / 1024:.1f} MB" for n in ["bs_first_cold", "bs_first_warm", "bs_nochange_cold"] if n in rows)
    + f" (a run's figure includes its command, which alone peaks at {apply_rss / 1024:.1f} MB)")
# u. The unchanged protected run (issue 10, part 3), before and after, against the
# walk and git's re-add measured in the same rounds.
walk_u, git_readd = med("walk_u_"), med("git_readd_")
run_u, run_u_before = med("bs_run_unchanged_"), med("bs_before_run_unchanged_")
nc_before = med("bs_before_nochange_")
print()
def cpu(prefix):
    s = series(prefix)
    return statistics.median(x["cpu"] for x in s) if s else None
print(f"Unchanged protected run `backstop -q run -- true` (median of {runs}, interleaved with the walk and `git add -A`;")
print("CPU = user + system time, what it costs when no second core is free):")
print("| measurement | wall | CPU | peak RSS | / walk | / git add -A |")
print("|---|---:|---:|---:|---:|---:|")
for label, p in [("bare walk `find -printf`", "walk_u_"), ("shadow git re-add `git add -A`", "git_readd_"),
                 ("backstop run, before (BACKSTOP_BIN_BEFORE)", "bs_before_run_unchanged_"),
                 ("backstop run, this build", "bs_run_unchanged_"),
                 ("no-change snapshot, before", "bs_before_nochange_"),
                 ("no-change snapshot, this build (rounds b.)", "bs_nochange_warm_")]:
    m = med(p)
    if m is not None:
        print(f"| {label} | {fmt_t(m)} | {cpu(p):.0f} ms | {fmt_m(m)} | {ratio(m, walk_u)} | {ratio(m, git_readd)} |")
if run_u:
    print(f"- unchanged run within 1.5x of the walk: {ratio(run_u, walk_u)} → {verdict(run_u[0] <= 1.5 * walk_u[0])}")
    print(f"- unchanged run no slower than git's re-add: {ratio(run_u, git_readd)} → {verdict(run_u[0] <= git_readd[0])}")
    cw, cr, cg = cpu("walk_u_"), cpu("bs_run_unchanged_"), cpu("git_readd_")
    if cw and cg:
        print(f"  (CPU time, for context: run {cr:.0f} ms = {cr / cw:.2f}x the walk's, {cr / cg:.2f}x git's re-add)")

# k. The git checkout (issue 10, part 1), against `git status` on it.
if int(os.environ.get("CO_ROUNDS", "0")) > 0:
    st = med("co_git_status_")
    print()
    print(f"Git checkout of the same tree (one pack, as cloned; median of {os.environ['CO_ROUNDS']}, "
          "interleaved with `git status --porcelain`):")
    print("| measurement | wall | CPU | peak RSS | / git status |")
    print("|---|---:|---:|---:|---:|")
    for label, p in [("`git status --porcelain`", "co_git_status_"),
                     ("backstop first snapshot (fresh store)", "co_first_snapshot_"),
                     ("backstop first protected run `run -- true` (fresh store)", "co_first_run_"),
                     ("backstop unchanged run", "co_run_unchanged_"),
                     ("before: first snapshot (BACKSTOP_BIN_BEFORE)", "co_before_first_snapshot_"),
                     ("before: first protected run", "co_before_first_run_"),
                     ("before: unchanged run", "co_before_run_unchanged_")]:
        m = med(p)
        if m is not None:
            print(f"| {label} | {fmt_t(m)} | {cpu(p):.0f} ms | {fmt_m(m)} | {ratio(m, st)} |")
    for label, n in [("`git status` after 1,000 changed files", "co_git_status_changed"),
                     ("backstop snapshot after 1,000 changed files", "co_after_change"),
                     ("run: rewrite 1,000 files and `rm -rf .git`", "co_run_change_rm_git"),
                     ("`backstop undo` of that run (checked byte for byte)", "co_undo")]:
        m = one(n)
        if m is not None:
            print(f"| {label} | {fmt_t(m)} | {rows[n]['cpu']:.0f} ms | {fmt_m(m)} | {ratio(m, st)} |")
    j = js("co_first_snapshot_1")
    if j:
        print(f"(first snapshot: {j['from_git']} files from git, {j['read']} read)")
    fr = med("co_first_run_")
    print(f"- first protected run within 2x `git status`: {ratio(fr, st)} → {verdict(fr[0] <= 2 * st[0])}")

# Sanity: every snapshot was of the bench tree, each change round read exactly the changed
# files, and each run recorded exactly them.
warnings = []
for f in sorted(glob.glob(f"{out}/bs_*.out")) + sorted(glob.glob(f"{out}/bs_prime_*.json")):
    try:
        j = json.load(open(f))
    except ValueError:
        continue
    if isinstance(j, dict) and "root" in j and j["root"] != os.environ["TREE"]:
        warnings.append(f"{os.path.basename(f)}: a snapshot of {j['root']}, not of the bench tree")
for r in range(1, cruns + 1):
    j = js(f"bs_after_change_{r}")
    if j and j["read"] != int(os.environ["CHANGES"]):
        warnings.append(f"bs_after_change_{r} read {j['read']} files, not {os.environ['CHANGES']}")
    try:
        n = len(json.load(open(f"{out}/bs_run_{r}.record.json"))["snapshot"]["changes"])
        if n != int(os.environ["CHANGES"]):
            warnings.append(f"run {r} recorded {n} changes, not {os.environ['CHANGES']}")
    except (OSError, ValueError, KeyError, TypeError):
        warnings.append(f"run {r}: no record")
print()
for w in warnings:
    print(f"WARNING: {w}")
print(f"took {int(os.environ['ELAPSED'])} s; raw figures in {out}/results.tsv")
PY
