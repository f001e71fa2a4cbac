#!/usr/bin/env bash
# perf/fio_compare.sh: vhdxmerge's io/ pipeline against fio, same shapes.
#
# Runs bench/io_bench (Google Benchmark; uring and psync backends) and
# fio --ioengine=io_uring --direct=1 (fixed buffers, registered files: what
# the uring backend uses) for sequential read and write at each block size
# and queue depth, on the same O_DIRECT file, and prints MiB/s side by side.
# Each tool runs FIO_RUNTIME seconds per shape (io_bench: min_time).
#
# usage: perf/fio_compare.sh [BUILD_DIR]     (default: build-bench)
#   BUILD_DIR must hold bench/io_bench, e.g.
#   cmake -S . -B build-bench -DVXM_BENCH=ON -DVXM_TESTS=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-bench --target io_bench
# env: VXM_BENCH_FILE (default /var/tmp/vxm_io_bench.dat), VXM_BENCH_MIB
#      (default 512, at most 1024), FIO_RUNTIME seconds per shape (default 2),
#      BS / QD to override the lists ("4096 65536 ...").
# Raw results go to perf/out/ (git-ignored).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-bench}
bench=$build/bench/io_bench
file=${VXM_BENCH_FILE:-/var/tmp/vxm_io_bench.dat}
mib=${VXM_BENCH_MIB:-512}
runtime=${FIO_RUNTIME:-2}
bss=(${BS:-4096 65536 1048576 4194304})
qds=(${QD:-1 8 32 128})
out=$here/perf/out
max_inflight=$((128 * 1024 * 1024))

for tool in fio jq; do
	command -v $tool >/dev/null || { echo "fio_compare: $tool is not installed" >&2; exit 1; }
done
[ -x "$bench" ] || { echo "fio_compare: $bench not built (see the header)" >&2; exit 1; }
mkdir -p "$out"
export VXM_BENCH_FILE=$file VXM_BENCH_MIB=$mib

# The disk of a shared VM is noisy, so the tools take turns shape by shape
# instead of one whole sweep after the other.  io_bench goes first: it
# (re)creates the file at the right size.
"$bench" --benchmark_filter='^$' >/dev/null 2>&1

bench_shape() { # op(0/1) bs qd -> writes $out/bench-$1-$2-$3.json
	"$bench" --benchmark_filter="BM_seq/uring:[01]/write:$1/bs:$2/qd:$3/" \
		--benchmark_min_time="$runtime" --benchmark_format=json \
		--benchmark_out="$out/bench-$1-$2-$3.json" --benchmark_out_format=json >/dev/null
}

vxm_mibs() { # backend op bs qd -> MiB/s or "-"
	jq -r --arg n "BM_seq/uring:$1/write:$2/bs:$3/qd:$4/" '
		[.benchmarks[] | select(.name | startswith($n))][0]
		| if . == null or .error_occurred then "-"
		  else (.bytes_per_second / 1048576 | floor | tostring) end' \
		"$out/bench-$2-$3-$4.json"
}

printf "%-6s %8s %4s | %10s %10s %10s | %s\n" op bs qd "fio MiB/s" "uring" "psync" "uring/fio"
printf -- "-------------------------------------------------------------------\n"
for op in read write; do
	w=$([ $op = write ] && echo 1 || echo 0)
	for bs in "${bss[@]}"; do
		for qd in "${qds[@]}"; do
			[ $((bs * qd)) -le $max_inflight ] || continue
			json=$out/fio-$op-$bs-$qd.json
			fio --name=vxm --filename="$file" --size="${mib}M" --rw=$op --bs=$bs \
				--iodepth=$qd --ioengine=io_uring --direct=1 --fixedbufs=1 \
				--registerfiles=1 --runtime="$runtime" --time_based --ramp_time=0.5 \
				--output-format=json >"$json" 2>/dev/null || true
			bench_shape $w $bs $qd
			f=$(jq -r --arg op $op '.jobs[0][$op].bw_bytes // 0 | . / 1048576 | floor' \
				"$json" 2>/dev/null || echo 0)
			u=$(vxm_mibs 1 $w $bs $qd)
			p=$(vxm_mibs 0 $w $bs $qd)
			ratio=-
			if [ "$u" != - ] && [ "$f" -gt 0 ]; then
				ratio=$((100 * u / f))%
			fi
			printf "%-6s %8s %4s | %10s %10s %10s | %s\n" $op $bs $qd "$f" "$u" "$p" "$ratio"
		done
	done
done
