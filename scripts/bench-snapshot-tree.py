#!/usr/bin/env python3
"""bench-snapshot-tree.py — the deterministic tree that scripts/bench-snapshot.sh measures.

Everything follows from (seed, files, total MB, changes): the directory layout, every
file's size, kind, mode and content, which files a "change" rewrites and what they are
rewritten to. Any file's content can be regenerated on its own, so the tree can be
checked and repaired cheaply.

Subcommands (all take --seed --files --mb --changes):
  build DIR            write the tree into DIR (which must not exist)
  params               print the parameter stamp (a tree is reused only if it matches)
  stats                print the size distribution of the planned tree
  verify DIR           exit 0 if DIR has exactly the planned paths, sizes, modes and, for
                       the files a change touches, the planned original content
                       (--files-only: directories are not compared, as in a git checkout)
  restore DIR          rewrite the change-set files to their original content
  pack --version V OUT write the change set's version-V content to OUT (a marshal file)
  apply PACK DIR       write a pack's files into DIR, in place (fast: no generation)

The tree: `files` regular files in scope, in a random nested directory tree (depth up to
8, heavy-tailed files per directory), a dozen empty directories, a .gitignore that
ignores /target/ (which holds 300 more files, out of scope for backstop and git alike).
Sizes: ~98% small "source" files (log-normal, median ~2 KiB, 30 B .. 96 KiB), ~1% medium
(48 KiB .. 512 KiB), 24 large (1 .. 8 MiB), all scaled so the in-scope total is `mb` MB.
Content: text-like files are slices of a generated pseudo-source corpus (compresses ~3-4x
with zlib) headed by a unique line; binary-like files are random bytes, some with a
compressible part. No two files share content.
"""

import marshal
import os
import sys


def write(path, data, mode):
    with open(path, "wb") as f:
        f.write(data)
    if (os.stat(path).st_mode & 0o777) != mode:
        os.chmod(path, mode)


# `apply` is the command a measured `backstop run` runs: keep its start-up small.
if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "apply":
    with open(sys.argv[2], "rb") as f:
        items = marshal.load(f)
    for path, data, mode in items:
        write(os.path.join(sys.argv[3], path), data, mode)
    sys.exit(0)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402

GENERATOR_VERSION = 3
NDIRS_PER_FILE = 1 / 16
EMPTY_DIRS = 12
IGNORED_FILES = 300
LARGE_FILES = 24
MEDIUM_SHARE = 0.01
CORPUS_BYTES = 6 << 20

TEXT_EXT = [".rs", ".py", ".js", ".ts", ".go", ".c", ".h", ".md", ".json", ".yaml",
            ".toml", ".txt", ".html", ".css", ".java", ".rb"]
SMALL_BIN_EXT = [".png", ".ico", ".bin", ".woff2", ".gz"]
MEDIUM_TEXT_EXT = [".json", ".csv", ".min.js", ".svg", ".lock"]
MEDIUM_BIN_EXT = [".png", ".jpg", ".pdf", ".wasm"]
LARGE_TEXT_EXT = [".log", ".csv", ".sql"]
LARGE_BIN_EXT = [".tar", ".zip", ".bin", ".mp4"]
KEYWORDS = ["fn", "let", "if", "else", "return", "for", "while", "match", "struct", "impl",
            "pub", "use", "mod", "const", "static", "self", "def", "class", "import",
            "from", "func", "var", "type", "interface", "async", "await", "try", "catch"]


def syllable_word(rng, lo=1, hi=4):
    cons = "bcdfghjklmnprstvwz"
    vow = "aeiou"
    return "".join(rng.choice(cons) + rng.choice(vow) for _ in range(rng.randint(lo, hi)))


