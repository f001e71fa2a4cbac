#!/usr/bin/env bash
# perf/trace.sh [--bins S] CMD...: where a command's time goes at the disk.
#
# Root only.  Drops the page cache, runs CMD under `perf record -a` with the
# block layer's request issue/complete and io_uring's submit/complete
# tracepoints (system-wide: completions run in interrupt context), then
# prints perf/trace_summary.py's account of it: bytes read and written at
# the device per time bin (--bins, default 0.1 s), every flush request (the
# device's write cache) and how long it took, the data moved while flushes
# were in flight, and io_uring latencies per opcode.  How the copy path's
# "gap" to fio was found to be the flushes fio never paid (README,
# Performance):
#   bash perf/trace.sh build-perf/vhdxmerge convert BASE.vhdx out.raw --format raw --progress none
set -euo pipefail
bins=0.1
if [ "${1:-}" = --bins ]; then bins=$2; shift 2; fi
[ $# -gt 0 ] || { sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[ "$(id -u)" = 0 ] || { echo "perf/trace.sh: needs root" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf/trace.sh: perf is needed (linux-perf)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sync
echo 3 >/proc/sys/vm/drop_caches
perf record -a -q -o "$tmp/perf.data" -e block:block_rq_issue -e block:block_rq_complete \
	-e io_uring:io_uring_submit_req -e io_uring:io_uring_complete -- "$@"
perf script -i "$tmp/perf.data" 2>/dev/null >"$tmp/perf.txt"
python3 "$(dirname "$0")/trace_summary.py" --bins "$bins" "$tmp/perf.txt"
