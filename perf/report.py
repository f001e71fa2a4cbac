#!/usr/bin/env python3
"""perf/report.py: the table, the target verdicts and the plot of a perf/run.sh run.

usage: report.py OUT_DIR            reads OUT/runs.csv and OUT/meta.json, writes
                                    OUT/results.json, OUT/table.md, OUT/throughput.png
       report.py --plot RESULTS PNG (run by the above under a python3 that has
                                    matplotlib; installs python3-matplotlib with
                                    apt-get when none has it and we are root)

Every time is the median of the runs of one operation.  MB/s is 10^6 bytes
per second of the operation's own bytes (the unique data it has to deliver).
perf/run.sh times the raw copies, vhdxmerge, qemu-img, level by level and the
chain lengths in interleaved rounds (the CSV's run column is the round), and
the ratios between them are taken within a round, then the median over the
rounds: "x raw" divides the rate by that round's best direct-I/O copy (fio,
dd) of the same bytes; "vs qemu" divides the time of the round's qemu-img
peer (commit -t none for merges, convert -t none for convert) by this one's.
The copy followed by removing the files a merge removes (fio_copy_free_*) is
not one of the best copies: it is the limit of a merge's whole job, and the
merge into the base is also divided by it, round by round.
Operations timed outside the rounds (sizes, reflink, rss) are divided by the
median rates instead.  "disk busy %" is the share of the run's wall time the
disk had a request in flight (its io_ticks), the mean queue its requests'
summed time in the queue over the wall time (/proc/diskstats).  Busy alone
does not say the disk is saturated (one request at a time keeps it busy as
well: dd); the queue says how much the run asked of it.
"""
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

GB = 1e9


def med(xs):
    return statistics.median(xs) if xs else None


def load_runs(out):
    ops = {}
    with open(os.path.join(out, "runs.csv")) as f:
        for r in csv.DictReader(f):
            o = ops.setdefault(r["op"], {"section": r["section"], "op": r["op"], "label": r["label"],
                                         "runs": []})
            run = {k: float(r[k]) for k in ("bytes", "moved", "seconds", "copy_s", "user_s",
                                             "sys_s", "rss_kb", "load1")}
            run["round"] = int(r["run"])
            run["cleanup_s"] = float(r.get("cleanup_s") or 0)
            run["flush_s"] = float(r.get("flush_s") or 0)  # absent from older runs
            # the disk's counters over the run (absent from older runs)
            for k in ("disk_busy_pct", "disk_queue", "disk_read_bytes", "disk_write_bytes",
                      "disk_discard_bytes"):
                run[k] = float(r[k]) if r.get(k) else None
            o["runs"].append(run)
    res = {}
    for name, o in ops.items():
        rs = o["runs"]
        s = med([r["seconds"] for r in rs])
        b = med([r["bytes"] for r in rs])
        cpu = med([r["user_s"] + r["sys_s"] for r in rs])
        c = med([r["copy_s"] for r in rs])
        res[name] = {
            "section": o["section"], "label": o["label"], "n": len(rs),
            "bytes": b, "moved": med([r["moved"] for r in rs]), "seconds": s,
            "seconds_min": min(r["seconds"] for r in rs), "seconds_max": max(r["seconds"] for r in rs),
            "copy_s": c, "mbps": b / s / 1e6 if s else None,
            "copy_mbps": b / c / 1e6 if c else None,
            "cpu_s": cpu, "cpu_per_gb": cpu / (b / GB) if b else None,
            "rss_mib": max(r["rss_kb"] for r in rs) / 1024,
            "load1": med([r["load1"] for r in rs]),
            "cleanup_s": med([r["cleanup_s"] for r in rs]),
            "flush_s": med([r["flush_s"] for r in rs]),
            "disk_busy_pct": med([r["disk_busy_pct"] for r in rs if r["disk_busy_pct"] is not None]),
            "disk_queue": med([r["disk_queue"] for r in rs if r["disk_queue"] is not None]),
            "disk_discard_gb": med([r["disk_discard_bytes"] / GB for r in rs
                                    if r["disk_discard_bytes"] is not None]),
            "by_round": {r["round"]: r for r in rs},
        }
    return res


