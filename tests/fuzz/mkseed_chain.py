#!/usr/bin/env python3
"""tests/fuzz/mkseed_chain.py: a fuzz_chain input from a real chain.

Usage: mkseed_chain.py OUT IMAGE...   (base first, 2 to 4 images)

Each image becomes a raw-mode spec: the fuzz_open sparse format that
mkseed.py writes (header section, logs, regions and sector bitmaps; payload
left out, CRC-repair flags set), behind a mode byte of 1.  Layout of OUT (see
fuzz_chain.c): images - 2, flags 0, window 0x80, stop 0, then per image but
the last a u16 LE length, then the spec.
"""
import os
import struct
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
out, images = sys.argv[1], sys.argv[2:]
if not 2 <= len(images) <= 4:
    sys.exit("usage: mkseed_chain.py OUT IMAGE... (2 to 4 images, base first)")
body = bytes([len(images) - 2, 0, 0x80, 0])
with tempfile.TemporaryDirectory() as tmp:
    for i, img in enumerate(images):
        subprocess.run([sys.executable, os.path.join(here, "mkseed.py"), img, tmp, "s%d" % i],
                       check=True)
        with open(os.path.join(tmp, "open", "s%d" % i), "rb") as f:
            spec = b"\x01" + f.read()
        if i + 1 < len(images):
            if len(spec) > 0xFFFF:
                sys.exit("%s: %d bytes of sparse image, more than a u16 length holds" % (img, len(spec)))
            body += struct.pack("<H", len(spec))
        body += spec
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "wb") as f:
    f.write(body)
print("%s: %d images, %d bytes" % (out, len(images), len(body)))
