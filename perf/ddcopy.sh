#!/usr/bin/env bash
# perf/ddcopy.sh SRC DST BYTES N: a true copy at queue depth N: N dd
# processes, each copying its 1/N of SRC's first BYTES to the same offsets
# of DST, 4 MiB at a time with O_DIRECT (read a buffer, then write it).
# fio's read and write jobs are independent; this one cannot write before
# it has read.  Time it, or wrap it: perf/diskstat.sh perf/ddcopy.sh ...
set -euo pipefail
[ $# -eq 4 ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src=$1 dst=$2 bytes=$3 n=$4 bs=$((4 << 20))
per=$(((bytes / bs + n - 1) / n))
rm -f "$dst"
: >"$dst"
for ((i = 0; i < n; i++)); do
	dd if="$src" of="$dst" bs=$bs skip=$((i * per)) seek=$((i * per)) count=$per \
		iflag=direct oflag=direct conv=notrunc status=none &
done
wait
