#!/usr/bin/env bash
# Issue 18, file types, locks and symlinks, through the real binary:
# - a FIFO (or a symlink to one) where a layer should be, a FIFO, a
#   directory or /dev/null given as the top, a FIFO named like a checkpoint
#   next to the chain or like the merge journal: every command finishes
#   (timeout 20 would say 124), refuses with exit 4 naming the path and what
#   it is, and every file stays byte-identical;
# - flock(LOCK_EX) or flock(LOCK_SH) held by another process on the base or
#   a middle layer, and qemu holding a layer: exit 7, byte-identical;
# - a middle layer that is a symlink into another directory: the merge
#   removes the link, keeps the file it pointed to and names it (also in the
#   JSON summary); the merged base reads as the chain did (qemu-img convert
#   against our own convert taken before); the same after a kill in the
#   cleanup and a re-run.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
tmp="${VXM_TEST_TMP:-/tmp/vxm-test}/hostile-files.$$"
mkdir -p "$tmp"
tmp=$(realpath "$tmp")
holders=()
cleanup() {
  for p in "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
sums() { (cd "$1" && find . -type f | sort | xargs -r sha256sum); }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# expect_refusal LABEL DIR CODE MESSAGE -- vhdxmerge args...
expect_refusal() {
  local label=$1 dir=$2 code=$3 msg=$4
  shift 5
  local before rc
  before=$(sums "$dir")
  set +e
  timeout 20 "$bin" "$@" >"$tmp/out" 2>&1
  rc=$?
  set -e
  if [ $rc = 124 ]; then
    bad "$label: still running after 20 s (blocked)"
  elif [ $rc = "$code" ]; then
    ok "$label: exit $rc"
  else
    bad "$label: exit $rc, wanted $code: $(cat "$tmp/out")"
  fi
  grep -qF -- "$msg" "$tmp/out" && ok "$label: says \"$msg\"" || bad "$label: message: $(cat "$tmp/out")"
  [ "$(sums "$dir")" = "$before" ] && ok "$label: every file byte-identical" || bad "$label: files changed"
}

# chain and plan have no --progress
pn() { case $1 in merge | convert) echo "--progress none" ;; esac; }
# every scenario on its own copy of one synthesized chain, so that a failure
# in one (a merge that should have been refused) leaves the others intact
"$bin" synth "$tmp/pristine" --seed 21 --size 24M --layers 4 --block-size 2M >/dev/null
mk() { cp -a "$tmp/pristine" "$1"; }

# hold KIND FILE: another process takes the lock and keeps it until killed
hold() {
  rm -f "$tmp/held"
  /usr/bin/python3 -c '
import fcntl, sys, time
f = open(sys.argv[2], "rb")
fcntl.flock(f, fcntl.LOCK_EX if sys.argv[1] == "ex" else fcntl.LOCK_SH)
open(sys.argv[3], "w").close()
time.sleep(120)' "$1" "$2" "$tmp/held" &
  holder=$!
  holders+=("$holder")
  for _ in $(seq 100); do [ -e "$tmp/held" ] && return; sleep 0.1; done
  echo "  the lock holder did not start"
}
release() { kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true; }

echo "a FIFO where a layer should be"
mk "$tmp/fifo"
mkdir "$tmp/fifo-away"
mv "$tmp/fifo/snap02.avhdx" "$tmp/fifo-away/"
mkfifo "$tmp/fifo/snap02.avhdx"
for cmd in chain plan merge; do
  expect_refusal "$cmd, middle layer a FIFO" "$tmp/fifo" 4 "$tmp/fifo/snap02.avhdx (via relative_path) is a FIFO, not a disk image file" \
    -- "$cmd" "$tmp/fifo/snap03.avhdx" $(pn "$cmd")
done
expect_refusal "convert, middle layer a FIFO" "$tmp/fifo" 4 "is a FIFO, not a disk image file" \
  -- convert "$tmp/fifo/snap03.avhdx" "$tmp/fifo/out.vhdx" --progress none
