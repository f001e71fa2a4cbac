#!/usr/bin/env python3
"""perf/trace_summary.py [--bins S] PERF_SCRIPT_TEXT: the account perf/trace.sh prints.

Reads `perf script` output of block:block_rq_issue/complete and
io_uring:io_uring_submit_req/complete events.  Flush requests are the
block requests whose flags start with F (REQ_PREFLUSH, no data)."""
import re
import sys

EV = re.compile(r"\]\s+([\d.]+):\s+(\S+):\s+(.*)")
BLK = re.compile(r"\S+ (\S+) (?:\d+ )?\(\S*\) (\d+) \+ (\d+)")
REQ = re.compile(r"req (\S+),")
OP = re.compile(r"opcode (\S+),")


def main(argv):
    bins = 0.1
    if argv[:1] == ["--bins"]:
        bins, argv = float(argv[1]), argv[2:]
    t0 = None
    moved = {}                  # bin -> [read, written] bytes completed
    issued = {}                 # (sector, R/W) -> issue time (sizes come from issue)
    size = {}
    flushes, fl_open = [], []   # (start, seconds)
    sub, lat = {}, {}
    for line in open(argv[0]):
        m = EV.search(line)
        if not m:
            continue
        t, name, rest = float(m.group(1)), m.group(2), m.group(3)
        t0 = t if t0 is None else t0
        if name.startswith("block:"):
            b = BLK.match(rest)
            if not b:
                continue
            flags, sec, n = b.group(1), int(b.group(2)), int(b.group(3))
            if flags.startswith("F"):
                if name == "block:block_rq_issue":
                    fl_open.append(t)
                elif fl_open:
                    s = fl_open.pop(0)
                    flushes.append((s - t0, t - s))
                continue
            k = "W" if "W" in flags else "R" if "R" in flags else None
            if k is None or n == 0:
                continue
            if name == "block:block_rq_issue":
                issued[(sec, k)] = t
                size[(sec, k)] = n * 512
            elif (sec, k) in issued:
                del issued[(sec, k)]
                moved.setdefault(int((t - t0) / bins), [0, 0])[k == "W"] += size.pop((sec, k))
        elif name == "io_uring:io_uring_submit_req":
            r, o = REQ.search(rest), OP.search(rest)
            if r and o:
                sub[r.group(1)] = (t, o.group(1))
        elif name == "io_uring:io_uring_complete":
            r = REQ.search(rest)
            if r and r.group(1) in sub:
                ts, op = sub.pop(r.group(1))
                lat.setdefault(op, []).append(t - ts)
    if t0 is None:
        print("no events")
        return 1
    span = max(moved) * bins + bins if moved else 0
    rd = sum(v[0] for v in moved.values())
    wr = sum(v[1] for v in moved.values())
    print(f"{span:.2f} s of device activity: {rd / 1e6:.0f} MB read, {wr / 1e6:.0f} MB written")
    fl_s = sum(d for _, d in flushes)
    print(f"{len(flushes)} flush requests, {fl_s:.2f} s in all"
          + (": " + ", ".join(f"{s:.2f}+{d:.3f}" for s, d in flushes if d >= 0.02) if flushes else ""))
    in_fl = [0, 0]
    for b, v in moved.items():
        if any(s <= b * bins < s + d for s, d in flushes):
            in_fl[0] += v[0]
            in_fl[1] += v[1]
    print(f"moved while a flush was in flight: {in_fl[0] / 1e6:.0f} MB read, {in_fl[1] / 1e6:.0f} MB written")
    for op, ls in sorted(lat.items()):
        ls.sort()
        print(f"io_uring {op}: {len(ls)}, median {ls[len(ls) // 2] * 1e3:.2f} ms, "
              f"p90 {ls[int(len(ls) * 0.9)] * 1e3:.2f} ms")
    print(f"MB per {bins:g} s bin (read / written):")
    for b in range(max(moved) + 1 if moved else 0):
        r, w = moved.get(b, [0, 0])
        mark = " flush" if any(s <= b * bins < s + d for s, d in flushes) else ""
        print(f"  {b * bins:6.1f} {r / 1e6:6.0f} / {w / 1e6:6.0f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
