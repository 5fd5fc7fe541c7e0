#!/usr/bin/env python3
"""inotify-cost.py DIR [ROUNDS] — what the change feed's watches cost the kernel on DIR.

Adds one inotify watch per directory under DIR (the mask backstop's feed uses), then
closes the inotify descriptor, and prints both times. The feed pays the first during
the walk before a run's command and the second when the run ends: on the 100,000-file
bench tree (6,250 directories) they are the part of an unchanged protected run that a
plain walk, or `git add -A`, does not pay. Linux only; no root needed.
"""
import ctypes
import os
import sys
import time

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_ONLYDIR = 0x400, 0x800, 0x01000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    dirs = [os.fsencode(d) for d, _, _ in os.walk(root)]
    files = sum(len(f) for _, _, f in os.walk(root))
    print(f"{root}: {len(dirs)} directories, {files} files")
    for r in range(rounds):
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            print(f"inotify_init1: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        for d in dirs:
            if libc.inotify_add_watch(fd, d, MASK) < 0:
                print(f"inotify_add_watch {d!r}: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
                return 1
        t1 = time.perf_counter()
        os.close(fd)
        t2 = time.perf_counter()
        print(f"round {r + 1}: add {1000 * (t1 - t0):.1f} ms ({1e6 * (t1 - t0) / len(dirs):.1f} µs each, "
              f"Python's call included), close {1000 * (t2 - t1):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