[ ! -e "$tmp/fifo/out.vhdx" ] && ok "convert: no output file" || bad "convert left $tmp/fifo/out.vhdx"
expect_refusal "info of the FIFO" "$tmp/fifo" 4 "not a regular file" -- info "$tmp/fifo/snap02.avhdx"
expect_refusal "merge with the FIFO as the top" "$tmp/fifo" 4 "$tmp/fifo/snap02.avhdx: is a FIFO, not a disk image file" \
  -- merge "$tmp/fifo/snap02.avhdx" --progress none

echo "a FIFO under the parent's exact name, the parent under another case"
mk "$tmp/fc"
mv "$tmp/fc/snap02.avhdx" "$tmp/fc/SNAP02.AVHDX"
mkfifo "$tmp/fc/snap02.avhdx"
set +e
timeout 20 "$bin" chain "$tmp/fc/snap03.avhdx" >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 0 ] && grep -qF "SNAP02.AVHDX" "$tmp/out" && ok "chain: exit 0, the parent found case-insensitively past the FIFO" \
  || bad "chain past the FIFO: exit $rc: $(cat "$tmp/out")"
set +e
timeout 60 "$bin" merge "$tmp/fc/snap03.avhdx" --progress none >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 0 ] && [ -p "$tmp/fc/snap02.avhdx" ] && [ ! -e "$tmp/fc/SNAP02.AVHDX" ] \
  && ok "merge: exit 0, SNAP02.AVHDX merged and removed, the FIFO left alone" || bad "merge past the FIFO: exit $rc: $(cat "$tmp/out"; ls -l "$tmp/fc")"

echo "a symlink to a FIFO where a layer should be"
mk "$tmp/fl"
mkdir "$tmp/fl-other"
mv "$tmp/fl/snap01.avhdx" "$tmp/fl-other/"
mkfifo "$tmp/fl-other/pipe"
ln -s "$tmp/fl-other/pipe" "$tmp/fl/snap01.avhdx"
for cmd in chain plan merge; do
  expect_refusal "$cmd, symlink to a FIFO" "$tmp/fl" 4 "$tmp/fl/snap01.avhdx (via relative_path) is a FIFO, not a disk image file" \
    -- "$cmd" "$tmp/fl/snap03.avhdx" $(pn "$cmd")
done

echo "the top is not a file"
mk "$tmp/top"
for cmd in chain plan merge; do
  expect_refusal "$cmd /dev/null" "$tmp/top" 4 "/dev/null: is a character device, not a disk image file" -- "$cmd" /dev/null $(pn "$cmd")
  expect_refusal "$cmd DIR" "$tmp/top" 4 "$tmp/top: is a directory, not a disk image file" -- "$cmd" "$tmp/top" $(pn "$cmd")
done
expect_refusal "convert DIR" "$tmp/top" 4 "is a directory, not a disk image file" -- convert "$tmp/top" "$tmp/top-out.raw" --format raw --progress none

echo "FIFOs named like a checkpoint or the journal"
mk "$tmp/sib"
mkfifo "$tmp/sib/stray.avhdx"
set +e
timeout 20 "$bin" merge "$tmp/sib/snap03.avhdx" --progress none >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 0 ] && ok "merge next to a FIFO named stray.avhdx: exit 0 (the sibling scan skips it)" || bad "merge next to a FIFO sibling: exit $rc: $(cat "$tmp/out")"
[ -p "$tmp/sib/stray.avhdx" ] && ok "the FIFO is still there" || bad "the FIFO is gone"
mk "$tmp/jr"
mkfifo "$tmp/jr/base.vhdx.vxmerge-journal"
expect_refusal "merge, a FIFO as the journal" "$tmp/jr" 4 "base.vhdx.vxmerge-journal is a FIFO, not a merge journal" \
  -- merge "$tmp/jr/snap03.avhdx" --progress none
expect_refusal "merge --into, a FIFO as the journal" "$tmp/jr" 4 "base.vhdx.vxmerge-journal is a FIFO, not a merge journal" \
  -- merge "$tmp/jr/snap03.avhdx" --into "$tmp/jr/base.vhdx" --progress none
[ -p "$tmp/jr/base.vhdx.vxmerge-journal" ] && ok "the FIFO journal is still a FIFO" || bad "the FIFO journal was replaced"

