#!/usr/bin/env bash
# `vhdxmerge info --json` on every real fixture equals what an independent
# parser recorded in its structure.json (and PROVENANCE.md for the replayed
# state of the dirty-log files).
set -euo pipefail
fx="${VHDX_FIXTURES:-../shared/fixtures}"
if [ ! -d "$fx" ]; then echo "SKIP: VHDX fixtures not found at $fx (set VHDX_FIXTURES)"; exit 77; fi
exec /usr/bin/python3 "$(dirname "$0")/fixtures_info.py" "$fx"
