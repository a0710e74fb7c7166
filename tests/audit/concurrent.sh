#!/bin/sh
# Eight writers at once on one new database: every writer must succeed and
# all eight runs must be stored, each complete, with an intact hash chain.
# Usage: concurrent.sh AUDIT_DRIVER BITCPM_AUDIT
set -u
driver=$1
audit=$2
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-concurrent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/shared/audit.db

pids=""
for i in 1 2 3 4 5 6 7 8; do
    "$driver" --db "$db" --tensors 2000 --findings 500 \
        --path "/models/writer-$i/model.safetensors" >"$tmp/out.$i" 2>"$tmp/err.$i" &
    pids="$pids $!"
done

failed=0
i=0
for pid in $pids; do
    i=$((i + 1))
    if ! wait "$pid"; then
        echo "FAIL: writer $i exited non-zero: $(cat "$tmp/err.$i")"
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1

runs=$(sqlite3 "$db" "SELECT count(*) FROM runs")
[ "$runs" = 8 ] || { echo "FAIL: expected 8 runs, found $runs"; exit 1; }

writers=$(sqlite3 "$db" "SELECT count(DISTINCT path) FROM files WHERE path LIKE '/models/writer-%'")
[ "$writers" = 8 ] || { echo "FAIL: expected files of 8 writers, found $writers"; exit 1; }

incomplete=$(sqlite3 "$db" "SELECT count(*) FROM runs r WHERE
    ntensors != (SELECT count(*) FROM tensors t WHERE t.run_id = r.id) OR
    nfindings != (SELECT count(*) FROM findings f WHERE f.run_id = r.id)")
[ "$incomplete" = 0 ] || { echo "FAIL: $incomplete runs are incomplete"; exit 1; }

"$audit" --audit-db "$db" verify || { echo "FAIL: verify rejected the chain"; exit 1; }
echo "ok: 8 concurrent writers, 8 complete runs"
