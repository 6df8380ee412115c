#!/usr/bin/env bash
# Checks count_lines.sh against files with and without blank lines.
set -u
cd "$(dirname "$0")/.."
failures=0
expect() {
    local want=$1 got
    got=$(bash count_lines.sh "$2")
    if [ "$got" = "$want" ]; then echo "ok: $3"; else echo "FAIL: $3: want '$want', got '$got'"; failures=$((failures + 1)); fi
}
tmp=$(mktemp -d)
printf 'a\n\n  \nb\n' > "$tmp/mixed"
printf '' > "$tmp/empty"
printf 'one\ntwo\nthree\n' > "$tmp/full"
printf 'x\n\t\n' > "$tmp/tab"
expect 2 "$tmp/mixed" "blank and space-only lines are not counted"
expect 0 "$tmp/empty" "empty file"
expect 3 "$tmp/full" "no blank lines"
expect 1 "$tmp/tab" "a tab-only line is blank"
rm -rf "$tmp"
[ "$failures" -eq 0 ]
