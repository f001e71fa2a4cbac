#!/usr/bin/env bash
# Merge acceptance matrix: synthesized chains (512/4096-byte sectors; 1, 2,
# 32, 256 MiB blocks; children with other block sizes than the base; odd
# tails; fixed and dynamic bases; 2 to 30 layers).  After `merge` the base
# must read exactly as the chain did (synth's own model gives the digest):
# checked with qemu-img for 512-byte bases (and `qemu-img check` clean),
# with libvhdi otherwise.  After `merge --into` an intermediate, the child of
# TOP is re-pointed and reads through libvhdi as before.  `convert` output
# (VHDX and raw) equals the chain's view.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
py=/usr/bin/python3
here="$(cd "$(dirname "$0")" && pwd)"
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img missing"; exit 77; }
$py -c 'import pyvhdi' 2>/dev/null || { echo "SKIP: python3-libvhdi missing"; exit 77; }
tmp="${VXM_TEST_TMP:-/tmp/vxm-test}/merge-matrix.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
json() { $py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d" + sys.argv[2]))' "$1" "$2"; }

# base_digest LSS FILE: the virtual disk of a base image via an oracle
base_digest() {
  if [ "$1" = 512 ]; then
    qemu-img convert -f vhdx -O raw "$2" "$tmp/raw" && sha "$tmp/raw" && rm -f "$tmp/raw"
  else
    $py "$here/pyvhdi_sha256.py" "$2"
  fi
}

# case NAME LSS SIZE LAYERS BS CHILD_BS BASE ZEROMODE
run_case() {
  local name=$1 lss=$2 size=$3 layers=$4 bs=$5 cbs=$6 base=$7 zm=$8
  local d="$tmp/$name"
  "$bin" synth "$d" --seed "$RANDOM$layers" --size "$size" --layers "$layers" --block-size "$bs" \
    --child-block-size "$cbs" --logical-sector "$lss" --base "$base" --zero-mode "$zm" --json >"$d.json"
  local want top
  want=$(json "$d.json" "['sha256']")
  top=$(json "$d.json" "['files'][-1]")
  # convert first (the chain is untouched by it)
  "$bin" convert "$top" "$d.conv.vhdx" --progress none >/dev/null
  local got
  got=$(base_digest "$lss" "$d.conv.vhdx")
  [ "$got" = "$want" ] && ok "$name: convert to VHDX reads as the chain" || bad "$name: convert $got != $want"
  "$bin" convert "$top" "$d.conv.raw" --format raw --progress none >/dev/null
  [ "$(sha "$d.conv.raw")" = "$want" ] && ok "$name: convert to raw equals the chain" || bad "$name: raw convert"
  rm -f "$d.conv.vhdx" "$d.conv.raw"
  # merge everything into the base
  "$bin" merge "$top" --progress none --seed 5 >"$d.out"
  got=$(base_digest "$lss" "$d/base.vhdx")
  [ "$got" = "$want" ] && ok "$name: base after merge reads as the chain did ($(tail -n +2 "$d.out" | head -1 | sed 's/^ *//'))" \
    || bad "$name: merged base $got != $want"
  if [ "$lss" = 512 ]; then
    qemu-img check -q -f vhdx "$d/base.vhdx" && ok "$name: qemu-img check clean" || bad "$name: qemu-img check"
  fi
  "$bin" check "$d/base.vhdx" >/dev/null && ok "$name: vhdxmerge check clean" || bad "$name: check"
  [ "$(ls "$d" | wc -l)" = 1 ] && ok "$name: merged files removed" || bad "$name: leftovers: $(ls "$d")"
}

# into NAME LSS SIZE LAYERS BS CHILD_BS: merge snap(N-2) into snap01 with
# snap(N-1) re-pointed; libvhdi reads base <- snap01 <- snap(N-1)
run_into() {
  local name=$1 lss=$2 size=$3 layers=$4 bs=$5 cbs=$6
  local d="$tmp/$name"
  "$bin" synth "$d" --seed "7$layers" --size "$size" --layers "$layers" --block-size "$bs" \
    --child-block-size "$cbs" --logical-sector "$lss" --zero-mode data --json >"$d.json"
  local want top child
  want=$(json "$d.json" "['sha256']")
  top=$(json "$d.json" "['files'][-2]")
  child=$(json "$d.json" "['files'][-1]")
  local before
  before=$($py "$here/pyvhdi_sha256.py" $($py -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["files"]))' "$d.json"))
  [ "$before" = "$want" ] || bad "$name: libvhdi and synth disagree before the merge"
  "$bin" merge "$top" --into "$d/snap01.avhdx" --progress none --seed 9 >"$d.out"
  grep -q "1 child re-pointed" "$d.out" && ok "$name: the child of TOP was re-pointed" || bad "$name: no re-point: $(cat "$d.out")"
  local got
  got=$($py "$here/pyvhdi_sha256.py" "$d/base.vhdx" "$d/snap01.avhdx" "$child")
  [ "$got" = "$want" ] && ok "$name: re-pointed child reads through libvhdi as before" || bad "$name: after --into $got != $want"
  "$bin" chain "$child" >/dev/null && ok "$name: our chain of the child is whole" || bad "$name: chain"
}

# shapes NAME: the same merge with other queue depths, request sizes and
# backends ends byte-identical (the data path's shape changes no byte)
run_shapes() {
  local name=$1 d="$tmp/$1" want top ref shape i=0
  mkdir -p "$d"
  "$bin" synth "$d/src" --seed 31 --size 40M --layers 4 --block-size 2M --partial 0.4 \
    --json >"$d.json"
  want=$(json "$d.json" "['sha256']")
  top=$(basename "$(json "$d.json" "['files'][-1]")")
  cp -r "$d/src" "$d/bad"
  local before
  before=$(cd "$d/bad" && sha256sum * | sha256sum)
  if "$bin" merge "$d/bad/$top" --chunk-size 6000 --progress none >/dev/null 2>"$d.err"; then
    bad "$name: --chunk-size 6000 accepted"
  else
    [ $? = 2 ] && grep -q "bad --chunk-size" "$d.err" &&
      [ "$(cd "$d/bad" && sha256sum * | sha256sum)" = "$before" ] &&
      ok "$name: --chunk-size 6000 refused (exit 2: $(head -1 "$d.err")), nothing written" ||
      bad "$name: bad --chunk-size: $(cat "$d.err")"
  fi
  for shape in "" "--queue-depth 128 --chunk-size 64K" "--queue-depth 1 --chunk-size 4M" \
               "--io psync --queue-depth 8 --chunk-size 512K" "--queue-depth 64 --chunk-size 4K"; do
    i=$((i + 1))
    cp -r "$d/src" "$d/r$i"
    # shellcheck disable=SC2086
    "$bin" merge "$d/r$i/$top" --progress none --seed 5 $shape >/dev/null || { bad "$name: merge $shape"; continue; }
    [ "$(base_digest 512 "$d/r$i/base.vhdx")" = "$want" ] || bad "$name: merge $shape reads wrong"
    if [ $i = 1 ]; then
      ref=$(sha "$d/r1/base.vhdx")
    elif [ "$(sha "$d/r$i/base.vhdx")" = "$ref" ]; then
      ok "$name: merge $shape byte-identical to the default run"
    else
      bad "$name: merge $shape differs from the default run"
    fi
  done
  rm -rf "$d"
}

# joins NAME: a top that rewrote every 2 MiB block in order: its blocks
# continue each other in the top and in the base's new space, so the default
# 4 MiB requests join them (fewer writes than with 2 MiB requests, which
# cannot cross a block) and the files end byte-identical either way
run_joins() {
  local name=$1 d="$tmp/$1" want w2 w4 s2 s4 c2
  mkdir -p "$d"
  "$bin" synth "$d/src" --seed 37 --size 40M --layers 2 --block-size 2M --fill 1 --partial 0 \
    --zero 0 --json >"$d.json"
  want=$(json "$d.json" "['sha256']")
  for c in 2M 4M; do
    cp -r "$d/src" "$d/r$c"
    "$bin" merge "$d/r$c/snap01.avhdx" --progress none --seed 5 --chunk-size $c --json >"$d/r$c.json" ||
      { bad "$name: merge --chunk-size $c"; return; }
    [ "$(base_digest 512 "$d/r$c/base.vhdx")" = "$want" ] || bad "$name: merge --chunk-size $c reads wrong"
  done
  w2=$(json "$d/r2M.json" "['data_writes']") w4=$(json "$d/r4M.json" "['data_writes']")
  c2=$(json "$d/r2M.json" "['bytes_copied']")
  s2=$(sha "$d/r2M/base.vhdx") s4=$(sha "$d/r4M/base.vhdx")
  if [ "$s2" != "$s4" ]; then
    bad "$name: joined requests change the file"
  elif [ "$w2" -ge $(( (c2 + 2097151) / 2097152 )) ] && [ "$w4" -lt "$w2" ]; then
    ok "$name: $c2 bytes in $w4 writes of up to 4 MiB (joined across blocks) against $w2 of up to 2 MiB, byte-identical"
  else
    bad "$name: $w4 writes at 4 MiB, $w2 at 2 MiB for $c2 bytes: no block was joined"
  fi
  # a convert into a new file: every block lands after the one before
  # it, while neighbouring blocks come from different layers; their reads
  # are gathered into one write each
  "$bin" synth "$d/g" --seed 41 --size 64M --layers 6 --block-size 2M --fill 0.5 --partial 0 \
    --zero 0 --json >"$d.g.json"
  want=$(json "$d.g.json" "['sha256']")
  local top
  top=$(basename "$(json "$d.g.json" "['files'][-1]")")
  for c in 2M 4M; do
    "$bin" convert "$d/g/$top" "$d/c$c.vhdx" --progress none --seed 5 --chunk-size $c --json \
      >"$d/c$c.json" || { bad "$name: convert --chunk-size $c"; return; }
    [ "$(base_digest 512 "$d/c$c.vhdx")" = "$want" ] || bad "$name: convert --chunk-size $c reads wrong"
  done
  w4=$(json "$d/c4M.json" "['data_writes']") c2=$(json "$d/c4M.json" "['bytes_copied']")
  if [ "$(sha "$d/c2M.vhdx")" != "$(sha "$d/c4M.vhdx")" ]; then
    bad "$name: gathered writes change the converted file"
  elif [ "$w4" = $(( (c2 + 4194303) / 4194304 )) ]; then
    ok "$name: convert of 6 interleaved layers: $c2 bytes in $w4 writes of 4 MiB (reads gathered), byte-identical to 2 MiB requests"
  else
    bad "$name: convert of 6 interleaved layers: $w4 writes for $c2 bytes, not one per 4 MiB"
  fi
  rm -rf "$d"
}

# pages NAME: partial blocks of odd 512-byte sector runs.  Where O_DIRECT
# works, every data write of a merge, an --into and a convert goes direct in
# whole pages (D's own sectors read back around the runs: buffered_bytes 0)
# and the files end byte-identical to a run whose requests are one page
# each; a raw output whose size ends inside a page writes that page only
# buffered.
run_pages() {
  local name=$1 d="$tmp/$1" want top i b nb=0
  mkdir -p "$d"
  if ! dd if=/dev/zero of="$d/probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
    echo "  skip $name: no O_DIRECT in $tmp"
    rm -rf "$d"
    return
  fi
  "$bin" synth "$d/src" --seed 43 --size 268435968 --layers 5 --block-size 2M --fill 0.4 \
    --partial 1 --zero 0.1 --json >"$d.json"
  want=$(json "$d.json" "['sha256']")
  top=$(basename "$(json "$d.json" "['files'][-1]")")
  for i in 1 2 3; do
    cp -r "$d/src" "$d/m$i"
    case $i in
      1) "$bin" merge "$d/m$i/$top" --keep-merged --progress none --seed 5 --json >"$d/m$i.json" ;;
      2) "$bin" merge "$d/m$i/$top" --keep-merged --progress none --seed 5 --json --chunk-size 4K \
           --queue-depth 64 >"$d/m$i.json" ;;
      3) "$bin" merge "$d/m$i/$top" --keep-merged --progress none --seed 5 --json --io psync \
           --chunk-size 64K >"$d/m$i.json" ;;
    esac || { bad "$name: merge run $i"; continue; }
    b=$(json "$d/m$i.json" "['buffered_bytes']")
    [ "$b" = 0 ] || { nb=1; bad "$name: merge run $i wrote $b bytes buffered"; }
  done
  [ "$(base_digest 512 "$d/m1/base.vhdx")" = "$want" ] || bad "$name: merged base reads wrong"
  if [ $nb = 0 ] && cmp -s "$d/m1/base.vhdx" "$d/m2/base.vhdx" && cmp -s "$d/m1/base.vhdx" "$d/m3/base.vhdx"; then
    ok "$name: $(json "$d/m1.json" "['bytes_copied']") bytes of odd sector runs merged with every write direct and whole-page (4 MiB, 4 KiB and psync 64 KiB requests byte-identical)"
  else
    bad "$name: page-whole writes differ between request sizes"
  fi
  cp -r "$d/src" "$d/in"
  "$bin" merge "$d/in/snap03.avhdx" --into "$d/in/snap01.avhdx" --progress none \
    --seed 6 --json >"$d/i.json" && [ "$(json "$d/i.json" "['buffered_bytes']")" = 0 ] &&
    ok "$name: --into a differencing ancestor, no buffered write" || bad "$name: --into: $(cat "$d/i.json")"
  "$bin" convert "$d/src/$top" "$d/out.raw" --format raw --progress none --json >"$d/raw.json" ||
    bad "$name: convert raw"
  b=$(json "$d/raw.json" "['buffered_bytes']")
  if [ "$(sha "$d/out.raw")" = "$want" ] && [ "$(stat -c %s "$d/out.raw")" = 268435968 ] && [ "$b" -le 4096 ]; then
    ok "$name: raw convert of a size 512 past a page: reads as the chain, size kept, $b bytes buffered"
  else
    bad "$name: raw convert: size $(stat -c %s "$d/out.raw"), $b bytes buffered"
  fi
  # the re-pointed child after --into reads as the chain did (ZERO blocks
  # make libvhdi read parent data: compared with the checked raw image)
  "$bin" compare "$d/in/snap04.avhdx" "$d/out.raw" --progress none >/dev/null &&
    ok "$name: after --into, snap04 reads as the raw image of the chain" ||
    bad "$name: after --into, snap04 differs from the chain"
  rm -rf "$d"
}

