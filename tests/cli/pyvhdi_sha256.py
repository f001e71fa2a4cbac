#!/usr/bin/python3
"""SHA-256 of the disk a VHDX chain shows, read through libvhdi (pyvhdi).

Usage: /usr/bin/python3 pyvhdi_sha256.py BASE [CHILD ...]

Files are given base first.  Each child is opened and chained to the file
before it with set_parent() (libvhdi checks parent_linkage against the
parent's DataWriteGuid), and the top file's whole virtual disk is read with
read_buffer_at_offset in 4 MiB pieces.  Prints the hex digest.

An independent oracle: libvhdi 20210425 shares no code with vhdxmerge.  It
ignores the log (use it on clean files only) and reads a child's ZERO block
through the bitmap, i.e. as parent data (fmt section 5.3).
"""
import hashlib
import sys

import pyvhdi


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    files = []
    for p in paths:
        f = pyvhdi.file()
        f.open(p)
        if files:
            f.set_parent(files[-1])
        files.append(f)
    top = files[-1]
    size = top.get_media_size()
    h = hashlib.sha256()
    off, step = 0, 4 << 20
    while off < size:
        n = min(step, size - off)
        buf = top.read_buffer_at_offset(n, off)
        if len(buf) != n:
            print(f"short read at {off}: {len(buf)} of {n}", file=sys.stderr)
            return 1
        h.update(buf)
        off += n
    print(h.hexdigest())
    for f in reversed(files):
        f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
