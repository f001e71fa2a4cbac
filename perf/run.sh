#!/usr/bin/env bash
# perf/run.sh: end-to-end merge performance, vhdxmerge against the disk's raw
# copy limit and its peers, in one run on one machine (issue 8).
#
#   bash perf/run.sh [options]
#
# What it does, in order (each part can be skipped with --skip):
#   chain    a synthetic VHDX chain (vhdxmerge synth: --size, --layers, about
#            --unique bytes above the base) and the same layout as a qcow2
#            chain (perf/qcow2_chain.py: qemu-img create + qemu-io writes)
#   raw      the raw limit: a direct-I/O copy of the same number of bytes,
#            fio io_uring read || write (1 MiB x 32 and 4 MiB x 8) and
#            dd iflag=direct oflag=direct bs=1M, and (root) fio 4 MiB x 8 with
#            its buffers in huge pages as vhdxmerge's are; with vxm, also the 4 MiB
#            copy followed by rm of copies of the files a merge removes (the
#            limit for the whole job of a merge that deletes what it merged).
#            Every copy ends with an fdatasync of what it wrote
#            (perf/flushed.sh), as a merge and qemu-img end with theirs; the
#            table shows the copy and the flush apart
#   vxm      vhdxmerge merge into the base (merged files removed, as a user
#            runs it), the same with --keep-merged, merge --into the middle
#            layer, convert to a new VHDX; a chain with partial blocks too
#   qemu     qemu-img commit -b base (-t none, and the default writeback),
#            qemu-img convert -O qcow2 (-t none -T none, and the default)
#   levels   level-by-level merging as Hyper-V scripts do it, newest first,
#            until one file is left, each merged file deleted (as Merge-VHD
#            does): vhdxmerge merge snapN --into snapN-1, and qemu-img commit
#            -t none snapN then rm snapN on the qcow2 chain
#   layers   merge time against chain length (--scale-layers) at equal
#            unique bytes (--scale-unique-bytes)
#   sizes    merge time against unique bytes (--scale-sizes), copy path
#   reflink  the reflink path on an XFS loop mount (root only): merge time
#            against unique bytes (--reflink-sizes)
#   rss      peak RSS of a merge of a --rss-size virtual disk, --rss-layers
#
# raw, vxm, qemu, levels and layers run in --runs interleaved rounds: each
# round times every one of those operations once (level by level in the
# first --level-runs rounds), in an order rotated by one per round, so that
# ratios are taken between runs minutes apart, not parts half an hour apart.
# Every timed run starts with caches dropped (sync; echo 3 >
# /proc/sys/vm/drop_caches) when that is permitted (root), records wall, user
# and system seconds, peak RSS, the 1-minute load average and, for a merge,
# the seconds it spent removing the merged files.  The table gives medians of
# the runs, and its ratios are medians of the per-round ratios.
#
# Output: OUT/runs.csv (every run), OUT/results.json, OUT/table.md (the
# table, machine description and target verdicts) and OUT/throughput.png
# (perf/report.py; it installs python3-matplotlib through apt-get when it is
# missing and it may).  Default OUT: perf/results.  Scratch files live in
# --work (default /var/tmp/vxm-perf-run) and are removed at the end unless
# --keep.  Peak disk use is about 3x --unique plus the chain, the qcow2 chain
# and, for reflink, 1.3x the largest --reflink-sizes.
#
# Options:
#   --size S              virtual size of the main chain (8G)
#   --layers N            files in the main chain, base included (10)
#   --unique S            bytes above the base to aim for (3G)
#   --block-size B        VHDX block size (2M)
#   --partial P           synth --partial for the main chain (0: whole blocks,
#                         the same bytes in VHDX and in 64 KiB qcow2 clusters)
#   --zero Z              synth --zero (0.02)
#   --seed N              (42)
#   --runs N              interleaved rounds, one run of each figure per round
#                         (5); --level-runs N: level by level in the first N (3)
#   --queue-depth N       passed to vhdxmerge merge/convert (its default)
#   --chunk-size S        passed to vhdxmerge merge/convert (its default)
#   --io uring|psync      passed to vhdxmerge merge/convert (auto)
#   --scale-layers "L.."  (3 10 30); --scale-unique-bytes S (2G)
#   --scale-sizes "S.."   (1G 2G 4G)
#   --reflink-sizes "S.." (1G 2G 4G 8G)
#   --rss-size S (2T); --rss-layers N (30)
#   --skip "part.."       parts to leave out (chain is needed by raw, vxm,
#                         qemu and levels)
#   --quick               runs 3, level-runs 1, smaller scale lists
#   --build DIR           where vhdxmerge is (build-perf; built when missing:
#                         cmake -DCMAKE_BUILD_TYPE=Release -DVXM_TESTS=OFF)
#   --work DIR, --out DIR, --keep
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=perf/diskstat.sh
. "$here/perf/diskstat.sh"
size=8G layers=10 unique=3G bs=2M partial=0 zero=0.02 seed=42 runs=5 level_runs=3
qd="" chunk="" io="" scale_layers="3 10 30" scale_unique=2G scale_sizes="1G 2G 4G"
reflink_sizes="1G 2G 4G 8G" rss_size=2T rss_layers=30 skip="" keep=0
build=$here/build-perf work=/var/tmp/vxm-perf-run out=$here/perf/results

