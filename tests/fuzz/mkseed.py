#!/usr/bin/env python3
"""tests/fuzz/mkseed.py: seed inputs for the fuzzers from one VHDX image.

Usage: mkseed.py IMAGE OUTDIR NAME [--raw-crc]

IMAGE may be a plain, .gz or .bz2 file; only its first 8 MiB are read (the
size fuzz_open expands to).  Writes, when the image has the structure:
  OUTDIR/open/NAME         sparse image for fuzz_open (format in fuzz_open.c):
                           every non-zero run of the header section, both
                           logs, the regions of both tables and the sector
                           bitmap blocks; payload blocks are left out
  OUTDIR/log/NAME          sparse log region + LogGuid for fuzz_log (the
                           header's LogGuid, or that of the newest entry of a
                           clean log; format in fuzz_log.c)
  OUTDIR/meta/NAME-{rt,md,loc,hdr,bat}   fuzz_meta inputs, one per parser
--raw-crc leaves the CRC-repair flags clear (for damaged files whose bad
checksum is the point); otherwise they are set so that mutations of a real
structure get past its checksum.
"""
import bz2
import gzip
import os
import struct
import sys

MAX = 8 << 20
MIB = 1 << 20
GUID_BAT = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
GUID_META = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
ITEM_PARAMS = bytes.fromhex("3767a1ca36fa434db3b633f0aa44e76b")
ITEM_VSIZE = bytes.fromhex("2442a52f1bcd7648b2115dbed83bf4b8")
ITEM_LSS = bytes.fromhex("1dbf41816fa90947ba47f233a8faab5f")
ITEM_LOCATOR = bytes.fromhex("2d5fd3a80bb34d45abf7d3d84834ab0c")


def read_image(path):
    opener = gzip.open if path.endswith(".gz") else bz2.open if path.endswith(".bz2") else open
    with opener(path, "rb") as f:
        return f.read(MAX)


def u16(b, o): return struct.unpack_from("<H", b, o)[0] if o + 2 <= len(b) else 0
def u32(b, o): return struct.unpack_from("<I", b, o)[0] if o + 4 <= len(b) else 0
def u64(b, o): return struct.unpack_from("<Q", b, o)[0] if o + 8 <= len(b) else 0


def nonzero_runs(img, lo, hi, gap=32):
    """(start, end) runs of non-zero bytes in img[lo:hi], merged across gaps."""
    hi = min(hi, len(img))
    runs, i = [], lo
    while i < hi:
        # skip zeros quickly, 4 KiB at a time
        if img[i] == 0:
            j = i
            while j < hi and img[j] == 0:
                if (j & 4095) == 0 and j + 4096 <= hi and not any(img[j:j + 4096]):
                    j += 4096
                else:
                    j += 1
            i = j
            continue
        j = i
        while j < hi:
            if img[j]:
                j += 1
                continue
            k = j
            while k < hi and k - j < gap and img[k] == 0:
                k += 1
            if k >= hi or k - j >= gap:
                break
            j = k
        runs.append((i, j))
        i = j
    return runs


def regions(img):
    """(bat_off, bat_len, meta_off, meta_len, all_regions) from copy 1, else copy 2."""
    out, allr = None, []
    for rt in (0x30000, 0x40000):
        if img[rt:rt + 4] != b"regi":
            continue
        got = {}
        for i in range(min(u32(img, rt + 8), 2047)):
            e = rt + 16 + 32 * i
            g, off, ln = bytes(img[e:e + 16]), u64(img, e + 16), u32(img, e + 24)
            got[g] = (off, ln)
            allr.append((off, ln))
        if out is None and GUID_BAT in got and GUID_META in got:
            out = got[GUID_BAT] + got[GUID_META]
    return out, allr


def current_header(img):
    hs = [o for o in (0x10000, 0x20000) if img[o:o + 4] == b"head"]
    if not hs:
        return None
    return max(hs, key=lambda o: u64(img, o + 8))


def metadata(img, moff, mlen):
    """{item guid: (abs offset, length)} of the system items."""
    items = {}
    if img[moff:moff + 8] != b"metadata":
        return items
    for i in range(min(u16(img, moff + 10), 2047)):
        e = moff + 32 + 32 * i
        if u32(img, e + 24) & 1:
            continue
        items[bytes(img[e:e + 16])] = (moff + u32(img, e + 16), u32(img, e + 20))
    return items


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def fit_to_cut(img, size):
    """Makes an image cut at 8 MiB consistent again: log entries that promise
    more than the cut, and BAT entries of blocks past it (they become
    NOT_PRESENT), are clamped.  The fuzzer's CRC flags fix the checksums."""
    img = bytearray(img)
    limit = size & ~(MIB - 1)
    h = current_header(img)
    if h is not None:
        loff, llen = u64(img, h + 72), u32(img, h + 68)
        for p in range(loff, min(loff + llen, size) - 64, 4096):
            if img[p:p + 4] == b"loge":
                for f in (48, 56):
                    if u64(img, p + f) > limit:
                        struct.pack_into("<Q", img, p + f, limit)
    reg, _ = regions(img)
    if reg:
        bat_off, bat_len, moff, mlen = reg
        items = metadata(img, moff, mlen)
        bs = u32(img, items[ITEM_PARAMS][0]) if ITEM_PARAMS in items else 0
        vs = u64(img, items[ITEM_VSIZE][0]) if ITEM_VSIZE in items else 0
        span = max(min(bs, vs), MIB)
        for p in range(bat_off, min(bat_off + bat_len, size), 8):
            e = u64(img, p)
            if e & 6 == 6 and (e & ~0xFFFFF) + span > size:
                struct.pack_into("<Q", img, p, 0)
    return bytes(img)


