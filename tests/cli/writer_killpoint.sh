#!/usr/bin/env bash
# Kill points through the real binary (VXM_KILL_AT, engine/killpoint.c):
# `synth` killed right after a log entry's commit flush (log-commit: the
# entry durable, not applied) or right after its apply flush (log-apply: the
# LogGuid not yet cleared) leaves a dirty file (info --json: dirty, LogGuid
# set) that `vhdxmerge check --repair` and `qemu-img check -r all` replay to
# the same disk (qemu-img compare), while a completed synth leaves every file
# with LogGuid 0.
set -euo pipefail
bin="${VXM_BIN:-vhdxmerge}"
tmp="$(mktemp -d "${VXM_TEST_TMP:-/tmp}/writer-kill.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
jget() { $py -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# a completed run: clean files
"$bin" synth "$tmp/ok" --seed 5 --size 48M --layers 2 --block-size 1M --json >/dev/null
for f in "$tmp/ok/base.vhdx" "$tmp/ok/snap01.avhdx"; do
	g="$("$bin" info --json "$f" | jget 'd["log"]["log_guid"]')"
	[ "$g" = "00000000-0000-0000-0000-000000000000" ] || { echo "FAIL: $f LogGuid $g"; exit 1; }
done
echo "ok: completed synth leaves LogGuid 0"

n=0
for point in log-commit:1 log-apply:1; do
	n=$((n + 1))
	set +e
	VXM_KILL_AT="$point" "$bin" synth "$tmp/k$n" --seed 9 --size 40M --layers 1 \
		--block-size 1M --fill 0.9 --json >/dev/null 2>"$tmp/err"
	rc=$?
	set -e
	[ "$rc" = 137 ] || { echo "FAIL: expected exit 137 at $point, got $rc"; cat "$tmp/err"; exit 1; }
	f="$tmp/k$n/base.vhdx"
	info="$("$bin" info --json "$f")"
	[ "$(printf '%s' "$info" | jget 'd["log"]["dirty"]')" = "True" ] || { echo "FAIL: not dirty"; exit 1; }
	[ "$(printf '%s' "$info" | jget 'd["log"]["log_guid"]')" != "00000000-0000-0000-0000-000000000000" ]
	cp --sparse=always "$f" "$tmp/ours.vhdx"
	cp --sparse=always "$f" "$tmp/qemu.vhdx"
	"$bin" check --repair "$tmp/ours.vhdx" >/dev/null
	"$bin" check "$tmp/ours.vhdx" >/dev/null
	if command -v qemu-img >/dev/null; then
		qemu-img check -r all -f vhdx "$tmp/qemu.vhdx" >/dev/null
		qemu-img check -f vhdx "$tmp/qemu.vhdx" >/dev/null
		qemu-img compare -f vhdx -F vhdx "$tmp/ours.vhdx" "$tmp/qemu.vhdx" >/dev/null
		echo "ok: killed at $point; dirty; check --repair and qemu-img check -r all agree"
	else
		echo "ok: killed at $point; dirty; check --repair replays (no qemu-img)"
	fi
done
