#!/usr/bin/env bash
# perf/flushed.sh FILE OUT CMD...: runs CMD (a copy into FILE), then makes
# FILE durable (fdatasync: on ext4 and XFS also a flush of the device's
# write cache) and writes the flush's seconds to OUT.
#
# A direct-I/O write completes when the device has it, which on a virtio
# disk over a host page cache is the host's memory: fio's copy there is 2x
# faster than the disk until the flush (measured: 1.7 GB copied in 1.5 s,
# then 1.7-2.2 s of fdatasync).  A merge, qemu-img commit and qemu-img
# convert all flush before they finish, so the copy limit they are held to
# flushes too (perf/run.sh).
set -euo pipefail
f=$1 out=$2
shift 2
"$@"
s=$(date +%s.%N)
sync --data "$f"
e=$(date +%s.%N)
awk -v a="$s" -v b="$e" 'BEGIN { printf "%.3f\n", b - a }' >"$out"