die() { echo "perf/run.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
	case $1 in
	--size) size=$2; shift ;;
	--layers) layers=$2; shift ;;
	--unique) unique=$2; shift ;;
	--block-size) bs=$2; shift ;;
	--partial) partial=$2; shift ;;
	--zero) zero=$2; shift ;;
	--seed) seed=$2; shift ;;
	--runs) runs=$2; shift ;;
	--level-runs) level_runs=$2; shift ;;
	--queue-depth) qd=$2; shift ;;
	--chunk-size) chunk=$2; shift ;;
	--io) io=$2; shift ;;
	--scale-layers) scale_layers=$2; shift ;;
	--scale-unique-bytes) scale_unique=$2; shift ;;
	--scale-sizes) scale_sizes=$2; shift ;;
	--reflink-sizes) reflink_sizes=$2; shift ;;
	--rss-size) rss_size=$2; shift ;;
	--rss-layers) rss_layers=$2; shift ;;
	--skip) skip="$skip $2"; shift ;;
	--quick) runs=3 level_runs=1 scale_layers="3 30" scale_sizes="1G 4G"
		 reflink_sizes="1G 8G" ;;
	--build) build=$(cd "$2" && pwd); shift ;;
	--work) work=$2; shift ;;
	--out) out=$2; shift ;;
	--keep) keep=1 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
want() { case " $skip " in *" $1 "*) return 1 ;; esac; return 0; }

bytes() { # 3G -> 3221225472 (K/M/G/T, binary)
	python3 -c "import re,sys; m=re.fullmatch(r'(\d+(?:\.\d+)?)([KMGT]?)(i?B)?', sys.argv[1], re.I)
if not m: sys.exit('bad size ' + sys.argv[1])
print(int(float(m[1]) * 1024 ** ' KMGT'.index((m[2] or ' ').upper())))" "$1"
}

# ---- tools ----------------------------------------------------------------
for t in jq python3 /usr/bin/time; do
	command -v $t >/dev/null || die "$t is needed"
done
want raw && for t in fio dd; do command -v $t >/dev/null || die "$t is needed (or --skip raw)"; done
want qemu && for t in qemu-img qemu-io; do
	command -v $t >/dev/null || die "$t is needed (or --skip qemu)"; done
vxm=$build/vhdxmerge
if [ ! -x "$vxm" ]; then
	echo "building $vxm (Release)"
	cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVXM_TESTS=OFF -DVXM_BENCH=OFF >/dev/null
	cmake --build "$build" -j"$(nproc)" --target vhdxmerge >/dev/null
fi
vxm_opts=()
[ -n "$qd" ] && vxm_opts+=(--queue-depth "$qd")
[ -n "$chunk" ] && vxm_opts+=(--chunk-size "$chunk")
[ -n "$io" ] && vxm_opts+=(--io "$io")

