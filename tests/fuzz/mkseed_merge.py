#!/usr/bin/env python3
"""tests/fuzz/mkseed_merge.py: seed inputs of fuzz_merge (format in fuzz_merge.c).

Usage: mkseed_merge.py OUTDIR

Writes valid chains that together use every block state in every layer
position (NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, FULLY and PARTIALLY_PRESENT,
the last with bitmaps of several grains), both sector sizes, 1 and 2 MiB
blocks, disks ending inside a block, and every operation (merge into the
base, --into a middle layer with TOP's child re-pointed, found or given with
--rebase, --keep-merged, convert, convert then merge), plus two inputs the
operations must refuse cleanly (another checkpoint of the destination; a
broken parent linkage).  The committed copies in regressions/merge/ were
written by this script.
"""
import os
import struct
import sys

SEC = 43
STATES = [0, 1, 2, 3, 6, 7]  # written as b & 7 (6 and 7 directly)


def geometry(mib, block2m=False, lss4k=False, tail=0):
    return (mib - 1) | (0x10 if block2m else 0) | (0x20 if lss4k else 0) | (tail << 6)


def section(i, nblocks, fixed=False, shift=0, rot=0):
    states = [STATES[(b + rot + i) % 6] for b in range(20)]
    if fixed:
        states = [6] * 20
    pats = [(0x5A + 37 * b + 11 * i) & 0xFF for b in range(20)]
    return bytes([1 if fixed else 0, (0x10 + 29 * i) & 0xFF, shift]) + bytes(states) + bytes(pats)


def seed(layers, geo, op, extra=0, fixed=False, shift=3, rot=0, muts=()):
    nfiles = layers + (1 if op & 4 else 0) + (1 if op & 0x80 else 0)
    body = bytes([layers - 2, geo, op, extra])
    for i in range(nfiles):
        body += section(i, 20, fixed=fixed and i == 0, shift=(shift + i) % 10, rot=rot)
    for m in muts:
        body += bytes(m[:4]) + struct.pack("<I", m[4])
    return body


SEEDS = {
    "seed-2-layers-all-states": seed(2, geometry(4), 0),
    "seed-2-layers-fixed-base": seed(2, geometry(3), 0, fixed=True),
    "seed-3-layers-into-child": seed(3, geometry(8, block2m=True), 1 | 4, shift=0),
    "seed-3-layers-into-rebase": seed(3, geometry(5, tail=1), 1 | 4, extra=4, rot=2),
    "seed-4-layers-4k-keep-merged": seed(4, geometry(6, lss4k=True, tail=2), 0 | 8, rot=1),
    "seed-4-layers-into-2-4k": seed(4, geometry(4, lss4k=True), 1 | 4, extra=1, rot=3),
    "seed-3-layers-convert": seed(3, geometry(5, tail=3), 2, shift=9),
    "seed-4-layers-convert-fixed-then-merge": seed(4, geometry(7), 3 | 16 | 0x40, rot=4),
    "seed-3-layers-convert-2m-from-1m": seed(3, geometry(6), 2 | 0x40, rot=5),
    # refusals: a checkpoint the merge would invalidate; TOP's parent
    # linkage naming no file (op 9 = LINK, sub-op 0, on layer 2)
    "seed-refuse-sibling": seed(3, geometry(2), 0 | 0x80),
    "seed-refuse-broken-linkage": seed(3, geometry(2), 0, muts=[(9, 2, 0, 0, 0x1234)]),
}

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
    os.makedirs(out, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(body)
    print("mkseed_merge: %d seeds in %s" % (len(SEEDS), out))
