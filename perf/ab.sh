#!/usr/bin/env bash
# perf/ab.sh: interleaved A/B timing of merge variants on one synthesized chain.
#
# The disk of a cloud VM drifts between fast and slow phases, so comparing
# two medians taken minutes apart says little; here every round runs every
# variant once, in turn, each on a fresh copy of the chain with the page
# cache dropped, and prints one line per run (the pairs are read side by
# side).  The README's request-size and gathering pairs come from this.
#
# Each line also gives the "open" time (until the copy phase starts), the
# time spent removing merged files (--full-copy), and the first 16 hex digits
# of the merged base's sha256 (every variant writes the same seed's GUIDs, so
# variants that must not change a byte show the same digest).
#
# Usage: perf/ab.sh [--rounds N] [--work DIR] [--full-copy]
#                   [--synth "ARGS"] VARIANT...
#   VARIANT        LABEL=BINARY[:OPTIONS], e.g. "new=build-perf/vhdxmerge:--chunk-size 4M";
#                  OPTIONS of the form NAME=VALUE go to the environment, e.g.
#                  "nocommit=build-perf/vhdxmerge-hooks:VXM_COMMIT_BYTES=1099511627776"
#                  (test hooks, which only vhdxmerge-hooks has: no commit
#                  before the end; cmake --build build-perf --target vhdxmerge-hooks)
#   --rounds N     rounds (3)
#   --work DIR     where the chain and its copies go (/var/tmp/vxm-ab)
#   --full-copy    copy every file and merge with the merged files removed
#                  (default: copy the base, hard-link the rest, --keep-merged)
#   --synth ARGS   synth arguments after DIR (default: the main perf chain,
#                  8G, 10 layers, whole 2M blocks, ~3 GB above the base)
# Needs root for drop_caches (skipped with a warning otherwise) and jq.
set -euo pipefail
rounds=3 work=/var/tmp/vxm-ab full=0
synth="--seed 42 --size 8G --layers 10 --block-size 2M --fill 0.051 --partial 0 --zero 0.02"
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--work) work=$2; shift ;;
	--full-copy) full=1 ;;
	--synth) synth=$2; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
	-*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || { echo "ab.sh: no variant (LABEL=BINARY[:OPTIONS])" >&2; exit 2; }
command -v jq >/dev/null || { echo "ab.sh: jq is needed" >&2; exit 2; }
first_bin=${1#*=}; first_bin=${first_bin%%:*}
mkdir -p "$work"
chain=$work/chain
if [ ! -e "$chain/base.vhdx" ]; then
	# shellcheck disable=SC2086
	"$first_bin" synth "$chain" $synth --no-digest --json >/dev/null
fi
top=$(ls "$chain"/snap*.avhdx | sort | tail -1)
drop() {
	sync
	if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches
	else echo "ab.sh: cannot drop caches (not root): timings include the page cache" >&2; fi
}
echo "chain: $chain ($(du -sh "$chain" | cut -f1)), top $(basename "$top"), $rounds rounds"
for r in $(seq "$rounds"); do
	for v in "$@"; do
		label=${v%%=*} rest=${v#*=}
		bin=${rest%%:*} opts=
		[ "$rest" != "$bin" ] && opts=${rest#*:}
		envs=()
		for o in $opts; do [[ $o =~ ^[A-Z_]+= ]] && envs+=("$o"); done
		opts=$(for o in $opts; do [[ $o =~ ^[A-Z_]+= ]] || printf '%s ' "$o"; done)
		w=$work/run
		rm -rf "$w"; mkdir -p "$w"
		if [ $full = 1 ]; then
			for f in "$chain"/*; do cp --sparse=never "$f" "$w/"; done
			keep=
		else
			cp --sparse=never "$chain/base.vhdx" "$w/"
			for f in "$chain"/snap*.avhdx; do ln "$f" "$w/"; done
			keep=--keep-merged
		fi
		drop
		sleep 1
		# shellcheck disable=SC2086
		/usr/bin/time -f "%e %U %S %M" -o "$work/time" env "${envs[@]}" "$bin" merge "$w/$(basename "$top")" \
			$keep --progress json --json --seed 1 $opts >"$work/out.json"
		read -r wall user sys rss <"$work/time"
		# "open": until the copy phase starts (chain opened, validated, planned);
		# "removal": the cleanup phase (deleting the merged files)
		jq -r -s --arg r "$r" --arg l "$label" --arg wall "$wall" --arg rss "$rss" \
			--arg cpu "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" '
			([.[] | select(.event == "summary")][0]) as $s |
			([.[] | select(.event == "phase")]) as $p |
			(($p | map(select(.phase == "copy")))[0].elapsed_s // 0) as $open |
			(($p | map(select(.phase == "cleanup")))[0].elapsed_s // $s.seconds) as $rm |
			"round \($r) \($l): \($wall) s wall, \($s.seconds * 100 | floor / 100) s merge (open \($open) s, removal \(($s.seconds - $rm) * 100 | floor / 100) s), \($s.bytes_copied) bytes, \($s.data_writes) writes, \($s.commits // "-") commits (\($s.commit_seconds // 0 | . * 100 | floor / 100) s), \($s.bytes_copied / $s.seconds / 1e6 | floor) MB/s, cpu \($cpu) s, rss \($rss) KiB"' \
			"$work/out.json" | tr -d '\n'
		echo ", base sha256 $(sha256sum "$w/base.vhdx" | cut -c1-16)"
	done
done
rm -rf "$work/run"
