#!/usr/bin/env python3
"""pwrite+fdatasync of one batch size into four kinds of file blocks.

Why the commit log's fdatasyncs are slower than a device baseline that
rewrites its blocks (results/async-put/README.md): on ext4 a write into a
block the file never had must commit the block allocation with the data.

    scripts/fresh-blocks.py [DIR] [BATCH_BYTES] [OPS] [ROUNDS]
    defaults: /work/tmp-bench, 18432 (16 x 1,152 B records), 2000, 3

Per round and kind, prints fdatasyncs per second:
  sparse     a file sized with ftruncate, written sequentially (a new segment)
  fallocate  the same after posix_fallocate (unwritten extents)
  zeroed     the same after writing zeros over it and fsync (a warm segment)
  wrap       rewriting the same 16 batches over and over
Scratch files are removed.
"""
import os
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "/work/tmp-bench"
B = int(sys.argv[2]) if len(sys.argv) > 2 else 18 * 1024
N = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
os.makedirs(DIR, exist_ok=True)
path = os.path.join(DIR, "fresh-blocks-%d.tmp" % os.getpid())
buf = os.urandom(B)


def prepare(fd, kind, size):
    if kind == "sparse":
        os.ftruncate(fd, size)
    elif kind == "fallocate":
        os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
    elif kind == "zeroed":
        z = b"\0" * (1 << 20)
        for off in range(0, size, 1 << 20):
            os.pwrite(fd, z, off)
        os.fsync(fd)
    elif kind == "wrap":
        os.pwrite(fd, b"\0" * (B * 16), 0)
        os.fsync(fd)


def run(kind):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        prepare(fd, kind, N * B)
        t = time.monotonic()
        for i in range(N):
            off = (i % 16) * B if kind == "wrap" else i * B
            os.pwrite(fd, buf, off)
            os.fdatasync(fd)
        return N / (time.monotonic() - t)
    finally:
        os.close(fd)
        os.unlink(path)


print("dir=%s batch_bytes=%d ops=%d" % (DIR, B, N))
for r in range(1, ROUNDS + 1):
    for kind in ("sparse", "fallocate", "zeroed", "wrap"):
        print("round %d %-9s %8.0f fdatasync/s" % (r, kind, run(kind)), flush=True)