# commits NAME: the commit schedule (every GiB, or later while the last one
# cost more than an eighth of the time since it) changes when BAT updates
# and the cursor become durable, never the bytes.  VXM_COMMIT_BYTES (test
# builds) makes a 64 MiB chain commit every MiB (at most every 8 MiB): the
# merge, an --into, a raw convert and a run killed at its third log commit
# and resumed must all end byte-identical to runs with one commit at the end.
run_commits() {
  local name=$1 d="$tmp/$1" want top n rc
  mkdir -p "$d"
  "$bin" synth "$d/src" --seed 47 --size 64M --layers 6 --block-size 2M --fill 0.4 \
    --partial 0.5 --zero 0.1 --json >"$d.json"
  want=$(json "$d.json" "['sha256']")
  top=$(basename "$(json "$d.json" "['files'][-1]")")
  for v in one many; do
    cp -r "$d/src" "$d/$v"
    cp -r "$d/src" "$d/$v-into"
    local e=()
    [ $v = many ] && e=(env VXM_COMMIT_BYTES=1048576)
    "${e[@]}" "$bin" merge "$d/$v/$top" --keep-merged --progress none --seed 5 --json >"$d/$v.json" &&
      "${e[@]}" "$bin" merge "$d/$v-into/snap04.avhdx" --into "$d/$v-into/snap01.avhdx" --progress none \
        --seed 6 --json >"$d/$v-into.json" &&
      "${e[@]}" "$bin" convert "$d/src/$top" "$d/$v.raw" --format raw --progress none --json >"$d/$v-raw.json" ||
      { bad "$name: $v: a run failed"; rm -rf "$d"; return; }
  done
  n=$(json "$d/many.json" "['commits']")
  [ "$(json "$d/one.json" "['commits']")" = 1 ] && [ "$n" -ge 3 ] &&
    [ "$(json "$d/many-raw.json" "['commits']")" -ge 8 ] ||
    bad "$name: commits: $(json "$d/one.json" "['commits']") by default, $n and $(json "$d/many-raw.json" "['commits']") per MiB"
  [ "$(base_digest 512 "$d/many/base.vhdx")" = "$want" ] || bad "$name: merged base reads wrong"
  [ "$(sha "$d/many.raw")" = "$want" ] || bad "$name: raw convert committing every MiB reads wrong"
  if cmp -s "$d/one/base.vhdx" "$d/many/base.vhdx" && cmp -s "$d/one-into/snap01.avhdx" "$d/many-into/snap01.avhdx" &&
    cmp -s "$d/one-into/snap05.avhdx" "$d/many-into/snap05.avhdx" && cmp -s "$d/one.raw" "$d/many.raw"; then
    ok "$name: $n commits instead of 1 ($(json "$d/many-raw.json" "['commits']") in the raw convert): merge, --into and raw convert byte-identical"
  else
    bad "$name: the files depend on the commit schedule"
  fi
  cp -r "$d/src" "$d/kill"
  set +e
  VXM_COMMIT_BYTES=1048576 VXM_KILL_AT=log-commit:3 "$bin" merge "$d/kill/$top" --keep-merged \
    --progress none --seed 5 >/dev/null 2>&1
  rc=$?
  set -e
  if [ $rc = 137 ] && VXM_COMMIT_BYTES=1048576 "$bin" merge "$d/kill/$top" --keep-merged --progress none \
    --seed 5 >/dev/null && cmp -s "$d/one/base.vhdx" "$d/kill/base.vhdx"; then
    ok "$name: killed at the third log commit of many, resumed: byte-identical"
  else
    bad "$name: kill at the third log commit (exit $rc) and resume"
  fi
  rm -rf "$d"
}

