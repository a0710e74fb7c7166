#!/bin/bash
# SIGKILL during the write, BCPM_KILL_ITERATIONS times (default 100): each
# iteration starts a writer with a large run (so its transaction lasts a
# few hundred milliseconds) and kills it after a random delay. Afterwards
# the database must pass PRAGMA integrity_check, every stored run must hold
# exactly the tensor and finding rows its run row states, and the hash chain
# must verify. Bash for $RANDOM.
# Usage: kill.sh AUDIT_DRIVER BITCPM_AUDIT
set -u
driver=$1
audit=$2
iterations=${BCPM_KILL_ITERATIONS:-100}
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-kill.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db

# One complete run first, so that every later run links to a real hash.
"$driver" --db "$db" --tensors 10 --findings 10 >/dev/null || { echo "FAIL: first run"; exit 1; }

killed=0
finished=0
for ((i = 0; i < iterations; i++)); do
    "$driver" --db "$db" --tensors 20000 --findings 20000 >/dev/null 2>"$tmp/err" &
    pid=$!
    sleep "$(printf '0.%03d' $((RANDOM % 700)))"
    kill -9 "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null
    code=$?
    if [ "$code" = 137 ]; then
        killed=$((killed + 1))
    elif [ "$code" = 0 ]; then
        finished=$((finished + 1))
    else
        echo "FAIL: iteration $i: writer exited $code: $(cat "$tmp/err")"
        exit 1
    fi
done
echo "$iterations iterations: $killed killed, $finished finished before the kill"
[ "$killed" -gt 0 ] || { echo "FAIL: no writer was killed; the delays are too long"; exit 1; }

# A last writer after the crashes must still succeed and extend the chain.
"$driver" --db "$db" --tensors 10 --findings 10 >/dev/null || { echo "FAIL: writer after kills"; exit 1; }

integrity=$(sqlite3 "$db" "PRAGMA integrity_check")
[ "$integrity" = ok ] || { echo "FAIL: integrity_check: $integrity"; exit 1; }

# A writer killed between its COMMIT and its exit has a stored run, so the
# count lies between the writers that finished and those plus the killed.
runs=$(sqlite3 "$db" "SELECT count(*) FROM runs")
least=$((finished + 2))
most=$((finished + killed + 2))
[ "$runs" -ge "$least" ] && [ "$runs" -le "$most" ] ||
    { echo "FAIL: $runs runs stored, expected $least to $most"; exit 1; }

incomplete=$(sqlite3 "$db" "SELECT count(*) FROM runs r WHERE
    nfiles != (SELECT count(*) FROM files x WHERE x.run_id = r.id) OR
    ntensors != (SELECT count(*) FROM tensors t WHERE t.run_id = r.id) OR
    nfindings != (SELECT count(*) FROM findings f WHERE f.run_id = r.id)")
[ "$incomplete" = 0 ] || { echo "FAIL: $incomplete runs are incomplete"; exit 1; }

orphans=$(sqlite3 "$db" "SELECT (SELECT count(*) FROM tensors WHERE run_id NOT IN (SELECT id FROM runs))
    + (SELECT count(*) FROM findings WHERE run_id NOT IN (SELECT id FROM runs))")
[ "$orphans" = 0 ] || { echo "FAIL: $orphans rows belong to no run"; exit 1; }

"$audit" --audit-db "$db" verify || { echo "FAIL: verify rejected the chain"; exit 1; }
