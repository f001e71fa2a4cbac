#!/usr/bin/env bash
# perf/diskstat.sh: the disk's own counters (/proc/diskstats) around a command.
#
#   perf/diskstat.sh [--dev vda] CMD [ARGS...]   runs CMD (its output to
#       /dev/null), then prints seconds, reads and writes at the device (count,
#       mean size, mean latency, MB/s), the share of the time the disk had a
#       request in flight (busy) and the mean queue depth
#   . perf/diskstat.sh                          (perf/run.sh) defines
#       disk_snap DEV and disk_delta "SNAP0" "SNAP1" T0 T1 ->
#       "busy%,queue,read_bytes,write_bytes,discard_bytes"
#
# Busy alone does not mean saturated (one request at a time keeps a disk
# busy); the queue and the request sizes say what the run asked of it.
# The device defaults to the disk holding the current directory.

# disk_snap DEV: reads, sectors read, ms reading, writes, sectors written,
# ms writing, io_ticks ms, weighted ms, discards, sectors discarded, ms
# discarding (0 on kernels before 4.18).  Freeing a file's blocks on a file
# system mounted with discard waits for the device's discards: the time rm
# takes there is in the last three.
disk_snap() {
	awk -v d="$1" '$3 == d { print $4, $6, $7, $8, $10, $11, $13, $14, $15 + 0, $17 + 0, $18 + 0 }' /proc/diskstats
}
disk_delta() { # SNAP0 SNAP1 T0 T1
	awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" 'BEGIN {
		n = split(a, x, " "); split(b, y, " "); ms = (t1 - t0) * 1000
		if (n < 11 || ms <= 0) { print "0,0,0,0,0"; exit }
		printf "%.1f,%.2f,%.0f,%.0f,%.0f", (y[7] - x[7]) / ms * 100, (y[8] - x[8]) / ms,
			(y[2] - x[2]) * 512, (y[5] - x[5]) * 512, (y[10] - x[10]) * 512 }'
}
disk_of() { # PATH: the whole disk holding PATH (vda for /dev/vda1)
	local dev b
	dev=$(df --output=source "$1" | tail -1)
	b=$(basename "$(readlink -f "$dev")" | sed 's/[0-9]*$//; s/p$//')
	[ -e "/sys/block/$b" ] || b=$(lsblk -no pkname "$dev" 2>/dev/null | head -1 || true)
	echo "$b"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	dev=
	if [ "${1:-}" = --dev ]; then dev=$2; shift 2; fi
	case ${1:-} in ""|-h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
	[ -n "$dev" ] || dev=$(disk_of .)
	s0=$(disk_snap "$dev"); t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N); s1=$(disk_snap "$dev")
	awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN {
		split(a, x, " "); split(b, y, " "); el = (t1 - t0) * 1000
		r = y[1] - x[1]; rs = y[2] - x[2]; rt = y[3] - x[3]
		w = y[4] - x[4]; ws = y[5] - x[5]; wt = y[6] - x[6]
		dn = y[9] - x[9]; ds = y[10] - x[10]; dt = y[11] - x[11]
		printf "%.2f s: reads %d (%.0f KiB, %.1f ms, %.0f MB/s), writes %d (%.0f KiB, %.1f ms, %.0f MB/s), discards %d (%.0f MB, %.0f ms at the device), busy %.0f%%, mean queue %.1f\n",
			el / 1000, r, r ? rs / 2 / r : 0, r ? rt / r : 0, rs * 512 / el / 1000,
			w, w ? ws / 2 / w : 0, w ? wt / w : 0, ws * 512 / el / 1000,
			dn, ds * 512 / 1e6, dt, (y[7] - x[7]) / el * 100, (y[8] - x[8]) / el }'
fi
