#!/usr/bin/env bash
# `vhdxmerge compare` through the binary: a synth chain against raw exports
# made by independent readers (libvhdi through pyvhdi for the chain top,
# qemu-img for the base), flipped and truncated copies, exit codes, --json,
# and --progress json as a JSON-lines stream (every line parses).
set -euo pipefail
bin="${VXM_BIN:?VXM_BIN not set}"
tmp="$(mktemp -d "${VXM_TEST_TMP:-/tmp}/compare.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect CODE CMD...: runs CMD, checks its exit status, keeps stdout in $tmp/out
expect() {
	local want=$1; shift
	set +e
	"$@" >"$tmp/out" 2>"$tmp/err"
	local got=$?
	set -e
	[ "$got" = "$want" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "exit $got, wanted $want: $*"; }
}
# jget KEY: a top-level value of the JSON object in $tmp/out
jget() { "$py" -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v))' "$tmp/out" "$1"; }

# zero-mode data: libvhdi reads a child's ZERO block as parent data
"$bin" synth "$tmp/c" --seed 11 --size 24M --layers 4 --block-size 1M --zero-mode data --json >"$tmp/synth.json"
files=($("$py" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["files"]))' "$tmp/synth.json"))
sha=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$tmp/synth.json")
base=${files[0]}
top=${files[-1]}

# 1. the same file, and the top against a raw export of it by libvhdi
expect 0 "$bin" compare "$top" "$top"
grep -q '^same:' "$tmp/out" || fail "no 'same:' line"
if "$py" -c 'import pyvhdi' 2>/dev/null; then
	"$py" - "$tmp/top.raw" "${files[@]}" <<'EOF'
import sys, pyvhdi
out, paths = sys.argv[1], sys.argv[2:]
fs = []
for p in paths:
    f = pyvhdi.file(); f.open(p)
    if fs: f.set_parent(fs[-1])
    fs.append(f)
top = fs[-1]; size = top.get_media_size()
with open(out, "wb") as o:
    off = 0
    while off < size:
        n = min(4 << 20, size - off)
        o.write(top.read_buffer_at_offset(n, off)); off += n
EOF
	[ "$(sha256sum <"$tmp/top.raw" | cut -d' ' -f1)" = "$sha" ] || fail "libvhdi export differs from synth's model"
	expect 0 "$bin" compare "$top" "$tmp/top.raw" --json
	[ "$(jget same)" = true ] || fail "top vs libvhdi raw not same"
	[ "$(jget first_difference)" = null ] || fail "first_difference not null"
	[ "$(jget bytes_compared)" = $((24 << 20)) ] || fail "bytes_compared"
	[ "$(jget a | "$py" -c 'import json,sys; print(json.load(sys.stdin)["layers"])')" = 4 ] || fail "layers"
else
	echo "note: pyvhdi missing: the raw-export cases are skipped"
fi

# 2. the base against qemu-img's raw conversion
if command -v qemu-img >/dev/null; then
	qemu-img convert -f vhdx -O raw "$base" "$tmp/base.raw"
	expect 0 "$bin" compare "$tmp/base.raw" "$base"
	# differencing top vs its base: they differ, exit 1
	expect 1 "$bin" compare "$top" "$base" --json
	[ "$(jget same)" = false ] || fail "top vs base same"
	[ "$(jget differ_in_common)" = true ] || fail "top vs base: differ_in_common"
	fd=$(jget first_difference)
	# the byte before fd is equal in both raw images, the byte at fd is not
	if [ -f "$tmp/top.raw" ]; then
		want=$( (cmp "$tmp/top.raw" "$tmp/base.raw" || true) | sed -n 's/.* byte \([0-9]*\),.*/\1/p')
		[ "$fd" = $((want - 1)) ] || fail "first_difference $fd, cmp says byte $want (1-based)"
	fi
fi

