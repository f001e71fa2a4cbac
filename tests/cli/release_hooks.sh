#!/usr/bin/env bash
# The vhdxmerge program users run carries no test hooks (issue 19).  With
# every hook's variable set (VXM_KILL_AT=*:1, VXM_COMMIT_BYTES=1048576,
# VXM_URING_DISABLED=1) a merge and a raw convert by $VXM_RELEASE_BIN
# complete (exit 0, not 137) with one commit each and no io_uring fallback
# notice, and read as the chain did (qemu-img convert -O raw against synth's
# digest).  The same commands through the test program $VXM_HOOKS_BIN obey
# the variables (exit 137 at the first kill point; commits every MiB; the
# fallback notice): the specifications are live where hooks exist.  Neither
# the program nor the shared library holds the variables' names.
#
# In every configuration the `vhdxmerge` target is linked from the library
# alone, as installed (CMakeLists.txt, "test hooks"); the test build's copy
# is the program of a release build compiled with other optimisation flags.
set -euo pipefail
rel="${VXM_RELEASE_BIN:?VXM_RELEASE_BIN not set}"
hooks="${VXM_HOOKS_BIN:?VXM_HOOKS_BIN not set}"
lib="${VXM_SHARED_LIB:?VXM_SHARED_LIB not set}"
tmp="$(mktemp -d "${VXM_TEST_TMP:-/tmp}/release-hooks.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
jget() { $py -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# the disk a VHDX shows, by qemu-img (an oracle we did not write) when there
raw_sha() {
	if command -v qemu-img >/dev/null; then
		qemu-img convert -f vhdx -O raw "$1" "$tmp/q.raw" && sha256sum "$tmp/q.raw" | cut -d' ' -f1
		rm -f "$tmp/q.raw"
	else
		"$rel" convert "$1" "$tmp/q.raw" --format raw --progress none >/dev/null &&
			sha256sum "$tmp/q.raw" | cut -d' ' -f1
		rm -f "$tmp/q.raw"
	fi
}
hookenv=(env VXM_KILL_AT='*:1' VXM_COMMIT_BYTES=1048576 VXM_URING_DISABLED=1)

"$rel" synth "$tmp/pristine" --seed 19 --size 24M --layers 4 --block-size 2M --json >"$tmp/synth.json"
want=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$tmp/synth.json")
top=snap03.avhdx

echo "the program users run ignores the hooks' variables"
cp -a "$tmp/pristine" "$tmp/rel"
set +e
"${hookenv[@]}" "$rel" merge "$tmp/rel/$top" --seed 42 --progress none --json >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ $rc = 0 ] && ok "merge with VXM_KILL_AT='*:1': exit 0" || bad "merge: exit $rc: $(cat "$tmp/err")"
if [ $rc = 0 ]; then
	[ "$(jget 'd["commits"]' <"$tmp/out")" = 1 ] && ok "merge: one commit (VXM_COMMIT_BYTES ignored)" ||
		bad "merge: $(jget 'd["commits"]' <"$tmp/out") commits"
	[ "$(raw_sha "$tmp/rel/base.vhdx")" = "$want" ] && ok "merge: the base reads as the chain did" ||
		bad "merge: the base reads differently"
fi
grep -q "kill point" "$tmp/err" && bad "merge: a kill point fired: $(cat "$tmp/err")" || true
uring_notice_rel=0
grep -q "io_uring unavailable" "$tmp/err" && uring_notice_rel=1

set +e
"${hookenv[@]}" "$rel" convert "$tmp/pristine/$top" "$tmp/out.raw" --format raw --seed 42 \
	--progress none --json >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
[ $rc = 0 ] && ok "raw convert with VXM_KILL_AT='*:1': exit 0" || bad "raw convert: exit $rc: $(cat "$tmp/err")"
if [ $rc = 0 ]; then
	[ "$(jget 'd["commits"]' <"$tmp/out")" = 1 ] && ok "raw convert: one commit" ||
		bad "raw convert: $(jget 'd["commits"]' <"$tmp/out") commits"
	[ "$(sha256sum "$tmp/out.raw" | cut -d' ' -f1)" = "$want" ] && ok "raw convert: the chain's bytes" ||
		bad "raw convert: other bytes"
fi
rm -f "$tmp/out.raw"

echo "the test program obeys them (the same commands)"
cp -a "$tmp/pristine" "$tmp/hk"
set +e
"${hookenv[@]}" "$hooks" merge "$tmp/hk/$top" --seed 42 --progress none >/dev/null 2>"$tmp/err"
rc=$?
set -e
[ $rc = 137 ] && grep -q "kill point reached" "$tmp/err" && ok "merge with VXM_KILL_AT='*:1': exit 137" ||
	bad "vhdxmerge-hooks merge: exit $rc, wanted 137: $(cat "$tmp/err")"
cp -a "$tmp/pristine" "$tmp/hk2"
set +e
env VXM_COMMIT_BYTES=1048576 VXM_URING_DISABLED=1 "$hooks" merge "$tmp/hk2/$top" --seed 42 \
	--progress none --json >"$tmp/out" 2>"$tmp/err"
rc=$?
set -e
if [ $rc = 0 ]; then
	c=$(jget 'd["commits"]' <"$tmp/out")
	[ "$c" -gt 2 ] && ok "merge with VXM_COMMIT_BYTES=1048576: $c commits" || bad "merge: $c commits, wanted more than 2"
	grep -q "io_uring unavailable" "$tmp/err" && ok "VXM_URING_DISABLED: the fallback notice" ||
		bad "VXM_URING_DISABLED: no fallback notice: $(cat "$tmp/err")"
	if [ $uring_notice_rel = 0 ]; then
		ok "the program users run kept io_uring under VXM_URING_DISABLED"
	else
		echo "  skip io_uring is unavailable here: the fallback notice tells nothing apart"
	fi
else
	bad "vhdxmerge-hooks merge with commits every MiB: exit $rc: $(cat "$tmp/err")"
fi

echo "no hook's variable in what is installed"
for v in VXM_KILL_AT VXM_COMMIT_BYTES VXM_URING_DISABLED; do
	grep -q -a "$v" "$rel" && bad "$v in $(basename "$rel")" || ok "no $v in $(basename "$rel")"
	grep -q -a "$v" "$lib" && bad "$v in $(basename "$lib")" || ok "no $v in $(basename "$lib")"
	grep -q -a "$v" "$hooks" && ok "$v in $(basename "$hooks") (the check sees it)" ||
		bad "$v not found in $(basename "$hooks"): the check cannot see it"
done

echo "release_hooks: $pass passed, $fail failed"
[ $fail = 0 ]
