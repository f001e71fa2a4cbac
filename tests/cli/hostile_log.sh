#!/usr/bin/env bash
# `vhdxmerge check --repair` on a file whose log holds a CRC-valid entry
# aimed outside the file's legitimate extent exits 3 (corrupt) and leaves
# the file byte-identical and its size unchanged.  The log is written by the
# Python below (its own CRC-32C and layout, fmt section 6), not by our
# encoder; a valid entry it writes replays (the control), so the refusals
# come from the targets and not from a malformed entry.
# Before the rule: a target at 2^64 - 4096 made --repair write new headers
# and exit 2; a target at 1 TiB made the file 1 TiB long.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
tmp="${VXM_TEST_TMP:-/tmp/vxm-test}/hostile-log.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $*"; }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }

cat >"$tmp/inject.py" <<'EOF'
"""inject.py FILE LAST KIND:OFF[:LEN]...: one log entry (seq 1, Tail at
itself) at the start of FILE's log under a new LogGuid written into both
headers.  KIND data: a 4 KiB update holding FILE's bytes at OFF (zeros past
its end); zero: a zero fill of LEN bytes.  LAST is the LastFileOffset, 0 for
the file's size."""
import struct, sys

def crc32c(b, c=0xFFFFFFFF):
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF

path, last, specs = sys.argv[1], int(sys.argv[2], 0), sys.argv[3:]
f = open(path, 'r+b')
size = f.seek(0, 2)
hdr = []
for off in (0x10000, 0x20000):
    f.seek(off)
    hdr.append(bytearray(f.read(4096)))
cur = 0 if struct.unpack_from('<Q', hdr[0], 8)[0] > struct.unpack_from('<Q', hdr[1], 8)[0] else 1
log_len, log_off = struct.unpack_from('<IQ', hdr[cur], 68)
guid = bytes(range(0x40, 0x50))
seq = 1
desc, data = bytearray(), []
for s in specs:
    kind, off, *rest = s.split(':')
    off = int(off, 0)
    if kind == 'data':
        sect = b''
        if off < size:
            f.seek(off)
            sect = f.read(4096)
        sect = sect.ljust(4096, b'\0')
        desc += struct.pack('<4s4s8sQQ', b'desc', sect[4092:], sect[:8], off, seq)
        data.append(b'data' + struct.pack('<I', seq >> 32) + sect[8:4092] + struct.pack('<I', seq & 0xFFFFFFFF))
    else:
        desc += struct.pack('<4sIQQQ', b'zero', 0, int(rest[0], 0), off, seq)
nds = (len(specs) + 2 + 127) // 128
entry = bytearray(4096 * nds)
struct.pack_into('<4sIIIQII16sQQ', entry, 0, b'loge', 0, 4096 * (nds + len(data)), 0, seq,
                 len(specs), 0, guid, size // 1048576 * 1048576, last or size)
entry[64:64 + len(desc)] = desc
entry += b''.join(data)
struct.pack_into('<I', entry, 4, crc32c(bytes(entry)))
f.seek(log_off)
f.write(entry)
for i, off in enumerate((0x10000, 0x20000)):
    h = hdr[i]
    h[48:64] = guid
    struct.pack_into('<I', h, 4, 0)
    struct.pack_into('<I', h, 4, crc32c(bytes(h)))
    f.seek(off)
    f.write(h)
EOF

"$bin" synth "$tmp/c" --seed 5 --size 24M --layers 2 --block-size 2M >/dev/null

# refused LABEL MESSAGE LAST UPDATE...
refused() {
  local label=$1 msg=$2 f="$tmp/$1.vhdx" size sum rc
  shift 2
  cp "$tmp/c/base.vhdx" "$f"
  /usr/bin/python3 "$tmp/inject.py" "$f" "$@"
  size=$(stat -c %s "$f")
  sum=$(sha256sum <"$f")
  set +e
  "$bin" check --repair "$f" >"$tmp/out" 2>&1
  rc=$?
  set -e
  [ $rc = 3 ] && ok "$label: check --repair exits 3" || bad "$label: exit $rc, wanted 3: $(cat "$tmp/out")"
  grep -qF -- "$msg" "$tmp/out" && ok "$label: says \"$msg\"" || bad "$label: message: $(cat "$tmp/out")"
  grep -q "nothing was written" "$tmp/out" && ok "$label: says nothing was written" || bad "$label: $(cat "$tmp/out")"
  # the size first: a grown file may be 1 TiB (sparse), too long to hash
  if [ "$(stat -c %s "$f")" != "$size" ]; then
    bad "$label: the file grew from $size to $(stat -c %s "$f") bytes"
  elif [ "$(sha256sum <"$f")" != "$sum" ]; then
    bad "$label: the file changed (same size, $size bytes)"
  else
    ok "$label: file byte-identical, size $size unchanged"
  fi
  rm -f "$f"
}

echo "hostile log targets"
refused "target 2^64-4096" "descriptor 0 (data, at 0x100040) writes [0xfffffffffffff000,+0x1000): the range wraps past 2^64" \
  0 data:0xfffffffffffff000
refused "target 1 TiB" "descriptor 0 (data, at 0x100040) writes [0x10000000000,+0x1000): past the end of the file" \
  0 data:0x10000000000
refused "LastFileOffset 1 TiB" "LastFileOffset 0x10000000000 asks for a 1099511627776-byte file" \
  0x10000000000 data:0x30000

echo "control: a valid entry of the same making replays"
# It rewrites region table 1 as it is and zeroes copy 2: after replay the
# file opens from copy 1 and check names copy 2 as damaged.
f="$tmp/valid.vhdx"
cp "$tmp/c/base.vhdx" "$f"
/usr/bin/python3 "$tmp/inject.py" "$f" 0 data:0x30000 zero:0x40000:0x10000
"$bin" check "$f" >"$tmp/out" || true
grep -q "log is dirty: 1 entries" "$tmp/out" && ok "control: check sees the entry" || bad "control: $(cat "$tmp/out")"
set +e
"$bin" check --repair "$f" >"$tmp/out" 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q "log replayed in place" "$tmp/out" && grep -q "region table at 0x40000" "$tmp/out" \
  && ok "control: check --repair replays it (exit 1: region table 2 zeroed, as logged)" || bad "control: exit $rc: $(cat "$tmp/out")"
"$bin" info --json "$f" | grep -q '"log_guid": "00000000-0000-0000-0000-000000000000"' \
  && ok "control: LogGuid cleared" || bad "control: LogGuid: $("$bin" info --json "$f" | grep log_guid)"
[ "$(head -c 327680 "$f" | tail -c 65536 | tr -d '\0' | wc -c)" = 0 ] \
  && ok "control: region table 2 reads zeros" || bad "control: region table 2 not zeroed"
if command -v qemu-img >/dev/null; then
  qemu-img check -f vhdx "$f" >"$tmp/out" 2>&1 && ok "control: qemu-img check: $(head -1 "$tmp/out")" || bad "control: qemu-img check: $(cat "$tmp/out")"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