def seed_open(img, out, name, flags):
    size = len(img)
    if flags:
        img = fit_to_cut(img, size)
    ranges = [(0, MIB)]
    for o in (0x10000, 0x20000):
        if img[o:o + 4] == b"head":
            ranges.append((u64(img, o + 72), u64(img, o + 72) + u32(img, o + 68)))
    reg, allr = regions(img)
    ranges += [(off, off + ln) for off, ln in allr]
    if reg:
        bat_off, bat_len, moff, mlen = reg
        items = metadata(img, moff, mlen)
        if ITEM_PARAMS in items and ITEM_LSS in items:
            bs = u32(img, items[ITEM_PARAMS][0])
            lss = u32(img, items[ITEM_LSS][0])
            if bs and lss and (1 << 23) * lss >= bs:
                ratio = (1 << 23) * lss // bs
                for idx in range(ratio, bat_len // 8, ratio + 1):
                    e = u64(img, bat_off + 8 * idx)
                    if e & 7 == 6:
                        off = e & ~0xFFFFF
                        ranges.append((off, off + MIB))
    chunks = []
    for lo, hi in sorted(ranges):
        if lo >= size:
            continue
        for a, b in nonzero_runs(img, lo, min(hi, size)):
            while a < b:
                n = min(b - a, 0xFFFF)
                chunks.append((a, img[a:a + n]))
                a += n
    seen, body = set(), b""
    for a, data in chunks:
        if (a, len(data)) in seen:
            continue
        seen.add((a, len(data)))
        body += struct.pack("<IH", a, len(data)) + data
    write(os.path.join(out, "open", name), struct.pack("<IB", size, flags) + body)


def seed_log(img, out, name, flags):
    h = current_header(img)
    if h is None:
        return
    loff, llen = u64(img, h + 72), u32(img, h + 68)
    if loff >= len(img) or llen == 0:
        return
    log = img[loff:loff + min(llen, MIB)]
    guid = img[h + 48:h + 64]
    if not any(guid):  # clean: take the newest entry's LogGuid so that replay runs
        best = None
        for p in range(0, len(log) - 64, 4096):
            if log[p:p + 4] == b"loge" and (best is None or u64(log, p + 16) > u64(log, best + 16)):
                best = p
        if best is None:
            return
        guid = log[best + 32:best + 48]
    body = b"".join(struct.pack("<IH", a, b - a) + log[a:b]
                    for lo, hi in nonzero_runs(log, 0, len(log))
                    for a, b in ((x, min(x + 0xFFFF, hi)) for x in range(lo, hi, 0xFFFF)))
    write(os.path.join(out, "log", name), bytes([flags & 1]) + guid + struct.pack("<I", llen) + body)


def seed_meta(img, out, name, flags):
    base = os.path.join(out, "meta", name)
    if len(img) >= 0x40000:
        write(base + "-rt", bytes([0, (flags >> 1) & 1]) + img[0x30000:0x40000].rstrip(b"\0"))
    if len(img) >= 0x20000 + 4096:
        write(base + "-hdr", bytes([3, 3 if flags & 1 else 0]) + img[0x10000:0x11000] +
              img[0x20000:0x21000].rstrip(b"\0"))
    reg, _ = regions(img)
    if not reg:
        return
    bat_off, bat_len, moff, mlen = reg
    if moff + 0x10000 <= len(img):
        n = min(u16(img, moff + 10), 2047)
        table = img[moff:moff + 32 + 32 * n]
        items = img[moff + 0x10000:moff + min(mlen, MIB)].rstrip(b"\0")
        write(base + "-md", bytes([1]) + struct.pack("<H", len(table)) + table + items)
    items = metadata(img, moff, mlen)
    if ITEM_LOCATOR in items:
        off, ln = items[ITEM_LOCATOR]
        write(base + "-loc", bytes([2]) + img[off:off + min(ln, 0x10000)])
    if all(k in items for k in (ITEM_PARAMS, ITEM_VSIZE, ITEM_LSS)) and bat_off < len(img):
        p = items[ITEM_PARAMS][0]
        bat = img[bat_off:bat_off + min(bat_len, 8192 * 8)].rstrip(b"\0")
        bat += b"\0" * (-len(bat) % 8)
        geo = struct.pack("<QIIBQ", u64(img, items[ITEM_VSIZE][0]), u32(img, p),
                          u32(img, items[ITEM_LSS][0]), (u32(img, p + 4) >> 1) & 1, len(img))
        write(base + "-bat", bytes([4]) + geo + bat)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(__doc__)
    path, out, name = args
    flags = 0 if "--raw-crc" in sys.argv else 7
    img = read_image(path)
    seed_open(img, out, name, flags)
    seed_log(img, out, name, flags)
    seed_meta(img, out, name, flags)


if __name__ == "__main__":
    main()
