#!/usr/bin/env bash
# Kill test (merge acceptance 3): the real binary is killed at EVERY named
# point of a merge and of a convert (VXM_KILL_AT=*:N makes it _exit(137) at
# the N-th point of any kind, as abrupt as SIGKILL), and at random instants
# with SIGKILL.  After each kill:
#   - every file left opens, and the chain from the live top (a child of TOP
#     that the merge re-points) shows exactly the content it showed before;
#   - re-running the same command finishes, and every file ends
#     byte-identical to an uninterrupted run.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
tmp="${VXM_TEST_TMP:-/tmp/vxm-test}/merge-kill.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
kills=0 fail=0 points=0
# Under sanitizers every run is several times slower: kill at every fifth
# point and skip the random SIGKILLs (the normal build covers every point).
stride=1
[ "${VXM_SANITIZED:-0}" = 1 ] && stride=5

sha() { sha256sum "$1" | cut -d' ' -f1; }
digest_dir() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
view() { # sha of the disk a chain top shows, through our reader
  rm -f "$tmp/view.raw" "$tmp/view.raw.vxmerge-journal"
  "$bin" convert "$1" "$tmp/view.raw" --format raw --progress none >/dev/null && sha "$tmp/view.raw"
}

export VXM_GUID_SEED=4242   # the synthesized chain and the child: same bytes every run
"$bin" synth "$tmp/pristine" --seed 3 --size 12M --layers 5 --block-size 2M --child-block-size 1M --json >"$tmp/synth.json"
"$bin" create "$tmp/pristine/child.avhdx" --parent "$tmp/pristine/snap04.avhdx" >/dev/null
unset VXM_GUID_SEED
want=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$tmp/synth.json")
[ "$(view "$tmp/pristine/child.avhdx")" = "$want" ] || { echo "FAIL: pristine chain does not read as synth says"; exit 1; }

# The uninterrupted reference runs.
cp -a "$tmp/pristine" "$tmp/ref"
"$bin" merge "$tmp/ref/snap04.avhdx" --seed 42 --progress none >/dev/null
digest_dir "$tmp/ref" >"$tmp/ref.sums"
"$bin" convert "$tmp/pristine/snap04.avhdx" "$tmp/ref-conv.vhdx" --seed 42 --progress none >/dev/null
ref_conv=$(sha "$tmp/ref-conv.vhdx")
[ "$(view "$tmp/ref/child.avhdx")" = "$want" ] || { echo "FAIL: reference merge changed the view"; exit 1; }