class Plan:
    def __init__(self, seed, files, mb, changes):
        self.seed, self.files, self.mb, self.changes = seed, files, mb, changes
        rng = random.Random(f"layout:{seed}:{files}:{mb}")
        # Directories: a random recursive tree rooted at "" (the tree's root).
        ndirs = max(20, int(files * NDIRS_PER_FILE))
        tops = ["src", "lib", "vendor", "docs", "assets", "tests", "tools", "web", "config",
                "data", "packages", "scripts"]
        dirs = [""]
        depth = {"": 0}
        children = {"": set()}
        for t in tops:
            dirs.append(t)
            depth[t] = 1
            children[t] = set()
            children[""].add(t)
        while len(dirs) < ndirs:
            parent = rng.choice(dirs[1:])
            if depth[parent] >= 8 or rng.random() > 0.7 ** (depth[parent] - 1):
                continue
            name = syllable_word(rng, 1, 3)
            if rng.random() < 0.2:
                name += rng.choice(["_test", "-utils", "s", "2", "_impl", "-core"])
            if name in children[parent]:
                continue
            path = f"{parent}/{name}"
            dirs.append(path)
            depth[path] = depth[parent] + 1
            children[path] = set()
            children[parent].add(name)
        leaves = [d for d in dirs[len(tops) + 1:] if not children[d]]
        self.empty_dirs = sorted(rng.sample(leaves, min(EMPTY_DIRS, len(leaves) // 2)))
        empty = set(self.empty_dirs)
        holders = [d for d in dirs if d not in empty]
        weights = [rng.paretovariate(1.1) for _ in holders]
        homes = rng.choices(holders, weights=weights, k=files)
        self.dirs = sorted(dirs[1:])

        # Files: kind, size (before scaling), name.
        large = set(rng.sample(range(files), min(LARGE_FILES, files)))
        raw = []
        kinds = []
        for i in range(files):
            if i in large:
                size = math.exp(rng.uniform(math.log(1 << 20), math.log(8 << 20)))
                kind = "ltext" if rng.random() < 0.4 else "lbin"
            elif rng.random() < MEDIUM_SHARE:
                size = math.exp(rng.uniform(math.log(48 << 10), math.log(512 << 10)))
                kind = "mtext" if rng.random() < 0.5 else "mbin"
            else:
                size = min(max(rng.lognormvariate(math.log(2200), 1.0), 30), 96 << 10)
                r = rng.random()
                kind = "text" if r < 0.88 else ("bin" if r < 0.95 else "mixed")
            raw.append(size)
            kinds.append(kind)
        scale = mb * 1_000_000 / sum(raw)
        self.sizes = [max(1, int(s * scale)) for s in raw]
        self.kinds = kinds
        self.paths = []
        self.modes = []
        seen = set()
        for i in range(files):
            kind = kinds[i]
            ext = {
                "text": TEXT_EXT, "mixed": SMALL_BIN_EXT, "bin": SMALL_BIN_EXT,
                "mtext": MEDIUM_TEXT_EXT, "mbin": MEDIUM_BIN_EXT,
                "ltext": LARGE_TEXT_EXT, "lbin": LARGE_BIN_EXT,
            }[kind]
            mode = 0o644
            e = rng.choice(ext)
            if kind == "text" and rng.random() < 0.01:
                e, mode = ".sh", 0o755
            while True:
                name = syllable_word(rng, 1, 4) + e
                path = f"{homes[i]}/{name}".lstrip("/")
                if path not in seen and path.split("/")[-1] != ".gitignore":
                    break
                name = f"{syllable_word(rng, 1, 2)}_{i}{e}"
                path = f"{homes[i]}/{name}".lstrip("/")
                if path not in seen:
                    break
            seen.add(path)
            self.paths.append(path)
            self.modes.append(mode)
        # A directory's name must not collide with a file's path.
        dirset = set(self.dirs)
        for i, p in enumerate(self.paths):
            if p in dirset:
                self.paths[i] = p + "_f"
        crng = random.Random(f"changes:{seed}:{files}:{changes}")
        self.changed = sorted(crng.sample(range(files), min(changes, files)))
        self._corpus = None

    def stamp(self):
        return {"generator": GENERATOR_VERSION, "seed": self.seed, "files": self.files,
                "mb": self.mb, "changes": self.changes}

    # --- content ------------------------------------------------------------------
    def corpus(self):
        if self._corpus is None:
            rng = random.Random(f"corpus:{self.seed}")
            idents = [syllable_word(rng, 1, 4) + rng.choice(["", "_id", "Count", "_buf", "s",
                                                             "Map", "_len", "Error"])
                      for _ in range(700)]
            lines = []
            total = 0
            while total < CORPUS_BYTES:
                ind = "    " * min(int(rng.expovariate(0.9)), 6)
                r = rng.random()
                a, b, c = rng.choice(idents), rng.choice(idents), rng.choice(idents)
                if r < 0.25:
                    line = f"{ind}let {a} = {b}.{c}({rng.choice(idents)});"
                elif r < 0.40:
                    line = f"{ind}{rng.choice(KEYWORDS)} {a}({b}, {c}) {{"
                elif r < 0.50:
                    line = f"{ind}}}"
                elif r < 0.62:
                    words = " ".join(rng.choice(idents) for _ in range(rng.randint(3, 12)))
                    line = f"{ind}// {words}"
                elif r < 0.72:
                    line = f'{ind}"{a}": "{b} {c}", "{rng.choice(idents)}": {rng.randint(0, 9)},'
                elif r < 0.80:
                    line = ""
                elif r < 0.90:
                    line = f"{ind}{a}.{b} = {c} + {rng.randint(0, 64)};"
                else:
                    line = f"{ind}return {a};"
                lines.append(line)
                total += len(line) + 1
            self._corpus = ("\n".join(lines) + "\n").encode()
        return self._corpus

    def text_bytes(self, rng, n):
        corpus = self.corpus()
        out = []
        left = n
        while left > 0:
            take = min(left, rng.randint(4096, 256 << 10))
            off = rng.randrange(0, len(corpus) - take) if take < len(corpus) else 0
            out.append(corpus[off:off + take])
            left -= take
        return b"".join(out)[:n]

    def content(self, i, version=0):
        """File i's bytes at `version` (0 is the original; others are a change's)."""
        rng = random.Random(f"content:{self.seed}:{i}:{version}")
        size = self.sizes[i]
        if version:
            size = max(1, int(size * rng.uniform(0.9, 1.1)))
        kind = self.kinds[i]
        header = f"// {self.paths[i]} #{i} v{version} seed {self.seed}\n".encode()
        if kind in ("text", "mtext", "ltext"):
            body = header + self.text_bytes(rng, max(0, size - len(header)))
        elif kind == "mixed":
            half = size // 2
            body = header + self.text_bytes(rng, max(0, half - len(header))) \
                + rng.randbytes(max(0, size - max(half, len(header))))
        else:
            # Binary: random bytes, a quarter of them (in blocks) a compressible pattern.
            parts = [header]
            left = size - len(header)
            while left > 0:
                n = min(left, rng.randint(512, 64 << 10))
                if rng.random() < 0.25:
                    pat = rng.randbytes(rng.randint(4, 64))
                    parts.append((pat * (n // len(pat) + 1))[:n])
                else:
                    parts.append(rng.randbytes(n))
                left -= n
            body = b"".join(parts)
        return body[:size] if len(body) >= size else body + b"\n" * (size - len(body))

    def ignored(self):
        rng = random.Random(f"ignored:{self.seed}")
        for k in range(IGNORED_FILES):
            yield f"target/debug/deps/{syllable_word(rng, 2, 4)}-{k:04x}.o", rng.randbytes(
                rng.randint(1000, 20000))


def build(plan, root):
    os.makedirs(root)
    for d in plan.dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, ".gitignore"), "w") as f:
        f.write("/target/\n*.o\n")
    for i, p in enumerate(plan.paths):
        write(os.path.join(root, p), plan.content(i), plan.modes[i])
        if i % 10000 == 9999:
            print(f"  {i + 1} files", file=sys.stderr, flush=True)
    for p, data in plan.ignored():
        full = os.path.join(root, p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        write(full, data, 0o644)


def verify(plan, root, quiet=False, files_only=False):
    bad = []
    want_files = {p: (plan.sizes[i], plan.modes[i]) for i, p in enumerate(plan.paths)}
    want_files[".gitignore"] = None
    want_dirs = set(plan.dirs)
    got_files, got_dirs = {}, set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel in ("target", ".git") or rel.startswith(("target/", ".git/")):
            continue
        for d in dirnames:
            r = os.path.normpath(os.path.join(rel, d))
            if r not in ("target", ".git"):
                got_dirs.add(r)
        for f in filenames:
            r = os.path.normpath(os.path.join(rel, f))
            st = os.lstat(os.path.join(dirpath, f))
            got_files[r] = (st.st_size, st.st_mode & 0o777)
    # A git checkout holds no empty directory: with files_only, only files are compared.
    if got_dirs != want_dirs and not files_only:
        bad.append(f"directories differ: {len(got_dirs ^ want_dirs)} differences")
    missing = want_files.keys() - got_files.keys()
    extra = got_files.keys() - want_files.keys()
    if missing or extra:
        bad.append(f"{len(missing)} missing file(s), {len(extra)} extra file(s)")
    for i in plan.changed:
        p = plan.paths[i]
        full = os.path.join(root, p)
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError as e:
            bad.append(f"{p}: {e}")
            continue
        if data != plan.content(i) or got_files.get(p, (0, 0))[1] != plan.modes[i]:
            bad.append(f"{p}: not the original content or mode")
    wrong_size = [p for p, w in want_files.items()
                  if w is not None and p in got_files and got_files[p] != w]
    if wrong_size:
        bad.append(f"{len(wrong_size)} file(s) with the wrong size or mode, e.g. {wrong_size[0]}")
    if not quiet:
        for b in bad[:10]:
            print(f"verify: {b}", file=sys.stderr)
    return not bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["build", "params", "stats", "verify", "restore", "pack",
                                    "apply"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--mb", type=int, default=600)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--files-only", action="store_true",
                    help="verify: compare files only (a git checkout has no empty directories)")
    a = ap.parse_args()

    if a.cmd == "apply":
        pack, root = a.args
        with open(pack, "rb") as f:
            items = marshal.load(f)
        for path, data, mode in items:
            write(os.path.join(root, path), data, mode)
        return 0

    plan = Plan(a.seed, a.files, a.mb, a.changes)
    if a.cmd == "params":
        print(json.dumps(plan.stamp(), sort_keys=True))
    elif a.cmd == "stats":
        s = sorted(plan.sizes)
        n = len(s)
        changed = sum(plan.sizes[i] for i in plan.changed)
        kinds = {}
        for k in plan.kinds:
            kinds[k] = kinds.get(k, 0) + 1
        print(json.dumps({
            "files": n, "bytes": sum(s), "dirs": len(plan.dirs),
            "empty_dirs": len(plan.empty_dirs),
            "median": s[n // 2], "p90": s[int(n * 0.9)], "p99": s[int(n * 0.99)],
            "max": s[-1], "kinds": kinds,
            "changed_files": len(plan.changed), "changed_bytes": changed,
            "max_depth": max(p.count("/") for p in plan.dirs) + 1,
        }, sort_keys=True))
    elif a.cmd == "build":
        build(plan, a.args[0])
    elif a.cmd == "verify":
        return 0 if verify(plan, a.args[0], files_only=a.files_only) else 1
    elif a.cmd == "restore":
        root = a.args[0]
        n = 0
        for i in plan.changed:
            full = os.path.join(root, plan.paths[i])
            want = plan.content(i)
            try:
                with open(full, "rb") as f:
                    same = f.read() == want
                same = same and (os.stat(full).st_mode & 0o777) == plan.modes[i]
            except OSError:
                same = False
            if not same:
                write(full, want, plan.modes[i])
                n += 1
        print(f"restored {n} file(s)", file=sys.stderr)
    elif a.cmd == "pack":
        if a.version < 1:
            ap.error("--version must be 1 or more (0 is the original)")
        items = [(plan.paths[i], plan.content(i, a.version), plan.modes[i])
                 for i in plan.changed]
        with open(a.args[0], "wb") as f:
            marshal.dump(items, f)
        print(f"pack v{a.version}: {len(items)} files, "
              f"{sum(len(d) for _, d, _ in items)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
