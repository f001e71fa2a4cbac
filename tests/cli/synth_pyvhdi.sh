#!/usr/bin/env bash
# Acceptance (2): chains written by `vhdxmerge synth` read through libvhdi
# (pyvhdi, an independent implementation) show exactly the disk synth's own
# model describes: 512 and 4096-byte sectors, 1/2/32/256 MiB blocks (base and
# children differing too), 1 to 30 layers, sizes that are not a multiple of
# the block size.  --zero-mode data: libvhdi reads a child's ZERO block as its
# parent's data (fmt 5.3), so these chains carry zeros as data; ZERO-state
# chains are checked with our own reader (tests/engine/test_synth.c).
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
here="$(cd "$(dirname "$0")" && pwd)"
if ! /usr/bin/python3 -c 'import pyvhdi' 2>/dev/null; then
	echo "SKIP: /usr/bin/python3 cannot import pyvhdi"
	exit 77
fi
tmp="$(mktemp -d "${VXM_TEST_TMP:-/tmp}/synth-pyvhdi.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cases=(
	"--seed 11 --size 64M --layers 1 --block-size 1M"
	"--seed 12 --size 65M --layers 2 --block-size 2M --base fixed"
	"--seed 13 --size 300M --layers 5 --block-size 32M --child-block-size 2M"
	"--seed 14 --size 600M --layers 3 --block-size 256M --child-block-size 1M --fill 0.5"
	"--seed 15 --size 129M --layers 4 --logical-sector 4096 --block-size 2M"
	"--seed 16 --size 520M --layers 3 --logical-sector 4096 --block-size 256M --child-block-size 32M"
	"--seed 17 --size 64M --layers 30 --block-size 1M --child-block-size 2M"
)
n=0
for args in "${cases[@]}"; do
	n=$((n + 1))
	dir="$tmp/c$n"
	# shellcheck disable=SC2086
	json="$("$bin" synth "$dir" $args --zero-mode data --json)"
	want="$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')"
	mapfile -t files < <(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["files"]))')
	got="$(/usr/bin/python3 "$here/pyvhdi_sha256.py" "${files[@]}")"
	if [ "$got" != "$want" ]; then
		echo "FAIL: synth $args: pyvhdi $got, synth model $want"
		exit 1
	fi
	echo "ok: ${#files[@]} layers, synth $args: pyvhdi == model ${want:0:16}"
	rm -rf "$dir"
done
echo "all $n chains read by libvhdi as synth's model says"
