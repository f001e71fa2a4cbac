#!/usr/bin/env bash
# Merge acceptance 4 and the interrupt path: every preflight refusal (no
# space, a file locked by another process, another checkpoint that would be
# invalidated, a broken chain, a dry run) exits with its own code and leaves
# every file byte-identical; SIGINT stops a merge with exit 8, --status says
# so, and the re-run finishes byte-identical to an uninterrupted run.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
tmp="${VXM_TEST_TMP:-/tmp/vxm-test}/merge-preflight.$$"
mkdir -p "$tmp"
mnt=""
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }

# expect_refusal LABEL DIR CODE MESSAGE -- merge args...
expect_refusal() {
  local label=$1 dir=$2 code=$3 msg=$4
  shift 5
  local before rc
  before=$(sums "$dir")
  set +e
  "$bin" merge "$@" --progress none >"$tmp/out" 2>&1
  rc=$?
  set -e
  [ $rc = "$code" ] && ok "$label: exit $rc" || bad "$label: exit $rc, wanted $code: $(cat "$tmp/out")"
  grep -q -- "$msg" "$tmp/out" && ok "$label: says \"$msg\"" || bad "$label: message: $(cat "$tmp/out")"
  [ "$(sums "$dir")" = "$before" ] && ok "$label: every file byte-identical" || bad "$label: files changed"
}

mk() { "$bin" synth "$1" --seed 21 --size 24M --layers 4 --block-size 2M >/dev/null; }

echo "merge preflight refusals"
mk "$tmp/sib"
"$bin" create "$tmp/sib/other-branch.avhdx" --parent "$tmp/sib/snap01.avhdx" >/dev/null
expect_refusal "another checkpoint of a merged layer" "$tmp/sib" 4 "other-branch.avhdx" -- "$tmp/sib/snap03.avhdx"
expect_refusal "dry run" "$tmp/sib" 0 "nothing was written" -- "$tmp/sib/snap03.avhdx" --dry-run --force

mk "$tmp/gap"
mv "$tmp/gap/snap02.avhdx" "$tmp/gap/elsewhere.bin"
expect_refusal "missing middle link" "$tmp/gap" 4 "parent not found" -- "$tmp/gap/snap03.avhdx"

mk "$tmp/lock"
/usr/bin/python3 -c '
import fcntl, sys, time
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(60)' "$tmp/lock/base.vhdx" "$tmp/locked" &
locker=$!
for _ in $(seq 50); do [ -e "$tmp/locked" ] && break; sleep 0.1; done
expect_refusal "destination locked by another process" "$tmp/lock" 7 "in use by another process" -- "$tmp/lock/snap03.avhdx"
kill $locker 2>/dev/null || true
wait $locker 2>/dev/null || true

if [ "$(id -u)" = 0 ] && mkdir -p "$tmp/small" && mount -t tmpfs -o size=96m tmpfs "$tmp/small" 2>/dev/null; then
  mnt="$tmp/small"
  "$bin" synth "$tmp/small/c" --seed 5 --size 64M --layers 3 --block-size 2M --fill 0.4 >/dev/null
  growth=$("$bin" plan "$tmp/small/c/snap02.avhdx" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["dest_growth_bytes"])')
  free=$(df -B1 --output=avail "$tmp/small" | tail -1)
  # leave half of what the merge needs
  filler=$(( (free - growth / 2) / 1048576 ))
  [ "$filler" -gt 0 ] && dd if=/dev/zero of="$tmp/small/filler" bs=1M count="$filler" 2>/dev/null
  expect_refusal "not enough space" "$tmp/small/c" 5 "not enough space" -- "$tmp/small/c/snap02.avhdx"
  "$bin" plan "$tmp/small/c/snap02.avhdx" >"$tmp/out" 2>&1 && bad "plan says it fits" || ok "plan exits 5 too: $(grep 'free space' "$tmp/out" | sed 's/^ *//')"
  umount "$mnt"; mnt=""
else
  skip=$((skip + 1)); echo "  skip not enough space: mounting a tmpfs is not permitted here"
fi

echo "interrupt and status"
"$bin" synth "$tmp/int" --seed 31 --size 256M --layers 4 --block-size 2M --fill 0.6 >/dev/null
cp -a "$tmp/int" "$tmp/intref"
"$bin" merge "$tmp/intref/snap03.avhdx" --seed 3 --progress none >/dev/null
set +e
"$bin" merge "$tmp/int/snap03.avhdx" --seed 3 --progress none >/dev/null 2>"$tmp/err" &
pid=$!
sleep 0.4
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
set -e
if [ $rc = 8 ]; then
  ok "SIGINT: exit 8 ($(tail -1 "$tmp/err"))"
  "$bin" merge --status "$tmp/int/base.vhdx" >"$tmp/status"
  grep -q "an interrupted merge" "$tmp/status" && ok "--status: $(cut -c1-90 "$tmp/status")" || bad "--status: $(cat "$tmp/status")"
elif [ $rc = 0 ]; then
  ok "SIGINT arrived after the merge finished (nothing to resume)"
else
  bad "SIGINT: exit $rc: $(cat "$tmp/err")"
fi
"$bin" merge "$tmp/int/snap03.avhdx" --seed 3 --progress none >/dev/null 2>&1 || true
[ "$(sums "$tmp/int")" = "$(sums "$tmp/intref")" ] && ok "re-run after SIGINT: byte-identical to an uninterrupted merge" || bad "re-run after SIGINT differs"
"$bin" merge --status "$tmp/int/base.vhdx" | grep -q "no merge in progress" && ok "--status after: no merge in progress" || bad "--status after"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