echo "flock held by another process"
lk() { rm -rf "$tmp/lk" "$tmp/lk-out.raw"; mk "$tmp/lk"; }
lk
hold ex "$tmp/lk/base.vhdx"
expect_refusal "merge, flock(LOCK_EX) on the base" "$tmp/lk" 7 "$tmp/lk/base.vhdx is in use by another process" \
  -- merge "$tmp/lk/snap03.avhdx" --progress none
expect_refusal "convert, flock(LOCK_EX) on the base" "$tmp/lk" 7 "$tmp/lk/base.vhdx is in use by another process" \
  -- convert "$tmp/lk/snap03.avhdx" "$tmp/lk/out.vhdx" --progress none
release
lk
hold ex "$tmp/lk/snap02.avhdx"
expect_refusal "merge, flock(LOCK_EX) on a middle layer" "$tmp/lk" 7 "$tmp/lk/snap02.avhdx is in use by another process" \
  -- merge "$tmp/lk/snap03.avhdx" --progress none
release
lk
hold sh "$tmp/lk/base.vhdx"
expect_refusal "merge, flock(LOCK_SH) on the base (a reader)" "$tmp/lk" 7 "$tmp/lk/base.vhdx is in use by another process" \
  -- merge "$tmp/lk/snap03.avhdx" --progress none
# a shared flock and our shared lock coexist: a reader does not stop a convert
set +e
timeout 60 "$bin" convert "$tmp/lk/snap03.avhdx" "$tmp/lk-out.raw" --format raw --progress none >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 0 ] && ok "convert while another reader holds flock(LOCK_SH): exit 0" || bad "convert beside a shared flock: exit $rc: $(cat "$tmp/out")"
release
rm -f "$tmp/lk-out.raw"

echo "qemu holding a layer (OFD locks on its permission bytes)"
if command -v qemu-io >/dev/null; then
  qhold() { # qhold [-r] FILE: qemu-io keeps FILE open, read-write unless -r
    qemu-io "$@" -f raw -c 'sleep 60000' >/dev/null 2>&1 &
    holder=$!
    holders+=("$holder")
    local ino
    ino=$(stat -c %i "${@: -1}" || echo none)
    for _ in $(seq 100); do grep -q ":$ino 100 " /proc/locks && return; sleep 0.1; done
    echo "  qemu-io did not lock ${*: -1}"
  }
  lk
  qhold "$tmp/lk/snap02.avhdx"
  expect_refusal "merge, qemu writes to a middle layer" "$tmp/lk" 7 "$tmp/lk/snap02.avhdx is in use by another process" \
    -- merge "$tmp/lk/snap03.avhdx" --progress none
  release
  lk
  qhold -r "$tmp/lk/base.vhdx"
  expect_refusal "merge, qemu reads the base" "$tmp/lk" 7 "$tmp/lk/base.vhdx is in use by another process" \
    -- merge "$tmp/lk/snap03.avhdx" --progress none
  set +e
  timeout 60 "$bin" convert "$tmp/lk/snap03.avhdx" "$tmp/lk-out.raw" --format raw --progress none >"$tmp/out" 2>&1
  rc=$?
  set -e
  [ $rc = 0 ] && ok "convert while qemu only reads the base: exit 0" || bad "convert beside a qemu reader: exit $rc: $(cat "$tmp/out")"
  release
  lk
  qhold "$tmp/lk/base.vhdx"
  expect_refusal "convert, qemu writes to the base (we only read it)" "$tmp/lk" 7 "$tmp/lk/base.vhdx is in use by another process (qemu has it open for writing)" \
    -- convert "$tmp/lk/snap03.avhdx" "$tmp/lk-out.raw" --format raw --progress none
  [ ! -e "$tmp/lk-out.raw" ] && ok "convert: no output file" || bad "convert wrote $tmp/lk-out.raw"
  release
else
  skip=$((skip + 1)); echo "  skip qemu locks: no qemu-io here"
fi

