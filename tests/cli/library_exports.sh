#!/usr/bin/env bash
# The shared library exports the public API and nothing else (issue 19):
# after `cmake --install` into a scratch prefix, `nm -D --defined-only` of
# the installed libvhdxmerge.so lists exactly the functions
# include/vhdxmerge.h declares (no vxm_fault_*, no codec or engine
# internals, no test hooks), and every one of them.  The same comparison on
# the static archive (which keeps its internal symbols) must find extras:
# the check can fail.  A program that includes only the header and links
# only the library (tests/cli/shared_view.c), run against the installed
# copy, reads a synthesized chain to the digest synth computed from its own
# model and reports a missing file as a chain error.  In the sanitizer build
# the state checkers' asserts are compiled in (writer.c, psync.c, uring.c).
set -euo pipefail
rel="${VXM_RELEASE_BIN:?VXM_RELEASE_BIN not set}"
view="${VXM_SHARED_VIEW:?VXM_SHARED_VIEW not set}"
build="${VXM_BUILD_DIR:?VXM_BUILD_DIR not set}"
src="${VXM_SOURCE_DIR:?VXM_SOURCE_DIR not set}"
cmake="${VXM_CMAKE:-cmake}"
tmp="$(mktemp -d "${VXM_TEST_TMP:-/tmp}/library-exports.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
command -v nm >/dev/null || { echo "library_exports: no nm (binutils); skipped"; exit 77; }

# Function names the header declares, as the compiler sees it (comments and
# macros such as vxm_fail gone).
"${CC:-cc}" -E -P -x c "$src/include/vhdxmerge.h" |
	grep -oE '\bvxm_[A-Za-z0-9_]+[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | sort -u >"$tmp/declared"
[ "$(wc -l <"$tmp/declared")" -gt 40 ] || { echo "FAIL: only $(wc -l <"$tmp/declared") declarations found"; exit 1; }

# extras FILE NMFLAGS...: defined symbols of FILE the header does not declare
extras() {
	local f=$1
	shift
	nm "$@" --defined-only "$f" | awk 'NF >= 3 { print $NF }' | sort -u >"$tmp/defined"
	comm -23 "$tmp/defined" "$tmp/declared"
}

"$cmake" --install "$build" --prefix "$tmp/inst" >"$tmp/install.log"
so=$(find "$tmp/inst" -name 'libvhdxmerge.so.*' -type f | head -n 1)
[ -n "$so" ] || { echo "FAIL: no libvhdxmerge.so installed under $tmp/inst"; cat "$tmp/install.log"; exit 1; }
echo "installed: ${so#"$tmp/inst/"}"

x=$(extras "$so" -D)
[ -z "$x" ] && ok "exports nothing the header does not declare ($(wc -l <"$tmp/defined") symbols)" ||
	bad "exports $(echo "$x" | wc -l) undeclared symbols: $(echo "$x" | head -n 20 | tr '\n' ' ')"
missing=$(comm -13 "$tmp/defined" "$tmp/declared")
[ -z "$missing" ] && ok "exports every function the header declares ($(wc -l <"$tmp/declared"))" ||
	bad "does not export: $(echo "$missing" | tr '\n' ' ')"
nm -D --defined-only "$so" | awk 'NF >= 3 && $2 != "T" { bad = 1 } END { exit bad }' &&
	ok "every export is a function" || bad "exports data: $(nm -D --defined-only "$so" | awk '$2 != "T"')"

a=$(find "$tmp/inst" -name 'libvhdxmerge.a' | head -n 1)
x=$(extras "$a" -A 2>/dev/null | sort -u)
grep -qx vxm_fault_arm <<<"$x" && grep -qx vxm_killpoint <<<"$x" &&
	ok "the static archive's internals are seen as extras ($(echo "$x" | wc -l), vxm_fault_arm among them)" ||
	bad "the check does not see the static archive's internals"

if [ "${VXM_SANITIZED:-0}" = 1 ]; then
	# the sanitizer build keeps the asserts, and with them the state checkers
	nm -A "$a" 2>/dev/null >"$tmp/archive.nm" || true
	for o in writer psync uring; do
		grep -q ":$o\.c\.o: *U __assert_fail$" "$tmp/archive.nm" &&
			ok "sanitizer build: $o.c keeps its asserts" || bad "sanitizer build: $o.c has no assert"
	done
fi

echo "a program of the public header alone, on the installed library"
"$rel" synth "$tmp/chain" --seed 23 --size 16M --layers 3 --block-size 1M --json >"$tmp/synth.json"
want=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$tmp/synth.json")
syms=$(nm "$view")
grep -q ' [TtW] vxm_chain_open$' <<<"$syms" && bad "$(basename "$view") has vxm_chain_open built in" ||
	ok "$(basename "$view") takes vxm_chain_open from the library"
libdir=$(dirname "$so")
deps=$(LD_LIBRARY_PATH="$libdir" ldd "$view")
grep -q "libvhdxmerge.so.* => $libdir/" <<<"$deps" &&
	ok "it loads the installed libvhdxmerge.so" || bad "it loads: $(grep vhdxmerge <<<"$deps")"
out=$(LD_LIBRARY_PATH="$libdir" "$view" "$tmp/chain/snap02.avhdx" "$tmp/chain/none.avhdx")
echo "$out" | sed 's/^/    /'
grep -q "^layers 3 size 16777216 sha256 $want$" <<<"$out" && ok "it reads the chain to synth's digest" ||
	bad "it reads something else (synth: $want)"
grep -q "^missing: .*none.avhdx.*exit class [0-9]" <<<"$out" && ok "it reports the missing file" ||
	bad "no error for the missing file"

echo "library_exports: $pass passed, $fail failed"
[ $fail = 0 ]
