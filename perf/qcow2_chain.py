#!/usr/bin/env python3
"""perf/qcow2_chain.py: a qcow2 chain with the layout of a VHDX chain.

usage: qcow2_chain.py VHDXMERGE CHAIN_DIR OUT_DIR

CHAIN_DIR holds base.vhdx, snap01.avhdx, ... (vhdxmerge synth).  For each file,
`vhdxmerge plan --extents` lists the ranges that layer defines: data (written
here with qemu-io `write -P <pattern of the layer>`) and zeros (`write -z`).
OUT_DIR gets base.qcow2, snap01.qcow2, ... (qemu-img create -b, default 64 KiB
clusters), each on top of the one before.

Prints one JSON object: files (base first), commit_bytes (data clusters above
the base: what `qemu-img commit -b base` copies), convert_bytes (every data
cluster: what `qemu-img convert` copies), virtual_size.
"""
import json
import os
import subprocess
import sys


def plan_extents(vxm, path, into=None, new_file=None):
    cmd = [vxm, "plan", path, "--extents", "--json"]
    if into:
        cmd += ["--into", into]
    else:
        cmd += ["--new-file", new_file]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode not in (0, 5):  # 5: does not fit (irrelevant for a plan)
        sys.exit(f"qcow2_chain: {' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    vxm, src, dst = (os.path.abspath(a) if i else a for i, a in enumerate(sys.argv[1:]))
    os.makedirs(dst, exist_ok=True)
    names = sorted(n for n in os.listdir(src) if n.endswith(".avhdx"))
    layers = ["base.vhdx"] + names
    info = json.loads(subprocess.run([vxm, "info", os.path.join(src, "base.vhdx"), "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    vsize = info.get("virtual_size") or info["metadata"]["virtual_size"]
    files = []
    for i, name in enumerate(layers):
        path = os.path.join(src, name)
        q = os.path.join(dst, os.path.splitext(name)[0] + ".qcow2")
        if os.path.exists(q):
            os.unlink(q)
        if i == 0:
            p = plan_extents(vxm, path, new_file=os.path.join(dst, "plan-probe.vhdx"))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", q, str(vsize)], check=True)
        else:
            p = plan_extents(vxm, path, into=os.path.join(src, layers[i - 1]))
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                            os.path.basename(files[-1]), "-F", "qcow2", q, str(vsize)],
                           check=True, cwd=dst)
        pattern = 0x11 + (i * 0x25) % 0xE0  # never 0: qemu must not see zeros
        cmds = []
        for e in p["extent_list"]:
            if e["source"] == "zero":
                if i:  # zeros in the base are the qcow2 default
                    cmds.append(f"write -z {e['offset']} {e['length']}")
            else:
                cmds.append(f"write -P 0x{pattern:02x} {e['offset']} {e['length']}")
        cmds.append("flush")
        r = subprocess.run(["qemu-io", "-f", "qcow2", q], input="\n".join(cmds) + "\n",
                           capture_output=True, text=True)
        bad = [l for l in (r.stdout + r.stderr).splitlines() if "failed" in l or "rror" in l]
        if r.returncode or bad:
            sys.exit(f"qcow2_chain: qemu-io on {q} failed: {bad[:3]}")
        files.append(q)
    m = json.loads(subprocess.run(["qemu-img", "map", "--output=json", files[-1]],
                                  check=True, capture_output=True, text=True).stdout)
    base_depth = len(files) - 1
    commit = sum(e["length"] for e in m if e.get("data") and e["depth"] < base_depth)
    convert = sum(e["length"] for e in m if e.get("data"))
    print(json.dumps({"files": files, "commit_bytes": commit, "convert_bytes": convert,
                      "virtual_size": vsize}))


if __name__ == "__main__":
    main()