echo "a middle layer that is a symlink into another directory"
symchain() { # DIR: a chain whose snap02 is a link to DIR-other/snap02.avhdx
  mk "$1"
  mkdir "$1-other"
  mv "$1/snap02.avhdx" "$1-other/"
  ln -s "$1-other/snap02.avhdx" "$1/snap02.avhdx"
  "$bin" convert "$1/snap03.avhdx" "$1-before.raw" --format raw --progress none >/dev/null || true
  sha "$1-other/snap02.avhdx" >"$1-target.sha"
}
# after DIR LABEL: what a finished merge of DIR must have left
after() {
  local d=$1 label=$2
  [ ! -e "$d/snap02.avhdx" ] && [ ! -L "$d/snap02.avhdx" ] && ok "$label: the link is gone" || bad "$label: the link is still there"
  [ -f "$d-other/snap02.avhdx" ] && [ "$(sha "$d-other/snap02.avhdx")" = "$(cat "$d-target.sha")" ] \
    && ok "$label: its target is kept, byte-identical" || bad "$label: the target was removed or changed"
  [ ! -e "$d/snap01.avhdx" ] && [ ! -e "$d/snap03.avhdx" ] && ok "$label: the other merged layers are removed" || bad "$label: merged layers left: $(ls "$d")"
  [ ! -e "$d/base.vhdx.vxmerge-journal" ] && ok "$label: no journal left" || bad "$label: the journal is left"
  if qemu-img check -q -f vhdx "$d/base.vhdx" >"$tmp/qc" 2>&1; then ok "$label: qemu-img check of the base: clean"; else bad "$label: qemu-img check: $(cat "$tmp/qc")"; fi
  rm -f "$d-after.raw"
  qemu-img convert -f vhdx -O raw "$d/base.vhdx" "$d-after.raw" || true
  cmp -s "$d-before.raw" "$d-after.raw" && ok "$label: qemu-img convert of the base equals the chain's view before ($(sha "$d-after.raw" | cut -c1-16))" \
    || bad "$label: the merged base reads differently"
}
symchain "$tmp/sl"
set +e
timeout 120 "$bin" merge "$tmp/sl/snap03.avhdx" --json --progress none >"$tmp/sl.json" 2>"$tmp/sl.err"
rc=$?
set -e
[ $rc = 0 ] && ok "merge through the symlinked layer: exit 0" || bad "merge: exit $rc: $(cat "$tmp/sl.err")"
want="kept $tmp/sl-other/snap02.avhdx: the target of the symlink $tmp/sl/snap02.avhdx, outside the chain's directories; it is no longer a valid checkpoint"
grep -qF -- "$want" "$tmp/sl.err" && ok "says: $want" || bad "output: $(cat "$tmp/sl.err")"
kept=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kept"])' "$tmp/sl.json" 2>&1 || true)
[ "$kept" = "['$tmp/sl-other/snap02.avhdx']" ] && ok "JSON summary: kept $kept" || bad "JSON kept: $kept"
after "$tmp/sl" "merge"

for n in 2 3; do
  symchain "$tmp/sk$n"
  set +e
  VXM_KILL_AT="delete:$n" timeout 120 "$bin" merge "$tmp/sk$n/snap03.avhdx" --progress none >/dev/null 2>&1
  rc=$?
  set -e
  if [ $rc != 137 ]; then
    skip=$((skip + 1)); echo "  skip kill at delete $n: exit $rc (a build without VXM_TEST_HOOKS?)"
    continue
  fi
  [ $n = 3 ] && { [ ! -L "$tmp/sk$n/snap02.avhdx" ] && ok "killed after the link's removal" || bad "the link survived delete 2"; }
  set +e
  timeout 120 "$bin" merge "$tmp/sk$n/snap03.avhdx" --progress none >/dev/null 2>"$tmp/sk.err"
  rc=$?
  set -e
  [ $rc = 0 ] && ok "killed at delete $n, re-run: exit 0" || bad "re-run after delete $n: exit $rc: $(cat "$tmp/sk.err")"
  grep -qF -- "kept $tmp/sk$n-other/snap02.avhdx: the target of the symlink $tmp/sk$n/snap02.avhdx" "$tmp/sk.err" \
    && ok "re-run names the kept target (from the journal)" || bad "re-run output: $(cat "$tmp/sk.err")"
  after "$tmp/sk$n" "kill at delete $n, re-run"
done

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
