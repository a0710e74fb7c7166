#!/bin/sh
# Editing a stored finding by hand breaks the chain at that finding's run,
# and verify names it (exit 1). Removing a whole run breaks the link of the
# run after it.
# Usage: tamper.sh AUDIT_DRIVER BITCPM_AUDIT
set -u
driver=$1
audit=$2
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-tamper.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db

for i in 1 2 3 4; do
    "$driver" --db "$db" --tensors 8 --findings 4 >/dev/null || { echo "FAIL: run $i"; exit 1; }
done
"$audit" --audit-db "$db" verify >/dev/null || { echo "FAIL: fresh chain did not verify"; exit 1; }

# The driver writes finding j of each run with the message "row j holds ...".
sqlite3 "$db" "UPDATE findings SET message = 'row 1 holds 0 values outside {-s, 0, +s}'
               WHERE run_id = 3 AND message LIKE 'row 1 %'"
changed=$(sqlite3 "$db" "SELECT count(*) FROM findings WHERE message LIKE 'row 1 holds 0%'")
[ "$changed" = 1 ] || { echo "FAIL: the edit changed $changed rows, expected 1"; exit 1; }

out=$("$audit" --audit-db "$db" verify)
code=$?
[ "$code" = 1 ] || { echo "FAIL: verify exited $code after the edit, expected 1"; exit 1; }
case $out in
    "audit chain broken at run 3: stored hash "*) ;;
    *) echo "FAIL: verify did not name run 3: $out"; exit 1 ;;
esac

json=$("$audit" --audit-db "$db" verify --format json)
echo "$json" | grep -q '"first_bad_run": 3' || { echo "FAIL: JSON lacks run 3: $json"; exit 1; }

# Restore run 3 by deleting runs 3 and its rows instead: run 4 then points at a missing hash.
sqlite3 "$db" "DELETE FROM findings WHERE run_id = 3; DELETE FROM tensors WHERE run_id = 3;
               DELETE FROM files WHERE run_id = 3; DELETE FROM runs WHERE id = 3"
out=$("$audit" --audit-db "$db" verify)
code=$?
[ "$code" = 1 ] || { echo "FAIL: verify exited $code after a deletion, expected 1"; exit 1; }
case $out in
    "audit chain broken at run 4: prev_hash "*) ;;
    *) echo "FAIL: verify did not name run 4 after run 3 was deleted: $out"; exit 1 ;;
esac
echo "ok: edits and deletions detected"
