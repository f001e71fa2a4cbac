#!/usr/bin/env python3
"""tests/fuzz/mkseed_merge.py: seed inputs of fuzz_merge (format in fuzz_merge.c).

Usage: mkseed_merge.py OUTDIR            the seeds
       mkseed_merge.py --pending OUTDIR  hand-made reproducers of the findings
                                         (regressions/merge/finding-*)

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


def plain(i, states, pattern=0xFF):
    """A section with explicit block states; a partial block's sectors are
    present where bit (sector & 7) of pattern is set (shift 0)."""
    states = list(states) + [0] * (20 - len(states))
    return bytes([0, (0x10 + 29 * i) & 0xFF, 0]) + bytes(states) + bytes([pattern] * 20)


def chain(geo, op, sections, muts, extra=0):
    layers = len(sections) - (1 if op & 4 else 0) - (1 if op & 0x80 else 0)
    body = bytes([layers - 2, geo, op, extra])
    return body + b"".join(sections) + b"".join(bytes(m[:4]) + struct.pack("<I", m[4]) for m in muts)


F, P, N = 6, 7, 0  # FULLY_PRESENT, PARTIALLY_PRESENT (bits from the 0xFF patterns), NOT_PRESENT
# op bytes of mutations: 0 BAT, 2 DUP, 5 META, 10 HEADER (fuzz_merge_input.h ops[])
PENDING = {
    # base block 1 takes block 0's payload; the child rewrites block 1: the
    # merge writes it in place, over block 0's data
    "dest-blocks-share-payload": chain(geometry(4), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                       [(2, 0, 1, 0, 0)]),
    # base block 1 (BAT entry 1) points at the base's own metadata region
    # (kind 4); the child rewrites block 1: the merge writes over the table
    "dest-block-in-own-metadata": chain(geometry(4), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                        [(0, 0, 1, F | 0x40, 0)]),
    # the same into the log (kind 3) and into the BAT region itself (kind 5)
    "dest-block-in-own-log": chain(geometry(4), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                   [(0, 0, 1, F | 0x30, 0)]),
    "dest-block-in-own-bat": chain(geometry(4), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                   [(0, 0, 1, F | 0x50, 0)]),
    # TOP's virtual size (1 MiB, META item 0 on file 1) below the base's 4 MiB
    "top-smaller-than-dest": chain(geometry(4), 0, [plain(0, [F, F, F, F]), plain(1, [F])],
                                   [(5, 1, 0, 0, 0)]),
    # the same merging --into snap1 (file 2 is TOP)
    "top-smaller-than-into-dest": chain(geometry(4), 1, [plain(0, [F] * 4), plain(1, [N, F]), plain(2, [F])],
                                        [(5, 2, 0, 0, 0)]),
    # D's child (snap2 of a merge --into snap1) has LogGuid set in both
    # headers and no log entry: HEADER op, both headers (a & 3 = 2), field 4
    "c1-logguid-without-entries": chain(geometry(2), 1, [plain(0, [F, F]), plain(1, [N, F]), plain(2, [F])],
                                        [(10, 2, 2 | (4 << 2), 0, 1)]),
    # TOP's child (file 3), re-pointed by the merge, has the same
    "child-logguid-without-entries": chain(geometry(2), 4, [plain(0, [F, F]), plain(1, [N, F]), plain(2, [F]),
                                                            plain(3, [N, F])],
                                           [(10, 3, 2 | (4 << 2), 0, 1)]),
    # the base's virtual size item says 1 MiB (META item 0), TOP's 4 MiB;
    # the base's BAT still holds the entries of blocks 1-3 (present, past its
    # end: the chain reads zeros there): the merge grows the base over them
    "dest-smaller-than-top": chain(geometry(4), 0, [plain(0, [F, F, F, F]), plain(1, [F])],
                                   [(5, 0, 0, 0, 0)]),
    # TOP's block 0 points at TOP's own metadata region; TOP is the layer the
    # merge --into snap1 links to snap1 (parent_linkage2, written into that
    # region)
    "source-block-in-own-metadata": chain(geometry(2), 1, [plain(0, [F, F]), plain(1, [F, F]), plain(2, [F])],
                                          [(0, 2, 0, F | 0x40, 0)]),
    # TOP's file parameters item flagged IsVirtualDisk (META table entry 0,
    # flags := 6): convert and merge copy TOP's IsVirtualDisk items
    "top-file-params-virtual-disk-convert": chain(geometry(2), 2, [plain(0, [F, F]), plain(1, [N, F])],
                                                  [(5, 1, 5, 0, (6 << 2) | 2)]),
    "top-file-params-virtual-disk-merge": chain(geometry(2), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                                [(5, 1, 5, 0, (6 << 2) | 2)]),
    # the base's headers put its log at 7 MiB, past the end of the 6 MiB file
    # (HEADER op, both headers, field 1: log offset v % 8 MiB, length
    # (v >> 8) % 4 MiB)
    "dest-log-past-eof": chain(geometry(2), 0, [plain(0, [F, F]), plain(1, [N, F])],
                               [(10, 0, 2 | (1 << 2), 0, 7 | (1 << 8))]),
    # TOP's child (re-pointed by the merge through its log) has its log moved
    # onto its block 0 payload at 5 MiB (HEADER field 1 on file 2)
    "child-log-over-payload": chain(geometry(2), 4, [plain(0, [F, F]), plain(1, [N, F]), plain(2, [F, F])],
                                    [(10, 2, 2 | (1 << 2), 0, 5 | (1 << 8))]),
    # the same in the base (the merge's own writes go through that log)
    "dest-log-over-payload": chain(geometry(2), 0, [plain(0, [F, F]), plain(1, [N, F])],
                                   [(10, 0, 2 | (1 << 2), 0, 4 | (1 << 8))]),
    # base block 1 has a reserved state (5, kept by bit 7 of the state
    # byte): the chain cannot read it; the child defines block 0 only, the
    # merge succeeds and leaves block 1 as it was
    "dest-entry-reserved-state": chain(geometry(2), 0, [plain(0, [F, 0x85]), plain(1, [F])], []),
}

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--pending":
        os.makedirs(sys.argv[2], exist_ok=True)
        for name, body in PENDING.items():
            with open(os.path.join(sys.argv[2], name), "wb") as f:
                f.write(body)
        print("mkseed_merge: %d reproducers in %s" % (len(PENDING), sys.argv[2]))
        sys.exit(0)
    out = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
    os.makedirs(out, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(body)
    print("mkseed_merge: %d seeds in %s" % (len(SEEDS), out))
