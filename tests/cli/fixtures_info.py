"""Asserts `vhdxmerge info --json` against each fixture's structure.json.

Fixtures are decompressed (sparse) into $VXM_TEST_TMP/fixtures once.  For the
two dirty-log files structure.json records the BAT *before* replay; the
replayed counts come from PROVENANCE.md and are listed in REPLAYED below.
"""
import json, os, subprocess, sys

fx = sys.argv[1]
tmp = os.path.join(os.environ.get("VXM_TEST_TMP", "/tmp/vxm-test"), "fixtures")
os.makedirs(tmp, exist_ok=True)
binary = os.environ.get("VXM_BIN", "vhdxmerge")

REPLAYED = {  # PROVENANCE.md: BAT after replay
    "vhdx-log-replay.vhdx": {"FULLY_PRESENT": 1, "ZERO": 3, "NOT_PRESENT": 28},
    "iotest-dirtylog-10G-4M.vhdx": {"FULLY_PRESENT": 18, "NOT_PRESENT": 10222},
}
ACTIVE_ENTRIES = {"vhdx-log-replay.vhdx": 2, "iotest-dirtylog-10G-4M.vhdx": 1}
STATES = {"NOT_PRESENT": "not_present", "UNDEFINED": "undefined", "ZERO": "zero",
          "UNMAPPED": "unmapped", "FULLY_PRESENT": "fully_present",
          "PARTIALLY_PRESENT": "partially_present"}

def decompress(folder, name):
    out = os.path.join(tmp, name)
    if os.path.exists(out):
        return out
    for ext, tool in ((".gz", "zcat"), (".bz2", "bzcat")):
        src = os.path.join(fx, folder, name + ext)
        if os.path.exists(src):
            part = out + ".part.%d" % os.getpid()
            subprocess.check_call("%s '%s' | cp --sparse=always /dev/stdin '%s'" % (tool, src, part), shell=True)
            os.rename(part, out)
            return out
    raise SystemExit("missing fixture %s/%s" % (folder, name))

checked = failed = 0
def expect(name, what, got, want):
    global checked, failed
    checked += 1
    if got != want:
        failed += 1
        print("FAIL %s: %s = %r, expected %r" % (name, what, got, want))

folders = sorted(d for d in os.listdir(fx) if os.path.isdir(os.path.join(fx, d)))
files = 0
for folder in folders:
    sj = os.path.join(fx, folder, "structure.json")
    if not os.path.exists(sj):
        continue
    for name, st in json.load(open(sj)).items():
        path = decompress(folder, name)
        r = subprocess.run([binary, "info", "--json", path], capture_output=True, text=True)
        if r.returncode != 0:
            print("FAIL %s: exit %d: %s" % (name, r.returncode, r.stderr.strip()))
            failed += 1
            continue
        files += 1
        got = json.loads(r.stdout)
        md = st["metadata"]
        cur = [h for h in st["headers"] if h["off"] == st["current_header"]][0]
        want_type = "differencing" if md["has_parent"] else ("fixed" if md["leave_blocks_allocated"] else "dynamic")
        expect(name, "type", got["type"], want_type)
        expect(name, "creator", got["creator"], st["creator"])
        expect(name, "file_size", got["file_size"], st["file_size"])
        for k in ("virtual_size", "block_size", "logical_sector_size", "physical_sector_size"):
            expect(name, k, got[k], md["virtual_disk_size" if k == "virtual_size" else k])
        expect(name, "leave_blocks_allocated", got["leave_blocks_allocated"], md["leave_blocks_allocated"])
        expect(name, "virtual_disk_id", got["virtual_disk_id"], md["page83"])
        expect(name, "data_write_guid", got["data_write_guid"], cur["data_write_guid"])
        expect(name, "file_write_guid", got["file_write_guid"], cur["file_write_guid"])
        expect(name, "current_header", got["current_header"], 1 if st["current_header"] == 65536 else 2)
        expect(name, "header_sequence", got["header_sequence"], cur["seq"])
        dirty = cur["log_guid"] != "00000000-0000-0000-0000-000000000000"
        expect(name, "log.dirty", got["log"]["dirty"], dirty)
        expect(name, "log.log_guid", got["log"]["log_guid"], cur["log_guid"])
        expect(name, "log.entries", got["log"]["entries"], ACTIVE_ENTRIES.get(name, 0))
        expect(name, "chunk_ratio", got["chunk_ratio"], st["bat"]["chunk_ratio"])
        states = REPLAYED.get(name, st["bat"]["payload_states"])
        for s, key in STATES.items():
            expect(name, "bat." + key, got["bat"][key], states.get(s, 0))
        expect(name, "bat.sector_bitmaps_present", got["bat"]["sector_bitmaps_present"],
               st["bat"]["sector_bitmap_states"].get("PRESENT", 0))
        if md["has_parent"]:
            pl = md["parent_locator"]
            p = got["parent"]
            expect(name, "parent.parent_linkage", "{%s}" % p["parent_linkage"], pl["parent_linkage"])
            expect(name, "parent.parent_linkage2", "{%s}" % p["parent_linkage2"], pl["parent_linkage2"])
            for k in ("relative_path", "volume_path", "absolute_win32_path"):
                expect(name, "parent." + k, p[k], pl.get(k))
        else:
            expect(name, "parent absent", "parent" in got, False)

print("fixtures: %d files, %d values checked, %d wrong" % (files, checked, failed))
print("%d passed, %d failed" % (checked - failed, failed))
sys.exit(1 if failed or files == 0 else 0)
