#!/bin/sh
# Eight bitcpm-check processes writing to one audit database at once: all
# succeed (exit 0 or 1, a verdict, never 2) and all eight runs are stored.
# Skipped (77) until bitcpm-check supports --audit-db and can check FIXTURE.
# Usage: concurrent_check.sh BITCPM_CHECK BITCPM_AUDIT FIXTURE
set -u
check=$1
audit=$2
fixture=$3
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }
if ! "$check" --help 2>/dev/null | grep -q -- '--audit-db'; then
    echo "bitcpm-check does not take --audit-db yet; skipping"
    exit 77
fi
[ -e "$fixture" ] || { echo "fixture $fixture not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db

# NOTE: a bitcpm-check that cannot check the fixture at all (exit 2, for
# example before the shipped rule sets exist) skips this test rather than
# failing it; bitcpm-check's own tests report that failure.
"$check" --audit-db "$tmp/probe.db" "$fixture" >/dev/null 2>"$tmp/probe.err"
if [ $? = 2 ]; then
    echo "bitcpm-check cannot check $fixture: $(cat "$tmp/probe.err"); skipping"
    exit 77
fi

pids=""
for i in 1 2 3 4 5 6 7 8; do
    "$check" --audit-db "$db" "$fixture" >"$tmp/out.$i" 2>"$tmp/err.$i" &
    pids="$pids $!"
done

failed=0
i=0
for pid in $pids; do
    i=$((i + 1))
    wait "$pid"
    code=$?
    if [ "$code" != 0 ] && [ "$code" != 1 ]; then
        echo "FAIL: bitcpm-check $i exited $code: $(cat "$tmp/err.$i")"
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1

runs=$(sqlite3 "$db" "SELECT count(*) FROM runs WHERE command = 'check'")
[ "$runs" = 8 ] || { echo "FAIL: expected 8 runs, found $runs"; exit 1; }
"$audit" --audit-db "$db" verify || { echo "FAIL: verify rejected the chain"; exit 1; }
echo "ok: 8 concurrent bitcpm-check runs recorded"
