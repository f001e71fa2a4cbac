#!/usr/bin/env bash
# Every format citation in the tree resolves: code comments cite
# docs/vhdx-format.md as "fmt §<section>" and "fmt P<n>", and each such
# citation must name a section heading ("## 8." / "### 8.4 ...") or a pitfall
# heading ("### P13 ...") of that document.  Fails naming file:line for a
# citation that resolves to nothing, and for a heading number the document
# uses twice (a citation of it would be ambiguous).
#
# Lists continue a citation ("fmt §6.5, §7", "fmt §6.5 and §7"): those items
# are checked too, but one that resolves to nothing is only a warning unless
# VXM_FMT_STRICT=1, because a list item may be an [MS-VHDX] section number
# written after a fmt one.
#
# Before the tree, the resolver proves on made-up citations that it accepts a
# heading the document has and rejects ones it lacks, so a broken pattern
# cannot pass by matching nothing.
set -euo pipefail
export LC_ALL=C
src="${VXM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
doc="$src/docs/vhdx-format.md"
strict="${VXM_FMT_STRICT:-0}"
pass=0 fail=0 warn=0
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }

[ -f "$doc" ] || { echo "  FAIL $doc: missing"; echo "0 passed, 1 failed"; exit 1; }

# Heading numbers: "## 2. CRC-32C" -> 2, "### 1.3 Headers" -> 1.3, "### P4 ..." -> P4.
declare -A title=()
n=0
while IFS= read -r line; do
  n=$((n + 1))
  [[ "$line" =~ ^#{2,4}\ +([0-9]+(\.[0-9]+)*|P[0-9]+)\.?\ +(.*)$ ]] || continue
  key="${BASH_REMATCH[1]}"
  if [ -n "${title[$key]:-}" ]; then
    bad "docs/vhdx-format.md:$n: heading $key appears twice (also \"${title[$key]}\")"
    continue
  fi
  title[$key]="$key ${BASH_REMATCH[3]}"
done <"$doc"
echo "docs/vhdx-format.md: ${#title[@]} numbered headings"

# The section sign is matched as its UTF-8 bytes (the locale is C).
item='(§[0-9]+(\.[0-9]+)*|P[0-9]+)'
cite="fmt $item((, *| and | ?/ ?)$item)*"

# resolve WHERE TEXT: checks each item of one citation; prints nothing for a
# resolved item, "F <msg>" or "W <msg>" otherwise.
resolve() {
  local where=$1 text=$2 first=1 it key
  while read -r it; do
    key="${it#§}"
    if [ -z "${title[$key]:-}" ]; then
      if [ $first = 1 ] || [ "$strict" = 1 ]; then
        echo "F $where: \"$text\": docs/vhdx-format.md has no heading $it"
      else
        echo "W $where: \"$text\": $it follows a fmt citation but names no heading here (an [MS-VHDX] section?)"
      fi
    fi
    first=0
  done < <(grep -oE "$item" <<<"$text")
}

# Self-test on made-up citations (built at run time, so this file holds none),
# in the default mode whatever VXM_FMT_STRICT says.
s='§'
want_strict=$strict
strict=0
probe_ok=$(resolve probe "fmt ${s}1.3, ${s}6.5 and ${s}7" | wc -l)
probe_bad=$(resolve probe "fmt ${s}99.9" | grep -c '^F' || true)
probe_pit=$(resolve probe "fmt P99" | grep -c '^F' || true)
probe_cont=$(resolve probe "fmt ${s}1.3, ${s}98" | grep -c '^W' || true)
if [ "$probe_ok" = 0 ] && [ "$probe_bad" = 1 ] && [ "$probe_pit" = 1 ] && [ "$probe_cont" = 1 ]; then
  echo "  ok   resolver: accepts ${s}1.3, ${s}6.5 and ${s}7; rejects ${s}99.9 and P99; warns on a list item ${s}98"
else
  bad "resolver self-test: ok=$probe_ok bad=$probe_bad pitfall=$probe_pit list=$probe_cont (wanted 0 1 1 1)"
fi
strict=$want_strict

# The tree.  -I skips binary files (fuzz regressions); this file is skipped
# because its comments describe citations without making any.
declare -A hits=()
total=0 refs=0
while IFS= read -r rec; do
  file=${rec%%:*}
  rest=${rec#*:}
  line=${rest%%:*}
  text=${rest#*:}
  total=$((total + 1))
  out=$(resolve "${file#"$src"/}:$line" "$text")
  while read -r it; do
    key="${it#§}"
    refs=$((refs + 1))
    [ -n "${title[$key]:-}" ] && { pass=$((pass + 1)); hits[$key]=$(( ${hits[$key]:-0} + 1 )); }
  done < <(grep -oE "$item" <<<"$text")
  while IFS= read -r o; do
    case "$o" in
      F*) bad "${o#F }" ;;
      W*) warn=$((warn + 1)); echo "  WARN ${o#W }" ;;
    esac
  done <<<"$out"
done < <(cd "$src" || exit; grep -rnIoE --exclude=fmt_citations.sh "$cite" engine vhdx io cli include tests || true)

for key in $(printf '%s\n' "${!hits[@]}" | sort -V); do
  case $key in P*) label=$key ;; *) label=$s$key ;; esac
  echo "  ok   fmt $label -> ${title[$key]}: ${hits[$key]} reference(s)"
done
if [ "$total" = 0 ]; then
  bad "no fmt citation found under $src (engine vhdx io cli include tests): wrong source directory?"
fi
echo "$total citations in the tree, $refs section or pitfall references in them"
echo "$pass passed, $fail failed, $warn warned"
[ "$fail" = 0 ]
