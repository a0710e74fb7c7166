#!/bin/sh
# The committed database of the first released schema (version 1, see
# fixtures/audit/README) opens with the current code, which upgrades it in
# place when the schema has moved on. Its runs read back with the content
# that tools/gen_audit_fixture.sh wrote, and its hash chain verifies.
# A run written after the upgrade uses chain format 2 and the chain over
# both formats verifies.
# Usage: migrate.sh BITCPM_AUDIT FIXTURE_DB AUDIT_DRIVER
set -u
audit=$1
fixture=$2
driver=$3
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-migrate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db
cp "$fixture" "$db"
fail() { echo "FAIL: $*"; exit 1; }

[ "$(sqlite3 "$db" "PRAGMA user_version")" = 1 ] || fail "the fixture is not schema version 1"

out=$("$audit" --audit-db "$db" verify) || fail "verify: $out"
[ "$out" = "audit chain intact: 3 runs verified" ] || fail "verify printed: $out"

current=$("$audit" --version | sed -n 's/.*(audit schema \([0-9]*\)).*/\1/p')
[ "$(sqlite3 "$db" "PRAGMA user_version")" = "$current" ] ||
    fail "user_version was not upgraded to $current"
[ "$current" = 2 ] || fail "this build reports audit schema $current; the checks below are for 2"
[ "$(sqlite3 "$db" "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'file_parts'")" = 1 ] ||
    fail "the upgrade did not add the file_parts table"
[ "$(sqlite3 "$db" "SELECT count(*) FROM file_parts")" = 0 ] ||
    fail "the upgrade wrote parts for runs recorded without them"
# Runs of schema 1 keep chain format 1, and show lists no parts for them.
[ "$(sqlite3 "$db" "SELECT group_concat(DISTINCT chain_format) FROM runs")" = 1 ] ||
    fail "the upgrade changed the runs' chain format"

# History, newest first; the generator wrote runs at 1700000000, +100 s and +200 s.
"$audit" --audit-db "$db" history --format json >"$tmp/history.json" || fail "history"
ids=$(grep -E '^    "id": ' "$tmp/history.json" | tr -dc '0-9\n' | tr '\n' ' ')
[ "$ids" = "3 2 1 " ] || fail "history ids: $ids"
grep -q '"started": "2023-11-14T22:13:20Z"' "$tmp/history.json" || fail "run 1 start time"

# --model matches the family and the config folder's name.
out=$("$audit" --audit-db "$db" history --model bitcpm-1b --format json | grep -c '^    "id": ')
[ "$out" = 2 ] || fail "--model bitcpm-1b matched $out runs, expected 2"
out=$("$audit" --audit-db "$db" history --model minicpm --format json | grep -c '^    "id": ')
[ "$out" = 1 ] || fail "--model minicpm matched $out runs, expected 1"
out=$("$audit" --audit-db "$db" history /models/bitcpm-1b/model.safetensors --format json |
      grep -c '^    "id": ')
[ "$out" = 2 ] || fail "PATH matched $out runs, expected 2"

# Run 2: 14 tensors and 5 findings; finding j has severity j%4 and message "row j ...".
"$audit" --audit-db "$db" show 2 --format json >"$tmp/show.json" || fail "show 2"
for expected in '"exit_code": 1,' '"verdict": "fail",' '"host": "fixture-host",' \
    '"user": "fixture-user",' '"ntensors": 14,' '"nfindings": 5,' \
    '"command_line": "bitcpm-check --audit-db schema-v1.db /models/bitcpm-1b/model.safetensors",' \
    '"config_path": "/models/bitcpm-1b/config.json",' '"model_name": "bitcpm-1b",' \
    '"message": "row 4 holds 3 values outside {-s, 0, +s}",' '"severity": "critical",' '"parts": []'; do
    grep -qF "$expected" "$tmp/show.json" || fail "show 2 lacks $expected"
done

# Tensor 13 of run 2 is layer 13/7 = 1, projection 13%7 = 6 (down_proj).
"$audit" --audit-db "$db" export --run 2 >"$tmp/export.json" || fail "export --run 2"
grep -qF '"name": "model.layers.1.mlp.down_proj.weight",' "$tmp/export.json" ||
    fail "export lacks tensor 13"
[ "$(grep -c '"dtype": "BF16",' "$tmp/export.json")" = 14 ] || fail "export tensor count"

# Run 3 added findings against run 1 only by removing them: run 3 has none.
out=$("$audit" --audit-db "$db" compare 1 3)
[ $? = 1 ] || fail "compare 1 3 found no differences"
[ "$(echo "$out" | head -n 1)" = "run 1 -> run 3: 0 added, 3 removed" ] || fail "compare: $out"

"$driver" --db "$db" --tensors 2 --findings 1 >/dev/null || fail "writing a run after the upgrade"
[ "$(sqlite3 "$db" "SELECT chain_format FROM runs WHERE id = 4")" = 2 ] ||
    fail "the run written after the upgrade is not chain format 2"
out=$("$audit" --audit-db "$db" verify) || fail "verify over both chain formats: $out"
[ "$out" = "audit chain intact: 4 runs verified" ] || fail "verify printed: $out"

# A part added by hand to a format 1 run, which its hash cannot cover, is caught.
sqlite3 "$db" "INSERT INTO file_parts (run_id, file_id, ordinal, path)
               SELECT run_id, id, 0, path FROM files WHERE run_id = 2 LIMIT 1"
out=$("$audit" --audit-db "$db" verify)
[ $? = 1 ] || fail "verify passed with a part added to a format 1 run"
case $out in
    "audit chain broken at run 2: it uses chain format 1, which has no file parts"*) ;;
    *) fail "verify did not name run 2: $out" ;;
esac
echo "ok: schema 1 fixture opened, read back, verified and extended"