check_state() { # $1 dir $2 label
  local f
  for f in "$1"/*.vhdx "$1"/*.avhdx; do
    [ -e "$f" ] || continue
    "$bin" info "$f" >/dev/null 2>&1 || { echo "  FAIL $2: $(basename "$f") does not open"; fail=$((fail + 1)); }
  done
  local v
  v=$(view "$1/child.avhdx" 2>/dev/null || echo "unreadable")
  [ "$v" = "$want" ] || { echo "  FAIL $2: the chain from child.avhdx reads $v, not $want"; fail=$((fail + 1)); }
}

echo "merge: killing at every point"
n=1
while :; do
  rm -rf "$tmp/work"
  cp -a "$tmp/pristine" "$tmp/work"
  set +e
  VXM_KILL_AT="*:$n" "$bin" merge "$tmp/work/snap04.avhdx" --seed 42 --progress none >/dev/null 2>"$tmp/err"
  rc=$?
  set -e
  if [ $rc = 0 ]; then points=$((n - 1)); break; fi
  if [ $rc != 137 ]; then echo "  FAIL point $n: exit $rc: $(cat "$tmp/err")"; fail=$((fail + 1)); break; fi
  kills=$((kills + 1))
  check_state "$tmp/work" "after kill at point $n"
  set +e
  "$bin" merge "$tmp/work/snap04.avhdx" --seed 42 --progress none >/dev/null 2>"$tmp/err"
  rc=$?
  set -e
  if [ $rc != 0 ]; then
    echo "  FAIL point $n: the re-run exits $rc: $(cat "$tmp/err")"; fail=$((fail + 1))
  elif ! diff -q <(digest_dir "$tmp/work") "$tmp/ref.sums" >/dev/null; then
    echo "  FAIL point $n: not byte-identical to the uninterrupted run:"
    diff <(digest_dir "$tmp/work") "$tmp/ref.sums" | head -6
    fail=$((fail + 1))
  fi
  n=$((n + stride))
done
echo "  merge: $points kill points; killed at every $([ "$stride" = 1 ] && echo one || echo "${stride}th"), resumed and compared"

echo "merge: a kill during the resume, at every point of it"
rm -rf "$tmp/work2"
cp -a "$tmp/pristine" "$tmp/work2"
set +e
VXM_KILL_AT="*:$(( points / 2 ))" "$bin" merge "$tmp/work2/snap04.avhdx" --seed 42 --progress none >/dev/null 2>&1
set -e
cp -a "$tmp/work2" "$tmp/half"
m=1
while :; do
  rm -rf "$tmp/work2"; cp -a "$tmp/half" "$tmp/work2"
  set +e
  VXM_KILL_AT="*:$m" "$bin" merge "$tmp/work2/snap04.avhdx" --seed 42 --progress none >/dev/null 2>&1
  rc=$?
  set -e
  [ $rc = 0 ] && break
  [ $rc = 137 ] || { echo "  FAIL resume point $m: exit $rc"; fail=$((fail + 1)); break; }
  kills=$((kills + 1))
  check_state "$tmp/work2" "after a kill of the resume at point $m"
  "$bin" merge "$tmp/work2/snap04.avhdx" --seed 42 --progress none >/dev/null
  diff -q <(digest_dir "$tmp/work2") "$tmp/ref.sums" >/dev/null || { echo "  FAIL resume point $m: differs"; fail=$((fail + 1)); }
  m=$((m + stride))
done
echo "  resume: $((m - 1)) kill points"

echo "convert: killing at every point"
c=1
while :; do
  rm -f "$tmp/conv.vhdx" "$tmp/conv.vhdx.vxmerge-journal" "$tmp/conv.vhdx.vxmerge-partial"
  set +e
  VXM_KILL_AT="*:$c" "$bin" convert "$tmp/pristine/snap04.avhdx" "$tmp/conv.vhdx" --seed 42 --progress none >/dev/null 2>"$tmp/err"
  rc=$?
  set -e
  [ $rc = 0 ] && break
  [ $rc = 137 ] || { echo "  FAIL convert point $c: exit $rc: $(cat "$tmp/err")"; fail=$((fail + 1)); break; }
  kills=$((kills + 1))
  if [ -e "$tmp/conv.vhdx" ] && [ -e "$tmp/conv.vhdx.vxmerge-journal" ]; then
    echo "  FAIL convert point $c: the output exists before the convert finished"; fail=$((fail + 1))
  fi
  "$bin" convert "$tmp/pristine/snap04.avhdx" "$tmp/conv.vhdx" --seed 42 --progress none >/dev/null
  [ "$(sha "$tmp/conv.vhdx")" = "$ref_conv" ] || { echo "  FAIL convert point $c: differs"; fail=$((fail + 1)); }
  c=$((c + stride))
done
echo "  convert: $((c - 1)) kill points"

if [ "$stride" != 1 ]; then echo "kills: $kills, data lost: $fail"; echo "$kills passed, $fail failed"; [ "$fail" = 0 ]; exit; fi
echo "merge: SIGKILL at random instants"
"$bin" synth "$tmp/big" --seed 8 --size 96M --layers 6 --block-size 2M --json >"$tmp/big.json"
cp -a "$tmp/big" "$tmp/bigref"
"$bin" merge "$tmp/bigref/snap05.avhdx" --seed 42 --progress none >/dev/null
digest_dir "$tmp/bigref" >"$tmp/bigref.sums"
for delay in 0.05 0.15 0.3 0.5 0.8; do
  rm -rf "$tmp/bw"; cp -a "$tmp/big" "$tmp/bw"
  "$bin" merge "$tmp/bw/snap05.avhdx" --seed 42 --progress none >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  if kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  "$bin" merge "$tmp/bw/snap05.avhdx" --seed 42 --progress none >/dev/null 2>&1 || true
  diff -q <(digest_dir "$tmp/bw") "$tmp/bigref.sums" >/dev/null || { echo "  FAIL SIGKILL after ${delay}s: differs"; fail=$((fail + 1)); }
done

echo "kills: $kills, data lost: $fail"
echo "$kills passed, $fail failed"
[ "$fail" = 0 ]