can_drop=0 T_DISK=0,0,0,0,0
[ -w /proc/sys/vm/drop_caches ] && can_drop=1
drop_caches() {
	sync
	[ $can_drop = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	return 0
}

mkdir -p "$work" "$out"
work=$(cd "$work" && pwd)
out=$(cd "$out" && pwd)
xfs_mnt=$work/xfs
huge_mnt=$work/hugetlbfs huge_pages0=
cleanup() {
	if mountpoint -q "$xfs_mnt" 2>/dev/null; then umount "$xfs_mnt" || true; fi
	if mountpoint -q "$huge_mnt" 2>/dev/null; then umount "$huge_mnt" || true; fi
	[ -z "$huge_pages0" ] || echo "$huge_pages0" >/proc/sys/vm/nr_hugepages || true
	[ $keep = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
csv=$out/runs.csv
meta=$out/meta.json
echo "section,op,label,run,bytes,moved,seconds,copy_s,user_s,sys_s,rss_kb,load1,cleanup_s,disk_busy_pct,disk_queue,disk_read_bytes,disk_write_bytes,disk_discard_bytes,flush_s" >"$csv"

# ---- machine --------------------------------------------------------------
fstype=$(df --output=fstype "$work" | tail -1)
blk=$(disk_of "$work")
sched=$(cat /sys/block/$blk/queue/scheduler 2>/dev/null | sed 's/.*\[\(.*\)\].*/\1/' || echo "?")
python3 - "$meta" <<EOF
import json, os, platform, subprocess, sys
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
mem = int(next(l.split()[1] for l in open('/proc/meminfo') if l.startswith('MemTotal'))) * 1024
ver = lambda *c: (subprocess.run(c, capture_output=True, text=True).stdout.splitlines() or ['?'])[0]
json.dump({
  'cpu': cpu, 'cpus': os.cpu_count(), 'mem_bytes': mem, 'kernel': platform.release(),
  'disk': '$blk', 'scheduler': '$sched', 'fs': '$fstype', 'work': '$work',
  'rotational': open('/sys/block/$blk/queue/rotational').read().strip() if os.path.exists('/sys/block/$blk/queue/rotational') else '?',
  'caches_dropped': $can_drop == 1, 'runs': $runs, 'level_runs': $level_runs,
  'vhdxmerge': ver('$vxm', '--version'), 'git': ver('git', '-C', '$here', 'describe', '--always', '--dirty'),
  'fio': ver('fio', '--version'), 'qemu_img': ver('qemu-img', '--version'),
  'load_start': open('/proc/loadavg').read().split()[:3],
  'params': {'size': '$size', 'layers': $layers, 'unique': '$unique', 'block_size': '$bs',
             'partial': $partial, 'zero': $zero, 'seed': $seed, 'queue_depth': '$qd', 'chunk_size': '$chunk', 'io': '$io'},
}, open(sys.argv[1], 'w'), indent=1)
EOF
echo "perf: $(jq -r '"\(.cpu), \(.cpus) CPUs, \(.mem_bytes/1073741824|floor) GiB, kernel \(.kernel), \(.disk) (\(.scheduler)), \(.fs)"' "$meta")"
[ $can_drop = 1 ] || echo "perf: not root: caches are NOT dropped between runs" >&2

# ---- measuring --------------------------------------------------------------
# The disk's own counters around every run (disk_snap, disk_delta from
# perf/diskstat.sh): what the run asked of the device, whatever the seconds.
# timed CMD...: runs CMD with caches dropped; stdout in $work/out.txt; sets
# T_WALL T_USR T_SYS T_RSS T_LOAD, and T_DISK (busy %, mean queue, bytes
# read, bytes written over the run, or "0,0,0,0" without counters).
timed() {
	drop_caches
	T_LOAD=$(cut -d' ' -f1 /proc/loadavg)
	local d0 d1 t0 t1
	d0=$(disk_snap "$blk")
	t0=$(date +%s.%N)
	if ! /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt"; then
		echo "perf: failed: $*" >&2
		tail -5 "$work/err.txt" >&2
		return 1
	fi
	t1=$(date +%s.%N)
	d1=$(disk_snap "$blk")
	read -r T_WALL T_USR T_SYS T_RSS <"$work/time.txt"
	T_DISK=$(disk_delta "$d0" "$d1" "$t0" "$t1")
}
# row SECTION OP LABEL RUN BYTES MOVED SECONDS COPY_S [CLEANUP_S [FLUSH_S]]:
# RUN is the round; CLEANUP_S the seconds a merge spent removing the merged
# files; FLUSH_S the seconds a raw copy's final fdatasync took (in SECONDS)
row() {
	echo "$1,$2,\"$3\",$4,$5,$6,$7,$8,$T_USR,$T_SYS,$T_RSS,$T_LOAD,${9:-0},$T_DISK,${10:-0}" >>"$csv"
	printf "  %-34s run %s: %7.2f s  %s  rss %s MiB  load %s  disk busy %s%%, queue %s\n" "$2" "$4" "$7" \
		"$(awk -v b="$5" -v s="$7" 'BEGIN { if (s > 0) printf "%6.0f MB/s", b / s / 1e6 }')" \
		"$((T_RSS / 1024))" "$T_LOAD" "$(cut -d, -f1 <<<"$T_DISK")" "$(cut -d, -f2 <<<"$T_DISK")"
}
# vxm_row SECTION OP LABEL RUN: a vhdxmerge --progress json --json run in out.txt
vxm_row() {
	local j
	j=$(jq -s -c '
		([.[] | select(.event == "summary")][0]) as $s |
		([.[] | select(.event == "phase")]) as $p |
		([range(0; $p | length) | select($p[.].phase == "copy")][0]) as $i |
		([range(0; $p | length) | select($p[.].phase == "cleanup")][0]) as $k |
		{ b: $s.copy_bytes, m: ($s.bytes_copied + $s.bytes_zeroed), s: $s.seconds,
		  c: (if $i == null then 0 elif $i + 1 < ($p | length) then $p[$i + 1].elapsed_s - $p[$i].elapsed_s
		      else $s.seconds - $p[$i].elapsed_s end),
		  r: (if $k == null then 0 else $s.seconds - $p[$k].elapsed_s end) }' "$work/out.txt")
	row "$1" "$2" "$3" "$4" "$(jq .b <<<"$j")" "$(jq .m <<<"$j")" "$T_WALL" "$(jq .c <<<"$j")" \
		"$(jq .r <<<"$j")"
}

# synth_chain DIR LAYERS UNIQUE_BYTES VSIZE PARTIAL: a chain with about
# UNIQUE_BYTES above the base.  The fill per layer comes from a calibration
# chain a quarter the size: union = 1 - (1 - k*fill)^(layers-1).
declare -A kcal
synth_chain() {
	local dir=$1 n=$2 u=$3 v=$4 p=$5 key="$2/$5" f
	if [ -z "${kcal[$p]:-}" ]; then
		local cdir=$work/calib cv=$(( $(bytes "$v") / 4 ))
		[ $cv -ge $((1 << 30)) ] || cv=$((1 << 30))
		rm -rf "$cdir"
		"$vxm" synth "$cdir" --seed "$seed" --size "$cv" --layers 10 --block-size "$bs" \
			--fill 0.05 --partial "$p" --zero "$zero" --json >/dev/null
		local cb
		cb=$("$vxm" merge "$cdir/snap09.avhdx" --dry-run --json --progress none | jq .copy_bytes)
		kcal[$p]=$(python3 -c "print((1 - (1 - $cb / $cv) ** (1 / 9)) / 0.05)")
		rm -rf "$cdir"
	fi
	f=$(python3 -c "
c = min($(bytes "$u") / $(bytes "$v"), 0.95)
print(round(min(1.0, (1 - (1 - c) ** (1 / ($n - 1))) / ${kcal[$p]}), 6))")
	rm -rf "$dir"
	"$vxm" synth "$dir" --seed "$seed" --size "$v" --layers "$n" --block-size "$bs" --fill "$f" \
		--partial "$p" --zero "$zero" --json >"$dir.synth.json"
}
top_of() { ls "$1"/snap*.avhdx | sort | tail -1; }
# fresh SRC DST [NAME...]: DST becomes a copy of chain SRC: plain copies (no
# sparse detection, so the files keep the layout synth gave them); with NAMEs,
# only those are copied (the destination and its child in the chain: the files
# a merge writes) and the rest hard-linked (removing them then frees nothing,
# so runs that use this keep the merged files).
fresh() {
	local src=$1 dst=$2 f
	shift 2
	rm -rf "$dst"
	mkdir -p "$dst"
	if [ $# -gt 0 ]; then
		for f in "$@"; do cp --sparse=never "$src/$f" "$dst/"; done
		for f in "$src"/*.vhdx "$src"/*.avhdx; do
			[ -e "$dst/$(basename "$f")" ] || ln "$f" "$dst/"
		done
	else
		cp --sparse=never "$src"/*.vhdx "$src"/*.avhdx "$dst/"
	fi
}

# ---- chain ------------------------------------------------------------------
main=$work/chain
mq=$work/qcow2
if want chain; then
	echo "perf: building the main chain ($size, $layers layers, ~$unique unique, partial $partial)"
	synth_chain "$main" "$layers" "$unique" "$size" "$partial"
	top=$(top_of "$main")
	plan=$("$vxm" merge "$top" --dry-run --json --progress none)
	U=$(jq .copy_bytes <<<"$plan")
	echo "perf: unique bytes above the base: $U (naive level-by-level: $(jq .naive_copy_bytes <<<"$plan"))"
	jq --argjson p "$plan" '.main_plan = $p' "$meta" >"$meta.tmp" && mv "$meta.tmp" "$meta"
	if want qemu; then
		echo "perf: building the equivalent qcow2 chain"
		qinfo=$(python3 "$here/perf/qcow2_chain.py" "$vxm" "$main" "$mq")
		jq --argjson q "$qinfo" '.qcow2 = $q' "$meta" >"$meta.tmp" && mv "$meta.tmp" "$meta"
		echo "perf: qcow2 data above the base: $(jq .commit_bytes <<<"$qinfo")"
	fi
else
	skip="$skip raw vxm qemu levels"
fi

# ---- interleaved rounds --------------------------------------------------------
# The disk of a cloud VM drifts between fast and slow phases (the same copy
# varies up to 1.8x within minutes), so the operations whose ratios are the
# targets (raw, vxm, qemu, levels, layers) are not timed part after part:
# every round runs each of them once, in an order rotated by one per round,
# and report.py divides within a round (merge by that round's best raw copy,
# qemu-img commit by that round's merge, ...) before taking medians.  Level
# by level runs in the first --level-runs rounds only.
ops=()
w=$work/w
if want raw; then
	R=$((U / 1048576 * 1048576))
	src=$work/raw-src.dat dst=$work/raw-dst.dat
	echo "perf: raw direct-I/O copies of $R bytes"
	fio --name=prep --filename="$src" --rw=write --bs=1M --size="$R" --direct=1 \
		--ioengine=io_uring --iodepth=32 --output=/dev/null >/dev/null
	# fio's buffers from 4 KiB pages reach a virtio disk as ~0.8 MiB requests
	# (254 segments a request); vhdxmerge's come from huge pages (io/topo.c).
	# The like-for-like limit gives fio huge pages too: a hugetlbfs pool of
	# 64 more 2 MiB pages for the run (root only; restored at exit).
	huge_fio=()
	if [ -w /proc/sys/vm/nr_hugepages ] && grep -qw hugetlbfs /proc/filesystems; then
		huge_pages0=$(cat /proc/sys/vm/nr_hugepages)
		echo $((huge_pages0 + 64)) >/proc/sys/vm/nr_hugepages
		mkdir -p "$huge_mnt"
		if [ "$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)" -ge 64 ] &&
			mount -t hugetlbfs -o pagesize=2M none "$huge_mnt"; then
			huge_fio=(--iomem="mmaphuge:$huge_mnt/fio" --hugepage-size=2M)
			echo "perf: fio also with its buffers in huge pages ($huge_mnt)"
		else
			echo "perf: no 2 MiB huge pages to be had: fio with 4 KiB pages only"
		fi
	fi
	# With "free", the copy is followed by removing fresh copies of the files
	# a merge into the base removes (every file above the base): what the
	# disk allows for the whole job of such a merge.  Freeing written blocks
	# is not free (on a file system mounted with discard it waits for the
	# device), and a plain copy frees nothing.
	op_fio() { # ROUND BS QD [free|huge]: "free" uses huge pages where there are
		local fw=$work/free s rs re rm_s=0 mem=() fl sf
		rm -rf "$dst" "$fw"
		if [ "${4:-}" = free ]; then
			mkdir -p "$fw"
			cp --sparse=never "$main"/snap*.avhdx "$fw/"
		fi
		[ "${4:-}" = "" ] || mem=("${huge_fio[@]}")
		# every copy ends durable (perf/flushed.sh): the merge and qemu-img do
		timed "$here/perf/flushed.sh" "$dst" "$work/flush.txt" \
			fio --output-format=json --output="$work/fio.json" "${mem[@]}" \
			--ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1 --fallocate=none \
			--name=rd --filename="$src" --rw=read --bs=$2 --iodepth=$3 --size="$R" \
			--name=wr --filename="$dst" --rw=write --bs=$2 --iodepth=$3 --size="$R"
		s=$(jq '[.jobs[] | (.read.runtime, .write.runtime)] | max / 1000' "$work/fio.json")
		fl=$(cat "$work/flush.txt")
		sf=$(awk -v a="$s" -v b="$fl" 'BEGIN { printf "%.3f", a + b }')
		if [ "${4:-}" = free ]; then
			rs=$(date +%s.%N)
			rm -rf "$fw"
			re=$(date +%s.%N)
			rm_s=$(awk -v a="$rs" -v b="$re" 'BEGIN { printf "%.3f", b - a }')
			row raw "fio_copy_free_$2_qd$3" \
				"direct-I/O copy: fio io_uring bs $2 qd $3${huge_fio:+ (huge pages)}, fdatasync, then rm of the $((layers - 1)) files a merge removes" \
				"$1" "$R" "$R" "$(awk -v a="$sf" -v b="$rm_s" 'BEGIN { printf "%.3f", a + b }')" "$s" "$rm_s" "$fl"
		elif [ "${4:-}" = huge ]; then
			row raw "fio_copy_huge_$2_qd$3" \
				"direct-I/O copy: fio io_uring read || write, bs $2 qd $3, buffers in huge pages, fdatasync" \
				"$1" "$R" "$R" "$sf" "$s" 0 "$fl"
		else
			row raw "fio_copy_$2_qd$3" "direct-I/O copy: fio io_uring read || write, bs $2 qd $3, fdatasync" \
				"$1" "$R" "$R" "$sf" "$s" 0 "$fl"
		fi
		rm -f "$dst"
	}
	op_dd() {
		rm -f "$dst"
		timed "$here/perf/flushed.sh" "$dst" "$work/flush.txt" \
			dd if="$src" of="$dst" bs=1M count=$((R / 1048576)) iflag=direct oflag=direct
		local s fl
		s=$(grep -o '[0-9.]* s,' "$work/err.txt" | tr -d ' s,' || echo "$T_WALL")
		fl=$(cat "$work/flush.txt")
		row raw dd_copy "direct-I/O copy: dd iflag=direct oflag=direct bs=1M, fdatasync" "$1" \
			"$R" "$R" "$(awk -v a="$s" -v b="$fl" 'BEGIN { printf "%.3f", a + b }')" "$s" 0 "$fl"
		rm -f "$dst"
	}
	ops+=("op_fio @ 1M 32" "op_fio @ 4M 8" "op_dd @")
	[ ${#huge_fio[@]} = 0 ] || ops+=("op_fio @ 4M 8 huge")
	want vxm && ops+=("op_fio @ 4M 8 free")
fi
if want vxm; then
	mid=$(ls "$main"/snap*.avhdx | sort | sed -n "$(( (layers - 1) / 2 ))p")
	midc=$(ls "$main"/snap*.avhdx | sort | sed -n "$(( (layers - 1) / 2 + 1 ))p")
	op_merge_base() {
		fresh "$main" "$w"
		timed "$vxm" merge "$w/$(basename "$top")" --progress json --json --seed 1 "${vxm_opts[@]}"
		vxm_row vxm merge_base "vhdxmerge merge (into the base, merged files removed)" "$1"
		rm -rf "$w"
	}
	op_merge_keep() {
		fresh "$main" "$w" base.vhdx snap01.avhdx
		timed "$vxm" merge "$w/$(basename "$top")" --keep-merged --progress json --json --seed 1 "${vxm_opts[@]}"
		vxm_row vxm merge_base_keep "vhdxmerge merge --keep-merged (into the base)" "$1"
		rm -rf "$w"
	}
	op_merge_into() {
		fresh "$main" "$w" "$(basename "$mid")" "$(basename "$midc")"
		timed "$vxm" merge "$w/$(basename "$top")" --into "$w/$(basename "$mid")" --keep-merged \
			--progress json --json --seed 1 "${vxm_opts[@]}"
		vxm_row vxm merge_into "vhdxmerge merge --keep-merged --into $(basename "$mid")" "$1"
		rm -rf "$w"
	}
	op_convert() {
		rm -f "$work/new.vhdx"
		timed "$vxm" convert "$top" "$work/new.vhdx" --progress json --json "${vxm_opts[@]}"
		vxm_row vxm convert "vhdxmerge convert (a new VHDX)" "$1"
		rm -f "$work/new.vhdx"
	}
	ops+=("op_merge_base @" "op_merge_keep @" "op_merge_into @" "op_convert @")
	if [ "$partial" = 0 ]; then
		echo "perf: a chain with partial blocks (--partial 0.5)"
		pc=$work/chain-partial
		synth_chain "$pc" "$layers" "$unique" "$size" 0.5
		op_merge_partial() {
			fresh "$pc" "$w" base.vhdx snap01.avhdx
			timed "$vxm" merge "$(top_of "$w")" --keep-merged --progress json --json --seed 1 "${vxm_opts[@]}"
			vxm_row vxm merge_base_partial "vhdxmerge merge --keep-merged, half the blocks partial" "$1"
			rm -rf "$w"
		}
		ops+=("op_merge_partial @")
	fi
fi
if want qemu; then
	QC=$(jq .qcow2.commit_bytes "$meta")
	QV=$(jq .qcow2.convert_bytes "$meta")
	qtop=$(jq -r '.qcow2.files[-1]' "$meta")
	qw=$work/qw
	op_qemu_commit() { # ROUND MODE: base copied (commit writes it), the rest hard-linked (read only)
		rm -rf "$qw"
		mkdir -p "$qw"
		cp --sparse=never "$mq/base.qcow2" "$qw/"
		local f
		for f in "$mq"/snap*.qcow2; do ln "$f" "$qw/"; done
		timed qemu-img commit -q -t $2 -d -b "$qw/base.qcow2" "$qw/$(basename "$qtop")"
		row qemu "qemu_commit_$2" "qemu-img commit -t $2 (-b base)" "$1" "$QC" "$QC" "$T_WALL" "$T_WALL"
		rm -rf "$qw"
	}
	op_qemu_convert() { # ROUND MODE
		rm -f "$work/new.qcow2"
		timed qemu-img convert -t $2 -T $2 -O qcow2 "$qtop" "$work/new.qcow2"
		row qemu "qemu_convert_$2" "qemu-img convert -t $2 -T $2 -O qcow2" "$1" "$QV" "$QV" "$T_WALL" "$T_WALL"
		rm -f "$work/new.qcow2"
	}
	ops+=("op_qemu_commit @ none" "op_qemu_commit @ writeback" "op_qemu_convert @ none"
	      "op_qemu_convert @ writeback")
fi
if want levels; then
	naive=$(jq .main_plan.naive_copy_bytes "$meta")
	op_levels_vxm() {
		[ "$1" -le "$level_runs" ] || return 0
		fresh "$main" "$w"
		cat >"$work/levels.sh" <<EOF
set -e
files=(\$(ls "$w"/base.vhdx "$w"/snap*.avhdx | sort))
for ((i = \${#files[@]} - 1; i > 0; i--)); do
	"$vxm" merge "\${files[i]}" --into "\${files[i-1]}" --progress none --json --seed 1 ${vxm_opts[*]} |
		jq -c '{copy_bytes, bytes_copied, bytes_zeroed, seconds}'
done
EOF
		timed bash "$work/levels.sh"
		local moved
		moved=$(jq -s 'map(.bytes_copied + .bytes_zeroed) | add' "$work/out.txt")
		row levels levels_vxm "level by level: vhdxmerge merge snapN --into snapN-1, N = $((layers - 1))..1" \
			"$1" "$U" "$moved" "$T_WALL" "$T_WALL"
		rm -rf "$w"
	}
	ops+=("op_levels_vxm @")
	if want qemu; then
		# the same with qemu-img on the qcow2 chain: commit each file into
		# its backing file, newest first (every file copied: each is written)
		op_levels_qemu() {
			[ "$1" -le "$level_runs" ] || return 0
			rm -rf "$qw"
			mkdir -p "$qw"
			cp --sparse=never "$mq"/*.qcow2 "$qw/"
			cat >"$work/qlevels.sh" <<EOF
set -e
files=(\$(ls "$qw"/base.qcow2 "$qw"/snap*.qcow2 | sort))
for ((i = \${#files[@]} - 1; i > 0; i--)); do
	qemu-img commit -q -t none "\${files[i]}"
	s=\$(date +%s.%N)
	rm -f "\${files[i]}"
	echo "\$s \$(date +%s.%N)" >>"$work/qrm.txt"
done
EOF
			rm -f "$work/qrm.txt"
			timed bash "$work/qlevels.sh"
			row levels levels_qemu "level by level: qemu-img commit -t none snapN (into snapN-1), then rm snapN, N = $((layers - 1))..1" \
				"$1" "$QC" "$naive" "$T_WALL" "$T_WALL" \
				"$(awk '{ t += $2 - $1 } END { printf "%.3f", t }' "$work/qrm.txt")"
			rm -rf "$qw"
		}
		ops+=("op_levels_qemu @")
	fi
fi
if want layers; then
	echo "perf: chains of $scale_layers files at ~$scale_unique unique"
	for n in $scale_layers; do
		synth_chain "$work/chain-l$n" "$n" "$scale_unique" "$size" "$partial"
	done
	op_layers() { # ROUND N
		local c=$work/chain-l$2
		fresh "$c" "$w" base.vhdx snap01.avhdx
		timed "$vxm" merge "$(top_of "$w")" --keep-merged --progress json --json --seed 1 "${vxm_opts[@]}"
		vxm_row layers "layers_$2" "merge --keep-merged, $2 layers" "$1"
		rm -rf "$w"
	}
	for n in $scale_layers; do ops+=("op_layers @ $n"); done
fi
if [ ${#ops[@]} -gt 0 ]; then
	echo "perf: $runs interleaved rounds of ${#ops[@]} operations (level by level in the first $level_runs)"
	for r in $(seq "$runs"); do
		echo "perf: round $r"
		for ((i = 0; i < ${#ops[@]}; i++)); do
			o=${ops[(i + r - 1) % ${#ops[@]}]}
			# "name @ args": @ is the round
			set -- $o
			fn=$1
			shift 2
			"$fn" "$r" "$@"
		done
	done
fi
rm -f "$work/raw-src.dat" "$work/raw-dst.dat"
rm -rf "$work/chain-partial"
for n in $scale_layers; do rm -rf "$work/chain-l$n" "$work/chain-l$n.synth.json"; done

# ---- sizes ----------------------------------------------------------------------------
scale_run() { # SECTION OP CHAIN LABEL
	local w=$work/w
	for r in $(seq "$runs"); do
		fresh "$3" "$w" base.vhdx snap01.avhdx
		timed "$vxm" merge "$(top_of "$w")" --keep-merged --progress json --json --seed 1 "${vxm_opts[@]}"
		vxm_row "$1" "$2" "$4" "$r"
	done
	rm -rf "$w"
}
if want sizes; then
	echo "perf: merge time against unique bytes (copy path)"
	for u in $scale_sizes; do
		v=$(( $(bytes "$u") * 8 / 3 / 2097152 * 2097152 ))
		[ $v -ge $(bytes "$size") ] || v=$(bytes "$size")
		c=$work/chain-s$u
		synth_chain "$c" "$layers" "$u" "$v" "$partial"
		scale_run sizes "size_$u" "$c" "merge --keep-merged, ~$u unique, $layers layers"
		rm -rf "$c" "$c.synth.json"
	done
fi

# ---- reflink --------------------------------------------------------------------------
if want reflink; then
	if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs >/dev/null; then
		echo "perf: reflink part skipped (needs root and mkfs.xfs for a loop mount)" >&2
	else
		echo "perf: reflink path on an XFS loop mount"
		img=$work/xfs.img
		rm -f "$img"
		truncate -s 256G "$img"
		mkfs.xfs -q -f -m reflink=1 "$img"
		mkdir -p "$xfs_mnt"
		mount -o loop "$img" "$xfs_mnt"
		for u in $reflink_sizes; do
			v=$(( $(bytes "$u") * 4 ))
			c=$xfs_mnt/chain-$u w=$xfs_mnt/w
			synth_chain "$c" "$layers" "$u" "$v" 0
			for r in $(seq "$runs"); do
				rm -rf "$w"
				cp -r --reflink=always "$c" "$w"
				timed "$vxm" merge "$(top_of "$w")" --progress json --json --seed 1 "${vxm_opts[@]}"
				vxm_row reflink "reflink_$u" "reflink merge (XFS), ~$u unique" "$r"
			done
			rm -rf "$c" "$w" "$c.synth.json"
			fstrim "$xfs_mnt" 2>/dev/null || true
		done
		umount "$xfs_mnt"
		rm -f "$img"
	fi
fi

# ---- peak RSS on a big virtual disk ------------------------------------------------------
if want rss; then
	echo "perf: peak RSS, $rss_size virtual, $rss_layers layers"
	c=$work/chain-rss w=$work/w
	"$vxm" synth "$c" --seed "$seed" --size "$rss_size" --layers "$rss_layers" --block-size "$bs" \
		--fill 0.00002 --partial 0.5 --zero 0.00001 --no-digest --json >/dev/null
	timed "$vxm" plan "$(top_of "$c")" --json
	row rss rss_plan "vhdxmerge plan, $rss_size virtual, $rss_layers layers" 1 \
		"$(jq .copy_bytes "$work/out.txt")" 0 "$T_WALL" "$T_WALL"
	fresh "$c" "$w" base.vhdx snap01.avhdx
	timed "$vxm" merge "$(top_of "$w")" --keep-merged --progress json --json --seed 1 "${vxm_opts[@]}"
	vxm_row rss rss_merge "vhdxmerge merge, $rss_size virtual, $rss_layers layers" 1
	rm -rf "$c" "$w"
fi

jq --arg l "$(cut -d' ' -f1-3 /proc/loadavg)" '.load_end = ($l | split(" "))' "$meta" >"$meta.tmp" &&
	mv "$meta.tmp" "$meta"
python3 "$here/perf/report.py" "$out"
echo "perf: results in $out (table.md, results.json, throughput.png, runs.csv)"
