#!/usr/bin/env bash
# Checks greet.sh with and without a name.
set -u
cd "$(dirname "$0")/.."
failures=0
got=$(bash greet.sh Ada 2>&1)
[ "$got" = "Hello, Ada!" ] && echo "ok: named" || { echo "FAIL: named: got '$got'"; failures=$((failures + 1)); }
got=$(bash greet.sh 2>&1); status=$?
[ "$status" -eq 0 ] && [ "$got" = "Hello, world!" ] && echo "ok: default" \
    || { echo "FAIL: default: status $status, got '$got'"; failures=$((failures + 1)); }
grep -q 'set -euo pipefail' greet.sh && echo "ok: strict mode kept" \
    || { echo "FAIL: greet.sh lost set -euo pipefail"; failures=$((failures + 1)); }
[ "$failures" -eq 0 ]
