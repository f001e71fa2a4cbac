#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh: writes the seed corpora of the fuzzers.
#
# Usage: make_seeds.sh OUTDIR [MALFORMED_TEST]
#
# OUTDIR/{open,log,meta}/ receive (tests/fuzz/mkseed.py does the conversion):
#   fixture-NAME*    every real image under $VHDX_FIXTURES (first 8 MiB, read
#                    straight from the .gz/.bz2: nothing is decompressed to disk)
#   malformed-TAG*   every damaged file of tests/engine/test_malformed.c, when
#                    its built binary is given: it saves them into a scratch
#                    directory when VXM_MALFORMED_SAVE is set (CRC flags clear,
#                    so that the damage is kept)
#   the files of tests/fuzz/regressions/<target>/
# OUTDIR/merge/ receives what mkseed_merge.py writes (valid chains of every
# block state and operation; the same inputs as regressions/merge/seed-*).
# Seeds are build products: never commit them, and never copy fixtures into
# the source tree.
set -euo pipefail
out=${1:?usage: make_seeds.sh OUTDIR [MALFORMED_TEST]}
malformed=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
fx=${VHDX_FIXTURES:-$here/../../../shared/fixtures}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf "$out"
mkdir -p "$out"/open "$out"/log "$out"/meta "$out"/chain "$out"/merge

nfx=0
if [ -d "$fx" ]; then
  for f in "$fx"/*/*.vhdx.gz "$fx"/*/*.vhdx.bz2 "$fx"/*/*.avhdx.gz "$fx"/*/*.avhdx.bz2; do
    [ -e "$f" ] || continue
    name=$(basename "$f"); name=${name%%.*}
    python3 "$here/mkseed.py" "$f" "$out" "fixture-$name"
    nfx=$((nfx + 1))
  done
else
  echo "make_seeds: no fixtures at $fx (set VHDX_FIXTURES); fixture seeds skipped" >&2
fi

nmal=0
if [ -n "$malformed" ] && [ -x "$malformed" ]; then
  mkdir -p "$work/malformed"
  if ! VXM_MALFORMED_SAVE="$work/malformed" "$malformed" >"$work/malformed.log" 2>&1; then
    echo "make_seeds: $malformed failed (its seeds are still used):" >&2
    tail -n 20 "$work/malformed.log" >&2
  fi
  for f in "$work"/malformed/*.vhdx; do
    [ -e "$f" ] || continue
    python3 "$here/mkseed.py" "$f" "$out" "malformed-$(basename "$f" .vhdx)" --raw-crc
    nmal=$((nmal + 1))
  done
fi

python3 "$here/mkseed_merge.py" "$out/merge" >/dev/null
for t in open log meta chain merge; do
  for f in "$here/regressions/$t"/*; do
    [ -f "$f" ] && cp "$f" "$out/$t/regression-$(basename "$f")"
  done
done
echo "make_seeds: $nfx fixtures, $nmal malformed cases ->" \
  "open $(ls "$out/open" | wc -l), log $(ls "$out/log" | wc -l), meta $(ls "$out/meta" | wc -l)," \
  "merge $(ls "$out/merge" | wc -l) seeds in $out"