echo "merge matrix"
run_pages pages-512-2m-5
run_commits commits-512-2m-6
run_shapes shapes-512-2m-4
run_joins joins-512-2m-2
# Under sanitizers: a third of the matrix (the normal build runs all of it).
if [ "${VXM_SANITIZED:-0}" = 1 ]; then
  run_case s512-1m-5-odd 512 34079232 5 1M 1M dynamic state
  run_case s4096-32m-fixed-3 4096 100M 3 32M 4M fixed data
  run_into i512-2m-5 512 64M 5 2M 2M
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit
fi
run_case s512-2m-3 512 64M 3 2M 2M dynamic state
run_case s512-1m-5-odd 512 34079232 5 1M 1M dynamic state
run_case s512-32m-2m-4 512 200M 4 32M 2M dynamic state
run_case s512-256m-fixed-2 512 300M 2 256M 256M fixed state
run_case s512-2m-1m-30 512 48M 30 2M 1M dynamic state
run_case s4096-2m-4 4096 64M 4 2M 2M dynamic data
run_case s4096-32m-fixed-3 4096 100M 3 32M 4M fixed data
run_case s4096-1m-256m-3 4096 520M 3 1M 256M dynamic data
run_into i512-2m-5 512 64M 5 2M 2M
run_into i4096-4m-6 4096 80M 6 4M 1M
run_into i512-2m-12 512 48M 12 2M 2M
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
