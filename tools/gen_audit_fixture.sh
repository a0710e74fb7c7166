#!/bin/sh
# Write fixtures/audit/schema-v1.db, an audit database in the first released
# schema (version 1), for the test that opens it with the current code.
# Regenerate it only when a new schema version is added, never to make a
# test pass, because the point of the file is that the old code wrote it.
# Usage: tools/gen_audit_fixture.sh BUILD_DIR [OUTPUT]
#   BUILD_DIR: a meson build folder with tests/audit/audit_driver built.
set -eu
build=$(cd "$1" && pwd)
out=${2:-$(dirname "$0")/../fixtures/audit/schema-v1.db}
driver=$build/tests/audit/audit_driver
command -v sqlite3 >/dev/null || { echo "gen_audit_fixture: needs the sqlite3 command" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# Fixed times, host and user so that the content is a function of this script.
# The driver names the database as given in each run's command line,
# so a relative name keeps the scratch folder out of the fixture.
"$driver" --db schema-v1.db --started 1700000000000000000 --host fixture-host \
    --user fixture-user --path /models/bitcpm-1b/model.safetensors \
    --config /models/bitcpm-1b/config.json --family llama --tensors 4 --findings 3 \
    --exit-code 0
"$driver" --db schema-v1.db --started 1700000100000000000 --host fixture-host \
    --user fixture-user --path /models/bitcpm-1b/model.safetensors \
    --config /models/bitcpm-1b/config.json --family llama --tensors 14 --findings 5 \
    --exit-code 1
"$driver" --db schema-v1.db --started 1700000200000000000 --host fixture-host \
    --user fixture-user --path /models/bitcpm-8b/shard --family minicpm --files 2 \
    --tensors 6 --findings 0 --exit-code 0

# Fold the WAL into the main file so that the fixture is a single file.
sqlite3 schema-v1.db "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cd - >/dev/null
cp "$tmp/schema-v1.db" "$out"
echo "wrote $out"
