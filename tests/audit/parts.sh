#!/bin/sh
# bitcpm-check records each file of a sharded checkpoint as a part with its
# own digests, equal to what xxh128sum and sha256sum print for that shard
# (fixtures/audit/sharded-parts.expected, made with those tools; when they
# are installed the test also runs them). A single file has one part equal
# to the file's digest. show and export list the parts, a path with odd
# characters comes back whole from the CSV export, and editing a part's
# digest breaks the run's hash.
# Usage: parts.sh BITCPM_CHECK BITCPM_AUDIT SHARDED_FOLDER EXPECTED
set -u
check=$1
audit=$2
folder=$3
expected=$4
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-parts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db
fail() { echo "FAIL: $*"; exit 1; }
q() { sqlite3 "$db" "$1"; }

"$check" --audit-db "$db" --sha256 "$folder" >"$tmp/out" 2>&1
code=$?
[ "$code" -le 1 ] || fail "bitcpm-check exited $code: $(cat "$tmp/out")"
[ "$(q "SELECT chain_format FROM runs WHERE id = 1")" = 2 ] || fail "new run not chain format 2"
[ "$(q "SELECT count(*) FROM file_parts WHERE run_id = 1")" = "$(wc -l <"$expected")" ] ||
    fail "part count: $(q "SELECT count(*) FROM file_parts WHERE run_id = 1")"

# Part k is the k-th shard in name order, with the committed digests and its size.
ordinal=0
while read -r name xxh sha; do
    row=$(q "SELECT path, size_bytes, xxh3_128, sha256 FROM file_parts
             WHERE run_id = 1 AND ordinal = $ordinal")
    [ "$row" = "$folder/$name|$(wc -c <"$folder/$name" | tr -d ' ')|$xxh|$sha" ] ||
        fail "part $ordinal: $row"
    if command -v xxh128sum >/dev/null && command -v sha256sum >/dev/null; then
        [ "$(xxh128sum "$folder/$name" | cut -d' ' -f1)" = "$xxh" ] ||
            fail "$expected is stale for $name (xxh128sum differs)"
        [ "$(sha256sum "$folder/$name" | cut -d' ' -f1)" = "$sha" ] ||
            fail "$expected is stale for $name (sha256sum differs)"
    fi
    ordinal=$((ordinal + 1))
done <"$expected"

# A lone shard is a single-file checkpoint: one part, the same digest as its file row.
read -r name xxh sha <"$expected"
"$check" --audit-db "$db" "$folder/$name" >"$tmp/out" 2>&1
[ $? -le 1 ] || fail "bitcpm-check on one shard: $(cat "$tmp/out")"
[ "$(q "SELECT xxh3_128 FROM files WHERE run_id = 2")" = "$xxh" ] || fail "single file digest"
[ "$(q "SELECT ordinal, xxh3_128, sha256 IS NULL FROM file_parts WHERE run_id = 2")" = "0|$xxh|1" ] ||
    fail "single file part: $(q "SELECT * FROM file_parts WHERE run_id = 2")"

"$audit" --audit-db "$db" show 1 >"$tmp/show.txt" || fail "show 1"
grep -q '^    parts (2)$' "$tmp/show.txt" || fail "show lacks the parts: $(cat "$tmp/show.txt")"
grep -qF "        sha256 $sha" "$tmp/show.txt" || fail "show lacks the first shard's sha256"
"$audit" --audit-db "$db" show 1 --format json >"$tmp/show.json" || fail "show 1 --format json"
grep -qF "\"xxh3_128\": \"$xxh\"" "$tmp/show.json" || fail "JSON lacks the first shard's digest"
"$audit" --audit-db "$db" export --format csv >"$tmp/export.csv" || fail "export csv"
head -n 1 "$tmp/export.csv" | grep -q ',files,xxh3_128,sha256,parts,rule,' || fail "csv header"
grep -qF "{\"\"path\"\":\"\"$folder/$name\"\",\"\"xxh3_128\"\":\"\"$xxh\"\",\"\"sha256\"\":\"\"$sha\"\"}" \
    "$tmp/export.csv" || fail "csv lacks the first shard's part"

# A path with a space, '=', a comma and a quote survives the CSV export: the
# field is quoted with its quotes doubled (RFC 4180), and the parts column is
# JSON text that parses back to the path and both digests.
odd="$tmp/my model=1,\"q\".safetensors"
cp "$folder/$name" "$odd"
"$check" --audit-db "$db" --sha256 "$odd" >"$tmp/out" 2>&1
[ $? -le 1 ] || fail "bitcpm-check on $odd: $(cat "$tmp/out")"
"$audit" --audit-db "$db" export --run 3 --format csv >"$tmp/odd.csv" || fail "export --run 3"
grep -qF ",\"[\"\"$tmp/my model=1,\\\"\"q\\\"\".safetensors\"\"]\",$xxh,$sha,\"[{\"\"path\"\":" \
    "$tmp/odd.csv" || fail "csv files field for $odd: $(cat "$tmp/odd.csv")"
if command -v python3 >/dev/null; then
    python3 - "$tmp/odd.csv" "$odd" "$xxh" "$sha" <<'PY' || fail "csv did not parse back"
import csv, json, sys
path, want, xxh, sha = sys.argv[1:]
with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
assert rows, "no rows"
for row in rows:
    assert json.loads(row["files"]) == [want], row["files"]
    assert row["xxh3_128"] == xxh, row["xxh3_128"]
    assert row["sha256"] == sha, row["sha256"]
    assert json.loads(row["parts"]) == [{"path": want, "xxh3_128": xxh, "sha256": sha}], row["parts"]
PY
fi

"$audit" --audit-db "$db" verify >/dev/null || fail "fresh chain did not verify"
q "UPDATE file_parts SET xxh3_128 = '00000000000000000000000000000000'
   WHERE run_id = 1 AND ordinal = 1"
out=$("$audit" --audit-db "$db" verify)
code=$?
[ "$code" = 1 ] || fail "verify exited $code after a part's digest was edited, expected 1"
case $out in
    "audit chain broken at run 1: stored hash "*) ;;
    *) fail "verify did not name run 1: $out" ;;
esac
echo "ok: per-shard digests recorded, shown and covered by the run hash"
