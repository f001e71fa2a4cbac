#!/usr/bin/env bash
# perf/copy_bound.sh: what bounds vhdxmerge's copy against fio's (issue 8).
#
#   bash perf/copy_bound.sh [--rounds N] [--bytes B] [--work DIR] [--vxm BIN]
#
# Root only (drops caches, reserves 40 huge pages for fio and gives them
# back).  In N interleaved rounds, caches dropped before each run, it times
# fio's copy with huge-page buffers (read || write, 4 MiB x 8, io_uring,
# O_DIRECT; then an fdatasync of what it wrote, timed apart: perf/flushed.sh)
# reading
#   seq      one file sequentially (perf/run.sh's best copy),
#   rand2m   2 MiB blocks at random, round robin over nine files (the merge's
#            read pattern: one request per source block, from every layer),
#   randw    sequential reads, 2 MiB writes at random into a file 2.5x
#            the bytes (where a merge's blocks land),
#   holes    sequential, the destination first sized with ftruncate (as a
#            merge grows its destination),
# and one fio job mixing reads and writes 50/50 at depth 16 on one ring
# (mix, MB/s each way), against vhdxmerge converting a one-file chain (a
# base of about B bytes of data) to a raw file: the engine's copy path with
# nothing to merge, at --queue-depth 16 and 32 and with --io psync (its
# time includes its flushes).  Each vhdxmerge run also prints the disk's
# counters (perf/diskstat.sh).
set -euo pipefail
rounds=3 bytes=3000M work=/var/tmp/vxm-copy-bound
vxm=$(cd "$(dirname "$0")/.." && pwd)/build-perf/vhdxmerge
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift ;;
	--bytes) bytes=$2; shift ;;
	--work) work=$2; shift ;;
	--vxm) vxm=$2; shift ;;
	-h|--help) sed -n '2,/^set/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "perf/copy_bound.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "perf/copy_bound.sh: needs root" >&2; exit 1; }
for t in fio jq; do command -v $t >/dev/null || { echo "perf/copy_bound.sh: $t is needed" >&2; exit 1; }; done
[ -x "$vxm" ] || { echo "perf/copy_bound.sh: no vhdxmerge at $vxm (--vxm)" >&2; exit 1; }
mkdir -p "$work/huge"
pages0=$(cat /proc/sys/vm/nr_hugepages)
cleanup() {
	mountpoint -q "$work/huge" && umount "$work/huge"
	echo "$pages0" >/proc/sys/vm/nr_hugepages
	rm -rf "$work"
}
trap cleanup EXIT
echo $((pages0 + 40)) >/proc/sys/vm/nr_hugepages
mount -t hugetlbfs -o pagesize=2M none "$work/huge"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
b=$(numfmt --from=iec "${bytes%B}")
part=$((b / 9 / 2097152 * 2097152)) total=$((b / 9 / 2097152 * 2097152 * 9))
prep() { fio --name=prep --filename="$1" --rw=write --bs=4M --size="$2" --direct=1 \
	--ioengine=io_uring --iodepth=8 --output=/dev/null >/dev/null; }
prep "$work/seq" $total
files=
for i in 1 2 3 4 5 6 7 8 9; do prep "$work/l$i" $part; files=$files${files:+:}$work/l$i; done
# a one-file chain: a dynamic base whose blocks hold about $total bytes
size=$(( (total * 5 / 2 + 1073741823) / 1073741824 ))G
"$vxm" synth "$work/one" --seed 5 --size "$size" --layers 1 --fill 0.4 --partial 0 --zero 0 \
	--no-digest --json >/dev/null
cb=$("$vxm" convert "$work/one/base.vhdx" "$work/x.raw" --format raw --dry-run --json \
	--progress none | jq .copy_bytes)
wr_seq=(--name=wr --filename="$work/dst" --rw=write --bs=4M --iodepth=8 --size=$total)
wr_job=("${wr_seq[@]}")
fio_copy() { # READ-JOB-OPTIONS...: seconds of the copy (writes: wr_job), then of its fdatasync
	rm -f "$work/dst"
	drop
	"$(dirname "$0")/flushed.sh" "$work/dst" "$work/flush.txt" \
		fio --output-format=json --output="$work/fio.json" --iomem="mmaphuge:$work/huge/fio" \
		--hugepage-size=2M --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 \
		--fallocate=none "$@" "${wr_job[@]}" >/dev/null
	echo "$(jq -r '[.jobs[] | (.read.runtime, .write.runtime)] | max / 1000' "$work/fio.json") $(cat "$work/flush.txt")"
}
seq_rd=(--name=rd --filename="$work/seq" --rw=read --bs=4M --iodepth=8 --size=$total)
mbs() { # BYTES "COPY_S FLUSH_S": the copy's rate, and with its flush
	awk -v b="$1" -v s="${2% *}" -v f="${2#* }" \
		'BEGIN { printf "%.2f s (%.0f MB/s; with the fdatasync %.2f s, %.0f MB/s)", s, b / s / 1e6, s + f, b / (s + f) / 1e6 }'
}
echo "fio copies of $total bytes (huge-page buffers), vhdxmerge convert of $cb bytes"
for r in $(seq "$rounds"); do
	s=$(fio_copy "${seq_rd[@]}")
	q=$(fio_copy --name=rd --filename="$files" --file_service_type=roundrobin --rw=randread \
		--bs=2M --iodepth=8 --size=$total)
	wr_job=(--name=wr --filename="$work/dst" --rw=randwrite --bs=2M --iodepth=8
		--filesize=$((total * 5 / 2)) --io_size=$total --fallocate=truncate)
	w=$(fio_copy "${seq_rd[@]}")
	wr_job=("${wr_seq[@]}" --fallocate=truncate)
	h=$(fio_copy "${seq_rd[@]}")
	wr_job=("${wr_seq[@]}")
	drop
	fio --output-format=json --output="$work/mix.json" --iomem="mmaphuge:$work/huge/fio" \
		--hugepage-size=2M --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 \
		--name=mix --filename="$work/seq" --rw=rw --rwmixread=50 --bs=4M --iodepth=16 \
		--size=$total --io_size=$((total * 2)) >/dev/null
	m=$(jq -r '.jobs[0] | "\(.read.bw_bytes / 1e6 | floor) / \(.write.bw_bytes / 1e6 | floor) MB/s"' \
		"$work/mix.json")
	echo "round $r: fio seq $(mbs $total "$s"), rand2m over 9 files $(mbs $total "$q"), randw $(mbs $total "$w"), holes $(mbs $total "$h"), mix read/write $m"
	for v in "--queue-depth 16" "--queue-depth 32" "--io psync"; do
		rm -f "$work/x.raw"
		drop
		# shellcheck disable=SC2086
		echo "  vhdxmerge convert $v: $(bash "$(dirname "$0")/diskstat.sh" "$vxm" convert \
			"$work/one/base.vhdx" "$work/x.raw" --format raw --progress none $v)"
	done
done