INTERLEAVED = ("raw", "vxm", "qemu", "levels", "layers")


def per_round(a, b, f):
    """f(run of a, run of b) for every round both ran; (median, list)."""
    xs = [f(a["by_round"][k], b["by_round"][k]) for k in sorted(a["by_round"]) if k in b["by_round"]]
    return med(xs), xs


def ratios(xs):
    return ", ".join(format(x, ".2f") for x in xs)


def disk_q(v):
    return "" if v["disk_queue"] is None else f" ({v['disk_queue']:.1f})"


def fmt(x, spec, dash="-"):
    return dash if x is None else format(x, spec)


def build(out):
    meta = json.load(open(os.path.join(out, "meta.json")))
    res = load_runs(out)
    # the plain copies; fio_copy_free_* (a copy, then removing the files a
    # merge removes) is the limit of another job, kept out of "the best copy"
    raw = [v for k, v in res.items() if v["section"] == "raw" and not k.startswith("fio_copy_free")]
    raw_free = next((v for k, v in res.items() if k.startswith("fio_copy_free")), None)
    raw_best = max((v["mbps"] for v in raw), default=None)
    # the best raw copy rate of each round
    best = {}
    for v in raw:
        for k, r in v["by_round"].items():
            if r["seconds"] > 0:
                best[k] = max(best.get(k, 0), r["bytes"] / r["seconds"] / 1e6)
    rawr = {"section": "raw", "by_round": {k: {"mbps": m} for k, m in best.items()}}
    # ... and before its fdatasync: the rate the device acknowledges (on a
    # virtio disk over a host page cache, the host's memory)
    best_nf = {}
    for v in raw:
        for k, r in v["by_round"].items():
            if r["flush_s"] > 0 and r["copy_s"] > 0:
                best_nf[k] = max(best_nf.get(k, 0), r["bytes"] / r["copy_s"] / 1e6)
    rawr_nf = {"section": "raw", "by_round": {k: {"mbps": m} for k, m in best_nf.items()}}
    q_commit = res.get("qemu_commit_none")
    q_convert = res.get("qemu_convert_none")
    for k, v in res.items():
        peer = q_convert if k.startswith(("convert", "qemu_convert")) else q_commit
        if v["section"] in INTERLEAVED:
            v["x_raw"], v["x_raw_rounds"] = per_round(
                v, rawr, lambda a, b: a["bytes"] / a["seconds"] / 1e6 / b["mbps"]) if best else (None, [])
            v["vs_qemu"], v["vs_qemu_rounds"] = per_round(
                v, peer, lambda a, b: b["seconds"] / a["seconds"]) if peer else (None, [])
        else:
            v["x_raw"] = v["mbps"] / raw_best if raw_best and v["mbps"] else None
            v["vs_qemu"] = peer["seconds"] / v["seconds"] if peer and v["seconds"] else None

    t = {}  # targets: (reached, measured text)
    mb = res.get("merge_base")
    mk = res.get("merge_base_keep")
    if mb and best:
        # the same merge less the seconds it spent removing the merged files
        # (what a copy of the same bytes does not do)
        nr, nr_rounds = per_round(mb, rawr, lambda a, b: a["bytes"] / max(a["seconds"] - a["cleanup_s"], 1e-9)
                                  / 1e6 / b["mbps"])
        mb["x_raw_less_removal"], mb["x_raw_less_removal_rounds"] = nr, nr_rounds
        # against the same copy followed by removing the same files
        fr, fr_rounds = per_round(mb, raw_free, lambda a, b: b["seconds"] / a["seconds"]) if raw_free else (None, [])
        mb["x_copy_free"], mb["x_copy_free_rounds"] = fr, fr_rounds
        nf = lambda a, b: a["bytes"] / a["seconds"] / 1e6 / b["mbps"]
        kf, kf_rounds = per_round(mk, rawr_nf, nf) if mk and best_nf else (None, [])
        t["merge >= 0.9x the best direct-I/O copy rate"] = (
            mb["x_raw"] >= 0.9,
            f"{mb['x_raw']:.2f}x (per round: {ratios(mb['x_raw_rounds'])}); "
            f"--keep-merged {fmt(mk and mk['x_raw'], '.2f')}x (per round: {ratios(mk['x_raw_rounds']) if mk else '-'}); "
            f"the merge less its removal of the merged files ({mb['cleanup_s']:.2f} s; "
            f"{fmt(mb['disk_discard_gb'], '.2f')} GB discarded at the device: the file system is mounted "
            f"with discard) {fmt(nr, '.2f')}x; "
            f"against the copy followed by rm of the same files ({fmt(raw_free and raw_free['cleanup_s'], '.2f')} s of rm) "
            f"{fmt(fr, '.2f')}x (per round: {ratios(fr_rounds)}); "
            f"copy phase {fmt(mb['copy_mbps'] and raw_best and mb['copy_mbps'] / raw_best, '.2f')}x of the best median; "
            f"every copy ends with an fdatasync: against the best copy before it (what the device acknowledged), "
            f"--keep-merged {fmt(kf, '.2f')}x (per round: {ratios(kf_rounds)})")
    if mb and q_commit:
        t["merge >= 1.15x faster than qemu-img commit -t none"] = (
            mb["vs_qemu"] >= 1.15, f"{mb['vs_qemu']:.2f}x (per round: {ratios(mb['vs_qemu_rounds'])}; "
                                   f"medians {q_commit['seconds']:.2f} s vs {mb['seconds']:.2f} s)")
    lq, lv = res.get("levels_qemu"), res.get("levels_vxm")
    if mb and (lq or lv):
        parts, first = [], None
        for name, l in (("qemu-img commit", lq), ("vhdxmerge", lv)):
            if l:
                r, rs = per_round(l, mb, lambda a, b: a["seconds"] / b["seconds"])
                first = r if first is None else first
                parts.append(f"{r:.1f}x over {name} level by level (per round: {ratios(rs)}; "
                             f"{l['seconds']:.1f} s, {l['moved'] / GB:.1f} GB written)")
        t["merge >= 10x faster than level by level"] = (
            first >= 10, "; ".join(parts) + f"; merge {mb['seconds']:.2f} s")
    lay = sorted((int(k.split("_")[1]), v) for k, v in res.items() if k.startswith("layers_"))
    if len(lay) >= 2:
        (n0, a), (n1, b) = lay[0], lay[-1]
        r, rs = per_round(b, a, lambda x, y: (x["seconds"] / x["bytes"]) / (y["seconds"] / y["bytes"]))
        t[f"{n1} layers within 1.2x of {n0} layers (time per unique byte)"] = (
            r <= 1.2, f"{r:.2f}x (per round: {ratios(rs)}; medians {b['seconds']:.2f} s for "
                      f"{b['bytes'] / GB:.2f} GB vs {a['seconds']:.2f} s for {a['bytes'] / GB:.2f} GB)")
    if mb and q_commit:
        t["CPU per GB <= qemu-img commit -t none"] = (
            mb["cpu_per_gb"] <= q_commit["cpu_per_gb"],
            f"{mb['cpu_per_gb']:.2f} vs {q_commit['cpu_per_gb']:.2f} CPU-s/GB")
    rf = [v for k, v in res.items() if k.startswith("reflink_")]
    if rf:
        big = max(rf, key=lambda v: v["bytes"])
        t[f"reflink merge of {big['bytes'] / 2**30:.1f} GiB unique < 2 s"] = (
            big["seconds"] < 2 and big["bytes"] >= 7.5 * 2**30,
            f"{big['seconds']:.2f} s (copy phase {fmt(big['copy_s'], '.2f')} s)")
    rm = res.get("rss_merge")
    if rm:
        t["peak RSS < 128 MiB (big virtual disk, many layers)"] = (
            rm["rss_mib"] < 128, f"{rm['rss_mib']:.0f} MiB ({rm['label']})")

    for v in res.values():
        v["by_round"] = {str(k): r for k, r in v["by_round"].items()}
    results = {"meta": meta, "raw_best_mbps": raw_best, "raw_best_mbps_by_round": best, "ops": res,
               "targets": {k: {"reached": bool(v[0]), "measured": v[1]} for k, v in t.items()}}
    json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=1)

    L = []
    m = meta
    L.append(f"Machine: {m['cpu']}, {m['cpus']} vCPU, {m['mem_bytes'] / 2**30:.0f} GiB RAM, "
             f"kernel {m['kernel']}, disk {m['disk']} ({'non-rotational' if m.get('rotational') == '0' else 'reports rotational'}, "
             f"{m['scheduler']}), {m['fs']}; {m['fio']}, {m['qemu_img']}; vhdxmerge {m['git']}.")
    p = m["params"]
    L.append(f"Chain: {p['size']} virtual, {p['layers']} layers, {p['block_size']} blocks, "
             f"partial {p['partial']}, zero {p['zero']}, seed {p['seed']}; "
             f"caches {'dropped before every run' if m['caches_dropped'] else 'NOT dropped (not root)'}; "
             f"medians of {m['runs']} runs ({m['level_runs']} for level by level), the ratios medians of "
             f"per-round ratios (interleaved rounds); "
             f"load average {' '.join(m['load_start'])} at the start, {' '.join(m.get('load_end', ['?']))} at the end "
             f"(other jobs share the machine: timings are noisy).")
    L.append("")
    L.append("| operation | GB | median s (min-max) | MB/s | x raw copy | vs qemu peer | CPU s/GB | peak RSS MiB | load "
             "| disk busy % (mean queue) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    order = ["raw", "vxm", "qemu", "levels", "layers", "sizes", "reflink", "rss"]
    for sec in order:
        for k, v in sorted(((k, v) for k, v in res.items() if v["section"] == sec),
                           key=lambda kv: (kv[1]["bytes"] if sec in ("sizes", "reflink") else 0)):
            extra = ""
            if sec == "levels":
                extra = f" ({v['moved'] / GB:.1f} GB written" + (
                    f", rm {v['cleanup_s']:.2f} s)" if v["cleanup_s"] else ")")
            disc = (f", {v['disk_discard_gb']:.2f} GB discarded"
                    if v["disk_discard_gb"] and v["disk_discard_gb"] >= 0.01 else "")
            if sec == "raw":
                fl = f", fdatasync {v['flush_s']:.2f} s" if v["flush_s"] else ""
                rm = f", rm {v['cleanup_s']:.2f} s{disc}" if v["cleanup_s"] else ""
                extra = f" (copy {v['copy_s']:.2f} s{fl}{rm})" if fl or rm else ""
            if sec == "vxm" and v["copy_s"]:
                extra = f" (copy phase {v['copy_s']:.2f} s" + (
                    f", removing merged files {v['cleanup_s']:.2f} s{disc})" if v["cleanup_s"] > 0.005 else ")")
            L.append(f"| {v['label']}{extra} | {v['bytes'] / GB:.2f} | {v['seconds']:.2f} "
                     f"({v['seconds_min']:.2f}-{v['seconds_max']:.2f}) | {fmt(v['mbps'], '.0f')} | "
                     f"{fmt(v['x_raw'], '.2f')} | {fmt(v['vs_qemu'], '.2f')} | {fmt(v['cpu_per_gb'], '.2f')} | "
                     f"{v['rss_mib']:.0f} | {fmt(v['load1'], '.1f')} | "
                     f"{fmt(v['disk_busy_pct'], '.0f')}{disk_q(v)} |")
    L.append("")
    L.append("| target | reached | measured |")
    L.append("|---|---|---|")
    for k, v in t.items():
        L.append(f"| {k} | {'yes' if v[0] else '**no**'} | {v[1]} |")
    open(os.path.join(out, "table.md"), "w").write("\n".join(L) + "\n")
    print("\n".join(L))
    plot(out)


def plot_python():
    for py in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if py and subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return py
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("report: installing python3-matplotlib for the plot", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "python3-matplotlib"], stdout=subprocess.DEVNULL)
        if subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return "/usr/bin/python3"
    return None