# 3. one flipped byte in a raw copy, at chunk edges and inside
if [ -f "$tmp/top.raw" ]; then
	for off in 0 4095 4194303 4194304 $((9 << 20 | 12345)) $(((24 << 20) - 1)); do
		cp "$tmp/top.raw" "$tmp/flip.raw"
		"$py" -c 'import sys; f=open(sys.argv[1],"r+b"); o=int(sys.argv[2]); f.seek(o); b=f.read(1); f.seek(o); f.write(bytes([b[0]^0x5a]))' "$tmp/flip.raw" "$off"
		expect 1 "$bin" compare "$top" "$tmp/flip.raw" --json --chunk 64K
		[ "$(jget first_difference)" = "$off" ] || fail "flip at $off found at $(jget first_difference)"
		[ "$(jget first_difference_sector)" = $((off / 512)) ] || fail "sector of $off"
		expect 1 "$bin" compare "$tmp/flip.raw" "$top"
		grep -q "first difference at byte $off " "$tmp/out" || fail "human output for $off"
	done

	# 4. sizes differ: shorter raw (common part equal), then also a flip
	head -c $(((24 << 20) - 512)) "$tmp/top.raw" >"$tmp/short.raw"
	expect 1 "$bin" compare "$top" "$tmp/short.raw" --json
	[ "$(jget size_differs)" = true ] || fail "size_differs"
	[ "$(jget differ_in_common)" = false ] || fail "differ_in_common on equal prefix"
	[ "$(jget first_difference)" = $(((24 << 20) - 512)) ] || fail "first_difference at the end"
	expect 1 "$bin" compare "$top" "$tmp/short.raw"
	grep -q "sizes differ" "$tmp/out" || fail "human: sizes differ"
	grep -q "B ends there" "$tmp/out" || fail "human: B ends there"
	"$py" -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(777); f.write(b"\xff\xfe")' "$tmp/short.raw"
	expect 1 "$bin" compare "$tmp/short.raw" "$top" --json
	[ "$(jget size_differs)" = true ] && [ "$(jget differ_in_common)" = true ] || fail "both kinds"
	fd=$(jget first_difference)
	[ "$fd" = 777 ] || [ "$fd" = 778 ] || fail "flip in a shorter file: $fd"
fi

# 5. --progress json: a JSON-lines stream, phase first, result last
expect 0 "$bin" compare "$top" "$top" --progress json --chunk 1M
"$py" - "$tmp/out" <<'EOF' || fail "progress lines"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ev = [json.loads(l) for l in lines]          # every line parses
assert ev[0]["event"] == "phase" and ev[0]["phase"] == "compare", ev[0]
assert ev[-1]["event"] == "result" and ev[-1]["same"] is True, ev[-1]
fin = [e for e in ev if e["event"] == "finish"]
assert len(fin) == 1 and fin[0]["ok"] is True and fin[0]["done"] == 24 << 20, fin
prog = [e for e in ev if e["event"] == "progress"]
assert prog and prog[-1]["done"] == prog[-1]["total"] == 24 << 20, prog[-1]
for e in prog:
    for k in ("op", "phase", "done", "total", "rate", "eta_s", "elapsed_s"):
        assert k in e, (k, e)
EOF
# --progress bar draws on stderr only; stdout stays the plain result
expect 0 "$bin" compare "$top" "$top" --progress bar
grep -q '100.0%' "$tmp/err" || fail "bar missing on stderr"
grep -q '^same:' "$tmp/out" || fail "stdout with a bar"

# 6. errors and usage
expect 6 "$bin" compare "$top" "$tmp/nonexistent"
grep -q "nonexistent" "$tmp/err" || fail "missing file not named"
printf 'vhdxfile but not really a VHDX file' >"$tmp/fake.vhdx"
truncate -s 2M "$tmp/fake.vhdx"
expect 3 "$bin" compare "$tmp/fake.vhdx" "$top"
grep -q "fake.vhdx" "$tmp/err" || fail "corrupt file not named"
expect 2 "$bin" compare "$top"
expect 2 "$bin" compare "$top" "$top" --progress sometimes
expect 2 "$bin" compare "$top" "$top" --chunk 1000
mv "${files[1]}" "$tmp/"
expect 4 "$bin" compare "$top" "$top"
expect 0 "$bin" compare "$top" "$top" --search-dir "$tmp" --search-dir "$tmp/c" --progress none
echo "compare.sh: ok"