def plot(out):
    py = plot_python()
    if not py:
        print("report: no matplotlib, no plot", file=sys.stderr)
        return
    subprocess.run([py, os.path.abspath(__file__), "--plot", os.path.join(out, "results.json"),
                    os.path.join(out, "throughput.png")], check=True)


def draw(results_path, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = json.load(open(results_path))
    ops = r["ops"]
    raw = r["raw_best_mbps"]
    qc = ops.get("qemu_commit_none")
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.6))

    lay = sorted((int(k.split("_")[1]), v) for k, v in ops.items() if k.startswith("layers_"))
    a = ax[0]
    if lay:
        a.plot([n for n, _ in lay], [v["mbps"] for _, v in lay], "o-", label="vhdxmerge merge (whole run)")
        a.plot([n for n, _ in lay], [v["copy_mbps"] for _, v in lay], "s--", label="vhdxmerge copy phase")
    if raw:
        a.axhline(raw, color="k", ls=":", label="direct-I/O copy limit")
    if qc:
        a.axhline(qc["mbps"], color="tab:red", ls="-.", label="qemu-img commit -t none (main chain)")
    a.set_xlabel("files in the chain")
    a.set_ylabel("MB/s of unique data")
    a.set_title("throughput vs chain length (equal unique bytes)")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8)

    a = ax[1]
    for pre, lab, mk in (("size_", "copy path (ext4)", "o-"), ("reflink_", "reflink path (XFS)", "s-")):
        pts = sorted((v["bytes"] / 2**30, v) for k, v in ops.items() if k.startswith(pre))
        if pts:
            a.plot([x for x, _ in pts], [v["mbps"] for _, v in pts], mk, label=lab)
    for k, lab, mk in (("merge_base", "main chain, merged files removed", "D"),
                       ("merge_base_keep", "main chain, --keep-merged", "^")):
        if ops.get(k):
            a.plot([ops[k]["bytes"] / 2**30], [ops[k]["mbps"]], mk, label=lab)
    if raw:
        a.axhline(raw, color="k", ls=":", label="direct-I/O copy limit")
    a.set_yscale("log")
    a.set_xlabel("unique GiB above the base")
    a.set_ylabel("MB/s of unique data")
    a.set_title("throughput vs data size")
    a.legend(fontsize=8)

    a = ax[2]
    for pre, lab, mk in (("size_", "copy path (ext4)", "o-"), ("reflink_", "reflink path (XFS)", "s-")):
        pts = sorted((v["bytes"] / 2**30, v) for k, v in ops.items() if k.startswith(pre))
        if pts:
            a.plot([x for x, _ in pts], [v["seconds"] for _, v in pts], mk, label=lab)
    a.axhline(2, color="tab:green", ls=":", label="2 s (reflink target at 8 GiB)")
    a.set_xlabel("unique GiB above the base")
    a.set_ylabel("merge seconds (median)")
    a.set_title("merge time vs data size")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8)

    m = r["meta"]
    fig.suptitle(f"vhdxmerge, {m['cpus']} vCPU {m['cpu']}, {m['disk']} {m['fs']}, "
                 f"load {' '.join(m['load_start'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--plot":
        draw(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        build(sys.argv[1])
    else:
        sys.exit(__doc__)
